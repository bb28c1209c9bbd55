//! Probes and lifecycle hooks with real containers: readiness flipping both
//! ways, liveness restarts, startup holding back liveness, a hung target
//! bounded by its timeout, postStart/preStop order, httpGet and sleep
//! preStop hooks, a failed postStart, hooks and kills carried across a
//! picolet restart, and exec probes running as the container's process
//! (user, env, cwd, namespaces, capabilities).

mod common;
use common::*;
use std::path::PathBuf;

/// A host directory mounted at /h in the pod, for the test to flip files in.
fn host_dir(p: &Picolet, name: &str) -> PathBuf {
    let d = p.base.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn restarts(pod: &serde_json::Value, c: &str) -> i64 {
    container(pod, c)["restartCount"].as_i64().unwrap_or(0)
}

#[test]
fn readiness_flips_both_ways_over_http_in_the_pod_netns() {
    let mut p = Picolet::new("probe-ready");
    let h = host_dir(&p, "www");
    std::fs::write(h.join("index.html"), "hi\n").unwrap();
    p.write_manifest(
        "web.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  volumes: [{{name: h, hostPath: {{path: {}}}}}]
  containers:
  - name: web
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /h]
    ports: [{{name: http, containerPort: 8080}}]
    volumeMounts: [{{name: h, mountPath: /h}}]
    readinessProbe:
      httpGet: {{path: /ready, port: http}}
      periodSeconds: 1
      failureThreshold: 1
"#,
            h.display()
        ),
    );
    p.start();
    let pod = p.wait_pod("web", "running", |q| running(q, "web"));
    assert_eq!(condition(&pod, "Ready"), "False", "no /ready yet");
    assert_eq!(container(&pod, "web")["ready"], false);
    assert_eq!(container(&pod, "web")["started"], true);
    std::fs::write(h.join("ready"), "ok\n").unwrap();
    let pod = p.wait_pod("web", "Ready", |q| condition(q, "Ready") == "True");
    assert_eq!(condition(&pod, "ContainersReady"), "True");
    assert_eq!(container(&pod, "web")["ready"], true);
    std::fs::remove_file(h.join("ready")).unwrap();
    let pod = p.wait_pod("web", "not Ready", |q| condition(q, "Ready") == "False");
    assert_eq!(phase(&pod), "Running", "readiness never restarts");
    assert_eq!(restarts(&pod, "web"), 0);
    std::fs::write(h.join("ready"), "ok\n").unwrap();
    p.wait_pod("web", "Ready again", |q| condition(q, "Ready") == "True");
    assert!(p.picolet_log().contains("Readiness probe failed: HTTP probe failed with statuscode: 404"), "{}", p.picolet_log());
}

/// An httpGet probe sends its httpHeaders and kube-probe's User-Agent and
/// follows a same-host redirect: the 404 at the end of it fails the probe
/// (the 302 alone would have passed), the 200 there passes it.
#[test]
fn http_probe_sends_headers_and_follows_redirects() {
    let mut p = Picolet::new("probe-redirect");
    let h = host_dir(&p, "www");
    std::fs::create_dir_all(h.join("cgi-bin")).unwrap();
    let script = h.join("cgi-bin/start");
    std::fs::write(&script, "#!/bin/sh\nenv > /h/env.txt\nprintf 'Status: 302 Found\\r\\nLocation: /there\\r\\n\\r\\n'\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.write_manifest(
        "web.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: redirect}}
spec:
  volumes: [{{name: h, hostPath: {{path: {}}}}}]
  containers:
  - name: web
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /h]
    volumeMounts: [{{name: h, mountPath: /h}}]
    readinessProbe:
      httpGet:
        path: /cgi-bin/start
        port: 8080
        httpHeaders: [{{name: X-Probe, value: picolet}}]
      periodSeconds: 1
      failureThreshold: 1
"#,
            h.display()
        ),
    );
    p.start();
    p.wait_until("the probe follows the redirect to a 404", || p.picolet_log().contains("Readiness probe failed: HTTP probe failed with statuscode: 404"));
    let env = std::fs::read_to_string(h.join("env.txt")).unwrap();
    assert!(env.contains("HTTP_X_PROBE=picolet"), "{env}");
    assert!(env.contains("HTTP_USER_AGENT=kube-probe/"), "{env}");
    assert_eq!(condition(&p.pod("redirect").unwrap(), "Ready"), "False");
    std::fs::write(h.join("there"), "ok\n").unwrap();
    p.wait_pod("redirect", "Ready once the redirect's target answers 200", |q| condition(q, "Ready") == "True");
}

#[test]
fn liveness_failure_restarts_the_container() {
    let mut p = Picolet::new("probe-live");
    // sleep as PID 1 ignores SIGTERM: the probe's 1 s grace ends in SIGKILL (137).
    p.write_manifest(
        "live.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  # Only the probe's own grace period can end this within the test's deadline.
  terminationGracePeriodSeconds: 3600
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    livenessProbe:
      tcpSocket: {port: 8081}
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
"#,
    );
    p.start();
    let pod = p.wait_pod("live", "a restart", |q| restarts(q, "app") >= 1);
    let last = &container(&pod, "app")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{pod}");
    assert_eq!(last["reason"], "Error");
    let log = p.picolet_log();
    assert!(log.contains("Unhealthy: container app of pod default/live-node-probe-live: Liveness probe failed: dial tcp"), "{log}");
    assert!(log.contains("Killing: container app of pod default/live-node-probe-live failed liveness probe, will be restarted"), "{log}");
}

#[test]
fn startup_probe_holds_back_liveness_and_sets_started() {
    let mut p = Picolet::new("probe-startup");
    let h = host_dir(&p, "flags");
    p.write_manifest(
        "slow.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: slow}}
spec:
  volumes: [{{name: h, hostPath: {{path: {}}}}}]
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    startupProbe:
      exec: {{command: [test, -e, /h/started]}}
      periodSeconds: 1
      failureThreshold: 60
    livenessProbe:
      exec: {{command: [test, -e, /h/live]}}
      periodSeconds: 1
      failureThreshold: 1
"#,
            h.display()
        ),
    );
    p.start();
    p.wait_until("three startup probe failures", || p.picolet_log().matches("Startup probe failed").count() >= 3);
    let pod = p.pod("slow").unwrap();
    assert_eq!(container(&pod, "app")["started"], false, "{pod}");
    assert_eq!(container(&pod, "app")["ready"], false);
    assert_eq!(restarts(&pod, "app"), 0);
    assert!(!p.picolet_log().contains("Liveness probe failed"), "liveness must wait for startup");
    std::fs::write(h.join("live"), "").unwrap();
    std::fs::write(h.join("started"), "").unwrap();
    let pod = p.wait_pod("slow", "started", |q| container(q, "app")["started"] == true);
    assert_eq!(container(&pod, "app")["ready"], true, "no readiness probe: ready once started");
    assert_eq!(condition(&pod, "Ready"), "True");
    // Now liveness runs: failing it restarts the container.
    std::fs::remove_file(h.join("live")).unwrap();
    let pod = p.wait_pod("slow", "restart by liveness", |q| restarts(q, "app") >= 1);
    assert!(!container(&pod, "app")["lastState"]["terminated"].is_null());
    assert!(p.picolet_log().contains("Liveness probe failed: command [\"test\", \"-e\", \"/h/live\"] exited with 1"));
}

/// A startup probe that never succeeds kills the container after
/// failureThreshold × periodSeconds, and the restart policy applies.
#[test]
fn failing_startup_probe_restarts_the_container() {
    let mut p = Picolet::new("probe-startup-kill");
    p.write_manifest(
        "never.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  terminationGracePeriodSeconds: 3600
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    startupProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
"#,
    );
    p.start();
    let pod = p.wait_pod("never", "a restart", |q| restarts(q, "app") >= 1);
    assert_eq!(container(&pod, "app")["lastState"]["terminated"]["exitCode"], 137, "{pod}");
    assert_eq!(container(&pod, "app")["started"], false);
    let log = p.picolet_log();
    assert!(log.contains("Killing: container app of pod default/never-node-probe-startup-kill failed startup probe, will be restarted"), "{log}");
}

#[test]
fn hung_target_is_bounded_and_other_pods_keep_syncing() {
    let mut p = Picolet::new("probe-hung");
    // nc accepts and never answers: every probe hangs until its timeout.
    p.write_manifest(
        "hung.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hung}
spec:
  containers:
  - name: nc
    image: busybox
    command: [sh, -c, "while true; do sleep 1000 | nc -l -p 8080 >/dev/null; done"]
    readinessProbe:
      httpGet: {port: 8080}
      timeoutSeconds: 20
      periodSeconds: 1
"#,
    );
    p.start();
    p.wait_pod("hung", "running", |q| running(q, "nc"));
    // While the first probe hangs, another pod starts and becomes Ready: it
    // does so before that probe's timeout is reported, i.e. nothing waited on it.
    p.write_manifest("other.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: other}\nspec:\n  containers: [{name: c, image: busybox, command: [sleep, '1000']}]\n");
    p.wait_pod("other", "Ready", |q| condition(q, "Ready") == "True");
    assert!(!p.picolet_log().contains("Readiness probe failed: timeout"), "the other pod waited for the hung probe");
    // And the hung probe is bounded by its timeout.
    p.wait_until("the probe timing out", || p.picolet_log().contains("Readiness probe failed: timeout after 20s"));
    let hung = p.pod("hung").unwrap();
    assert_eq!(condition(&hung, "Ready"), "False");
}

#[test]
fn post_start_and_pre_stop_run_in_order() {
    let mut p = Picolet::new("probe-hooks");
    let h = host_dir(&p, "order");
    p.write_manifest(
        "hooks.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{{name: h, hostPath: {{path: {}}}}}]
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "trap 'echo term >> /h/order; exit 0' TERM; echo main >> /h/order; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "sleep 1; echo poststart >> /h/order"]}}
      preStop:
        exec: {{command: [sh, -c, "echo prestop >> /h/order; sleep 1; echo prestop-done >> /h/order"]}}
"#,
            h.display()
        ),
    );
    p.start();
    let order = || std::fs::read_to_string(h.join("order")).unwrap_or_default();
    let pod = p.wait_pod("hooks", "running", |q| running(q, "app"));
    assert!(order().contains("poststart"), "Running only after postStart returned: {:?}\n{pod}", order());
    p.remove_manifest("hooks.yaml");
    p.wait_gone("hooks");
    assert_eq!(order(), "main\npoststart\nprestop\nprestop-done\nterm\n");
}

/// preStop with httpGet (into the pod's network, as probes) and with sleep:
/// each runs before its container's stop signal.
#[test]
fn http_get_and_sleep_pre_stop_hooks_run_before_the_signal() {
    let mut p = Picolet::new("probe-hook-kinds");
    let h = host_dir(&p, "kinds");
    p.write_manifest(
        "hooks.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: kinds}}
spec:
  terminationGracePeriodSeconds: 30
  volumes: [{{name: h, hostPath: {{path: {}}}}}]
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www; echo ok > /www/bye; echo ok > /www/ready; httpd -f -vv -p 8080 -h /www 2>> /h/web & trap 'echo term >> /h/web; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    readinessProbe:
      httpGet: {{path: /ready, port: 8080}}
      periodSeconds: 1
    lifecycle:
      preStop:
        httpGet: {{path: /bye, port: 8080, httpHeaders: [{{name: X-Why, value: stopping}}]}}
  - name: sleeper
    image: busybox
    command: [sh, -c, "trap 'date +%s >> /h/sleeper; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    lifecycle:
      preStop:
        sleep: {{seconds: 3}}
"#,
            h.display()
        ),
    );
    p.start();
    p.wait_pod("kinds", "web serving", |q| container(q, "web")["ready"] == true && running(q, "sleeper"));
    let removed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    p.remove_manifest("hooks.yaml");
    p.wait_gone("kinds");
    let web = std::fs::read_to_string(h.join("web")).unwrap();
    let (hook, term) = (web.find("url:/bye"), web.find("term"));
    assert!(hook.is_some() && term.is_some() && hook < term, "the GET /bye came before SIGTERM: {web:?}");
    assert!(!p.picolet_log().contains("FailedPreStopHook"), "{}", p.picolet_log());
    let signalled: u64 = std::fs::read_to_string(h.join("sleeper")).unwrap().trim().parse().unwrap();
    assert!(signalled >= removed + 3, "SIGTERM at {signalled}, not before the 3 s preStop sleep after {removed}");
}

/// A preStop hook that outlasts the grace period does not hold the pod:
/// its time counts against the grace period, then the stop signal goes.
#[test]
fn pre_stop_time_counts_against_the_grace_period() {
    let mut p = Picolet::new("probe-prestop-grace");
    let h = host_dir(&p, "grace");
    p.write_manifest(
        "slow.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: slow}}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{{name: h, hostPath: {{path: {}}}}}]
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "trap 'echo term >> /h/log; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, "echo prestop >> /h/log; sleep 1000"]}}
"#,
            h.display()
        ),
    );
    p.start();
    p.wait_pod("slow", "running", |q| running(q, "app"));
    p.remove_manifest("slow.yaml");
    p.wait_gone("slow");
    assert_eq!(std::fs::read_to_string(h.join("log")).unwrap(), "prestop\nterm\n");
}

#[test]
fn failed_post_start_kills_the_container() {
    let mut p = Picolet::new("probe-poststart");
    p.write_manifest(
        "bad.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "echo no; exit 3"]}
"#,
    );
    p.start();
    let pod = p.wait_pod("bad", "a restart", |q| restarts(q, "app") >= 1);
    let last = &container(&pod, "app")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{pod}");
    assert!(last["message"].as_str().unwrap_or("").contains("PostStartHook failed"), "{pod}");
    assert!(p.picolet_log().contains("FailedPostStartHook: container app of pod default/bad-node-probe-poststart: command"));
}

/// A kill under way and a postStart not yet returned outlive a SIGKILL of
/// picolet: the kill keeps going (the probe that decided it passes now) and
/// the hook runs again (hooks are delivered at least once).
#[test]
fn a_kill_and_a_post_start_survive_a_picolet_restart() {
    let mut p = Picolet::new("probe-restart");
    let h = host_dir(&p, "state");
    p.write_manifest(
        "pods.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 3600
  volumes: [{{name: h, hostPath: {{path: {dir}}}}}]
  containers:
  - name: app
    image: busybox
    # Ignores SIGTERM: only the SIGKILL at the end of the grace period ends it.
    command: [sh, -c, "trap 'echo term >> /h/stubborn' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    livenessProbe:
      # Fails once, then never again.
      exec: {{command: [sh, -c, "[ -e /h/failed ] || {{ touch /h/failed; exit 1; }}"]}}
      periodSeconds: 1
      failureThreshold: 1
      terminationGracePeriodSeconds: 6
---
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  volumes: [{{name: h, hostPath: {{path: {dir}}}}}]
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "echo run >> /h/hook; while [ ! -e /h/release ]; do sleep 0.1; done"]}}
"#,
            dir = h.display()
        ),
    );
    p.start();
    let read = |f: &str| std::fs::read_to_string(h.join(f)).unwrap_or_default();
    p.wait_until("the liveness kill sent SIGTERM", || read("stubborn").contains("term"));
    p.wait_until("postStart runs", || read("hook").lines().count() == 1);
    let pod = p.wait_pod("hooked", "created", |q| !container(q, "app")["state"].is_null());
    assert!(!running(&pod, "app"), "not Running before postStart returns: {pod}");

    p.kill();
    p.start();
    p.wait_until("the postStart cut short runs again", || read("hook").lines().count() == 2);
    let pod = p.wait_pod("hooked", "reported", |q| !container(q, "app")["state"].is_null());
    assert!(!running(&pod, "app"), "still not Running after the restart: {pod}");
    std::fs::write(h.join("release"), b"").unwrap();
    p.wait_pod("hooked", "Running once postStart returned", |q| running(q, "app"));

    let pod = p.wait_pod("stubborn", "killed at the end of its grace period", |q| restarts(q, "app") >= 1);
    let last = &container(&pod, "app")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{pod}");
    assert!(p.picolet_log().contains("resuming its stop"), "{}", p.picolet_log());
}

#[test]
fn exec_probe_runs_as_the_containers_process() {
    let mut p = Picolet::new("probe-exec-as");
    // Each check fails the probe unless the command sees what the container
    // sees: its user, env and cwd, its pid namespace (its init is PID 1),
    // the file its init wrote (its root) and its hostname.
    p.write_manifest(
        "as.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: as}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 1001, supplementalGroups: [2002]}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "hostname > /tmp/hn; exec sleep 1000"]
    workingDir: /tmp
    env: [{name: FOO, value: bar}]
    readinessProbe:
      exec:
        command:
        - sh
        - -c
        - >-
          [ "$(id -u)" = 1000 ] && [ "$(id -g)" = 1001 ] && id -G | grep -qw 2002 &&
          [ "$FOO" = bar ] && [ "$(pwd)" = /tmp ] && [ -z "$PICOLET_TEST_LEAK" ] &&
          grep -q sleep /proc/1/cmdline && [ -d /proc/$$ ] &&
          [ "$(hostname)" = "$(cat /tmp/hn)" ]
      periodSeconds: 1
"#,
    );
    std::env::set_var("PICOLET_TEST_LEAK", "1");
    p.start();
    let pod = p.wait_pod("as", "Ready", |q| condition(q, "Ready") == "True");
    assert_eq!(container(&pod, "app")["ready"], true, "{pod}\n{}", p.picolet_log());
    assert!(!p.picolet_log().contains("without runc failed"), "the setns path, not the runc fallback: {}", p.picolet_log());
}

#[test]
fn exec_probe_has_the_containers_capabilities() {
    let mut p = Picolet::new("probe-exec-caps");
    // chown needs CAP_CHOWN: the container without capabilities must fail
    // it, the default one must not (so the first check means something).
    p.write_manifest(
        "caps.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: caps}
spec:
  containers:
  - name: none
    image: busybox
    command: [sh, -c, "touch /tmp/x; exec sleep 1000"]
    securityContext: {capabilities: {drop: [ALL]}}
    readinessProbe:
      exec: {command: [sh, -c, "! chown 1 /tmp/x && grep -q 'CapBnd:.0000000000000000' /proc/self/status"]}
      periodSeconds: 1
  - name: default
    image: busybox
    command: [sh, -c, "touch /tmp/y; exec sleep 1000"]
    readinessProbe:
      exec: {command: [sh, -c, "chown 1 /tmp/y"]}
      periodSeconds: 1
"#,
    );
    p.start();
    let pod = p.wait_pod("caps", "Ready", |q| condition(q, "Ready") == "True");
    assert_eq!(container(&pod, "none")["ready"], true, "{pod}");
    assert_eq!(container(&pod, "default")["ready"], true, "{pod}");
    assert!(!p.picolet_log().contains("without runc failed"), "the setns path, not the runc fallback: {}", p.picolet_log());
}

#[test]
fn exec_probe_timeout_kills_the_command() {
    let mut p = Picolet::new("probe-exec-timeout");
    p.write_manifest(
        "slowexec.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slowexec}
spec:
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    readinessProbe:
      exec: {command: [sleep, "4242"]}
      timeoutSeconds: 1
      periodSeconds: 2
"#,
    );
    p.start();
    p.wait_until("an exec probe timing out", || p.picolet_log().contains("Readiness probe failed: command [\"sleep\", \"4242\"] timed out after 1s"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // At most the probe now running (started < 1 s ago) may be left.
    let left = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|c| c.as_slice() == b"sleep\x004242\x00")
            .count()
    };
    assert!(left() <= 1, "timed-out probe commands were not killed: {}", left());
    assert!(!p.picolet_log().contains("without runc failed"), "{}", p.picolet_log());
}

/// A server process for a probe to talk to: started with `cmd`, ready once it
/// prints "listening", killed however the test ends.
struct Server(std::process::Child);

impl Server {
    fn start(cmd: &mut std::process::Command) -> Server {
        let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("start the test server");
        let mut server = Server(child);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(server.0.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "listening");
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn grpc_probe_against_a_real_health_server() {
    let mut p = Picolet::new("probe-grpc");
    let port = free_port();
    let state = p.base.join("grpc-state");
    std::fs::write(&state, "NOT_SERVING").unwrap();
    // python3 with grpcio (tests/run.sh installs it).
    let _server = Server::start(std::process::Command::new("python3").arg(repo().join("tests/grpc/health_server.py")).arg(port.to_string()).arg(&state));
    // hostNetwork: the probe reaches the server on the node's loopback.
    p.write_manifest(
        "grpc.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: grpc}}\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '1000']\n    readinessProbe:\n      grpc: {{port: {port}, service: svc}}\n      periodSeconds: 1\n"
        ),
    );
    p.start();
    p.wait_pod("grpc", "running, not ready", |q| running(q, "c") && container(q, "c")["ready"] == false);
    p.wait_until("the NOT_SERVING verdict in the log", || p.picolet_log().contains("responded with \"NOT_SERVING\""));
    std::fs::write(&state, "SERVING").unwrap();
    p.wait_pod("grpc", "Ready", |q| condition(q, "Ready") == "True");
    std::fs::write(&state, "NOT_SERVING").unwrap();
    p.wait_pod("grpc", "not Ready again", |q| condition(q, "Ready") == "False");
    // A probe failing the same way every second is logged once per change.
    let log = p.picolet_log();
    let failures = log.lines().filter(|l| l.contains(" INFO ") && l.contains("NOT_SERVING")).count();
    assert_eq!(failures, 2, "{log}");
    assert!(log.contains("Readiness probe succeeded again"), "{log}");
}

#[test]
fn https_probe_speaks_tls_without_verifying_the_certificate() {
    let mut p = Picolet::new("probe-https");
    let port = free_port();
    // A self-signed server, as pods usually have: upstream does not verify it.
    let www = p.base.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("ok"), "fine").unwrap();
    let (cert, key) = (p.base.join("tls.crt"), p.base.join("tls.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pod", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let script = format!(
        "import http.server, ssl, functools\nh = functools.partial(http.server.SimpleHTTPRequestHandler, directory={:?})\ns = http.server.HTTPServer(('127.0.0.1', {port}), h)\nc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nc.load_cert_chain({:?}, {:?})\ns.socket = c.wrap_socket(s.socket, server_side=True)\nprint('listening', flush=True)\ns.serve_forever()\n",
        www.display().to_string(),
        cert.display().to_string(),
        key.display().to_string()
    );
    let _server = Server::start(std::process::Command::new("python3").args(["-c", &script]));
    p.write_manifest(
        "tls.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: tls}}\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '1000']\n    readinessProbe:\n      httpGet: {{scheme: HTTPS, host: 127.0.0.1, port: {port}, path: /ok}}\n      periodSeconds: 1\n"
        ),
    );
    p.start();
    // Ready needs a 200 from inside TLS (a bare TCP connect would not tell).
    p.wait_pod("tls", "Ready over HTTPS", |q| condition(q, "Ready") == "True");
    std::fs::remove_file(www.join("ok")).unwrap();
    p.wait_pod("tls", "not Ready on a 404", |q| condition(q, "Ready") == "False");
    assert!(p.picolet_log().contains("statuscode: 404"), "{}", p.picolet_log());
}
