//! Outside input at its extremes, with the real binary and runc: what the API
//! server accepts (any int64 grace period, int32 probe timings) runs and stops
//! like anything else, and picolet stays up serving its other pods.

mod common;
use common::*;

/// terminationGracePeriodSeconds 9223372036854775807 and probes with int32's
/// largest period and timeout: the pod runs, a deletion stops it (the
/// container honours SIGTERM), and the node goes on running other pods.
#[test]
fn the_largest_grace_period_and_probe_timings_run_and_stop() {
    let mut p = Picolet::new("huge-grace");
    p.write_manifest(
        "patient.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: patient}
spec:
  terminationGracePeriodSeconds: 9223372036854775807
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap "echo got TERM; exit 0" TERM; echo up; while :; do sleep 1; done']
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 2147483647, timeoutSeconds: 2147483647}
    livenessProbe: {exec: {command: ["true"]}, periodSeconds: 2147483647, timeoutSeconds: 2147483647, terminationGracePeriodSeconds: 9223372036854775807}
"#,
    );
    p.write_manifest(
        "other.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: other}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [sleep, '1000']}\n",
    );
    p.start();
    // Ready: the readiness probe ran once (and is next due in 68 years).
    let patient = p.wait_pod("patient", "Ready", |q| running(q, "c") && condition(q, "Ready") == "True");
    p.wait_pod("other", "Running", |q| running(q, "c"));
    p.wait_log(&patient, "c", 0, "up");
    let dir = p.log_dir(&patient, "c");
    // The log goes with the pod: keep what the container said as it stopped.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut last = String::new();
        while let Ok(t) = std::fs::read_to_string(dir.join("0.log")) {
            last = t;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        tx.send(last).unwrap();
    });
    p.remove_manifest("patient.yaml");
    p.wait_gone("patient");
    let said = rx.recv_timeout(DEADLINE).expect("the pod's log to go with the pod");
    assert!(said.contains("got TERM"), "the container was asked to stop: {said}");
    let log = p.picolet_log();
    assert!(log.contains("grace period 9223372036854775807s"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // Still the same picolet, still running pods.
    assert!(running(&p.pod("other").expect("other still there"), "c"));
    p.write_manifest(
        "after.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: after}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [sleep, '1000']}\n",
    );
    p.wait_pod("after", "Running", |q| running(q, "c"));
}
