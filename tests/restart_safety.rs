//! picolet may be SIGKILLed and restarted at any moment: containers keep
//! running, no log line is lost, exits that happen while it is down are
//! reported, and a half-written state file does not stop it.

mod common;
use common::*;

#[test]
fn kill_and_restart_keeps_containers_logs_and_exit_codes() {
    let mut p = Picolet::new("restart-safety");
    // Counts forever, one line every 10 ms: any line lost while picolet is down shows as a gap.
    p.write_manifest(
        "counter.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: counter}\nspec:\n  containers: [{name: c, image: busybox, command: [sh, -c, 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.01; done']}]\n",
    );
    // Exits with 7 once /tmp/go exists in its emptyDir (created by the test while picolet is down).
    p.write_manifest(
        "exiter.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: exiter}
spec:
  restartPolicy: Never
  volumes: [{name: ctl, hostPath: {path: HOSTDIR, type: DirectoryOrCreate}}]
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "echo waiting; while [ ! -e /ctl/go ]; do sleep 0.05; done; echo bye; exit 7"]
    volumeMounts: [{name: ctl, mountPath: /ctl}]
"#
        .replace("HOSTDIR", p.base.join("ctl").to_str().unwrap())
        .as_str(),
    );
    p.start();
    let counter = p.wait_pod("counter", "Running", |q| running(q, "c"));
    let exiter = p.wait_pod("exiter", "Running", |q| running(q, "c"));
    p.wait_log(&counter, "c", 0, "line 20");
    let started = container(&counter, "c")["state"]["running"]["startedAt"].clone();
    let id = container(&counter, "c")["containerID"].clone();

    p.kill();
    // While picolet is down: the counter keeps writing (into its pipe) and the exiter exits.
    std::fs::write(p.base.join("ctl/go"), b"").unwrap();
    let reaper_exit = p.root.join("containers").join(format!("{}-c-0", exiter["metadata"]["uid"].as_str().unwrap())).join("exit.json");
    p.wait_until("the reaper records the exit", || reaper_exit.exists());
    // A half-written record must not stop the next start.
    let junk = p.root.join("containers/garbage");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("record.json"), b"{\"id\": \"garb").unwrap();
    p.start();

    let counter = p.wait_pod("counter", "Running", |q| running(q, "c"));
    let c = container(&counter, "c");
    assert_eq!(c["restartCount"], 0, "not restarted");
    assert_eq!(c["containerID"], id, "same container");
    assert_eq!(c["state"]["running"]["startedAt"], started);
    let exiter = p.wait_pod("exiter", "Failed with exit 7", |q| phase(q) == "Failed");
    let t = &container(&exiter, "c")["state"]["terminated"];
    assert_eq!(t["exitCode"], 7);
    assert_eq!(t["reason"], "Error");
    assert!(p.log_lines(&exiter, "c", 0).contains(&"bye".to_string()), "the exiter's last line was kept");

    // No line lost or repeated: numbers are consecutive from 0.
    let lines = p.wait_log(&counter, "c", 0, "line 400");
    let numbers: Vec<u64> = lines.iter().filter_map(|l| l.strip_prefix("line ")).map(|n| n.parse().unwrap()).collect();
    for (i, n) in numbers.iter().enumerate() {
        assert_eq!(*n, i as u64, "line {i} of the counter's log");
    }
}

#[test]
fn a_dead_reaper_is_started_again() {
    let mut p = Picolet::new("reaper-restart");
    p.write_manifest(
        "one.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: one}\nspec:\n  containers: [{name: c, image: busybox, command: [sleep, '1000']}]\n",
    );
    p.start();
    p.wait_pod("one", "Running", |q| running(q, "c"));
    let old = std::fs::read_to_string(p.root.join("reaper.pid")).unwrap();
    std::process::Command::new("kill").args(["-9", old.trim()]).status().unwrap();
    p.write_manifest(
        "two.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  containers: [{name: c, image: busybox, command: [sh, -c, 'echo two; exec sleep 1000']}]\n",
    );
    let pod = p.wait_pod("two", "Running", |q| running(q, "c"));
    p.wait_log(&pod, "c", 0, "two");
    let new = std::fs::read_to_string(p.root.join("reaper.pid")).unwrap();
    assert_ne!(old, new, "a new reaper runs");
}
