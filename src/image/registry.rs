//! Talking to OCI distribution registries (ureq + rustls, blocking): where a
//! registry is reached (k3s `registries.yaml` mirrors and endpoints), with
//! which credentials and TLS settings, and the `WWW-Authenticate` challenge
//! flow (anonymous, Bearer token, Basic). Pulling itself, and where the bytes
//! land, is in `pull.rs`.
//!
//! `registries.yaml` (the file k3s users know; `--registry-config`, default
//! `/etc/picolet/registries.yaml`, a missing file means defaults):
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.example:5000"]   # tried in order, then the registry itself
//!   "10.0.0.5:5000":
//!     endpoint: ["http://10.0.0.5:5000"]          # plain HTTP only when written http://
//! configs:
//!   "mirror.example:5000":                        # an endpoint's host[:port]
//!     auth: {username: u, password: p}            # or auth: base64(u:p), or identitytoken
//!     tls: {ca_file: /etc/picolet/ca.pem, insecure_skip_verify: false}
//! ```
//!
//! Credentials from imagePullSecrets and the node's docker config file
//! (`credentials.rs`) come first; `configs.<host>.auth` is the last to try.
//!
//! Not yet: `rewrite`, client certificates (`cert_file`/`key_file` are
//! refused).

use super::credentials::{Credential, Keyring};
use super::ImageError;
use crate::api::client::{certs, check_roots, SYSTEM_ROOTS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use yaml_rust2::{Yaml, YamlLoader};

/// Where `--registry-config` points by default.
pub const DEFAULT_REGISTRY_CONFIG: &str = "/etc/picolet/registries.yaml";

/// Credentials and TLS settings of one registry host (`configs.<host>`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`, as in a docker config.
    pub auth: Option<String>,
    /// An OAuth2 refresh token, exchanged at the token realm.
    pub identity_token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

impl HostConfig {
    /// `Basic ...` header value, when credentials are configured.
    fn basic(&self) -> Option<String> {
        if let Some(a) = &self.auth {
            return Some(format!("Basic {a}"));
        }
        let (u, p) = (self.username.as_deref()?, self.password.as_deref().unwrap_or(""));
        Some(format!("Basic {}", crate::api::objects::base64_encode(format!("{u}:{p}").as_bytes())))
    }
}

/// A parsed `registries.yaml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registries {
    /// Registry host (or `*`) → endpoint URLs, in order.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Endpoint host[:port] → settings.
    pub configs: BTreeMap<String, HostConfig>,
    /// The file this came from (for error messages), if any.
    pub path: Option<PathBuf>,
    /// `--image-pull-progress-timeout`: a blob download receiving nothing
    /// for this long is given up (zero: never); None: the default.
    pub progress_timeout: Option<Duration>,
}

/// containerd's `image_pull_progress_timeout` default.
pub const DEFAULT_PROGRESS_TIMEOUT: Duration = Duration::from_secs(300);

impl Registries {
    /// Reads `path`; a missing file gives the defaults (every registry over
    /// HTTPS at its own name, anonymous).
    pub fn load(path: &Path) -> Result<Registries, ImageError> {
        match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registries::default()),
            Err(e) => Err(ImageError::io("read registry config", path, e)),
            Ok(text) => {
                let mut r = Registries::parse(&text).map_err(|reason| ImageError::BadConfig { path: path.into(), reason })?;
                r.path = Some(path.to_path_buf());
                Ok(r)
            }
        }
    }

    /// Parses `registries.yaml` text.
    pub fn parse(text: &str) -> Result<Registries, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
        let mut out = Registries::default();
        let root = match docs.into_iter().next() {
            None | Some(Yaml::Null) => return Ok(out),
            Some(Yaml::Hash(h)) => h,
            Some(_) => return Err("not a YAML mapping".into()),
        };
        let key = |k: &str| Yaml::String(k.into());
        let s = |v: &Yaml, field: &str| -> Result<Option<String>, String> {
            match v {
                Yaml::BadValue | Yaml::Null => Ok(None),
                Yaml::String(s) => Ok(Some(s.clone())),
                Yaml::Integer(i) => Ok(Some(i.to_string())),
                _ => Err(format!("{field}: not a string")),
            }
        };
        if let Some(m) = root.get(&key("mirrors")) {
            let Yaml::Hash(m) = m else { return Err("mirrors: not a mapping".into()) };
            for (host, v) in m {
                let host = s(host, "mirrors")?.unwrap_or_default();
                let field = format!("mirrors.{host}.endpoint");
                let eps = match &v[&*"endpoint"] {
                    Yaml::Array(a) => a.iter().map(|e| s(e, &field).map(Option::unwrap_or_default)).collect::<Result<Vec<_>, _>>()?,
                    Yaml::BadValue | Yaml::Null => Vec::new(),
                    _ => return Err(format!("{field}: not a list")),
                };
                for e in &eps {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(format!("{field}: {e:?} must start with http:// or https://"));
                    }
                }
                out.mirrors.insert(host, eps);
            }
        }
        if let Some(c) = root.get(&key("configs")) {
            let Yaml::Hash(c) = c else { return Err("configs: not a mapping".into()) };
            for (host, v) in c {
                let host = s(host, "configs")?.unwrap_or_default();
                let host = host.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_string();
                let f = |sect: &str, k: &str| format!("configs.{host}.{sect}.{k}");
                let auth = &v[&*"auth"];
                let tls = &v[&*"tls"];
                for k in ["cert_file", "key_file"] {
                    if s(&tls[k], &f("tls", k))?.is_some() {
                        return Err(format!("{}: client certificates are not supported yet", f("tls", k)));
                    }
                }
                let insecure = match &tls[&*"insecure_skip_verify"] {
                    Yaml::Boolean(b) => *b,
                    Yaml::BadValue | Yaml::Null => false,
                    _ => return Err(format!("{}: not true or false", f("tls", "insecure_skip_verify"))),
                };
                let hc = HostConfig {
                    username: s(&auth["username"], &f("auth", "username"))?,
                    password: s(&auth["password"], &f("auth", "password"))?,
                    auth: s(&auth["auth"], &f("auth", "auth"))?,
                    identity_token: s(&auth["identitytoken"], &f("auth", "identitytoken"))?,
                    ca_file: s(&tls["ca_file"], &f("tls", "ca_file"))?.map(PathBuf::from),
                    insecure_skip_verify: insecure,
                };
                out.configs.insert(host, hc);
            }
        }
        Ok(out)
    }

    /// The endpoints (`scheme://host[:port][/path]`) to try for registry
    /// `domain`, in order: its mirrors (or those of `*`), then the registry
    /// itself over HTTPS (`registry-1.docker.io` for `docker.io`).
    pub fn endpoints(&self, domain: &str) -> Vec<String> {
        let mut out: Vec<String> = self.mirrors.get(domain).or_else(|| self.mirrors.get("*")).cloned().unwrap_or_default();
        let default = match domain {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            d => format!("https://{d}"),
        };
        let plain_default = format!("http{}", &default[5..]);
        if !out.iter().any(|e| e.trim_end_matches('/') == default || e.trim_end_matches('/') == plain_default) {
            out.push(default);
        }
        out
    }

    /// Whether `configs.<host>.auth` gives credentials for `endpoint`.
    pub fn has_auth(&self, endpoint: &str) -> bool {
        let h = self.host_config(endpoint);
        h.basic().is_some() || h.identity_token.is_some()
    }

    fn host_config(&self, endpoint: &str) -> HostConfig {
        self.configs.get(host_of(endpoint)).cloned().unwrap_or_default()
    }
}

/// `host[:port]` of an endpoint URL.
pub(crate) fn host_of(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// The name credentials are looked up by for `repository` at `endpoint`:
/// the image's own `domain/repository` when the endpoint is the registry
/// itself, else the endpoint's `host[:port]/repository` (a mirror gets the
/// credentials written for it, never those of the registry it mirrors).
pub fn lookup_name(domain: &str, endpoint: &str, repository: &str) -> String {
    let host = host_of(endpoint);
    let own = host == domain || (domain == "docker.io" && host == "registry-1.docker.io");
    format!("{}/{repository}", if own { domain } else { host })
}

/// What to try at `endpoint` for `repository` of registry `domain`, in
/// order: every credential of `keyrings` for it, then (`None`) what
/// `configs.<host>.auth` of `regs` gives; `None` alone (that, or anonymous)
/// when the keyrings have nothing.
pub fn candidates(regs: &Registries, keyrings: &[&Keyring], domain: &str, endpoint: &str, repository: &str) -> Vec<Option<Credential>> {
    let name = lookup_name(domain, endpoint, repository);
    let mut out: Vec<Option<Credential>> = keyrings.iter().flat_map(|k| k.lookup(&name)).map(Some).collect();
    if out.is_empty() || regs.has_auth(endpoint) {
        out.push(None);
    }
    out
}

/// One repository at one endpoint, with the authorization obtained for it.
pub struct Session {
    agent: ureq::Agent,
    /// `https://host/v2/<repository>`
    base: String,
    host: HostConfig,
    repository: String,
    authorization: Option<String>,
    config_path: Option<PathBuf>,
    /// Where the credentials in `host` came from, for messages (never the
    /// credentials themselves); None when there are none.
    creds_from: Option<String>,
    progress_timeout: Option<Duration>,
}

/// Accepted manifest media types, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

pub(crate) type Response = ureq::http::Response<ureq::Body>;

impl Session {
    /// Prepares to talk to `repository` (e.g. `library/busybox`) at `endpoint`.
    pub fn new(regs: &Registries, endpoint: &str, repository: &str) -> Result<Session, ImageError> {
        let host = regs.host_config(endpoint);
        let err = |reason: String| ImageError::Registry { url: endpoint.to_string(), reason };
        let mut tls = TlsConfig::builder();
        if endpoint.starts_with("https://") {
            let mut roots: Vec<Certificate<'static>> = Vec::new();
            if let Ok(pem) = std::fs::read(SYSTEM_ROOTS) {
                roots.extend(certs(&pem, SYSTEM_ROOTS).unwrap_or_default());
            }
            if let Some(ca) = &host.ca_file {
                let what = format!("tls.ca_file {}", ca.display());
                let pem = std::fs::read(ca).map_err(|e| err(format!("{what}: {e}")))?;
                let ca = certs(&pem, &what).map_err(err)?;
                check_roots(&ca).map_err(|e| err(format!("{what}: {e}")))?;
                roots.extend(ca);
            }
            if roots.is_empty() && !host.insecure_skip_verify {
                return Err(err(format!("no trusted roots: {SYSTEM_ROOTS} is missing and no tls.ca_file is configured")));
            }
            tls = tls.root_certs(RootCerts::Specific(Arc::new(roots))).disable_verification(host.insecure_skip_verify);
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .max_idle_connections(2)
            .user_agent(concat!("picolet/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut base = endpoint.trim_end_matches('/').to_string();
        if !base.ends_with("/v2") {
            base.push_str("/v2");
        }
        base.push('/');
        base.push_str(repository);
        let creds_from = (host.basic().is_some() || host.identity_token.is_some())
            .then(|| regs.path.as_ref().map_or("the --registry-config file".to_string(), |p| p.display().to_string()));
        Ok(Session {
            agent,
            base,
            host,
            repository: repository.to_string(),
            authorization: None,
            config_path: regs.path.clone(),
            creds_from,
            progress_timeout: Some(regs.progress_timeout.unwrap_or(DEFAULT_PROGRESS_TIMEOUT)).filter(|t| !t.is_zero()),
        })
    }

    /// How long a blob body may send nothing (None: no limit).
    pub(crate) fn progress_timeout(&self) -> Option<Duration> {
        self.progress_timeout
    }

    /// Answers challenges with `c` instead of `configs.<host>.auth`.
    pub fn use_credential(&mut self, c: &Credential) {
        self.host.username = (!c.username.is_empty()).then(|| c.username.clone());
        self.host.password = Some(c.password.clone());
        self.host.auth = None;
        self.host.identity_token = c.identity_token.clone();
        self.creds_from = Some(c.source.clone());
        self.authorization = None;
    }

    /// The credentials' origin, once they were sent.
    fn sent_creds(&self) -> Option<&str> {
        self.creds_from.as_deref().filter(|_| self.authorization.is_some())
    }

    /// `<endpoint>/v2/<repository>/<path>`
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// `GET <base>/<path>` with `accept`, answering one authentication
    /// challenge if the registry asks. Non-2xx answers are errors naming the
    /// URL and the registry's own message.
    pub(crate) fn get(&mut self, path: &str, accept: &str, streaming: bool) -> Result<Response, ImageError> {
        self.get_from(path, accept, streaming, 0)
    }

    /// `get` asking for the bytes from offset `from` on (`Range: bytes=N-`)
    /// when it is not 0; the answer may be 206 or, from a registry that
    /// ignores ranges, 200 with everything.
    pub(crate) fn get_from(&mut self, path: &str, accept: &str, streaming: bool, from: u64) -> Result<Response, ImageError> {
        let url = format!("{}/{path}", self.base);
        let mut resp = self.send(&url, accept, streaming, from)?;
        if resp.status().as_u16() == 401 {
            let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            drop(resp);
            self.authorization = Some(self.answer(&url, &challenge)?);
            resp = self.send(&url, accept, streaming, from)?;
        }
        check(&url, resp, self.sent_creds())
    }

    fn send(&self, url: &str, accept: &str, streaming: bool, from: u64) -> Result<Response, ImageError> {
        let mut req = self.agent.get(url).header("Accept", accept);
        if from > 0 {
            req = req.header("Range", format!("bytes={from}-"));
        }
        if streaming {
            // A layer may take long; a registry that sends nothing for the
            // progress timeout is stuck (containerd's rule, reset by every read).
            req = req.config().timeout_recv_body(None).timeout_per_read(self.progress_timeout).build();
        } else {
            req = req.config().timeout_recv_body(Some(Duration::from_secs(60))).build();
        }
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        req.call().map_err(|e| self.transport_error(url, e))
    }

    /// A request that got no HTTP answer: unreachable when the network is
    /// the cause, a plain registry error otherwise (TLS, a bad URL).
    fn transport_error(&self, url: &str, e: ureq::Error) -> ImageError {
        let unreachable = matches!(e, ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::HostNotFound | ureq::Error::ConnectionFailed);
        let mut reason = e.to_string();
        if reason.contains("certificate") && self.host.ca_file.is_none() {
            reason.push_str(&format!(" (a private CA goes in configs.\"{}\".tls.ca_file)", host_of(url)));
        }
        match unreachable {
            true => ImageError::Unreachable { url: url.to_string(), reason },
            false => ImageError::Registry { url: url.to_string(), reason },
        }
    }

    /// `HEAD <base>/<path>`: a manifest's digest without its body (Docker
    /// Hub does not count HEADs against its pull limit). Same challenge
    /// answering and errors as `get`.
    pub(crate) fn head(&mut self, path: &str, accept: &str) -> Result<Response, ImageError> {
        let url = format!("{}/{path}", self.base);
        let call = |s: &Session| {
            let mut req = s.agent.head(&url).header("Accept", accept).config().timeout_global(Some(Duration::from_secs(60))).build();
            if let Some(a) = &s.authorization {
                req = req.header("Authorization", a);
            }
            req.call().map_err(|e| s.transport_error(&url, e))
        };
        let mut resp = call(self)?;
        if resp.status().as_u16() == 401 {
            let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            self.authorization = Some(self.answer(&url, &challenge)?);
            resp = call(self)?;
        }
        check(&url, resp, self.sent_creds())
    }

    /// The Authorization header value that answers `challenge`.
    fn answer(&self, url: &str, challenge: &str) -> Result<String, ImageError> {
        let err = |reason: String| ImageError::Registry { url: url.to_string(), reason };
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => self.host.basic().ok_or_else(|| {
                err(format!("401 Unauthorized: the registry wants a username and password; {}", self.where_creds()))
            }),
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| err(format!("bearer challenge without a realm: {challenge:?}")))?;
                let mut q = Vec::new();
                if let Some(s) = params.get("service") {
                    q.push(format!("service={}", crate::api::client::query_escape(s)));
                }
                let scope = params.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                q.push(format!("scope={}", crate::api::client::query_escape(&scope)));
                let token_url = format!("{realm}{}{}", if realm.contains('?') { '&' } else { '?' }, q.join("&"));
                let terr = |reason: String| ImageError::Registry { url: token_url.clone(), reason };
                let resp = if let Some(rt) = &self.host.identity_token {
                    let form = format!(
                        "grant_type=refresh_token&client_id=picolet&refresh_token={}&{}",
                        crate::api::client::query_escape(rt),
                        q.join("&")
                    );
                    self.agent
                        .post(realm)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .send(form.as_bytes())
                } else {
                    let mut req = self.agent.get(&token_url);
                    if let Some(b) = self.host.basic() {
                        req = req.header("Authorization", b);
                    }
                    req.call()
                };
                let resp = resp.map_err(|e| terr(e.to_string()))?;
                let mut resp = check(&token_url, resp, self.creds_from.as_deref())?;
                let body = resp.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(|e| terr(e.to_string()))?;
                let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| terr(format!("bad token response: {e}")))?;
                let token = v["token"].as_str().or(v["access_token"].as_str()).ok_or_else(|| terr("token response without a token".into()))?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(err(format!("401 Unauthorized with an unsupported challenge {challenge:?}"))),
        }
    }

    fn where_creds(&self) -> String {
        let file = self.config_path.as_ref().map_or("the --registry-config file".to_string(), |p| p.display().to_string());
        format!(
            "give the pod an imagePullSecret, put them in the node's credentials file (config.json in the root dir) \
             or configure configs.\"{}\".auth in {file}",
            host_of(&self.base)
        )
    }
}

/// Turns a non-2xx answer into an error with the registry's message
/// (`{"errors":[{"code","message"}]}`), read with a small limit.
fn check(url: &str, mut resp: Response, creds_from: Option<&str>) -> Result<Response, ImageError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.body_mut().with_config().limit(16 << 10).read_to_vec().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let msg = match v["errors"].as_array().and_then(|a| a.first()) {
        Some(e) => format!("{}: {}", e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string(),
    };
    let mut reason = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if !msg.is_empty() {
        reason.push_str(&format!(" ({msg})"));
    }
    if let (401, Some(from)) = (status.as_u16(), creds_from) {
        reason.push_str(&format!(": authentication failed, check the credentials in {from}"));
    }
    match status.as_u16() {
        // A proxy or load balancer whose registry is down.
        502..=504 => Err(ImageError::Unreachable { url: url.to_string(), reason }),
        _ => Err(ImageError::Registry { url: url.to_string(), reason }),
    }
}

/// `Bearer realm="x",service="y",scope="a:b:pull,push"` → ("Bearer", {realm: x, ...}).
pub(crate) fn parse_challenge(h: &str) -> (String, BTreeMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.insert(key, val.trim().to_string());
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::credentials::Format;

    fn ring(doc: &str, format: Format) -> Keyring {
        let mut k = Keyring::default();
        k.add(doc.as_bytes(), format, "test").unwrap();
        k
    }

    #[test]
    fn challenge_parsing() {
        let (s, p) = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#);
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "Registry Realm"));
        let (_, p) = parse_challenge("Bearer realm=http://x/t, service=s");
        assert_eq!((p["realm"].as_str(), p["service"].as_str()), ("http://x/t", "s"));
    }

    #[test]
    fn registries_yaml() {
        let r = Registries::parse(
            "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.local:5000\"]\n  \"10.0.0.5:5000\":\n    endpoint:\n      - http://10.0.0.5:5000\n\
             configs:\n  mirror.local:5000:\n    auth: {username: u, password: p}\n    tls: {ca_file: /ca.pem}\n  \
             https://other.io:\n    auth: {auth: dTpw}\n    tls: {insecure_skip_verify: true}\n",
        )
        .unwrap();
        assert_eq!(r.endpoints("docker.io"), vec!["https://mirror.local:5000", "https://registry-1.docker.io"]);
        assert_eq!(r.endpoints("10.0.0.5:5000"), vec!["http://10.0.0.5:5000"]);
        assert_eq!(r.endpoints("ghcr.io"), vec!["https://ghcr.io"]);
        let m = r.host_config("https://mirror.local:5000/v2");
        assert_eq!(m.basic().unwrap(), "Basic dTpw");
        assert_eq!(m.ca_file, Some(PathBuf::from("/ca.pem")));
        let o = r.host_config("https://other.io");
        assert!(o.insecure_skip_verify && o.basic().unwrap() == "Basic dTpw");
        assert_eq!(Registries::parse("").unwrap(), Registries::default());
        assert!(Registries::parse("mirrors:\n  x:\n    endpoint: [ftp://a]\n").unwrap_err().contains("http://"));
        assert!(Registries::parse("configs:\n  x:\n    tls: {cert_file: /c}\n").unwrap_err().contains("client certificates"));
        assert_eq!(Registries::load(Path::new("/nonexistent/registries.yaml")).unwrap(), Registries::default());
    }

    /// A tls.ca_file with nothing rustls can use as a CA is an error naming
    /// it (ureq would drop its certificates quietly, then every pull would
    /// fail as "unknown issuer"); an X.509 v1 CA is a usable one.
    #[test]
    fn ca_files_rustls_cannot_use_are_named() {
        let d = std::env::temp_dir().join(format!("picolet-registry-ca-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let session = |ca: &Path| {
            let regs = Registries::parse(&format!("configs:\n  reg.local:\n    tls: {{ca_file: {}}}\n", ca.display())).unwrap();
            Session::new(&regs, "https://reg.local", "x/y").map(drop).map_err(|e| e.to_string())
        };
        let junk = d.join("junk.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n").unwrap();
        let e = session(&junk).unwrap_err();
        assert!(e.contains(&format!("tls.ca_file {}: none of its 1 certificate(s) is a usable CA certificate", junk.display())), "{e}");
        let openssl = |args: &[&str]| assert!(std::process::Command::new("openssl").args(args).current_dir(&d).output().expect("openssl is installed").status.success());
        openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.csr", "-subj", "/CN=ca"]);
        openssl(&["x509", "-req", "-in", "ca.csr", "-key", "ca.key", "-days", "1", "-out", "v1.pem"]);
        session(&d.join("v1.pem")).unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn candidates_then_registries_yaml() {
        let k = ring(r#"{"auths": {"r.io": {"username": "a", "password": "p"}, "r.io/x": {"username": "b", "password": "p"}}}"#, Format::ConfigJson);
        let none = Registries::default();
        let names = |c: Vec<Option<Credential>>| c.into_iter().map(|c| c.map(|c| c.username)).collect::<Vec<_>>();
        assert_eq!(names(candidates(&none, &[&k], "r.io", "https://r.io", "x/y")), [Some("b".into()), Some("a".into())], "no anonymous try");
        assert_eq!(names(candidates(&none, &[&k], "q.io", "https://q.io", "x/y")), [None]);
        let yaml = Registries::parse("configs:\n  r.io:\n    auth: {username: c, password: p}\n").unwrap();
        assert_eq!(names(candidates(&yaml, &[&k], "r.io", "https://r.io", "z")), [Some("a".into()), None], "registries.yaml last");
    }

    #[test]
    fn mirrors_get_their_own_credentials() {
        assert_eq!(lookup_name("docker.io", "https://registry-1.docker.io", "library/x"), "docker.io/library/x");
        assert_eq!(lookup_name("r.io:5000", "http://r.io:5000/", "a/b"), "r.io:5000/a/b");
        assert_eq!(lookup_name("docker.io", "https://mirror.local:5000/v2", "library/x"), "mirror.local:5000/library/x");
    }
}
