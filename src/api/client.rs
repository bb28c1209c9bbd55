//! A small blocking client for the Kubernetes API server (ureq + rustls).
//!
//! Requests are plain JSON over HTTPS; a watch is a long-poll whose body is a
//! stream of newline-separated events, read line by line so an object is
//! decoded as it arrives and never buffered with the rest. Callers run it on
//! their own threads (node status, pod watch, status writer), never on the
//! pod loop, so a slow or absent API server cannot stall pods.

use super::kubeconfig::Kubeconfig;
use serde_json::Value;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::time::Duration;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// The system's trusted roots (Debian, Raspberry Pi OS, Alpine).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Largest ordinary response body (a pod list for 110 pods is ~1 MiB).
const BODY_LIMIT: u64 = 32 << 20;
/// Largest single watch event line; the API server caps an object at ~1.5 MiB.
const EVENT_LIMIT: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct ApiError {
    /// `GET /api/v1/...`
    pub op: String,
    /// 0 when the server was not reached or the body was not understood.
    pub status: u16,
    /// The Status object's reason (`NotFound`, `Conflict`, `Expired`...).
    pub reason: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            0 => write!(f, "{}: {}", self.op, self.message),
            s => write!(f, "{}: {s} {}: {}", self.op, self.reason, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn not_found(&self) -> bool {
        self.status == 404
    }
    pub fn conflict(&self) -> bool {
        self.status == 409
    }
    /// The resourceVersion asked for is too old (410, or 'Expired' in a watch).
    pub fn gone(&self) -> bool {
        self.status == 410 || self.reason == "Expired" || self.reason == "Gone"
    }
    /// The request itself cannot succeed (4xx other than throttling): no point retrying.
    pub fn permanent(&self) -> bool {
        (400..500).contains(&self.status) && self.status != 429 && self.status != 408
    }
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

/// One watch event: its type (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`,
/// `ERROR`) and object.
pub struct WatchEvent {
    pub kind: String,
    pub object: Value,
}

fn pem_items(pem: &[u8], what: &str) -> Result<Vec<PemItem<'static>>, String> {
    ureq::tls::parse_pem(pem).collect::<Result<Vec<_>, _>>().map_err(|e| format!("{what}: {e}"))
}

/// The certificates in a PEM text (`what` names it in errors); none is an error.
pub fn certs(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let certs: Vec<_> = pem_items(pem, what)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM text.
pub fn key(pem: &[u8], what: &str) -> Result<PrivateKey<'static>, String> {
    pem_items(pem, what)?
        .into_iter()
        .find_map(|i| match i {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| format!("{what}: no PEM private key"))
}

/// Checks a certificate chain and its private key as rustls loads them:
/// ureq does so lazily, on the first connection, and aborts on a pair rustls
/// refuses. The key must be one rustls signs with, the first certificate an
/// X.509 v3 certificate that holds the key's public half. `extfile` is the
/// openssl extension text to re-issue a v1 certificate with. The error says
/// what is wrong and how to fix it.
pub fn check_pair(chain: &[CertificateDer<'_>], key: &PrivateKeyDer<'_>, extfile: &str) -> Result<(), String> {
    let first = chain.first().ok_or("no certificate")?;
    match x509_version(first) {
        Some(3) => {}
        Some(v) => {
            return Err(format!(
                "the certificate is X.509 v{v} (as `openssl x509 -req` makes it without extensions), which rustls does not accept: \
                 re-issue it as v3, e.g. `openssl x509 -req -in <csr> -CA <ca.crt> -CAkey <ca.key> -days 365 -extfile <(printf '{extfile}')`"
            ))
        }
        None => return Err("the certificate is not DER-encoded X.509".into()),
    }
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider.key_provider.load_private_key(key.clone_key()).map_err(|e| {
        format!("the private key is not one rustls can use (RSA of 2048 to 8192 bits, ECDSA P-256 or P-384, Ed25519): {e}")
    })?;
    let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
    match rustls::sign::CertifiedKey::new(chain, signer).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err("the private key does not belong to the certificate (its public key differs)".into()),
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)) => Err("the certificate is not valid DER".into()),
        Err(rustls::Error::InvalidCertificate(e)) => Err(format!("rustls cannot use the certificate: {e:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The version of a DER X.509 certificate (1 to 3); None if it is not
/// shaped like one. Certificate and tbsCertificate are SEQUENCEs; the
/// version is an optional `[0]` in front of the serial number (absent: v1).
fn x509_version(der: &[u8]) -> Option<u8> {
    fn content(b: &[u8]) -> Option<&[u8]> {
        let (&len, rest) = b.strip_prefix(&[0x30])?.split_first()?;
        if len < 0x80 { Some(rest) } else { rest.get(usize::from(len & 0x7f)..) }
    }
    match content(content(der)?)? {
        [0xa0, 3, 2, 1, v, ..] => Some(v.saturating_add(1)),
        [2, ..] => Some(1),
        _ => None,
    }
}

/// Trust anchors as rustls takes them: ureq quietly drops certificates it
/// cannot parse, and with none left every connection would fail as
/// "unknown issuer". An error when none is usable.
pub fn check_roots(certs: &[Certificate<'_>]) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    let (_, refused) = store.add_parsable_certificates(certs.iter().map(|c| CertificateDer::from(c.der())));
    if store.is_empty() {
        return Err(format!("none of its {refused} certificate(s) is a usable CA certificate"));
    }
    Ok(())
}

impl Client {
    pub fn new(kc: &Kubeconfig) -> Result<Client, String> {
        // No CA in the kubeconfig: the system's (Debian's ca-certificates).
        // Compiled-in roots (webpki-roots) would cost 70 KB for that alone.
        let ca = match &kc.ca_pem {
            Some(ca) => {
                let ca = certs(ca, "certificate authority")?;
                check_roots(&ca).map_err(|e| format!("certificate authority: {e}"))?;
                ca
            }
            None => {
                let path = SYSTEM_ROOTS;
                let pem = std::fs::read(path).map_err(|e| format!("no certificate-authority in the kubeconfig and no system roots ({path}: {e})"))?;
                certs(&pem, path)?
            }
        };
        let mut tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(ca)));
        if kc.insecure {
            tls = tls.disable_verification(true);
        }
        if let (Some(c), Some(k)) = (&kc.client_cert_pem, &kc.client_key_pem) {
            let (chain, key) = (certs(c, "client certificate")?, key(k, "client key")?);
            let der: Vec<CertificateDer> = chain.iter().map(|c| CertificateDer::from(c.der())).collect();
            let key_der = PrivateKeyDer::try_from(key.der()).map_err(|e| format!("client key: {e}"))?;
            check_pair(&der, &key_der, "extendedKeyUsage=clientAuth").map_err(|e| format!("client certificate: {e}"))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .max_idle_connections(4)
            .user_agent(concat!("picolet/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client { agent, base: kc.server.clone(), auth: kc.token.as_ref().map(|t| format!("Bearer {t}")) })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn transport(op: &str, e: ureq::Error) -> ApiError {
        ApiError { op: op.to_string(), status: 0, reason: String::new(), message: e.to_string() }
    }

    /// Turns a non-2xx response into an error carrying the Status object's reason.
    fn check(op: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reason = v["reason"].as_str().map(str::to_string).unwrap_or_else(|| {
            resp.status().canonical_reason().unwrap_or("").replace(' ', "")
        });
        let message = v["message"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        Err(ApiError { op: op.to_string(), status, reason, message })
    }

    fn json(op: &str, resp: ureq::http::Response<ureq::Body>) -> Result<Value, ApiError> {
        let mut resp = Self::check(op, resp)?;
        let reader = resp.body_mut().with_config().limit(BODY_LIMIT).reader();
        serde_json::from_reader(reader).map_err(|e| ApiError { op: op.to_string(), status: 0, reason: String::new(), message: format!("bad response: {e}") })
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        let op = format!("GET {path}");
        let mut req = self.agent.get(self.url(path)).header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        Self::json(&op, req.call().map_err(|e| Self::transport(&op, e))?)
    }

    /// POST, PUT or PATCH (give the patch's content type) with a JSON body.
    /// API types go in as they are, not through a `Value`: serializing them
    /// to bytes only keeps one copy of their serialization code in the binary.
    pub fn send(&self, method: &str, path: &str, content_type: &str, body: &impl serde::Serialize) -> Result<Value, ApiError> {
        let op = format!("{method} {path}");
        let bytes = serde_json::to_vec(body).expect("JSON bodies serialize");
        let url = self.url(path);
        let req = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            "PATCH" => self.agent.patch(url),
            // DELETE carries DeleteOptions (grace period, preconditions).
            _ => self.agent.delete(url).force_send_body(),
        };
        let mut req = req.header("Content-Type", content_type).header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        Self::json(&op, req.send(&bytes[..]).map_err(|e| Self::transport(&op, e))?)
    }

    /// Starts a watch (`path` must carry `watch=1` and `timeoutSeconds`); the
    /// iterator ends when the server closes the stream.
    pub fn watch(&self, path: &str, timeout: Duration) -> Result<impl Iterator<Item = Result<WatchEvent, ApiError>>, ApiError> {
        let op = format!("WATCH {path}");
        let mut req = self
            .agent
            .get(self.url(path))
            .header("Accept", "application/json")
            .config()
            // Silence longer than the server's own timeout means a dead link.
            .timeout_recv_body(None)
            .timeout_per_read(Some(timeout + Duration::from_secs(30)))
            .build();
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let resp = Self::check(&op, req.call().map_err(|e| Self::transport(&op, e))?)?;
        let reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
        Ok(Events { op, lines: BufReader::with_capacity(16 << 10, reader), buf: Vec::new(), done: false })
    }
}

struct Events<R> {
    op: String,
    lines: BufReader<R>,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> Iterator for Events<R> {
    type Item = Result<WatchEvent, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let fail = |s: &mut Self, message: String| {
            s.done = true;
            Some(Err(ApiError { op: s.op.clone(), status: 0, reason: String::new(), message }))
        };
        self.buf.clear();
        loop {
            let room = (EVENT_LIMIT + 1 - self.buf.len()) as u64;
            let blank = |b: &[u8]| b.iter().all(u8::is_ascii_whitespace);
            match (&mut self.lines).take(room).read_until(b'\n', &mut self.buf) {
                Err(e) => return fail(self, e.to_string()),
                // End of stream: a last line without a newline still counts.
                Ok(0) if blank(&self.buf) => {
                    self.done = true;
                    return None;
                }
                Ok(0) => break,
                Ok(_) if self.buf.len() > EVENT_LIMIT => {
                    return fail(self, format!("watch event larger than {} MiB", EVENT_LIMIT >> 20))
                }
                Ok(_) if self.buf.ends_with(b"\n") && blank(&self.buf) => self.buf.clear(),
                Ok(_) if self.buf.ends_with(b"\n") => break,
                Ok(_) => {}
            }
        }
        // An object: indexing anything else to write would panic.
        let mut v: Value = match serde_json::from_slice(&self.buf) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return fail(self, "bad watch event: not a JSON object".into()),
            Err(e) => return fail(self, format!("bad watch event: {e}")),
        };
        let kind = v["type"].as_str().unwrap_or("").to_string();
        let object = v["object"].take();
        if kind == "ERROR" {
            // A Status object: 410 Expired when the resourceVersion is too old.
            self.done = true;
            return Some(Err(ApiError {
                op: self.op.clone(),
                status: object["code"].as_u64().unwrap_or(0) as u16,
                reason: object["reason"].as_str().unwrap_or("").to_string(),
                message: object["message"].as_str().unwrap_or("").to_string(),
            }));
        }
        Some(Ok(WatchEvent { kind, object }))
    }
}

/// Logs an API failure once per distinct cause and the recovery once, so
/// an unreachable API server costs one log line, not one per retry.
#[derive(Default)]
pub struct Quiet {
    last: Option<String>,
}

impl Quiet {
    /// Logs `e` unless the last failure had the same cause. The cause
    /// leaves out the request: an unreachable API server
    /// fails every object a pass reads, and that is one thing to say.
    pub fn failed(&mut self, what: &str, e: &ApiError) {
        if self.is_new(e) {
            log::warn!("{what}: {e}");
        }
    }

    fn is_new(&mut self, e: &ApiError) -> bool {
        let cause = format!("{} {}: {}", e.status, e.reason, e.message);
        let new = self.last.as_deref() != Some(&cause);
        self.last = Some(cause);
        new
    }

    pub fn ok(&mut self, what: &str) {
        if self.last.take().is_some() {
            log::info!("{what}: the API server answers again");
        }
    }
}

/// Exponential back-off with jitter, from `base` up to `cap`.
pub struct Retry {
    base: Duration,
    cap: Duration,
    next: Duration,
}

impl Retry {
    pub fn new(base: Duration, cap: Duration) -> Retry {
        Retry { base, cap, next: base }
    }

    /// The wait before the next attempt after a failure (doubling, ±25 %).
    pub fn fail(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let jitter = 0.75 + (nanos % 1000) as f64 / 2000.0;
        d.mul_f64(jitter)
    }

    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

/// Percent-encodes a query value (field selectors contain `=` and `,`).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn quiet_logs_one_line_per_cause_not_per_request() {
        let down = |op: &str| ApiError { op: op.into(), status: 0, reason: String::new(), message: "io: Connection refused (os error 111)".into() };
        let mut q = Quiet::default();
        assert!(q.is_new(&down("GET /api/v1/namespaces/a/configmaps/x")));
        assert!(!q.is_new(&down("GET /api/v1/namespaces/a/secrets/y")), "same cause, other object");
        let forbidden = ApiError { op: "GET /x".into(), status: 403, reason: "Forbidden".into(), message: "no".into() };
        assert!(q.is_new(&forbidden), "another cause is said");
        q.ok("reading");
        assert!(q.is_new(&down("GET /y")), "a new outage after a recovery is said");
    }
    use super::*;

    fn events(text: &str) -> Vec<Result<WatchEvent, ApiError>> {
        Events { op: "WATCH x".into(), lines: BufReader::new(text.as_bytes()), buf: Vec::new(), done: false }.collect()
    }

    #[test]
    fn watch_lines_become_events_and_errors_end_the_stream() {
        let text = "{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n\n{\"type\":\"DELETED\",\"object\":{\"a\":2}}\n{\"type\":\"ERROR\",\"object\":{\"code\":410,\"reason\":\"Expired\",\"message\":\"too old\"}}\n{\"type\":\"ADDED\",\"object\":{}}\n";
        let ev = events(text);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].as_ref().unwrap().kind, "ADDED");
        assert_eq!(ev[1].as_ref().unwrap().object["a"], 2);
        let e = ev[2].as_ref().err().unwrap();
        assert!(e.gone() && e.status == 410);
    }

    #[test]
    fn last_line_without_newline_and_garbage() {
        let ev = events("{\"type\":\"ADDED\",\"object\":{}}");
        assert_eq!(ev.len(), 1);
        let ev = events("not json\n{\"type\":\"ADDED\",\"object\":{}}\n");
        assert_eq!(ev.len(), 1);
        assert!(ev[0].as_ref().err().unwrap().message.contains("bad watch event"));
        for line in ["[1,2]\n", "\"ADDED\"\n", "7\n"] {
            let ev = events(line);
            assert_eq!(ev.len(), 1, "{line}");
            assert_eq!(ev[0].as_ref().err().unwrap().message, "bad watch event: not a JSON object", "{line}");
        }
    }

    #[test]
    fn oversized_event_is_an_error_not_a_buffer() {
        let big = format!("{{\"type\":\"ADDED\",\"object\":{{\"x\":\"{}\"}}}}\n", "a".repeat(EVENT_LIMIT + 10));
        let ev = events(&big);
        assert_eq!(ev.len(), 1);
        assert!(ev[0].as_ref().err().unwrap().message.contains("larger than"));
    }

    #[test]
    fn retry_doubles_to_the_cap_with_jitter() {
        let mut r = Retry::new(Duration::from_secs(1), Duration::from_secs(8));
        let waits: Vec<Duration> = (0..6).map(|_| r.fail()).collect();
        for (w, nominal) in waits.iter().zip([1u64, 2, 4, 8, 8, 8]) {
            let n = Duration::from_secs(nominal);
            assert!(*w >= n.mul_f64(0.74) && *w <= n.mul_f64(1.26), "{w:?} vs {n:?}");
        }
        r.reset();
        assert!(r.fail() <= Duration::from_millis(1260));
    }

    /// A scratch directory with openssl-made certificates.
    struct Pki(std::path::PathBuf);

    impl Pki {
        fn new(name: &str) -> Pki {
            let d = std::env::temp_dir().join(format!("picolet-client-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            let pki = Pki(d);
            pki.openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=ca", "-days", "2"]);
            pki.openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/O=system:nodes/CN=system:node:pi-1"]);
            std::fs::write(pki.0.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
            pki
        }
        fn openssl(&self, args: &[&str]) {
            let out = std::process::Command::new("openssl").args(args).current_dir(&self.0).output().expect("openssl is installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        /// `node.csr` signed by the CA into `name` with extra x509 args.
        fn sign(&self, name: &str, extra: &[&str]) {
            let mut args = vec!["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-out", name];
            args.extend_from_slice(extra);
            self.openssl(&args);
        }
        fn read(&self, f: &str) -> Vec<u8> {
            std::fs::read(self.0.join(f)).unwrap()
        }
        fn client(&self, ca: &[u8], crt: &[u8], key: &str) -> Result<Client, String> {
            let kc = Kubeconfig {
                server: "https://127.0.0.1:1".into(),
                ca_pem: Some(ca.to_vec()),
                insecure: false,
                client_cert_pem: Some(crt.to_vec()),
                client_key_pem: Some(self.read(key)),
                token: None,
                token_file: None,
            };
            Client::new(&kc)
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A client certificate rustls refuses is an error here, saying what to
    /// do, not an abort inside ureq at the first request.
    #[test]
    fn client_certificates_rustls_refuses_are_errors() {
        let pki = Pki::new("certs");
        let ca = pki.read("ca.crt");
        pki.sign("v1.crt", &["-days", "1"]);
        let e = pki.client(&ca, &pki.read("v1.crt"), "node.key").err().expect("a v1 certificate is refused");
        assert!(e.starts_with("client certificate: the certificate is X.509 v1"), "{e}");
        assert!(e.contains("-extfile <(printf 'extendedKeyUsage=clientAuth')"), "{e}");
        // The advice, followed.
        pki.sign("v3.crt", &["-days", "1", "-extfile", "client.ext"]);
        pki.client(&ca, &pki.read("v3.crt"), "node.key").unwrap();
        // A key that is not the certificate's (the CA's).
        let e = pki.client(&ca, &pki.read("v3.crt"), "ca.key").err().unwrap();
        assert_eq!(e, "client certificate: the private key does not belong to the certificate (its public key differs)");
        let junk = b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n";
        let e = pki.client(&ca, junk, "node.key").err().unwrap();
        assert_eq!(e, "client certificate: the certificate is not DER-encoded X.509");
        let e = pki.client(junk, &pki.read("v3.crt"), "node.key").err().unwrap();
        assert_eq!(e, "certificate authority: none of its 1 certificate(s) is a usable CA certificate");
        // Expired: the API server decides (a board's clock may be wrong).
        pki.sign("expired.crt", &["-days", "-1", "-extfile", "client.ext"]);
        pki.client(&ca, &pki.read("expired.crt"), "node.key").unwrap();
    }

    #[test]
    fn x509_versions() {
        assert_eq!(x509_version(&[0x30, 0x82, 1, 0, 0x30, 0x81, 0xf0, 0xa0, 3, 2, 1, 2]), Some(3));
        assert_eq!(x509_version(&[0x30, 10, 0x30, 8, 2, 1, 7]), Some(1));
        assert_eq!(x509_version(&[0x30, 10, 0x30, 8, 0xa0, 3, 2, 1, 255]), Some(255));
        for junk in [&[][..], &[0x30], &[0x30, 0x84], &[0x30, 2, 0x31, 0], &[0x30, 0x85, 1, 1, 1, 1, 1]] {
            assert_eq!(x509_version(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn escapes_selectors() {
        assert_eq!(query_escape("spec.nodeName=pi-1"), "spec.nodeName%3Dpi-1");
    }
}
