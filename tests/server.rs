//! The kubelet server on `--port` (HTTPS): reached through the real API
//! server (`kubectl get --raw .../nodes/<n>/proxy/...`) and directly with
//! curl to check who gets in: nobody without credentials, nobody with a
//! certificate from another CA, nobody the API server does not authorize.

mod common;
use common::cluster::{cluster, node, Cluster};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every endpoint of the server, as (method, path).
const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/pods"),
    ("GET", "/runningpods/"),
    ("GET", "/configz"),
    ("GET", "/metrics"),
    ("GET", "/metrics/probes"),
    ("GET", "/metrics/resource"),
    ("GET", "/stats/summary"),
    ("GET", "/containerLogs/default/nopod/c"),
    ("POST", "/exec/default/nopod/c?command=true&stdout=1"),
    ("POST", "/attach/default/nopod/c?stdout=1"),
    ("POST", "/run/default/nopod/c?cmd=true"),
    ("POST", "/portForward/default/nopod"),
];

/// curl's verdict: Some(HTTP status and body) or None when the TLS handshake failed.
fn curl(port: u16, method: &str, path: &str, auth: &[&str]) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"])
        .args(auth)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return None;
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Some((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// A client certificate and key for `subject`, signed by the CA in `ca_dir`
/// (ca.crt, ca.key) or by a fresh CA of its own when `ca_dir` is None.
fn client_cert(dir: &Path, name: &str, subject: &str, ca_dir: Option<&Path>) -> (PathBuf, PathBuf) {
    let sh = |script: &str| {
        let ok = Command::new("bash").args(["-ec", script]).current_dir(dir).status().unwrap().success();
        assert!(ok, "openssl: {script}");
    };
    let (ca_crt, ca_key) = match ca_dir {
        Some(d) => (d.join("ca.crt"), d.join("ca.key")),
        None => {
            sh(&format!("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN={name}-ca -keyout {name}-ca.key -out {name}-ca.crt 2>/dev/null"));
            (dir.join(format!("{name}-ca.crt")), dir.join(format!("{name}-ca.key")))
        }
    };
    sh(&format!(
        "openssl req -newkey rsa:2048 -nodes -subj '{subject}' -keyout {name}.key -out {name}.csr 2>/dev/null
         printf 'extendedKeyUsage=clientAuth\\n' > {name}.ext
         openssl x509 -req -in {name}.csr -CA {} -CAkey {} -CAcreateserial -days 1 -extfile {name}.ext -out {name}.crt 2>/dev/null",
        ca_crt.display(),
        ca_key.display()
    ));
    (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn cert_args(pair: &(PathBuf, PathBuf)) -> Vec<String> {
    vec!["--cert".into(), pair.0.display().to_string(), "--key".into(), pair.1.display().to_string()]
}

/// The admin's client certificate of the test cluster.
fn admin_cert(c: &Cluster) -> Vec<String> {
    let pki = c.dir.join("pki");
    cert_args(&(pki.join("admin.crt"), pki.join("admin.key")))
}

#[test]
fn serves_https_with_a_self_signed_certificate_it_keeps_and_plain_healthz() {
    let c = cluster();
    let mut p = node(c, "srv");
    let healthz = common::free_port();
    p.extra_args.push(format!("--healthz-port={healthz}"));
    p.start();
    c.node_ready(&p);
    // The plain healthz port: no TLS, no credentials.
    assert_eq!(common::http_get(healthz, "/healthz").map(|(s, b)| (s, b.trim().to_string())), Some((200, "ok".into())));
    let admin = admin_cert(c);
    let (code, body) = curl(p.server_port, "GET", "/healthz", &args(&admin)).expect("HTTPS");
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, body) = curl(p.server_port, "GET", "/pods", &args(&admin)).unwrap();
    assert_eq!(code, 200, "{body}");
    let pods: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pods["kind"], "PodList");
    // The certificate is self-signed for the node, kept under the root dir
    // and served again after a restart.
    let crt = p.root.join("pki/kubelet.crt");
    let first = std::fs::read(&crt).expect("self-signed certificate under the root dir");
    let served = served_cert(p.server_port);
    assert!(served.contains(&format!("CN = {}@", p.node)) || served.contains(&format!("CN={}@", p.node)), "{served}");
    assert!(served.contains("IP Address:127.0.0.1"), "{served}");
    p.kill();
    p.start();
    c.node_ready(&p);
    assert_eq!(std::fs::read(&crt).unwrap(), first, "the certificate was regenerated");
    assert_eq!(curl(p.server_port, "GET", "/healthz", &args(&admin)).unwrap().0, 200);
    p.kill();
}

/// The certificate the server presents, as `openssl x509 -text` prints it.
fn served_cert(port: u16) -> String {
    let out = Command::new("bash")
        .args(["-c", &format!("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -text")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn only_authenticated_and_authorized_users_get_in() {
    let c = cluster();
    let mut p = node(c, "sec");
    p.start();
    c.node_ready(&p);
    let port = p.server_port;
    let pki = c.dir.join("pki");
    let work = p.base.join("certs");
    std::fs::create_dir_all(&work).unwrap();

    // Users: an admin (system:masters), one with nodes/proxy etc. through
    // RBAC, one with nothing, one whose certificate comes from another CA.
    let admin = client_cert(&work, "admin", "/O=system:masters/CN=test-admin", Some(&pki));
    let viewer = client_cert(&work, "viewer", "/CN=node-viewer", Some(&pki));
    let nobody = client_cert(&work, "nobody", "/CN=nobody", Some(&pki));
    let stranger = client_cert(&work, "stranger", "/O=system:masters/CN=stranger", None);
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: picolet-test-node-viewer}
rules:
- apiGroups: ['']
  resources: [nodes/proxy, nodes/stats, nodes/log, nodes/metrics, nodes/pods, nodes/healthz, nodes/configz]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: picolet-test-node-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: picolet-test-node-viewer}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: node-viewer}
- {kind: ServiceAccount, name: node-viewer, namespace: default}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: node-viewer, namespace: default}
",
    );
    let token = c.kubectl(&["create", "token", "node-viewer", "-n", "default"]);
    let bearer = format!("Authorization: Bearer {}", token.trim());
    let (admin, viewer, nobody, stranger) = (cert_args(&admin), cert_args(&viewer), cert_args(&nobody), cert_args(&stranger));

    for &(method, path) in ENDPOINTS {
        // No credentials: 401.
        let (code, body) = curl(port, method, path, &[]).expect("TLS without a client certificate");
        assert_eq!(code, 401, "{method} {path} without credentials: {body}");
        // A certificate from a CA the node does not trust: not even a handshake.
        assert_eq!(curl(port, method, path, &args(&stranger)), None, "{method} {path} with a stranger's certificate");
        // A bad token: 401.
        let (code, _) = curl(port, method, path, &["-H", "Authorization: Bearer not-a-token"]).unwrap();
        assert_eq!(code, 401, "{method} {path} with a bad token");
        // Known but not authorized: 403 naming the user and what it lacks.
        let (code, body) = curl(port, method, path, &args(&nobody)).unwrap();
        assert_eq!(code, 403, "{method} {path} as nobody: {body}");
        assert!(body.starts_with("Forbidden (user=nobody, verb="), "{method} {path}: {body}");
        assert!(body.contains("resource=nodes"), "{body}");
        // Authorized, by certificate or token: past auth (the endpoint's own
        // answer; the pod does not exist, so 404 for the pod endpoints).
        for who in [args(&admin), args(&viewer), vec!["-H", &bearer]] {
            let (code, body) = curl(port, method, path, &who).unwrap();
            assert!(code != 401 && code != 403, "{method} {path} as {who:?}: {code} {body}");
        }
    }
    // What the verbs map to, as upstream: GET → get on nodes/proxy. Container
    // logs are nodes/proxy too (nodes/log is the node's own /logs/).
    let (_, body) = curl(port, "GET", "/containerLogs/default/x/y", &args(&nobody)).unwrap();
    assert_eq!(body.trim_end(), "Forbidden (user=nobody, verb=get, resource=nodes, subresource(s)=[proxy])");
    let (_, body) = curl(port, "POST", "/exec/default/x/y", &args(&nobody)).unwrap();
    assert_eq!(body.trim_end(), "Forbidden (user=nobody, verb=create, resource=nodes, subresource(s)=[proxy])");
    p.kill();
}
