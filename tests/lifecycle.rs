//! Init containers, restart policies, crash-loop back-off and graceful
//! termination, with the real runc.

mod common;
use common::*;

#[test]
fn init_containers_run_in_order_before_app_containers() {
    let mut p = Picolet::new("init-order");
    p.write_manifest(
        "init.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: init}
spec:
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - {name: first, image: busybox, command: [sh, -c, "echo first >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: second, image: busybox, command: [sh, -c, "echo second >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: app, image: busybox, command: [sh, -c, "echo app >> /work/order; cat /work/order; exec sleep 1000"], volumeMounts: [{name: work, mountPath: /work}]}
"#,
    );
    p.start();
    let pod = p.wait_pod("init", "Running", |q| running(q, "app"));
    assert_eq!(condition(&pod, "Initialized"), "True");
    for name in ["first", "second"] {
        let t = &init_container(&pod, name)["state"]["terminated"];
        assert_eq!(t["exitCode"], 0, "{name}");
        assert_eq!(t["reason"], "Completed", "{name}");
    }
    let lines = p.wait_log(&pod, "app", 0, "app");
    assert_eq!(lines, vec!["first", "second", "app"]);
}

#[test]
fn failing_init_container_blocks_app_and_restart_policy_never_fails_pod() {
    let mut p = Picolet::new("init-fail");
    p.write_manifest(
        "retry.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: retry}
spec:
  initContainers: [{name: setup, image: busybox, command: [sh, -c, "exit 3"]}]
  containers: [{name: app, image: busybox, command: [sleep, "1000"]}]
"#,
    );
    p.write_manifest(
        "once.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  initContainers: [{name: setup, image: busybox, command: [sh, -c, "exit 3"]}]
  containers: [{name: app, image: busybox, command: [sleep, "1000"]}]
"#,
    );
    p.start();
    let pod = p.wait_pod("retry", "init restarted", |q| init_container(q, "setup")["restartCount"].as_i64().unwrap_or(0) >= 1);
    assert_eq!(phase(&pod), "Pending");
    assert_eq!(condition(&pod, "Initialized"), "False");
    assert_eq!(container(&pod, "app")["state"]["waiting"]["reason"], "PodInitializing");
    let pod = p.wait_pod("once", "Failed", |q| phase(q) == "Failed");
    assert_eq!(init_container(&pod, "setup")["state"]["terminated"]["exitCode"], 3);
    assert_eq!(init_container(&pod, "setup")["restartCount"], 0);
}

#[test]
fn restart_policies() {
    let mut p = Picolet::new("restart-policies");
    let job = |name: &str, policy: &str, code: i32| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers: [{{name: c, image: busybox, command: [sh, -c, 'echo ran; exit {code}']}}]\n"
        )
    };
    p.write_manifest("never-ok.yaml", &job("never-ok", "Never", 0));
    p.write_manifest("never-bad.yaml", &job("never-bad", "Never", 2));
    p.write_manifest("onfailure-ok.yaml", &job("onfailure-ok", "OnFailure", 0));
    p.write_manifest("onfailure-bad.yaml", &job("onfailure-bad", "OnFailure", 2));
    p.start();
    let pod = p.wait_pod("never-ok", "Succeeded", |q| phase(q) == "Succeeded");
    assert_eq!(container(&pod, "c")["state"]["terminated"]["reason"], "Completed");
    let pod = p.wait_pod("never-bad", "Failed", |q| phase(q) == "Failed");
    assert_eq!(container(&pod, "c")["state"]["terminated"]["reason"], "Error");
    assert_eq!(container(&pod, "c")["state"]["terminated"]["exitCode"], 2);
    let pod = p.wait_pod("onfailure-ok", "Succeeded", |q| phase(q) == "Succeeded");
    assert_eq!(container(&pod, "c")["restartCount"], 0);
    p.wait_pod("onfailure-bad", "restarted", |q| container(q, "c")["restartCount"].as_i64().unwrap_or(0) >= 1);
    // Completed pods stay completed: no restart after a while of ticks.
    let pod = p.wait_pod("onfailure-bad", "in back-off", |q| container(q, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff");
    assert_eq!(phase(&pod), "Running");
    assert_eq!(container(&p.pod("never-ok").unwrap(), "c")["restartCount"], 0);
}

#[test]
fn crash_loop_backs_off_with_growing_restart_count() {
    let mut p = Picolet::new("crashloop");
    p.write_manifest(
        "crash.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: crash}\nspec:\n  containers: [{name: c, image: busybox, command: [sh, -c, 'echo crashing; exit 1']}]\n",
    );
    p.start();
    // First restart is immediate, the second waits out a 10 s back-off.
    let pod = p.wait_pod("crash", "CrashLoopBackOff", |q| {
        container(q, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let c = container(&pod, "c");
    assert!(c["restartCount"].as_i64().unwrap() >= 1);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    assert!(c["state"]["waiting"]["message"].as_str().unwrap().contains("back-off 10s"), "{c}");
    assert_eq!(c["ready"], false);
    assert_eq!(condition(&pod, "Ready"), "False");
    let before = c["restartCount"].as_i64().unwrap();
    let pod = p.wait_pod("crash", "another restart", |q| container(q, "c")["restartCount"].as_i64().unwrap() > before);
    // The log of each attempt is its own file.
    p.wait_log(&pod, "c", before as u32 + 1, "crashing");
    let pod = p.wait_pod("crash", "a longer back-off", |q| {
        container(q, "c")["state"]["waiting"]["message"].as_str().unwrap_or("").contains("back-off 20s")
    });
    assert!(container(&pod, "c")["restartCount"].as_i64().unwrap() >= 2);
}

#[test]
fn termination_is_graceful_then_forced() {
    let mut p = Picolet::new("termination");
    p.write_manifest(
        "polite.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: polite}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.2; done"]
"#,
    );
    p.write_manifest(
        "stubborn.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "trap 'echo ignoring TERM' TERM; echo up; while true; do sleep 0.2; done"]
"#,
    );
    p.start();
    let polite = p.wait_pod("polite", "Running", |q| running(q, "c"));
    let stubborn = p.wait_pod("stubborn", "Running", |q| running(q, "c"));
    p.wait_log(&polite, "c", 0, "up");
    p.wait_log(&stubborn, "c", 0, "up");
    let polite_dir = p.log_dir(&polite, "c");
    let stubborn_dir = p.log_dir(&stubborn, "c");
    // Watch the logs while the pods stop (they are deleted with the pod).
    let (tx, rx) = std::sync::mpsc::channel();
    for dir in [polite_dir, stubborn_dir] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut last = String::new();
            for _ in 0..600 {
                match std::fs::read_to_string(dir.join("0.log")) {
                    Ok(t) => last = t,
                    Err(_) => break,
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            tx.send((dir, last)).unwrap();
        });
    }
    p.remove_manifest("polite.yaml");
    p.remove_manifest("stubborn.yaml");
    p.wait_gone("polite");
    p.wait_gone("stubborn");
    let logs: Vec<(std::path::PathBuf, String)> = (0..2).map(|_| rx.recv().unwrap()).collect();
    let text = |needle: &str| logs.iter().find(|(d, _)| d.to_string_lossy().contains(needle)).unwrap().1.clone();
    assert!(text("polite").contains("got TERM"), "polite container saw SIGTERM: {}", text("polite"));
    assert!(text("stubborn").contains("ignoring TERM"), "stubborn container saw SIGTERM: {}", text("stubborn"));
    let log = p.picolet_log();
    assert!(log.contains("default/stubborn-") && log.contains("grace period over, killing"), "{log}");
}

#[test]
fn the_image_stop_signal_is_used() {
    let mut p = Picolet::new("stopsignal");
    // layered:v1 declares StopSignal SIGUSR1.
    std::fs::copy(images_dir().join("layered.tar"), p.import.join("layered.tar")).unwrap();
    p.write_manifest(
        "usr1.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: usr1}
spec:
  containers:
  - name: c
    image: layered:v1
    command: [sh, -c, "trap 'echo got USR1; exit 0' USR1; trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.2; done"]
"#,
    );
    p.start();
    let pod = p.wait_pod("usr1", "Running", |q| running(q, "c"));
    p.wait_log(&pod, "c", 0, "up");
    let log = p.log_dir(&pod, "c").join("0.log");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut last = String::new();
        while let Ok(t) = std::fs::read_to_string(&log) {
            last = t;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        tx.send(last).unwrap();
    });
    p.remove_manifest("usr1.yaml");
    p.wait_gone("usr1");
    let text = rx.recv().unwrap();
    assert!(text.contains("got USR1") && !text.contains("got TERM"), "{text}");
}

#[test]
fn sidecar_init_container_keeps_running_beside_the_app() {
    let mut p = Picolet::new("sidecar");
    p.write_manifest(
        "sidecar.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - {name: helper, image: busybox, restartPolicy: Always, command: [sh, -c, "echo ready > /s/flag; exec sleep 1000"], volumeMounts: [{name: shared, mountPath: /s}]}
  containers:
  - {name: app, image: busybox, command: [sh, -c, "while [ ! -s /s/flag ]; do sleep 0.1; done; cat /s/flag; exec sleep 1000"], volumeMounts: [{name: shared, mountPath: /s}]}
"#,
    );
    p.start();
    let pod = p.wait_pod("sidecar", "both running", |q| running(q, "app") && !init_container(q, "helper")["state"]["running"].is_null());
    assert_eq!(phase(&pod), "Running");
    assert_eq!(condition(&pod, "Initialized"), "True");
    assert_eq!(init_container(&pod, "helper")["ready"], true);
    p.wait_log(&pod, "app", 0, "ready");
}

/// A CNI plugin that hangs on one pod's ADD holds back that pod only: the
/// pod loop goes on, so another pod starts and gets its IP meanwhile. Once
/// the hung run ends (killed here, as the plugin timeout would), the ADD is
/// retried and the pod starts; deleting the pods runs DEL for each. The
/// plugin is a script speaking the CNI exec protocol.
#[test]
fn a_hung_cni_plugin_holds_back_only_its_own_pod() {
    let mut p = Picolet::new("cni-hang");
    // The first ADD for the pod "stuck" hangs until killed.
    let bin = script_cni(
        &mut p,
        r#"case "$CNI_COMMAND $CNI_ARGS" in
*ADD*K8S_POD_NAME=stuck-*) [ -e "$dir/hung" ] || { echo $$ > "$dir/hung"; exec sleep 100000; } ;;
esac"#,
    );
    let pod = |name: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: c, image: busybox, command: [sleep, '100000']}}]\n");
    p.write_manifest("stuck.yaml", &pod("stuck"));
    p.start();
    let hung = bin.join("hung");
    p.wait_until("the stuck pod's ADD to hang", || hung.exists() && std::fs::read_to_string(&hung).unwrap().ends_with('\n'));
    let pid = std::fs::read_to_string(&hung).unwrap().trim().to_string();

    p.write_manifest("free.yaml", &pod("free"));
    let free = p.wait_pod("free", "Running with the plugin's IP", |q| running(q, "c") && q["status"]["podIP"] == "10.99.0.7");
    assert_eq!(free["status"]["podIPs"][0]["ip"], "10.99.0.7");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the hung ADD ended before the other pod started");
    let stuck = p.pod("stuck").expect("the stuck pod");
    assert_eq!(container(&stuck, "c")["state"]["waiting"]["reason"], "ContainerCreating", "{stuck}");

    // The hung run ends: the pod's ADD is retried and goes through.
    kill_process(&pid);
    p.wait_pod("stuck", "Running after the hung ADD ended", |q| running(q, "c") && q["status"]["podIP"] == "10.99.0.7");

    p.remove_manifest("stuck.yaml");
    p.remove_manifest("free.yaml");
    p.wait_gone("stuck");
    p.wait_gone("free");
    let calls = cni_calls(&bin);
    for name in ["stuck", "free"] {
        let del = format!("K8S_POD_NAME={name}-{}", p.node);
        assert!(calls.lines().any(|l| l.starts_with("DEL ") && l.contains(&del)), "no DEL for {name}:\n{calls}");
    }
}

/// A pod that is over (here its app container is done under Never) is
/// wound down as upstream does a terminal pod: its sidecar is stopped and
/// its network torn down (a CNI DEL, so the IP goes back to the pool) while
/// the pod object, its logs and its status with the IP stay until it is
/// deleted. A restart neither sets the network up again nor restarts the
/// sidecar.
#[test]
fn an_ended_pod_stops_its_sidecar_and_gives_its_ip_back() {
    let mut p = Picolet::new("cni-ended");
    // The plugin's DEL takes a second, as a real one may. picolet has let the
    // IP go once its status says so (PodReadyToStartContainers False), not
    // when the plugin logged its DEL: a picolet killed in between does not
    // know whether the DEL finished and DELs again after its restart.
    let bin = script_cni(&mut p, r#"[ "$CNI_COMMAND" = DEL ] && sleep 1"#);
    p.write_manifest(
        "job.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  initContainers:
  - name: side
    image: busybox
    restartPolicy: Always
    command: [sh, -c, "trap 'echo side stopping; exit 0' TERM; echo side up; while true; do sleep 0.2; done"]
  containers:
  - name: work
    image: busybox
    command: [sh, -c, "echo working; sleep 1"]
    volumeMounts: [{name: scratch, mountPath: /scratch, subPath: job}]
  volumes: [{name: scratch, emptyDir: {}}]
"#,
    );
    p.start();
    let count = |verb: &str| cni_calls(&bin).lines().filter(|l| l.starts_with(verb) && l.contains("K8S_POD_NAME=job-")).count();
    // The app container is done under Never: the pod Succeeded, its sidecar
    // gets the stop signal (its trap runs), and the network is torn down
    // while the pod object stays.
    let pod = p.wait_pod("job", "Succeeded with its sidecar stopped", |q| {
        phase(q) == "Succeeded" && !init_container(q, "side")["state"]["terminated"].is_null()
    });
    assert_eq!(init_container(&pod, "side")["state"]["terminated"]["exitCode"], 0, "the sidecar's TERM trap ran: {pod}");
    p.wait_log(&pod, "side", 0, "side stopping");
    let pod = p.wait_pod("job", "its network torn down", |q| condition(q, "PodReadyToStartContainers") == "False");
    assert_eq!(count("DEL "), 1, "{}", cni_calls(&bin));
    assert_eq!(pod["status"]["podIP"], "10.99.0.7", "an ended pod keeps reporting the IP it had: {pod}");
    // Its subPath's staging mount went with its containers (the emptyDir stays).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = p.root.to_str().unwrap();
    let staged: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(root) && m.contains("/volume-subpaths/")).collect();
    assert_eq!(staged, Vec::<&str>::new());

    // After a restart it is still over: no new ADD, the same status.
    p.kill();
    p.start();
    let again = p.wait_pod("job", "Succeeded after the restart", |q| phase(q) == "Succeeded");
    assert_eq!(again["status"]["podIP"], "10.99.0.7", "{again}");
    assert_eq!(again["status"]["initContainerStatuses"][0]["restartCount"], 0, "the sidecar was not started again: {again}");
    assert_eq!((count("ADD "), count("DEL ")), (1, 1), "{}", cni_calls(&bin));

    // Deleting it needs no second DEL.
    p.remove_manifest("job.yaml");
    p.wait_gone("job");
    assert_eq!((count("ADD "), count("DEL ")), (1, 1), "{}", cni_calls(&bin));
}

/// As upstream's sidecar ordering: deleting a pod stops its app container
/// first and its sidecars only once it is gone, the last declared first, so
/// an app draining on shutdown keeps what it depends on. The containers'
/// TERM traps append to a hostPath file (a deleted pod's logs and emptyDirs
/// go with it); the app's trap takes a second to drain.
#[test]
fn deleting_a_pod_stops_the_app_then_its_sidecars_last_declared_first() {
    let mut p = Picolet::new("stop-order");
    let shared = p.base.join("order");
    std::fs::create_dir_all(&shared).unwrap();
    let sidecar = |name: &str| {
        format!(
            "  - name: {name}\n    image: busybox\n    restartPolicy: Always\n    command: [sh, -c, \"trap 'echo {name} >> /shared/order; exit 0' TERM; while true; do sleep 0.2; done\"]\n    volumeMounts: [{{name: shared, mountPath: /shared}}]\n"
        )
    };
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: ordered}}
spec:
  terminationGracePeriodSeconds: 30
  volumes: [{{name: shared, hostPath: {{path: {dir}}}}}]
  initContainers:
{first}{second}  containers:
  - name: app
    image: busybox
    command: [sh, -c, "trap 'echo app-term >> /shared/order; sleep 1; echo app-exit >> /shared/order; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
"#,
        dir = shared.display(),
        first = sidecar("first"),
        second = sidecar("second"),
    );
    p.write_manifest("ordered.yaml", &manifest);
    p.start();
    p.wait_pod("ordered", "Running with both sidecars", |q| {
        running(q, "app") && ["first", "second"].iter().all(|s| !init_container(q, s)["state"]["running"].is_null())
    });
    p.remove_manifest("ordered.yaml");
    p.wait_gone("ordered");
    let order = std::fs::read_to_string(shared.join("order")).unwrap();
    assert_eq!(order.lines().collect::<Vec<_>>(), ["app-term", "app-exit", "second", "first"], "{order}");
}

/// Points picolet at a CNI config whose one plugin is a shell script: it
/// logs each call to `<bin>/calls`, runs `extra` (with `$dir` its
/// directory), and answers an ADD with 10.99.0.7. Returns the bin dir.
fn script_cni(p: &mut Picolet, extra: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let (conf, bin) = (p.base.join("test-cni-conf"), p.base.join("test-cni-bin"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(conf.join("10-test.conflist"), r#"{"cniVersion": "1.0.0", "name": "test", "plugins": [{"type": "test-plugin"}]}"#).unwrap();
    let plugin = bin.join("test-plugin");
    let script = format!(
        r#"#!/bin/sh
dir=$(dirname "$0")
echo "$CNI_COMMAND $CNI_ARGS" >> "$dir/calls"
cat > /dev/null
{extra}
[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion": "1.0.0", "ips": [{{"address": "10.99.0.7/24"}}]}}'
exit 0
"#
    );
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.extra_args = vec![format!("--cni-conf-dir={}", conf.display()), format!("--cni-bin-dir={}", bin.display())];
    bin
}

fn cni_calls(bin: &std::path::Path) -> String {
    std::fs::read_to_string(bin.join("calls")).unwrap_or_default()
}

fn kill_process(pid: &str) {
    let status = std::process::Command::new("kill").args(["-KILL", pid]).status().unwrap();
    assert!(status.success(), "kill {pid}");
}
