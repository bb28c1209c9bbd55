//! Reading a kubeconfig: the current context's server, CA and credentials.
//!
//! Supports what a kubelet's kubeconfig carries in practice: client
//! certificate and key (files or inline `*-data`), a bearer token (inline or
//! `tokenFile`), the cluster CA (file or inline) or
//! `insecure-skip-tls-verify`. Relative paths are relative to the kubeconfig's
//! directory, as in client-go. Exec plugins and auth providers are refused
//! with a clear error rather than ignored.

use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// What is needed to talk to the API server.
#[derive(Clone, PartialEq)]
pub struct Kubeconfig {
    pub server: String,
    /// PEM; None means the system's roots (not available here: webpki roots).
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
    /// Where the token came from, re-read when it is rotated on disk.
    pub token_file: Option<PathBuf>,
}

// Keys and tokens must never reach a log line.
impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("server", &self.server)
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

#[derive(Debug)]
pub struct KubeconfigError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for KubeconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kubeconfig {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for KubeconfigError {}

impl Kubeconfig {
    pub fn load(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
        let err = |reason: String| KubeconfigError { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        parse(&text, base).map_err(err)
    }
}

/// Finds `name` in the list under `key` (`clusters`, `users`, `contexts`) and
/// returns its inner object (`cluster`, `user`, `context`).
fn named<'a>(doc: &'a Value, key: &str, inner: &str, name: &str) -> Result<&'a Value, String> {
    doc.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|e| e.get(inner))
        .ok_or_else(|| format!("no {inner} named {name:?} in {key}"))
}

fn parse(text: &str, base: &Path) -> Result<Kubeconfig, String> {
    let doc = crate::api::decode::yaml_value(text)?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string).filter(|s| !s.is_empty());
    let current = s(&doc, "current-context");
    let (cluster, user) = match current {
        Some(ctx) => {
            let c = named(&doc, "contexts", "context", &ctx)?;
            let cluster = s(c, "cluster").ok_or_else(|| format!("context {ctx:?} names no cluster"))?;
            let user = s(c, "user");
            (named(&doc, "clusters", "cluster", &cluster)?, user.map(|u| named(&doc, "users", "user", &u)).transpose()?)
        }
        // Without a current context, a file with one cluster and at most one
        // user is unambiguous (as bootstrap kubeconfigs sometimes are).
        None => {
            let one = |key: &str, inner: &str| -> Option<&Value> {
                let list = doc.get(key)?.as_array()?;
                (list.len() == 1).then(|| list[0].get(inner)).flatten()
            };
            let cluster = one("clusters", "cluster").ok_or("no current-context, and not exactly one cluster")?;
            (cluster, one("users", "user"))
        }
    };
    let server = s(cluster, "server").ok_or("the cluster has no server")?;
    if !server.starts_with("https://") && !server.starts_with("http://") {
        return Err(format!("server {server:?} is not an http(s) URL"));
    }
    let file_or_data = |v: &Value, file_key: &str, data_key: &str| -> Result<Option<Vec<u8>>, String> {
        if let Some(data) = s(v, data_key) {
            let clean: String = data.split_whitespace().collect();
            return crate::api::objects::base64_decode(&clean).map(Some).ok_or_else(|| format!("{data_key}: not base64"));
        }
        match s(v, file_key) {
            Some(f) => {
                let p = base.join(f);
                std::fs::read(&p).map(Some).map_err(|e| format!("{file_key} {}: {e}", p.display()))
            }
            None => Ok(None),
        }
    };
    let ca_pem = file_or_data(cluster, "certificate-authority", "certificate-authority-data")?;
    let insecure = cluster.get("insecure-skip-tls-verify").and_then(Value::as_bool).unwrap_or(false);
    let mut kc = Kubeconfig { server: server.trim_end_matches('/').to_string(), ca_pem, insecure, client_cert_pem: None, client_key_pem: None, token: None, token_file: None };
    if let Some(u) = user {
        if u.get("exec").is_some() || u.get("auth-provider").is_some() {
            return Err("exec plugins and auth providers are not supported: use a client certificate or a token".into());
        }
        kc.client_cert_pem = file_or_data(u, "client-certificate", "client-certificate-data")?;
        kc.client_key_pem = file_or_data(u, "client-key", "client-key-data")?;
        if kc.client_cert_pem.is_some() != kc.client_key_pem.is_some() {
            return Err("a client certificate needs its key (and a key its certificate)".into());
        }
        kc.token = s(u, "token");
        if kc.token.is_none() {
            if let Some(f) = s(u, "tokenFile") {
                let p = base.join(f);
                let t = std::fs::read_to_string(&p).map_err(|e| format!("tokenFile {}: {e}", p.display()))?;
                kc.token = Some(t.trim().to_string());
                kc.token_file = Some(p);
            }
        }
    }
    if kc.server.starts_with("http://") && (kc.token.is_some() || kc.client_cert_pem.is_some()) {
        return Err("refusing to send credentials over plain http".into());
    }
    Ok(kc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64_CA: &str = "Q0EtUEVN"; // "CA-PEM"

    #[test]
    fn current_context_with_inline_data_and_token() {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: a\n  cluster: {{server: 'https://a:6443'}}\n- name: c2\n  cluster:\n    server: https://127.0.0.1:6443/\n    certificate-authority-data: {B64_CA}\ncontexts:\n- name: b\n  context: {{cluster: c2, user: u}}\nusers:\n- name: u\n  user: {{token: abc}}\n"
        );
        let kc = parse(&text, Path::new("/nonexistent")).unwrap();
        assert_eq!(kc.server, "https://127.0.0.1:6443");
        assert_eq!(kc.ca_pem.as_deref(), Some(&b"CA-PEM"[..]));
        assert_eq!(kc.token.as_deref(), Some("abc"));
        assert!(!format!("{kc:?}").contains("abc"), "tokens stay out of Debug");
    }

    #[test]
    fn files_are_relative_to_the_kubeconfig() {
        let dir = std::env::temp_dir().join(format!("picolet-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), "CA").unwrap();
        std::fs::write(dir.join("n.crt"), "CERT").unwrap();
        std::fs::write(dir.join("n.key"), "KEY").unwrap();
        let text = "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://h', certificate-authority: ca.crt}\ncontexts:\n- name: x\n  context: {cluster: c, user: n}\nusers:\n- name: n\n  user: {client-certificate: n.crt, client-key: n.key}\n";
        std::fs::write(dir.join("kc"), text).unwrap();
        let kc = Kubeconfig::load(&dir.join("kc")).unwrap();
        assert_eq!(kc.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(kc.client_cert_pem.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(kc.client_key_pem.as_deref(), Some(&b"KEY"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clear_errors() {
        let e = |t: &str| parse(t, Path::new("/nonexistent")).unwrap_err();
        assert!(e("current-context: nope\n").contains("no context named \"nope\""));
        assert!(e("clusters:\n- name: c\n  cluster: {server: 'ftp://x'}\n").contains("not an http(s) URL"));
        let exec = "clusters:\n- name: c\n  cluster: {server: 'https://x'}\nusers:\n- name: u\n  user: {exec: {command: x}}\n";
        assert!(e(exec).contains("exec plugins"));
        let half = "clusters:\n- name: c\n  cluster: {server: 'https://x'}\nusers:\n- name: u\n  user: {client-certificate-data: Q0E=}\n";
        assert!(e(half).contains("needs its key"));
        let missing = "clusters:\n- name: c\n  cluster: {server: 'https://x', certificate-authority: /nonexistent/ca}\n";
        assert!(e(missing).contains("certificate-authority /nonexistent/ca"));
    }
}
