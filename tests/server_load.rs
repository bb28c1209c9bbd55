//! Many streams at once through the real API server: 200 followers of a
//! pod's log (what `kubectl logs -f` sends, with curl to keep the test's own
//! memory small) and 50 `kubectl exec -i` sessions. While they are open the
//! pod loop keeps working (a new pod starts, a follower still gets new lines,
//! an exec session echoes); once they close, picolet is back to the threads
//! and open files it had before. The figures (memory, latency) are in
//! tests/bench/cluster.sh.

mod common;
use common::cluster::{cluster, node};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

const FOLLOWERS: usize = 200;
const EXECS: usize = 50;
/// Clients started at once.
const BATCH: usize = 25;

/// Picolet's threads, and its open fds except its connections to the API
/// server (its HTTP client keeps a few idle ones for reuse, more after the
/// access reviews of a busy minute).
fn threads_and_fds(pid: u32, api_port: u16) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap();
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let to_api: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
            let inode = f.get(9)?;
            (port == api_port).then(|| format!("socket:[{inode}]"))
        })
        .collect();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|f| std::fs::read_link(f.path()).map(|t| !to_api.contains(&t.display().to_string())).unwrap_or(false))
        .count();
    (threads, fds)
}

/// Picolet's kubelet server connection threads: one per open stream.
fn connection_threads(pid: u32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten();
    tasks.filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "kubelet-conn")).count()
}

/// Picolet's threads by name and open fds by target, for a failure message.
fn what_is_open(pid: u32) -> String {
    let mut names = std::collections::BTreeMap::<String, usize>::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        *names.entry(comm.trim().to_string()).or_default() += 1;
    }
    let mut fds = std::collections::BTreeMap::<String, usize>::new();
    for f in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(f.path()).map(|t| t.display().to_string()).unwrap_or_default();
        let kind = target.split(['[', ':']).next().unwrap_or("").to_string();
        *fds.entry(kind).or_default() += 1;
    }
    format!("threads {names:?}, fds {fds:?}")
}

#[test]
fn many_log_followers_and_exec_sessions_neither_stall_pods_nor_leak() {
    let c = cluster();
    let mut p = node(c, "load");
    p.start();
    c.node_ready(&p);
    c.namespace("load");
    let pod = |name: &str, cmd: &str| {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: load}}\nspec:\n  nodeName: {}\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: c, image: busybox, command: [sh, -c, '{cmd}']}}]\n",
            p.node
        ))
    };
    pod("chatty", "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.2; done");
    pod("sleeper", "sleep 100000");
    for name in ["chatty", "sleeper"] {
        c.wait_pod("load", name, "Running", &p, |v| v["status"]["phase"] == "Running");
    }
    let pid = p.pid();
    let api_port: u16 = c.apiserver_url().rsplit(':').next().unwrap().parse().unwrap();
    // Settle: the first requests may start long-lived helper threads.
    let (base_threads, base_fds) = {
        let mut last = threads_and_fds(pid, api_port);
        let mut stable = 0;
        c.wait("picolet's threads and fds to settle", Some(&p), || {
            let now = threads_and_fds(pid, api_port);
            stable = if now == last { stable + 1 } else { 0 };
            last = now;
            stable >= 5
        });
        last
    };

    let pki = c.dir.join("pki");
    let url = format!("{}/api/v1/namespaces/load/pods/chatty/log?follow=true", c.apiserver_url());
    let base_conns = connection_threads(pid);
    // Each client's stderr goes to a file, for the message if it ends.
    let errs = c.dir.join("load-stderr");
    std::fs::create_dir_all(&errs).unwrap();
    let err_file = |i: usize| Stdio::from(std::fs::File::create(errs.join(i.to_string())).unwrap());
    let start_follower = |i: usize| {
        Command::new("curl")
            // HTTP/1.1 as kubectl's own streams: over HTTP/2, Go's server
            // drops a client whose SETTINGS frame is 2 s late, which a curl
            // starved by hundreds of others starting can be.
            .args(["-sSN", "--http1.1", "--cacert"])
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(err_file(i))
            .spawn()
            .expect("curl")
    };
    let start_exec = |i: usize| {
        c.kubectl_cmd()
            .args(["exec", "-i", "-n", "load", "sleeper", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file(FOLLOWERS + i))
            .spawn()
            .expect("kubectl exec")
    };
    // Clients start in batches, each once the last is served: 250 processes
    // starting at once on a small machine starve each other (and the API
    // server) rather than load picolet. Each stream is served by one
    // connection thread. A client that ended is a stream picolet dropped or
    // never took: that fails the test at once, naming the client and what it
    // printed.
    let mut clients: Vec<Child> = Vec::new();
    let mut execs: Vec<Child> = Vec::new();
    let started = std::time::Instant::now();
    while clients.len() < FOLLOWERS || execs.len() < EXECS {
        for _ in 0..BATCH {
            if clients.len() < FOLLOWERS {
                clients.push(start_follower(clients.len()));
            } else if execs.len() < EXECS {
                execs.push(start_exec(execs.len()));
            }
        }
        let want = clients.len() + execs.len();
        loop {
            for (i, child) in clients.iter_mut().enumerate().chain(execs.iter_mut().enumerate().map(|(i, e)| (FOLLOWERS + i, e))) {
                if let Some(status) = child.try_wait().unwrap() {
                    let what = if i < FOLLOWERS { format!("follower {i} (curl)") } else { format!("exec session {} (kubectl)", i - FOLLOWERS) };
                    let stderr = std::fs::read_to_string(errs.join(i.to_string())).unwrap_or_default();
                    let streams = connection_threads(pid) - base_conns;
                    let elapsed = started.elapsed();
                    panic!("{what} ended ({status}) after {elapsed:?} with {streams} streams at picolet, {}\n--- its stderr ---\n{stderr}\n--- picolet log ---\n{}", what_is_open(pid), p.picolet_log());
                }
            }
            let streams = connection_threads(pid) - base_conns;
            if streams >= want {
                break;
            }
            if started.elapsed() > common::DEADLINE {
                panic!("timed out waiting for {want} streams at picolet ({} followers, {} exec sessions started): {streams} streams, {}\n--- picolet log ---\n{}", clients.len(), execs.len(), what_is_open(pid), p.picolet_log());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    // The pod loop still works: a new pod starts...
    pod("late", "sleep 100000");
    c.wait_pod("load", "late", "Running while the streams are open", &p, |v| v["status"]["phase"] == "Running");
    // ...one more follower gets new lines...
    let mut follower = c.kubectl_cmd().args(["logs", "-f", "-n", "load", "chatty", "--tail=1"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    let second = lines.next().expect("a new line").unwrap();
    assert!(first.starts_with("line ") && second.starts_with("line ") && first != second, "{first:?} {second:?}");
    let _ = follower.kill();
    let _ = follower.wait();
    // ...and every exec session echoes what it is sent.
    for (i, e) in execs.iter_mut().enumerate() {
        writeln!(e.stdin.as_mut().unwrap(), "ping {i}").unwrap();
    }
    for (i, e) in execs.iter_mut().enumerate() {
        let mut line = String::new();
        BufReader::new(e.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), format!("ping {i}"), "exec session {i}");
    }

    for mut child in clients.into_iter().chain(execs) {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The late pod's log files and pipes were not there at the start.
    c.kubectl(&["delete", "pod", "-n", "load", "late", "--wait=true"]);
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while threads_and_fds(pid, api_port).0 > base_threads || threads_and_fds(pid, api_port).1 > base_fds {
        assert!(std::time::Instant::now() < deadline, "picolet not back to {base_threads} threads and {base_fds} fds: {}", what_is_open(pid));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    p.kill();
}
