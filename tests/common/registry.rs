//! A real registry for the tests: Debian's `docker-registry` run as a child
//! process on 127.0.0.1 (stopped on drop), plain HTTP or TLS with a CA made
//! here with openssl and htpasswd auth (user `pi`, password `s3cret`).
//! Images are pushed with skopeo.

use super::images_dir;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "pi";
pub const PASSWORD: &str = "s3cret";

pub fn sh(script: &str) {
    let out = Command::new("bash").args(["-euo", "pipefail", "-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// A `docker-registry` child with its own storage and config.
pub struct Registry {
    pub dir: PathBuf,
    pub port: u16,
    /// `user:password` when TLS + htpasswd are on.
    pub creds: Option<String>,
    child: Child,
}

impl Registry {
    pub fn start(name: &str, auth: bool) -> Registry {
        let dir = std::env::temp_dir().join(format!("picolet-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = super::free_port();
        let d = dir.display();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
        );
        if auth {
            // A CA of our own and a server certificate for 127.0.0.1 signed by it.
            sh(&format!(
                "cd {d}
                 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 \
                   -subj /CN=picolet-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
                 openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null
                 printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
                 openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null
                 htpasswd -Bbn {USER} {PASSWORD} > htpasswd"
            ));
            cfg.push_str(&format!(
                "  tls:\n    certificate: {d}/srv.pem\n    key: {d}/srv.key\nauth:\n  htpasswd:\n    realm: picolet-test\n    path: {d}/htpasswd\n"
            ));
        }
        std::fs::write(dir.join("config.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen:\n{}", std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        let creds = auth.then(|| format!("{USER}:{PASSWORD}"));
        Registry { dir, port, creds, child }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `src` (a skopeo source such as `oci-archive:/x.tar`) as `repo:tag`.
    pub fn push(&self, src: &str, repo_tag: &str, all: bool) {
        self.push_with(src, repo_tag, all, &[]);
    }

    pub fn push_with(&self, src: &str, repo_tag: &str, all: bool, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]).args(extra);
        if all {
            cmd.arg("--all");
        }
        if let Some(c) = &self.creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd.arg(src).arg(format!("docker://{}/{repo_tag}", self.host())).output().unwrap();
        assert!(out.status.success(), "skopeo push {src}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A registries.yaml for this registry: plain HTTP through a mirror
    /// endpoint, or TLS with our CA and `password`.
    pub fn config(&self, password: Option<&str>) -> PathBuf {
        let path = self.dir.join(format!("registries-{}.yaml", password.unwrap_or("none")));
        let text = match &self.creds {
            None => format!("mirrors:\n  \"{h}\":\n    endpoint: [\"http://{h}\"]\n", h = self.host()),
            Some(_) => {
                let mut t = format!("configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n", self.host(), self.dir.join("ca.pem").display());
                if let Some(p) = password {
                    t.push_str(&format!("    auth:\n      username: {USER}\n      password: {p}\n"));
                }
                t
            }
        };
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Registry {
    /// Kills the registry process (the registry goes away, as an uplink would).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Pushes the test busybox image as `repo:tag`; returns its reference.
    pub fn push_busybox(&self, repo_tag: &str) -> String {
        self.push(&format!("oci-archive:{}", images_dir().join("busybox.tar").display()), repo_tag, false);
        format!("{}/{repo_tag}", self.host())
    }
}
