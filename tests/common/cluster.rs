//! A real control plane for cluster tests (tests/cluster/: etcd,
//! kube-apiserver with Node+RBAC authorization and NodeRestriction,
//! controller-manager, scheduler), one per test binary, stopped when the
//! binary exits (up.sh --owner-pid). Tests talk to it with the real kubectl.

use super::{free_port, repo, Picolet, DEADLINE};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub admin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

fn script(name: &str) -> PathBuf {
    repo().join("tests/cluster").join(name)
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.stderr(Stdio::inherit()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The binaries, built once per machine (cached outside the checkout).
pub fn bin_dir() -> PathBuf {
    let out = run(Command::new("bash").arg(script("build.sh")), "tests/cluster/build.sh");
    PathBuf::from(out.lines().last().expect("build.sh prints the bin dir").trim())
}

/// The shared cluster of this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| Cluster::start(&format!("shared-{}", std::process::id())))
}

impl Cluster {
    /// A cluster of its own (for tests that stop the API server).
    pub fn start(name: &str) -> Cluster {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("picolet-cluster-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        run(
            Command::new("bash").arg(script("up.sh")).arg(&dir).arg("--owner-pid").arg(std::process::id().to_string()),
            "tests/cluster/up.sh",
        );
        let admin = dir.join("admin.kubeconfig");
        Cluster { dir, bin, admin }
    }

    pub fn kubectl_cmd(&self) -> Command {
        let mut c = Command::new(self.bin.join("kubectl"));
        c.arg("--kubeconfig").arg(&self.admin);
        c
    }

    /// Runs kubectl; its stdout, or None when it failed.
    pub fn try_kubectl(&self, args: &[&str]) -> Option<String> {
        let out = self.kubectl_cmd().args(args).stderr(Stdio::piped()).output().expect("run kubectl");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_cmd().args(args).output().expect("run kubectl");
        assert!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn get(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get", "-o", "json"];
        a.extend_from_slice(args);
        self.try_kubectl(&a).and_then(|s| serde_json::from_str(&s).ok())
    }

    /// `kubectl apply -f -` with `yaml`.
    pub fn apply(&self, yaml: &str) {
        self.stdin(&["apply", "-f", "-"], yaml);
    }

    /// `kubectl create -f -` (no last-applied annotation: for big objects).
    pub fn create(&self, yaml: &str) {
        self.stdin(&["create", "-f", "-"], yaml);
    }

    fn stdin(&self, args: &[&str], yaml: &str) {
        let mut child = self.kubectl_cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("kubectl");
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        let head: String = yaml.chars().take(400).collect();
        assert!(child.wait().unwrap().success(), "kubectl {} failed for:\n{head}", args.join(" "));
    }

    /// A kubeconfig for `node`: a client certificate CN=system:node:<node>,
    /// O=system:nodes, as production kubelets have (`inline`: *-data fields).
    pub fn node_kubeconfig(&self, node: &str, inline: bool) -> PathBuf {
        let out = self.dir.join(format!("node-{node}.kubeconfig"));
        run(Command::new("bash").arg(script("node-kubeconfig.sh")).arg(&self.dir).arg(node).arg(&out), "node-kubeconfig.sh");
        if inline {
            out.with_extension("kubeconfig.inline")
        } else {
            out
        }
    }

    /// A bearer-token kubeconfig (the token user is in group system:nodes).
    pub fn token_kubeconfig(&self, node: &str) -> PathBuf {
        let out = self.dir.join(format!("token-{node}.kubeconfig"));
        run(Command::new("bash").arg(script("node-kubeconfig.sh")).arg("--token").arg(&self.dir).arg(node).arg(&out), "node-kubeconfig.sh --token");
        out
    }

    pub fn wait(&self, what: &str, p: Option<&Picolet>, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !cond() {
            if Instant::now() > deadline {
                let log = p.map(|p| p.picolet_log()).unwrap_or_default();
                panic!("timed out waiting for {what}\n--- picolet log ---\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for picolet `p`'s Node to be Ready.
    pub fn node_ready(&self, p: &Picolet) {
        self.wait(&format!("node {} Ready", p.node), Some(p), || {
            let n = self.get(&["node", &p.node]).unwrap_or_default();
            n["status"]["conditions"].as_array().into_iter().flatten().any(|x| x["type"] == "Ready" && x["status"] == "True")
        });
    }

    /// `https://127.0.0.1:<port>` of the API server.
    pub fn apiserver_url(&self) -> String {
        let env = std::fs::read_to_string(self.dir.join("env")).expect("cluster env file");
        env.lines().find_map(|l| l.strip_prefix("APISERVER_URL=")).expect("APISERVER_URL in env").to_string()
    }

    /// GET `path` from picolet `p`'s kubelet server with the admin's client
    /// certificate (the API server's node proxy refuses loopback nodes):
    /// (status, body); status 0 when curl got no answer.
    pub fn kubelet_get(&self, p: &Picolet, path: &str) -> (u16, String) {
        let pki = self.dir.join("pki");
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "20", "-w", "\n%{http_code}", "--cert"])
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .arg(format!("https://127.0.0.1:{}{path}", p.server_port))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Polls a pod until `cond` holds; returns it.
    pub fn wait_pod(&self, ns: &str, name: &str, what: &str, p: &Picolet, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(pod) = self.get(&["pod", "-n", ns, name]) {
                if cond(&pod) {
                    return pod;
                }
                last = pod;
            }
            if Instant::now() > deadline {
                panic!(
                    "pod {ns}/{name}: timed out waiting for {what}; last seen:\n{}\n--- picolet log ---\n{}",
                    serde_json::to_string_pretty(&last).unwrap(),
                    p.picolet_log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn namespace(&self, ns: &str) {
        self.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"));
    }

    /// Starts metrics-server for this cluster (built on first use, about two
    /// minutes when cold) unless it runs; `kubectl top` has numbers for a node
    /// two scrapes (10 s apart) after the node appears. It stops with the cluster.
    pub fn metrics_server(&self) {
        run(Command::new("bash").arg(script("metrics-server.sh")).arg(&self.dir).arg("start"), "metrics-server.sh start");
    }

    /// Stops or starts the API server alone (etcd and the rest keep running).
    pub fn apiserver(&self, action: &str) {
        run(Command::new("bash").arg(script("apiserver.sh")).arg(&self.dir).arg(action), &format!("apiserver.sh {action}"));
    }
}

/// A picolet joined to `c` with its own node certificate.
pub fn node(c: &Cluster, name: &str) -> Picolet {
    let mut p = Picolet::new(name);
    let kc = c.node_kubeconfig(&p.node, false);
    join(c, &mut p, &kc);
    p
}

/// Makes `p` join `c` with `kubeconfig`. Its kubelet server listens on
/// loopback at a port of its own (the API server reaches it at the node's
/// InternalIP, so that is 127.0.0.1 too) and trusts the cluster CA's client
/// certificates, as kubeadm sets a kubelet up.
pub fn join(c: &Cluster, p: &mut Picolet, kubeconfig: &Path) {
    p.server_port = free_port();
    p.extra_args.extend([
        format!("--kubeconfig={}", kubeconfig.display()),
        "--node-ip=127.0.0.1".into(),
        "--address=127.0.0.1".into(),
        format!("--port={}", p.server_port),
        format!("--client-ca-file={}", c.dir.join("pki/ca.crt").display()),
        "--healthz-port=0".into(),
    ]);
}

/// Whether the API pod's container `name` is running (false while it has no status yet).
pub fn container_running(pod: &Value, name: &str) -> bool {
    pod["status"]["containerStatuses"].as_array().into_iter().flatten().any(|s| s["name"] == name && s["state"]["running"].is_object())
}

pub fn admin_path(c: &Cluster) -> &Path {
    &c.admin
}
