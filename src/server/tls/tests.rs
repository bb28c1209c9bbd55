//! Real handshakes over loopback TCP against the configurations
//! [`server_config`] builds; certificates from openssl and from [`cert`].

use super::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("picolet-tls-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &TempDir, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(&dir.0).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A P-256 CA (`<name>.crt`, `<name>.key`).
fn make_ca(dir: &TempDir, name: &str) {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key, "-out", &crt, "-subj", &format!("/CN={name}"), "-days", "2"]);
}

/// A client certificate `<name>.crt`/`.key` signed by CA `ca`.
fn make_client(dir: &TempDir, ca: &str, name: &str, subj: &str) {
    std::fs::write(dir.path("client.ext"), "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n").unwrap();
    // Names Kubernetes' UID attribute for -subj.
    std::fs::write(dir.path("req.cnf"), "oid_section = oids\n[oids]\nkubernetesUID = 1.3.6.1.4.1.57683.2\n[req]\ndistinguished_name = dn\n[dn]\n").unwrap();
    let (crt, key, csr) = (format!("{name}.crt"), format!("{name}.key"), format!("{name}.csr"));
    openssl(dir, &["req", "-config", "req.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subj]);
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key"), "-set_serial", "7", "-days", "1", "-extfile", "client.ext", "-out", &crt]);
}

fn read_pair(dir: &TempDir, name: &str) -> Pair {
    load_pair(&dir.path(&format!("{name}.crt")), &dir.path(&format!("{name}.key"))).unwrap()
}

fn settings<'a>(root: &'a Path, ca: Option<&'a Path>) -> TlsSettings<'a> {
    TlsSettings { cert_file: None, key_file: None, client_ca_file: ca, root_dir: root, node_name: "pi-1", node_ip: Some("10.0.0.7"), }
}

/// What the server side of one handshake saw.
#[derive(Debug)]
struct Seen {
    alpn: Option<Vec<u8>>,
    peer: Option<CertificateDer<'static>>,
}

/// One handshake: the client trusts `roots`, connects as `name`, presents
/// `client_cert` if given and reads a greeting. Returns the server's view (or
/// its error) and whether the client got the greeting.
fn handshake(server: Arc<rustls::ServerConfig>, roots: &[CertificateDer<'static>], name: &str, client_cert: Option<Pair>) -> (Result<Seen, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = std::thread::spawn(move || -> Result<Seen, String> {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = ServerConnection::new(server).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
        }
        let seen = Seen { alpn: conn.alpn_protocol().map(<[u8]>::to_vec), peer: conn.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned()) };
        rustls::Stream::new(&mut conn, &mut sock).write_all(b"hello").map_err(|e| e.to_string())?;
        conn.send_close_notify();
        let _ = conn.complete_io(&mut sock);
        Ok(seen)
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(store);
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut conn = ClientConnection::new(Arc::new(config), ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let client = rustls::Stream::new(&mut conn, &mut sock).read_to_end(&mut got).map_err(|e| e.to_string());
    let client = client.and_then(|_| if got == b"hello" { Ok(()) } else { Err(format!("got {got:?}")) });
    (srv.join().unwrap(), client)
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    crate::api::client::certs(&std::fs::read(path).unwrap(), "test").unwrap().iter().map(|c| CertificateDer::from(c.der().to_vec())).collect()
}

#[test]
fn self_signed_is_trusted_for_every_name_and_kept() {
    let root = TempDir::new("self");
    let cfg = server_config(&settings(&root.0, None)).unwrap();
    let (crt, key) = (root.path("pki/kubelet.crt"), root.path("pki/kubelet.key"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let roots = pem_certs(&crt);
    for name in ["pi-1", "localhost", "127.0.0.1", "10.0.0.7"] {
        let (srv, client) = handshake(cfg.clone(), &roots, name, None);
        client.unwrap_or_else(|e| panic!("{name}: {e}"));
        let seen = srv.unwrap();
        assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(seen.peer.is_none());
    }
    let (_, client) = handshake(cfg, &roots, "other-node", None);
    assert!(client.is_err(), "a name not in the certificate was accepted");

    // A restart reuses the pair.
    let before = std::fs::read(&crt).unwrap();
    server_config(&settings(&root.0, None)).unwrap();
    assert_eq!(std::fs::read(&crt).unwrap(), before);

    // A renamed node, a garbled file or an expired certificate get a new one.
    let renamed = TlsSettings { node_name: "pi-2", ..settings(&root.0, None) };
    server_config(&renamed).unwrap();
    let after = std::fs::read(&crt).unwrap();
    assert_ne!(after, before);
    std::fs::write(&crt, b"garbage").unwrap();
    server_config(&settings(&root.0, None)).unwrap();
    assert!(std::fs::read_to_string(&crt).unwrap().starts_with("-----BEGIN CERTIFICATE-----\n"));
    let provider = rustls::crypto::ring::default_provider();
    let pair = load_pair(&crt, &key).unwrap();
    assert!(reusable(&pair, "pi-1", &provider, unix_now()).is_ok());
    assert!(reusable(&pair, "pi-1", &provider, unix_now() + cert::VALIDITY_SECS + 1).unwrap_err().contains("expired"));
    assert!(reusable(&pair, "pi-10", &provider, unix_now()).is_err());
}

#[test]
fn openssl_reads_the_generated_certificate() {
    let dir = TempDir::new("openssl");
    let g = cert::generate("pi-1", Some("10.0.0.7".parse().unwrap()), unix_now()).unwrap();
    std::fs::write(dir.path("c.pem"), pem("CERTIFICATE", &g.cert)).unwrap();
    std::fs::write(dir.path("k.pem"), pem("PRIVATE KEY", &g.key_pkcs8)).unwrap();
    let out = Command::new("openssl").args(["x509", "-noout", "-text", "-in", "c.pem"]).current_dir(&dir.0).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "Version: 3 (0x2)",
        "Signature Algorithm: ecdsa-with-SHA256",
        "Issuer: CN = pi-1@",
        "Subject: CN = pi-1@",
        "NIST CURVE: P-256",
        "X509v3 Key Usage: critical",
        "Digital Signature, Key Encipherment",
        "TLS Web Server Authentication",
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "DNS:pi-1, DNS:localhost, IP Address:10.0.0.7, IP Address:127.0.0.1",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The signature verifies (self-signed: issuer key = subject key) and the key is the certificate's.
    openssl(&dir, &["verify", "-CAfile", "c.pem", "c.pem"]);
    let pubkey = |args: &[&str]| Command::new("openssl").args(args).current_dir(&dir.0).output().unwrap().stdout;
    assert_eq!(pubkey(&["x509", "-noout", "-pubkey", "-in", "c.pem"]), pubkey(&["pkey", "-pubout", "-in", "k.pem"]));
}

#[test]
fn serving_certificate_from_files_in_each_key_format() {
    let dir = TempDir::new("files");
    // PKCS#1 RSA, SEC1 EC and PKCS#8 EC keys.
    openssl(&dir, &["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    openssl(&dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sec1.key"]);
    openssl(&dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "p8.key"]);
    for (name, header) in [("rsa", "RSA PRIVATE KEY"), ("sec1", "EC PRIVATE KEY"), ("p8", "BEGIN PRIVATE KEY")] {
        let key = format!("{name}.key");
        assert!(std::fs::read_to_string(dir.path(&key)).unwrap().contains(header));
        openssl(&dir, &["req", "-new", "-x509", "-key", &key, "-out", &format!("{name}.crt"), "-subj", "/CN=node", "-addext", "subjectAltName=DNS:node", "-addext", "basicConstraints=critical,CA:FALSE", "-days", "1"]);
        let (c, k) = (dir.path(&format!("{name}.crt")), dir.path(&key));
        let s = TlsSettings { cert_file: Some(&c), key_file: Some(&k), ..settings(&dir.0, None) };
        let cfg = server_config(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (srv, client) = handshake(cfg, &pem_certs(&c), "node", None);
        client.unwrap_or_else(|e| panic!("{name}: {e}"));
        srv.unwrap();
    }
    assert!(!dir.path("pki").exists(), "no self-signed pair when files are given");
    let c = dir.path("rsa.crt");
    let only_cert = TlsSettings { cert_file: Some(&c), ..settings(&dir.0, None) };
    assert!(server_config(&only_cert).is_err());
    // A key that is not the certificate's.
    let k = dir.path("sec1.key");
    let mismatched = TlsSettings { cert_file: Some(&c), key_file: Some(&k), ..settings(&dir.0, None) };
    assert!(server_config(&mismatched).is_err());
}

/// A serving certificate rustls refuses is an error naming both files, what
/// is wrong and how to fix it; the fix it gives works.
#[test]
fn unusable_serving_certificates_say_why() {
    let dir = TempDir::new("bad-serving");
    make_ca(&dir, "ca");
    openssl(&dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=pi-1"]);
    openssl(&dir, &["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "1", "-out", "v1.crt"]);
    std::fs::write(dir.path("garbage.crt"), "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::write(dir.path("empty.key"), "not a key\n").unwrap();
    let err = |crt: &str, key: &str| {
        let (c, k) = (dir.path(crt), dir.path(key));
        server_config(&TlsSettings { cert_file: Some(&c), key_file: Some(&k), ..settings(&dir.0, None) }).unwrap_err().to_string()
    };
    let e = err("v1.crt", "node.key");
    assert!(e.contains(&format!("serving certificate {} (key {})", dir.path("v1.crt").display(), dir.path("node.key").display())), "{e}");
    assert!(e.contains("X.509 v1") && e.contains("re-issue it as v3"), "{e}");
    assert!(e.contains("printf 'extendedKeyUsage=serverAuth\\nsubjectAltName=DNS:pi-1'"), "{e}");
    let e = err("garbage.crt", "node.key");
    assert!(e.contains("garbage.crt") && e.contains("not DER-encoded X.509"), "{e}");
    let e = err("v1.crt", "empty.key");
    assert!(e.contains("empty.key: no PEM private key"), "{e}");
    make_ca(&dir, "other");
    let e = err("other.crt", "node.key");
    assert!(e.contains("other.crt") && e.contains("the private key does not belong to the certificate"), "{e}");
    // The advice, followed.
    let ext = "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:pi-1\n";
    std::fs::write(dir.path("node.ext"), ext).unwrap();
    openssl(&dir, &["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "1", "-extfile", "node.ext", "-out", "v3.crt"]);
    let (c, k) = (dir.path("v3.crt"), dir.path("node.key"));
    server_config(&TlsSettings { cert_file: Some(&c), key_file: Some(&k), ..settings(&dir.0, None) }).unwrap();
    // A client CA bundle: an X.509 v1 CA is fine, garbage is named.
    openssl(&dir, &["x509", "-req", "-in", "node.csr", "-key", "node.key", "-days", "1", "-out", "v1-ca.crt"]);
    let ca = dir.path("v1-ca.crt");
    server_config(&settings(&dir.0, Some(&ca))).unwrap();
    let bundle = [std::fs::read(&ca).unwrap(), std::fs::read(dir.path("garbage.crt")).unwrap()].concat();
    std::fs::write(dir.path("bundle.crt"), bundle).unwrap();
    let ca = dir.path("bundle.crt");
    let e = server_config(&settings(&dir.0, Some(&ca))).unwrap_err().to_string();
    assert_eq!(e, format!("kubelet server TLS: client CA {}: certificate 2 of the bundle is not usable as a CA certificate (InvalidCertificate(BadEncoding))", ca.display()));
}

#[test]
fn client_certificates_from_the_client_ca_only() {
    let dir = TempDir::new("clientca");
    make_ca(&dir, "ca");
    make_ca(&dir, "other");
    make_client(&dir, "ca", "good", "/O=system:nodes/O=extra group/CN=system:node:pi-1");
    make_client(&dir, "other", "bad", "/CN=intruder");
    let ca = dir.path("ca.crt");
    let cfg = server_config(&settings(&dir.0, Some(&ca))).unwrap();
    let roots = pem_certs(&dir.path("pki/kubelet.crt"));

    let (srv, client) = handshake(cfg.clone(), &roots, "pi-1", Some(read_pair(&dir, "good")));
    client.unwrap();
    let peer = srv.unwrap().peer.expect("the client certificate reaches the server");
    let user = client_user(&peer).unwrap();
    assert_eq!(user.name, "system:node:pi-1");
    assert_eq!(user.groups, ["system:nodes", "extra group"]);
    assert_eq!(user.uid, "");
    let id = &user.extra["authentication.kubernetes.io/credential-id"][0];
    let fp = Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in", "good.crt"]).current_dir(&dir.0).output().unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout).trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase();
    assert_eq!(id, &format!("X509SHA256={fp}"));

    // Another CA's certificate fails the handshake; no certificate is fine.
    let (srv, _) = handshake(cfg.clone(), &roots, "pi-1", Some(read_pair(&dir, "bad")));
    let err = srv.expect_err("a certificate from another CA was accepted");
    assert!(err.contains("UnknownIssuer"), "{err}");
    let (srv, client) = handshake(cfg, &roots, "pi-1", None);
    client.unwrap();
    assert!(srv.unwrap().peer.is_none());

    // Without a client CA no certificate is asked for, so none arrives.
    let cfg = server_config(&settings(&dir.0, None)).unwrap();
    let (srv, client) = handshake(cfg, &roots, "pi-1", Some(read_pair(&dir, "good")));
    client.unwrap();
    assert!(srv.unwrap().peer.is_none());

    let missing = dir.path("nope.crt");
    assert!(server_config(&settings(&dir.0, Some(&missing))).unwrap_err().0.contains("nope.crt"));
}

#[test]
fn client_user_reads_subjects() {
    let dir = TempDir::new("subjects");
    make_ca(&dir, "ca");
    let user = |subj: &str| {
        make_client(&dir, "ca", "u", subj);
        client_user(&pem_certs(&dir.path("u.crt"))[0])
    };
    // Kubernetes' UID attribute (1.3.6.1.4.1.57683.2); the last CN wins as in Go.
    let u = user("/CN=first/O=a/kubernetesUID=uid-1/CN=alice").unwrap();
    assert_eq!((u.name.as_str(), u.uid.as_str(), u.groups.as_slice()), ("alice", "uid-1", &["a".to_string()][..]));
    assert!(user("/O=only-a-group").is_none(), "no CN, no user");
    assert!(user("/CN=bob/kubernetesUID=x/kubernetesUID=y").is_none(), "two UIDs");
    assert_eq!(user("/CN=bob/OU=ignored/C=DE").unwrap().groups, Vec::<String>::new());
    assert!(client_user(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])).is_none());
    // The generated serving certificate parses the same way.
    let g = cert::generate("pi-1", None, 1_714_564_800).unwrap();
    assert_eq!(client_user(&CertificateDer::from(g.cert)).unwrap().name, "pi-1@1714564800");
}
