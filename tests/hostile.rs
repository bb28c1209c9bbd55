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

/// Runs picolet with `p`'s arguments, which must make it exit: its exit
/// code and what it wrote (stdout and stderr).
fn run_to_exit(p: &Picolet) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(picolet_bin())
        .args(p.args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn picolet");
    let deadline = std::time::Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("picolet {:?} did not exit: {:?}", p.args(), child.wait_with_output());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a key with a CSR for node `name` in `dir`; `sign` makes
/// certificates of it, v1 (no extensions) unless given an extfile.
fn pki(dir: &std::path::Path, name: &str) -> impl Fn(&str, Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=ca", "-days", "2"]);
    let subj = format!("/O=system:nodes/CN=system:node:{name}");
    openssl(dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", &subj]);
    let dir = dir.to_path_buf();
    move |out: &str, ext: Option<&str>| {
        let mut args = vec!["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "1", "-out", out];
        if let Some(ext) = ext {
            std::fs::write(dir.join("ext"), ext).unwrap();
            args.extend(["-extfile", "ext"]);
        }
        openssl(&dir, &args);
    }
}

/// A kubeconfig whose client certificate rustls refuses (X.509 v1, as
/// `openssl x509 -req` makes it): picolet exits with the reason, naming the
/// kubeconfig and the fix, before it reaches for the API server (nothing
/// listens at its address); re-issued as told, it starts. An expired
/// certificate does not keep it from starting: the API server judges it.
#[test]
fn a_client_certificate_rustls_refuses_is_a_clear_error() {
    let mut p = Picolet::new("v1-client-cert");
    let dir = p.base.join("pki");
    let sign = pki(&dir, &p.node);
    let kc = dir.join("kubelet.conf");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', certificate-authority: ca.crt}}]\n\
         users: [{name: u, user: {client-certificate: node.crt, client-key: node.key}}]\n\
         contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    p.server_port = free_port();
    let args = [format!("--kubeconfig={}", kc.display()), "--address=127.0.0.1".into(), format!("--port={}", p.server_port), "--healthz-port=0".into()];
    p.extra_args.extend(args);
    sign("node.crt", None);
    let (code, out) = run_to_exit(&p);
    assert_eq!(code, Some(1), "{out}");
    let want = format!("kubeconfig {}: client certificate: the certificate is X.509 v1", kc.display());
    assert!(out.contains(&want), "{out}");
    assert!(out.contains("-extfile <(printf 'extendedKeyUsage=clientAuth')"), "{out}");
    assert!(!out.contains("panicked"), "{out}");

    sign("node.crt", Some("extendedKeyUsage=clientAuth"));
    p.start();
    p.kill();
    // Expired yesterday.
    openssl(&dir, &["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "-1", "-extfile", "ext", "-out", "node.crt"]);
    p.start();
    assert!(p.picolet_log().contains("joining the cluster at https://127.0.0.1:1"));
}

/// `--tls-cert-file` with a certificate rustls refuses: picolet exits
/// naming both files, what is wrong and how to fix it.
#[test]
fn a_serving_certificate_rustls_refuses_is_a_clear_error() {
    let mut p = Picolet::new("v1-serving-cert");
    let dir = p.base.join("pki");
    let sign = pki(&dir, &p.node);
    sign("serving.crt", None);
    let (crt, key) = (dir.join("serving.crt"), dir.join("node.key"));
    p.server_port = free_port();
    p.extra_args.extend([
        format!("--port={}", p.server_port),
        "--address=127.0.0.1".into(),
        "--anonymous-auth=true".into(),
        "--authentication-token-webhook=false".into(),
        "--authorization-mode=AlwaysAllow".into(),
        format!("--tls-cert-file={}", crt.display()),
        format!("--tls-private-key-file={}", key.display()),
    ]);
    let (code, out) = run_to_exit(&p);
    assert_eq!(code, Some(1), "{out}");
    let want = format!("kubelet server TLS: serving certificate {} (key {}): the certificate is X.509 v1", crt.display(), key.display());
    assert!(out.contains(&want), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    sign("serving.crt", Some(&format!("extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{}\n", p.node)));
    p.start();
    assert_eq!(anonymous_kubelet_get(p.server_port, "/healthz"), "ok");
}
