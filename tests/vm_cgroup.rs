//! cgroup v2 resource management, seen from the files a user would read:
//! picolet's tree (`kubepods/{burstable,besteffort}/pod<uid>/<container>`),
//! the values written for Guaranteed / Burstable / BestEffort pods, the
//! containers' oom_score_adj, an OOM-killed container's status, cleanup on
//! delete and across restarts, the stats endpoint, and the start-up check.
//!
//! These need a cgroup v2 hierarchy with controllers, which the CI host
//! lacks: they run inside the VM (`sudo tests/vm/suite.sh --test vm_cgroup`).
//! Each picolet gets its own `--cgroup-root`, since the test process itself
//! sits in a systemd service cgroup.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const FS: &str = "/sys/fs/cgroup";

/// A cgroup root unique to this test process.
fn unique_root(tag: &str) -> String {
    format!("/picolet-vmtest-{tag}-{}", std::process::id())
}

fn dir(path: &str) -> PathBuf {
    Path::new(FS).join(path.trim_start_matches('/'))
}

/// A cgroup file's content, trimmed ("" when unreadable).
fn cg(path: &str, file: &str) -> String {
    std::fs::read_to_string(dir(path).join(file)).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap().to_string()
}

/// MemTotal in bytes.
fn mem_total() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: i64 = text.lines().find_map(|l| l.strip_prefix("MemTotal:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

fn cpus() -> i64 {
    std::thread::available_parallelism().unwrap().get() as i64
}

/// cpu.weight for a CPU amount, by the rule documented in the README: shares
/// = milliCPU × 1024 / 1000 (at least 2), weight = 1 + (shares − 2) × 9999 / 262142.
fn weight(milli: i64) -> i64 {
    let shares = (milli * 1024 / 1000).max(2);
    1 + (shares - 2) * 9999 / 262142
}

/// The single container cgroup below a pod's cgroup.
fn container_cgroup(pod_path: &str) -> String {
    let subdirs: Vec<String> = std::fs::read_dir(dir(pod_path))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(subdirs.len(), 1, "one container cgroup below {pod_path}: {subdirs:?}");
    format!("{pod_path}/{}", subdirs[0])
}

/// The first process of a cgroup and its oom_score_adj.
fn oom_score_adj(path: &str) -> i64 {
    let pid = cg(path, "cgroup.procs").lines().next().unwrap_or_else(|| panic!("no process in {path}")).to_string();
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim().parse().unwrap()
}

/// Removes a cgroup tree left by a test, deepest first (after its picolet,
/// reaper and containers are gone).
fn remove_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

/// A picolet with its own cgroup root; the tree goes when the test ends.
struct Node {
    p: Picolet,
    root: String,
}

impl Node {
    fn new(tag: &str, extra: &[&str]) -> Node {
        let root = unique_root(tag);
        let mut p = Picolet::new(&format!("vmcg-{tag}"));
        p.extra_args.push(format!("--cgroup-root={root}"));
        p.extra_args.extend(extra.iter().map(|s| s.to_string()));
        Node { p, root }
    }

    fn kubepods(&self) -> String {
        format!("{}/kubepods", self.root)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.p.kill();
        cleanup(&self.p.root);
        // Picolet's own drop cleans up again: the reaper is gone already.
        let _ = std::fs::remove_file(self.p.root.join("reaper.pid"));
        remove_tree(&dir(&self.root));
    }
}

fn pod_yaml(name: &str, policy: &str, command: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, '{command}']\n{resources}"
    )
}

const SLEEP: &str = "sleep 100000";

/// Polls `f` until it gives Ok, for the common deadline; panics with the last failure.
fn poll<T>(p: &Picolet, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("timed out waiting for {what}; last: {last}\n--- picolet log ---\n{}", p.picolet_log()),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn qos_tiers_pod_and_container_limits() {
    let server_port = free_port();
    let mut n = Node::new(
        "qos",
        &[
            "--pod-max-pids=64",
            "--kube-reserved=cpu=100m,memory=64Mi",
            "--system-reserved=memory=64Mi",
            // The kubelet server standalone, for /stats/summary.
            "--authentication-token-webhook=false",
            "--authorization-mode=AlwaysAllow",
            "--anonymous-auth=true",
        ],
    );
    n.p.extra_args.push(format!("--port={server_port}"));
    n.p.write_manifest(
        "guaranteed.yaml",
        &pod_yaml("guaranteed", "Always", SLEEP, "    resources: {limits: {cpu: 500m, memory: 64Mi}}\n"),
    );
    n.p.write_manifest(
        "burstable.yaml",
        &pod_yaml(
            "burstable",
            "Always",
            // The shell holds ~4 MB so its memory shows in the stats (and
            // stays: a last simple command would be exec'd, freeing it).
            "x=$(head -c 4000000 /dev/zero | tr \"\\\\0\" x); while :; do sleep 3600; done",
            "    resources: {requests: {cpu: 250m, memory: 32Mi}, limits: {cpu: '1', memory: 128Mi}}\n",
        ),
    );
    n.p.write_manifest("besteffort.yaml", &pod_yaml("besteffort", "Always", SLEEP, ""));
    n.p.start();
    let g = n.p.wait_pod("guaranteed", "running", |q| running(q, "c"));
    let b = n.p.wait_pod("burstable", "running", |q| running(q, "c"));
    let e = n.p.wait_pod("besteffort", "running", |q| running(q, "c"));
    assert_eq!(g["status"]["qosClass"], "Guaranteed");
    assert_eq!(b["status"]["qosClass"], "Burstable");
    assert_eq!(e["status"]["qosClass"], "BestEffort");

    // kubepods: capacity − kube − system; the 100Mi hard eviction margin is
    // left to pods (as upstream) so that eviction acts before the OOM killer.
    let kp = n.kubepods();
    assert_eq!(cg(&kp, "memory.max"), (mem_total() - (64 << 20) - (64 << 20)).to_string());
    assert_eq!(cg(&kp, "cpu.weight"), weight(cpus() * 1000 - 100).to_string());
    for c in ["cpu", "memory", "pids"] {
        assert!(cg(&kp, "cgroup.subtree_control").split_whitespace().any(|x| x == c), "kubepods hands down {c}");
        assert!(cg(&n.root, "cgroup.subtree_control").split_whitespace().any(|x| x == c), "the root hands down {c}");
    }
    assert_eq!(cg(&format!("{kp}/besteffort"), "cpu.weight"), "1");

    // Guaranteed: directly below kubepods; 500m → 512 shares → weight 20.
    let gp = format!("{kp}/pod{}", uid(&g));
    assert_eq!(cg(&gp, "cpu.weight"), "20");
    assert_eq!(cg(&gp, "cpu.max"), "50000 100000");
    assert_eq!(cg(&gp, "memory.max"), (64 << 20).to_string());
    assert_eq!(cg(&gp, "pids.max"), "64");
    let gc = container_cgroup(&gp);
    assert_eq!(cg(&gc, "cpu.weight"), "20", "runc converts the container's shares with the same formula");
    assert_eq!(cg(&gc, "cpu.max"), "50000 100000");
    assert_eq!(cg(&gc, "memory.max"), (64 << 20).to_string());
    assert_eq!(oom_score_adj(&gc), -997);

    // Burstable: 250m → 256 shares → weight 10; both limits declared → cpu.max, memory.max.
    let bp = format!("{kp}/burstable/pod{}", uid(&b));
    assert_eq!(cg(&bp, "cpu.weight"), "10");
    assert_eq!(cg(&bp, "cpu.max"), "100000 100000");
    assert_eq!(cg(&bp, "memory.max"), (128 << 20).to_string());
    assert_eq!(cg(&bp, "pids.max"), "64");
    let bc = container_cgroup(&bp);
    assert_eq!(cg(&bc, "cpu.weight"), "10");
    assert_eq!(cg(&bc, "memory.max"), (128 << 20).to_string());
    let want = (1000 - 1000 * (32i64 << 20) / mem_total()).clamp(3, 999);
    assert_eq!(oom_score_adj(&bc), want);
    // The tier's weight is the sum of its pods' requests.
    assert_eq!(cg(&format!("{kp}/burstable"), "cpu.weight"), "10");

    // BestEffort: the minimum weight, no limits.
    let ep = format!("{kp}/besteffort/pod{}", uid(&e));
    assert_eq!(cg(&ep, "cpu.weight"), "1");
    assert_eq!(cg(&ep, "cpu.max"), "max 100000");
    assert_eq!(cg(&ep, "memory.max"), "max");
    let ec = container_cgroup(&ep);
    assert_eq!(cg(&ec, "cpu.weight"), "1");
    assert_eq!(oom_score_adj(&ec), 1000);

    // Usage read from these cgroups: /stats/summary on the kubelet server.
    poll(&n.p, "the burstable pod's usage in /stats/summary", || {
        let body = anonymous_kubelet_get(server_port, "/stats/summary");
        let s: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let pod = s["pods"].as_array().into_iter().flatten().find(|x| x["podRef"]["name"] == b["metadata"]["name"]).ok_or("no pod")?;
        let c = &pod["containers"][0];
        let (cpu, ws) = (c["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0), c["memory"]["workingSetBytes"].as_u64().unwrap_or(0));
        let node_ws = s["node"]["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
        if cpu > 0 && ws >= 4_000_000 && node_ws > ws && pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0) >= ws {
            Ok(())
        } else {
            Err(pod.to_string())
        }
    });

    // The burstable pod goes: its cgroup goes, and the tier's weight drops back.
    n.p.remove_manifest("burstable.yaml");
    n.p.wait_gone("burstable");
    n.p.wait_until("the burstable pod's cgroup to be removed", || !dir(&bp).exists());
    n.p.wait_until("the burstable tier's weight back to the minimum", || cg(&format!("{kp}/burstable"), "cpu.weight") == "1");
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn oom_killed_container_reports_oomkilled_137() {
    let mut n = Node::new("oom", &[]);
    // tail keeps reading /dev/zero into memory looking for a last line,
    // until the 16Mi limit has the kernel kill it.
    n.p.write_manifest("hog.yaml", &pod_yaml("hog", "Never", "tail /dev/zero", "    resources: {limits: {memory: 16Mi}}\n"));
    n.p.start();
    let check = |pod: &Value| {
        let t = &container(pod, "c")["state"]["terminated"];
        t["reason"] == "OOMKilled" && t["exitCode"] == 137
    };
    let pod = n.p.wait_pod("hog", "terminated OOMKilled / 137", |q| !container(q, "c")["state"]["terminated"].is_null());
    assert!(check(&pod), "{}", container(&pod, "c"));
    assert_eq!(phase(&pod), "Failed");
    // Kept across a picolet restart (the reaper wrote it to exit.json).
    n.p.kill();
    n.p.start();
    let pod = n.p.wait_pod("hog", "reported again after a restart", |q| !container(q, "c")["state"]["terminated"].is_null());
    assert!(check(&pod), "after restart: {}", container(&pod, "c"));
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn pod_cgroups_go_with_pods_and_across_restarts() {
    let mut n = Node::new("cleanup", &[]);
    n.p.write_manifest("a.yaml", &pod_yaml("a", "Always", SLEEP, ""));
    n.p.write_manifest("b.yaml", &pod_yaml("b", "Always", SLEEP, "    resources: {requests: {cpu: 100m}}\n"));
    n.p.start();
    let a = n.p.wait_pod("a", "running", |q| running(q, "c"));
    let b = n.p.wait_pod("b", "running", |q| running(q, "c"));
    let kp = n.kubepods();
    let ap = format!("{kp}/besteffort/pod{}", uid(&a));
    let bp = format!("{kp}/burstable/pod{}", uid(&b));
    assert!(dir(&ap).is_dir() && dir(&bp).is_dir());

    // Deleted while picolet runs.
    n.p.remove_manifest("a.yaml");
    n.p.wait_gone("a");
    n.p.wait_until("pod a's cgroup to be removed", || !dir(&ap).exists());

    // Deleted while picolet is down, plus a pod cgroup nobody knows (left by
    // a picolet whose state is gone): both removed at the next start.
    n.p.kill();
    n.p.remove_manifest("b.yaml");
    let stale = format!("{kp}/besteffort/pod00000000-0000-0000-0000-00000000dead");
    std::fs::create_dir(dir(&stale)).unwrap();
    std::fs::create_dir(dir(&format!("{stale}/leftover-container"))).unwrap();
    n.p.start();
    n.p.wait_gone("b");
    n.p.wait_until("pod b's cgroup to be removed", || !dir(&bp).exists());
    assert!(!dir(&stale).exists(), "the stale pod cgroup is removed at start");
    let left: Vec<String> = [kp.clone(), format!("{kp}/burstable"), format!("{kp}/besteffort")]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir(d)).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("pod"))
        .collect();
    assert!(left.is_empty(), "pod cgroups left: {left:?}");
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn startup_check_names_the_missing_controller() {
    // A parent that hands its child cpu and pids but not memory.
    let parent = unique_root("nomem");
    std::fs::create_dir(dir(&parent)).unwrap();
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            remove_tree(&dir(&self.0));
        }
    }
    let _gone = Gone(parent.clone());
    for c in ["+cpu", "+pids"] {
        std::fs::write(dir(&parent).join("cgroup.subtree_control"), c).unwrap();
    }
    let root = format!("{parent}/sub");
    std::fs::create_dir(dir(&root)).unwrap();
    assert!(!cg(&root, "cgroup.controllers").contains("memory"));

    let mut p = Picolet::new("vmcg-check");
    p.extra_args.push(format!("--cgroup-root={root}"));
    let (status, stderr) = Command::new(picolet_bin()).args(p.args()).output_with_deadline();
    assert!(!status.success(), "picolet must refuse to start: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("memory not available")).collect();
    assert_eq!(errors.len(), 1, "one line naming the fix: {stderr}");
    assert!(errors[0].contains(&format!("{parent}/cgroup.subtree_control")) && errors[0].contains("--cgroups-per-qos=false --enforce-node-allocatable="), "{stderr}");
    // No half-start: no reaper, no tree.
    assert!(!p.root.join("reaper.pid").exists(), "no reaper was started");
    assert!(!dir(&format!("{root}/kubepods")).exists(), "no tree was created");

    // Upstream's switches are the way past it, said once.
    p.extra_args.push("--cgroups-per-qos=false".into());
    p.extra_args.push("--enforce-node-allocatable=".into());
    p.start();
    p.write_manifest("a.yaml", &pod_yaml("a", "Always", SLEEP, "    resources: {limits: {cpu: 100m, memory: 32Mi}}\n"));
    p.wait_pod("a", "running", |q| running(q, "c"));
    assert_eq!(p.picolet_log().matches("running without resource management").count(), 1);
    assert!(!dir(&format!("{root}/kubepods")).exists(), "no tree without resource management");
}

/// Runs a command to its end within the common deadline: (status, stderr+stdout).
trait OutputWithDeadline {
    fn output_with_deadline(&mut self) -> (std::process::ExitStatus, String);
}

impl OutputWithDeadline for Command {
    fn output_with_deadline(&mut self) -> (std::process::ExitStatus, String) {
        let out = std::env::temp_dir().join(format!("picolet-vmcg-out-{}", std::process::id()));
        let f = std::fs::File::create(&out).unwrap();
        let mut child = self.stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap();
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("still running after {DEADLINE:?}: {}", std::fs::read_to_string(&out).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        (status, text)
    }
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn own_unit_cgroup_with_supervisor_leaf() {
    // As under picolet.service: a transient unit with Delegate=yes, no --cgroup-root.
    let unit = format!("picolet-vmtest-{}.service", std::process::id());
    let p = Picolet::new("vmcg-unit");
    p.write_manifest("a.yaml", &pod_yaml("a", "Always", SLEEP, ""));
    struct Stop<'a>(&'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = Command::new("systemctl").args(["stop", self.0]).status();
            let _ = Command::new("systemctl").args(["reset-failed", self.0]).status();
        }
    }
    let mut run = Command::new("systemd-run");
    run.args([&format!("--unit={unit}"), "-p", "Delegate=yes", "-p", "KillMode=process", "-p", "Type=notify", "-p", "NotifyAccess=main"]);
    run.arg(picolet_bin()).args(p.args());
    assert!(run.status().unwrap().success(), "systemd-run");
    let stop = Stop(&unit);
    p.wait_until("the read-only port answers", || http_get(p.port, "/healthz").is_some_and(|(s, _)| s == 200));
    let own = format!("/system.slice/{unit}");
    let pod = p.wait_pod("a", "running", |q| running(q, "c"));

    let main_pid = String::from_utf8(Command::new("systemctl").args(["show", "-p", "MainPID", "--value", &unit]).output().unwrap().stdout).unwrap();
    let reaper_pid = std::fs::read_to_string(p.root.join("reaper.pid")).unwrap();
    let supervisor = cg(&format!("{own}/supervisor"), "cgroup.procs");
    let in_leaf: Vec<&str> = supervisor.lines().collect();
    assert!(in_leaf.contains(&main_pid.trim()) && in_leaf.contains(&reaper_pid.trim()), "picolet {main_pid} and reaper {reaper_pid} in the leaf: {in_leaf:?}");
    assert_eq!(cg(&own, "cgroup.procs"), "", "no process left in the unit's cgroup itself");
    for c in ["cpu", "memory", "pids"] {
        assert!(cg(&own, "cgroup.subtree_control").split_whitespace().any(|x| x == c), "the unit's cgroup hands down {c}");
    }
    let pod_path = format!("{own}/kubepods/besteffort/pod{}", uid(&pod));
    assert_eq!(oom_score_adj(&container_cgroup(&pod_path)), 1000);

    drop(stop);
    cleanup(&p.root);
    remove_tree(&dir(&own));
}

/// picolet's direct exec (probes, hooks) joins the container's cgroup
/// before the command runs, so what it forks counts against the container's
/// limits: the probe below succeeds only when its own cgroup and its
/// children's equal the container init's.
#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn exec_probes_run_inside_the_containers_cgroup() {
    // (Tests run picolet at -v=2, where a fall-back to runc exec, which
    // would join by itself, is logged.)
    let mut n = Node::new("exec", &[]);
    let check = r#"[ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] && cat /proc/self/cgroup > /tmp/probe-cgroup"#;
    n.p.write_manifest(
        "probed.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: probed}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '100000']\n    resources: {{requests: {{memory: 16Mi}}, limits: {{memory: 32Mi}}}}\n    readinessProbe:\n      exec: {{command: [sh, -c, '{check}']}}\n      periodSeconds: 1\n"
        ),
    );
    n.p.start();
    let pod = n.p.wait_pod("probed", "Ready (the probe ran in the container's cgroup)", |q| container(q, "c")["ready"] == true);
    let path = container_cgroup(&format!("{}/burstable/pod{}", n.kubepods(), uid(&pod)));
    let pid = cg(&path, "cgroup.procs").lines().next().unwrap().to_string();
    let init = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(init.trim(), format!("0::{path}"), "the container's init");
    // What the probe saw from inside, through the container's root: the
    // same cgroup (the root of the container's cgroup namespace, if any).
    let seen = std::fs::read_to_string(format!("/proc/{pid}/root/tmp/probe-cgroup")).unwrap();
    assert!(seen == init || seen.trim() == "0::/", "probe saw {seen:?}, init is in {init:?}");
    assert!(!n.p.picolet_log().contains("using runc exec"), "the direct path ran, not runc exec");
}
