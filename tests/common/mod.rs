//! Test harness: runs the real picolet binary against the real runc, with a
//! private root, manifest dir, log dir and read-only port per test, and
//! reads what a user would read: `/pods` on the read-only port and the CRI
//! log files.
#![allow(dead_code)]

pub mod cluster;
pub mod registry;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the test images once per checkout (tests/images/build.sh caches).
/// In the VM (tests/vm/suite.sh) they come ready-made: `PICOLET_TEST_IMAGES`.
pub fn images_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PICOLET_TEST_IMAGES") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    let out = target.join("test-images");
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::File::create(target.join("test-images.lock")).unwrap();
    // One builder at a time across parallel test binaries.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
    unsafe { libc_flock(fd) };
    let status = Command::new("bash").arg(repo().join("tests/images/build.sh")).arg(&out).status().expect("run build.sh");
    assert!(status.success(), "tests/images/build.sh failed");
    drop(lock);
    out
}

extern "C" {
    fn flock(fd: i32, op: i32) -> i32;
}
unsafe fn libc_flock(fd: i32) {
    flock(fd, 2 /* LOCK_EX */);
}

/// The picolet binary under test: cargo's, or `PICOLET_BIN` (the VM, where
/// the host's target directory does not exist).
pub fn picolet_bin() -> PathBuf {
    std::env::var_os("PICOLET_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_picolet")))
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

pub fn free_port() -> u16 {
    // Ask the kernel, then keep a per-process counter offset to avoid reuse races.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    NEXT_PORT.fetch_add(1, Ordering::SeqCst);
    p
}

pub struct Picolet {
    pub base: PathBuf,
    pub root: PathBuf,
    pub manifests: PathBuf,
    pub logs: PathBuf,
    pub import: PathBuf,
    pub port: u16,
    /// The kubelet server's port (`--port`) when the test gives it one.
    pub server_port: u16,
    pub node: String,
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl Picolet {
    /// A fresh environment with the busybox image in the import dir; not started.
    pub fn new(name: &str) -> Picolet {
        let images = images_dir();
        let base = std::env::temp_dir().join(format!("picolet-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let p = Picolet {
            root: base.join("root"),
            manifests: base.join("manifests"),
            logs: base.join("logs"),
            import: base.join("import"),
            base,
            port: free_port(),
            server_port: 0,
            node: format!("node-{name}"),
            extra_args: vec![],
            child: None,
        };
        for d in [&p.root, &p.manifests, &p.logs, &p.import] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::copy(images.join("busybox.tar"), p.import.join("busybox.tar")).unwrap();
        p
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--root-dir={}", self.root.display()),
            format!("--pod-manifest-path={}", self.manifests.display()),
            format!("--pod-logs-dir={}", self.logs.display()),
            format!("--image-import-dir={}", self.import.display()),
            format!("--read-only-port={}", self.port),
            format!("--hostname-override={}", self.node),
            "-v=2".into(),
        ];
        // The machine's own disk and memory are not what these tests are
        // about: a test host with a full disk must not evict the pods under
        // test. The eviction and image GC tests set their own thresholds
        // (later flags win).
        a.push("--eviction-hard=".into());
        a.push("--image-gc-high-threshold=100".into());
        if !host_has_cgroup_v2() {
            // The one way past the start-up check on a cgroup v1 host (upstream's switches).
            a.push("--cgroups-per-qos=false".into());
            a.push("--enforce-node-allocatable=".into());
            // No CNI on the dev host, even where plugins are installed: pods keep
            // loopback, and no bridge or iptables rule is made on the host (the
            // networking tests run in the VM).
            a.push(format!("--cni-conf-dir={}", self.base.join("cni-conf").display()));
            a.push(format!("--cni-bin-dir={}", self.base.join("no-cni-plugins").display()));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.base.join("picolet.log")).unwrap();
        let child = Command::new(picolet_bin())
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn picolet");
        self.child = Some(child);
        self.wait_until("the read-only port answers", || http_get(self.port, "/healthz").map(|(s, _)| s == 200).unwrap_or(false));
    }

    /// The running picolet's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("picolet started").id()
    }

    /// SIGKILL, as a crash or `systemctl kill -s KILL` would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn picolet_log(&self) -> String {
        std::fs::read_to_string(self.base.join("picolet.log")).unwrap_or_default()
    }

    pub fn write_manifest(&self, file: &str, text: &str) {
        // Write then rename, as an editor or config tool would, so a scan never sees half a file.
        let tmp = self.base.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// The v1 PodList from the read-only port.
    pub fn pods(&self) -> serde_json::Value {
        let (status, body) = http_get(self.port, "/pods").expect("GET /pods");
        assert_eq!(status, 200, "GET /pods: {body}");
        serde_json::from_str(&body).expect("PodList JSON")
    }

    pub fn pod(&self, name: &str) -> Option<serde_json::Value> {
        let full = format!("{name}-{}", self.node);
        self.pods()["items"].as_array()?.iter().find(|p| p["metadata"]["name"] == full.as_str()).cloned()
    }

    /// Polls `/pods` until `cond` holds for pod `name`; returns that pod.
    pub fn wait_pod(&self, name: &str, what: &str, cond: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(p) = self.pod(name) {
                if cond(&p) {
                    return p;
                }
                if Instant::now() > deadline {
                    panic!("pod {name}: timed out waiting for {what}; last seen:\n{}\n--- picolet log ---\n{}", serde_json::to_string_pretty(&p).unwrap(), self.picolet_log());
                }
            } else if Instant::now() > deadline {
                panic!("pod {name}: never appeared (waiting for {what})\n--- picolet log ---\n{}", self.picolet_log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_gone(&self, name: &str) {
        self.wait_until(&format!("pod {name} to be gone"), || self.pod(name).is_none());
    }

    pub fn wait_until(&self, what: &str, cond: impl FnMut() -> bool) {
        self.wait_until_within(what, DEADLINE, cond)
    }

    /// `wait_until` for something that takes longer by design (a crash-loop
    /// back-off, which grows to minutes).
    pub fn wait_until_within(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n--- picolet log ---\n{}", self.picolet_log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Directory of a container's logs: <logs>/<ns>_<name>_<uid>/<container>.
    pub fn log_dir(&self, pod: &serde_json::Value, container: &str) -> PathBuf {
        let m = &pod["metadata"];
        self.logs
            .join(format!("{}_{}_{}", m["namespace"].as_str().unwrap(), m["name"].as_str().unwrap(), m["uid"].as_str().unwrap()))
            .join(container)
    }

    /// The content parts of a container's CRI log lines for one restart.
    pub fn log_lines(&self, pod: &serde_json::Value, container: &str, restart: u32) -> Vec<String> {
        let path = self.log_dir(pod, container).join(format!("{restart}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string)).collect()
    }

    pub fn wait_log(&self, pod: &serde_json::Value, container: &str, restart: u32, needle: &str) -> Vec<String> {
        let mut lines = vec![];
        self.wait_until(&format!("log line {needle:?} from {container}"), || {
            lines = self.log_lines(pod, container, restart);
            lines.iter().any(|l| l.contains(needle))
        });
        lines
    }
}

impl Drop for Picolet {
    fn drop(&mut self) {
        self.kill();
        cleanup(&self.root);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// Kills what a test left: containers, the reaper, mounts under root.
pub fn cleanup(root: &Path) {
    let runc_root = root.join("runc");
    if let Ok(out) = Command::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"]).output() {
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("runc").arg("--root").arg(&runc_root).args(["delete", "-f", id]).output();
        }
    }
    if let Ok(pid) = std::fs::read_to_string(root.join("reaper.pid")) {
        let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(root.to_str().unwrap()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        let _ = Command::new("umount").arg("-l").arg(m).status();
    }
}

/// True when /sys/fs/cgroup is cgroup v2 with the controllers picolet needs.
pub fn host_has_cgroup_v2() -> bool {
    let c = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    ["cpu", "memory", "pids"].iter().all(|w| c.split_whitespace().any(|x| x == *w))
}

/// A minimal HTTP GET against the read-only port.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// GET on the kubelet server of a standalone picolet (anonymous, AlwaysAllow)
/// over HTTPS without verifying its self-signed certificate; through ureq,
/// not curl, which the arm64 VM guest lacks.
pub fn anonymous_kubelet_get(port: u16, path: &str) -> String {
    use ureq::tls::{RootCerts, TlsConfig};
    let tls = TlsConfig::builder().root_certs(RootCerts::Specific(std::sync::Arc::new(vec![]))).disable_verification(true).build();
    let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    let url = format!("https://127.0.0.1:{port}{path}");
    let mut resp = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Helpers to read pod JSON.
pub fn container<'a>(pod: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

pub fn init_container<'a>(pod: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    pod["status"]["initContainerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

pub fn phase(pod: &serde_json::Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

pub fn running(pod: &serde_json::Value, name: &str) -> bool {
    !container(pod, name)["state"]["running"].is_null()
}

pub fn condition<'a>(pod: &'a serde_json::Value, t: &str) -> &'a str {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
}
