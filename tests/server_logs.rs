//! `kubectl logs` against picolet's `/containerLogs` through the real API
//! server: plain, `-f`, `--previous`, `--tail`, `--since`, `--since-time`,
//! `--timestamps`, `--limit-bytes`, `-c`, over logs that rotated into gzipped
//! files; and `/runningpods/`, `/configz` from the kubelet server directly.

mod common;
use common::cluster::{Cluster, cluster, container_running, node};
use common::{Picolet, DEADLINE};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NS: &str = "logs";

fn pod(c: &Cluster, p: &Picolet, name: &str, ctl: &Path, spec: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  nodeName: {}\n  volumes: [{{name: ctl, hostPath: {{path: {}}}}}]\n{spec}",
        p.node,
        ctl.display()
    ));
}

fn kubectl_logs(c: &Cluster, args: &[&str]) -> Output {
    c.kubectl_cmd().args(["logs", "-n", NS]).args(args).output().expect("run kubectl")
}

/// `kubectl logs` output; the test fails if kubectl does.
fn logs(c: &Cluster, args: &[&str]) -> String {
    let out = kubectl_logs(c, args);
    assert!(out.status.success(), "kubectl logs {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What kubectl says when `kubectl logs` fails.
fn logs_error(c: &Cluster, args: &[&str]) -> String {
    let out = kubectl_logs(c, args);
    assert!(!out.status.success(), "kubectl logs {} succeeded: {}", args.join(" "), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits until `kubectl logs args` contains `needle`; returns the output.
fn wait_logs(c: &Cluster, p: &Picolet, args: &[&str], needle: &str) -> String {
    let mut text = String::new();
    c.wait(&format!("kubectl logs {} to show {needle:?}", args.join(" ")), Some(p), || {
        let out = kubectl_logs(c, args);
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(needle)
    });
    text
}

/// Writes `text` into `dir/name` at once (the container polls for it).
fn put(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn lines(n: std::ops::RangeInclusive<u32>) -> String {
    n.map(|i| format!("line {i}\n")).collect()
}

#[test]
fn kubectl_logs_reads_the_kubelets_container_logs() {
    let c = cluster();
    let mut p = node(c, "logs");
    // Small files, so the pods below rotate and compress their logs.
    p.extra_args.extend(["--container-log-max-size=4Ki".to_string(), "--container-log-max-files=5".to_string()]);
    p.start();
    c.node_ready(&p);
    c.namespace(NS);
    let ctl = p.base.join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();

    pod(c, &p, "many", &ctl, "  containers:\n  - {name: app, image: busybox, command: [sh, -c, 'i=1; while [ $i -le 300 ]; do echo \"line $i\"; i=$((i+1)); done; exec sleep 1000']}\n");
    pod(c, &p, "wide", &ctl, "  containers:\n  - {name: app, image: busybox, command: [sh, -c, 'head -c 40000 /dev/zero | tr \"\\\\0\" x; echo; echo after; exec sleep 1000']}\n");
    pod(
        c,
        &p,
        "duo",
        &ctl,
        "  initContainers:\n  - {name: init, image: busybox, command: [sh, -c, 'echo init done']}\n  containers:\n  - {name: a, image: busybox, command: [sh, -c, 'echo from a; exec sleep 1000']}\n  - {name: b, image: busybox, command: [sh, -c, 'echo from b >&2; exec sleep 1000']}\n",
    );
    pod(
        c,
        &p,
        "restarter",
        &ctl,
        "  containers:\n  - {name: app, image: busybox, volumeMounts: [{name: ctl, mountPath: /ctl}], command: [sh, -c, 'n=$(cat /ctl/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /ctl/count; echo \"attempt $n\"; [ $n -ge 2 ] || exit 1; exec sleep 1000']}\n",
    );
    pod(
        c,
        &p,
        "ticker",
        &ctl,
        "  containers:\n  - {name: app, image: busybox, volumeMounts: [{name: ctl, mountPath: /ctl}], command: [sh, -c, 'echo early; while [ ! -e /ctl/go ]; do sleep 0.2; done; i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.3; done']}\n",
    );
    pod(
        c,
        &p,
        "follow",
        &ctl,
        "  restartPolicy: Never\n  containers:\n  - {name: app, image: busybox, volumeMounts: [{name: ctl, mountPath: /ctl}], command: [sh, -c, 'echo ready; while [ ! -e /ctl/stop ]; do if [ -e /ctl/say ]; then cat /ctl/say; rm /ctl/say; fi; sleep 0.2; done; echo bye']}\n",
    );

    // The whole log, across rotated and gzipped files, in order.
    let many = c.wait_pod(NS, "many", "running", &p, |pod| container_running(pod, "app"));
    let all = wait_logs(c, &p, &["many"], "line 300\n");
    assert_eq!(all, lines(1..=300));
    let files: Vec<String> = std::fs::read_dir(p.log_dir(&many, "app")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(files.iter().filter(|f| f.ends_with(".gz")).count() >= 2, "rotated and compressed: {files:?}");

    // --tail, --limit-bytes, --timestamps.
    assert_eq!(logs(c, &["many", "--tail=3"]), lines(298..=300));
    assert_eq!(logs(c, &["many", "--tail=0"]), "");
    assert_eq!(logs(c, &["many", "--tail=1000"]), lines(1..=300));
    assert_eq!(logs(c, &["many", "--limit-bytes=10"]), "line 1\nlin");
    let stamped = logs(c, &["many", "--timestamps", "--tail=2"]);
    let got: Vec<(&str, &str)> = stamped.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(got.iter().map(|x| x.1).collect::<Vec<_>>(), ["line 299", "line 300"], "{stamped}");
    for (ts, _) in &got {
        // RFC 3339 with nine fraction digits, as upstream's RFC3339NanoFixed.
        let b = ts.as_bytes();
        assert!(ts.len() == 30 && b[10] == b'T' && b[19] == b'.' && b[29] == b'Z', "{ts}");
    }
    assert!(got[0].0 <= got[1].0);

    // A 40000-byte line went out as 16 KiB partial chunks, some rotated and
    // gzipped: it comes back whole.
    c.wait_pod(NS, "wide", "running", &p, |pod| container_running(pod, "app"));
    let wide = wait_logs(c, &p, &["wide"], "after\n");
    assert_eq!(wide, format!("{}\nafter\n", "x".repeat(40000)));
    let stamped = logs(c, &["wide", "--timestamps"]);
    assert_eq!(stamped.lines().count(), 2, "one timestamp per line");

    // Several containers: -c picks one (init containers too); stderr is in the log.
    c.wait_pod(NS, "duo", "running", &p, |pod| container_running(pod, "a") && container_running(pod, "b"));
    assert_eq!(wait_logs(c, &p, &["duo", "-c", "b"], "from b"), "from b\n");
    assert_eq!(logs(c, &["duo", "-c", "a"]), "from a\n");
    assert_eq!(logs(c, &["duo", "-c", "init"]), "init done\n");
    let err = logs_error(c, &["duo", "-c", "nope"]);
    assert!(err.contains("container nope is not valid for pod duo"), "{err}");

    // --previous: the attempt before the running one; none yet: upstream's error.
    let err = logs_error(c, &["many", "--previous"]);
    assert!(err.contains("previous terminated container \"app\" in pod \"many\" not found"), "{err}");
    c.wait_pod(NS, "restarter", "restarted and running", &p, |pod| {
        container_running(pod, "app") && pod["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    assert_eq!(wait_logs(c, &p, &["restarter"], "attempt 2"), "attempt 2\n");
    assert_eq!(logs(c, &["restarter", "--previous"]), "attempt 1\n");

    // --since: "early" is held back until it is at least 3 s old, then ticks
    // come every 0.3 s, so the last 2 s hold ticks and not "early".
    c.wait_pod(NS, "ticker", "running", &p, |pod| container_running(pod, "app"));
    wait_logs(c, &p, &["ticker"], "early");
    let seen = Instant::now();
    c.wait("\"early\" to be 3 s old", Some(&p), || seen.elapsed() >= Duration::from_secs(3));
    put(&ctl, "go", "");
    wait_logs(c, &p, &["ticker"], "tick 3\n");
    let recent = logs(c, &["ticker", "--since=2s"]);
    assert!(recent.contains("tick") && !recent.contains("early"), "{recent}");
    assert!(logs(c, &["ticker", "--since=1h"]).starts_with("early\ntick 1\n"));
    // --since-time (whole seconds on the wire): from the first line of the
    // last tick's second on.
    let stamped = logs(c, &["ticker", "--timestamps"]);
    let last_ts = stamped.lines().last().unwrap().split_once(' ').unwrap().0;
    let since = format!("{}Z", &last_ts[..19]);
    let first = stamped.lines().find(|l| l[..19] >= since[..19]).unwrap().split_once(' ').unwrap().1;
    let got = logs(c, &["ticker", &format!("--since-time={since}")]);
    assert_eq!(got.lines().next(), Some(first), "since {since}:\n{got}\nall:\n{stamped}");
    assert!(!got.contains("early"));

    // -f: lines appear as they are written; it ends when the container does.
    c.wait_pod(NS, "follow", "running", &p, |pod| container_running(pod, "app"));
    let mut child = c.kubectl_cmd().args(["logs", "-f", "-n", NS, "follow"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> Option<String> {
        match rx.recv_timeout(DEADLINE) {
            Ok(l) => Some(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(_) => panic!("kubectl logs -f: nothing within {DEADLINE:?} while waiting for {what}\n{}", p.picolet_log()),
        }
    };
    assert_eq!(next("ready").as_deref(), Some("ready"));
    put(&ctl, "say", "said hello\n");
    assert_eq!(next("a new line").as_deref(), Some("said hello"));
    put(&ctl, "say", "and again\n");
    assert_eq!(next("another line").as_deref(), Some("and again"));
    put(&ctl, "stop", "");
    assert_eq!(next("the last line").as_deref(), Some("bye"));
    assert_eq!(next("the end of the stream"), None, "kubectl logs -f ends with the container");
    assert!(child.wait().unwrap().success());

    // A follower of a quiet container whose client leaves: the kubelet
    // notices the closed connection without anything to write, and ends it.
    let mut quiet = c.kubectl_cmd().args(["logs", "-f", "-n", NS, "many", "--tail=1"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(quiet.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first, "line 300\n");
    let before = p.picolet_log().matches("client went away").count();
    quiet.kill().unwrap();
    quiet.wait().unwrap();
    p.wait_until("the kubelet to end the follower whose client left", || p.picolet_log().matches("client went away").count() > before);

    // Straight to the kubelet (the API server's node proxy refuses loopback
    // nodes), as the cluster admin. A bad option kubectl would refuse: 400 naming it.
    let (code, body) = c.kubelet_get(&p, &format!("/containerLogs/{NS}/many/app?tailLines=-1"));
    assert_eq!((code, body.as_str()), (400, "invalid tailLines \"-1\": must be greater than or equal to 0"));
    // Times out of RFC 3339's range: a 400 with the reason, and the kubelet serves on.
    for (since, reason) in [
        ("999999999999999-01-01T00:00:00Z", "want RFC 3339, like 2006-01-02T15:04:05Z"),
        ("2024-01-01T99999999999999999:00:00Z", "want RFC 3339, like 2006-01-02T15:04:05Z"),
        ("2024-02-30T00:00:00Z", "day out of range"),
        ("2016-12-31T23:59:60Z", "second out of range"),
        ("2024-01-01T00:00:00%2B99:99", "time zone offset out of range"),
    ] {
        let (code, body) = c.kubelet_get(&p, &format!("/containerLogs/{NS}/many/app?sinceTime={since}"));
        let since = since.replace("%2B", "+");
        assert_eq!((code, body.as_str()), (400, format!("invalid sinceTime {since:?}: {reason}").as_str()));
    }
    let (code, body) = c.kubelet_get(&p, &format!("/containerLogs/{NS}/many/app?tailLines=1&sinceTime=0000-01-01T00:00:00Z"));
    assert_eq!((code, body.as_str()), (200, "line 300\n"));
    let (code, body) = c.kubelet_get(&p, &format!("/containerLogs/{NS}/many/app?tailLines=2&timestamps=false"));
    assert_eq!((code, body.as_str()), (200, "line 299\nline 300\n"));

    // /runningpods/ and /configz.
    let running_pods = || -> Value {
        let (code, body) = c.kubelet_get(&p, "/runningpods/");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let named = |list: &Value, name: &str| list["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == name).cloned();
    let rp = running_pods();
    assert_eq!(rp["kind"], "PodList");
    let item = named(&rp, "many").expect("many runs");
    assert_eq!(item["metadata"]["namespace"], NS);
    assert_eq!(item["metadata"]["uid"], many["metadata"]["uid"]);
    assert_eq!(item["spec"]["containers"], serde_json::json!([{"name": "app", "image": "docker.io/library/busybox:latest", "resources": {}}]));
    let duo = named(&rp, "duo").expect("duo runs");
    assert_eq!(duo["spec"]["containers"].as_array().unwrap().len(), 2, "a and b, not the finished init container: {duo}");
    c.wait("the exited pod to leave /runningpods/", Some(&p), || named(&running_pods(), "follow").is_none());
    let (code, body) = c.kubelet_get(&p, "/configz");
    assert_eq!(code, 200, "{body}");
    let cz: Value = serde_json::from_str(&body).unwrap();
    let kc = &cz["kubeletconfig"];
    assert_eq!(kc["containerLogMaxSize"], "4Ki");
    assert_eq!(kc["containerLogMaxFiles"], 5);
    assert_eq!(kc["port"], p.server_port);
    assert_eq!(kc["authorization"]["mode"], "Webhook");
    p.kill();
}
