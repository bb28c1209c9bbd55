//! A private registry for tests outside tests/registry.rs: Debian's
//! `docker-registry` on 127.0.0.1 over TLS (a CA made here with openssl)
//! with htpasswd auth (user `pi`, password `s3cret`), as a child process
//! stopped on drop. Images are pushed with skopeo.

use super::images_dir;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "pi";
pub const PASSWORD: &str = "s3cret";

pub struct PrivateRegistry {
    pub dir: PathBuf,
    pub port: u16,
    child: Child,
}

fn sh(script: &str) {
    let out = Command::new("bash").args(["-euo", "pipefail", "-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

impl PrivateRegistry {
    pub fn start(name: &str) -> PrivateRegistry {
        let dir = std::env::temp_dir().join(format!("picolet-private-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.display();
        sh(&format!(
            "cd {d}
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 \
               -subj /CN=picolet-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null
             printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
             openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null
             htpasswd -Bbn {USER} {PASSWORD} > htpasswd"
        ));
        let cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n  \
             tls:\n    certificate: {d}/srv.pem\n    key: {d}/srv.key\nauth:\n  htpasswd:\n    realm: picolet-test\n    path: {d}/htpasswd\n"
        );
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
        PrivateRegistry { dir, port, child }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the test busybox image as `repo:tag`; returns its reference.
    pub fn push_busybox(&self, repo_tag: &str) -> String {
        let src = format!("oci-archive:{}", images_dir().join("busybox.tar").display());
        let dest = format!("docker://{}/{repo_tag}", self.host());
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--dest-creds", &format!("{USER}:{PASSWORD}")])
            .arg(&src)
            .arg(&dest)
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo push {src}: {}", String::from_utf8_lossy(&out.stderr));
        format!("{}/{repo_tag}", self.host())
    }

    /// A registries.yaml trusting our CA for this registry, with no credentials.
    pub fn ca_only_config(&self) -> PathBuf {
        let path = self.dir.join("registries-ca-only.yaml");
        std::fs::write(&path, format!("configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n", self.host(), self.dir.join("ca.pem").display())).unwrap();
        path
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
