//! Registry credentials in Docker's two formats, and which of them apply to
//! an image, as the upstream kubelet's keyring decides:
//!
//! - `config.json`: `{"auths": {LOCATION: ENTRY}}`; what `docker login`
//!   writes and what `kubernetes.io/dockerconfigjson` Secrets hold under
//!   `.dockerconfigjson`;
//! - the legacy `.dockercfg`: `{LOCATION: ENTRY}`, in
//!   `kubernetes.io/dockercfg` Secrets under `.dockercfg`.
//!
//! ENTRY is `{"auth": base64(user:pass)}` (which wins), `{"username",
//! "password"}` or `{"identitytoken"}` (an OAuth2 refresh token).
//!
//! LOCATION may be a URL: the scheme goes, `/v1/` and `/v2/` count as no
//! path (`https://index.docker.io/v1/` is the host `index.docker.io`). A
//! location matches an image `host[:port]/path` when the port is the same,
//! the host has as many labels and each label matches (`*` and `?` globs:
//! `*.example.com` covers `a.example.com`, not `a.b.example.com`), and the
//! location's path, if any, is a whole-segment prefix of the image's path.
//! Every match is returned, most specific location first (upstream's
//! reverse-sorted index), credentials of one location in file order; a
//! Docker Hub image with no match falls back to `index.docker.io`.
//!
//! A `Credential` never prints its secret parts: `Debug` shows where it came
//! from only, and error messages name the location and field, not values.

use super::ImageError;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// One username/password (or identity token) for a registry location.
#[derive(Clone, PartialEq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    pub identity_token: Option<String>,
    /// Where it came from, for messages: `secret NS/NAME` or a file path.
    pub source: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential(from {})", self.source)
    }
}

/// Credentials by location, in lookup order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keyring {
    /// (key, credentials), keys unique and reverse-sorted.
    index: Vec<(String, Vec<Credential>)>,
}

/// The formats a docker config comes in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// `config.json` / `.dockerconfigjson`: entries under `auths`.
    ConfigJson,
    /// `.dockercfg`: entries at the top level.
    Dockercfg,
}

impl Keyring {
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Adds the entries of a docker config document; `source` names it in
    /// errors and on each credential.
    pub fn add(&mut self, bytes: &[u8], format: Format, source: &str) -> Result<(), ImageError> {
        let err = |reason: String| ImageError::BadCredentials { source: source.to_string(), reason };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| err(format!("bad JSON: {e}")))?;
        let (entries, prefix) = match format {
            Format::ConfigJson => {
                let Value::Object(top) = &v else { return Err(err("not a JSON object".into())) };
                match top.get("auths") {
                    None | Some(Value::Null) => return Ok(()),
                    Some(Value::Object(a)) => (a, "auths."),
                    Some(_) => return Err(err("auths: not an object".into())),
                }
            }
            Format::Dockercfg => match &v {
                Value::Object(a) => (a, ""),
                _ => return Err(err("not a JSON object".into())),
            },
        };
        for (loc, entry) in entries {
            let field = |f: &str| format!("{prefix}{loc:?}{}{f}", if f.is_empty() { "" } else { "." });
            let Value::Object(e) = entry else { return Err(err(format!("{}: not an object", field("")))) };
            let text = |k: &str| -> Result<String, ImageError> {
                match e.get(k) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(err(format!("{}: not a string", field(k)))),
                }
            };
            let (mut username, mut password) = (text("username")?, text("password")?);
            let auth = text("auth")?;
            if !auth.is_empty() {
                let raw = crate::api::objects::base64_decode(auth.trim())
                    .ok_or_else(|| err(format!("{}: not base64", field("auth"))))?;
                let plain = String::from_utf8(raw).map_err(|_| err(format!("{}: not UTF-8 once decoded", field("auth"))))?;
                let (u, p) = plain
                    .split_once(':')
                    .ok_or_else(|| err(format!("{}: must be base64 of username:password (no colon)", field("auth"))))?;
                (username, password) = (u.to_string(), p.to_string());
            }
            let token = text("identitytoken")?;
            if username.is_empty() && password.is_empty() && token.is_empty() {
                // `docker login` with a credential helper leaves `{}`: nothing to use.
                continue;
            }
            let Some(key) = key_of(loc) else { return Err(err(format!("{}: not a registry location", field("")))) };
            let cred = Credential { username, password, identity_token: (!token.is_empty()).then_some(token), source: source.to_string() };
            match self.index.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(cred),
                None => self.index.push((key, vec![cred])),
            }
        }
        self.index.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(())
    }

    /// The credentials for image repository `image` (`host[:port]/path`, as
    /// `reference::Reference::repository` gives it), to try in order.
    pub fn lookup(&self, image: &str) -> Vec<Credential> {
        let mut out: Vec<Credential> = Vec::new();
        for (key, creds) in &self.index {
            if matches(key, image) {
                out.extend(creds.iter().cloned());
            }
        }
        if out.is_empty() && is_docker_hub(image) {
            if let Some((_, creds)) = self.index.iter().find(|(k, _)| k == "index.docker.io") {
                out.extend(creds.iter().cloned());
            }
        }
        out
    }

    /// A digest of everything in it, to tell keyrings apart without keeping
    /// or showing their contents.
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (k, creds) in &self.index {
            for c in creds {
                for part in [k.as_str(), &c.username, &c.password, c.identity_token.as_deref().unwrap_or("")] {
                    ctx.update(&(part.len() as u64).to_le_bytes());
                    ctx.update(part.as_bytes());
                }
            }
        }
        super::store::hex(ctx.finish().as_ref())
    }
}

/// `host[/path]` of a location: no scheme, `/v1/` and `/v2/` dropped, no
/// trailing slash, host in lower case. None for an empty host.
fn key_of(loc: &str) -> Option<String> {
    let rest = loc.strip_prefix("https://").or_else(|| loc.strip_prefix("http://")).unwrap_or(loc);
    let (host, mut path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.starts_with("/v1/") || path.starts_with("/v2/") || path == "/v1" || path == "/v2" {
        path = &path[3..];
    }
    let path = path.trim_end_matches('/');
    if host.is_empty() {
        return None;
    }
    Some(format!("{}{path}", host.to_ascii_lowercase()))
}

/// Splits `host[:port][/path]` into host labels, port and path (without
/// the leading slash).
fn split(s: &str) -> (Vec<&str>, &str, &str) {
    let (hostport, path) = s.split_once('/').unwrap_or((s, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (hostport, ""),
    };
    (host.split('.').collect(), port, path)
}

fn matches(key: &str, image: &str) -> bool {
    let image = image.to_ascii_lowercase();
    let (klabels, kport, kpath) = split(key);
    let (ilabels, iport, ipath) = split(&image);
    if kport != iport || klabels.len() != ilabels.len() {
        return false;
    }
    // Whole segments: credentials for host/team are not sent for host/teamx.
    let under = kpath.is_empty() || ipath == kpath || ipath.strip_prefix(kpath).is_some_and(|r| r.starts_with('/'));
    under && klabels.iter().zip(&ilabels).all(|(g, l)| glob(g.as_bytes(), l.as_bytes()))
}

/// `*` (any run of characters) and `?` (one character) within one label.
/// A loop that goes back only to the last `*` (what it matched grows by one
/// each time): at most pattern × label steps and no recursion, as the
/// pattern comes from a pull Secret.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Just after the last `*` seen, and where in `s` its match ends.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = s.get(i) {
        match pat.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, i));
            }
            Some(&q) if q == b'?' || q == c => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((after, end)) => {
                    star = Some((after, end + 1));
                    (p, i) = (after, end + 1);
                }
                None => return false,
            },
        }
    }
    pat.iter().skip(p).all(|&q| q == b'*')
}

/// Whether `image` is on Docker Hub: `docker.io/...`, `index.docker.io/...`,
/// or a first component that is no host name.
fn is_docker_hub(image: &str) -> bool {
    match image.split_once('/') {
        None => !image.is_empty(),
        Some((first, _)) => first == "docker.io" || first == "index.docker.io" || !(first.is_empty() || first.contains(['.', ':'])),
    }
}

/// What a Secret is to a pull: its type and data decide the format.
/// `None` when the Secret holds no docker config (upstream ignores it).
pub fn secret_format(secret_type: &str, data: &std::collections::BTreeMap<String, Vec<u8>>) -> Option<(Format, &'static str)> {
    let (format, key) = match secret_type {
        "kubernetes.io/dockerconfigjson" => (Format::ConfigJson, ".dockerconfigjson"),
        "kubernetes.io/dockercfg" => (Format::Dockercfg, ".dockercfg"),
        _ => return None,
    };
    data.get(key).filter(|v| !v.is_empty()).map(|_| (format, key))
}

/// Where the node's credentials file is looked for, in order, as the
/// upstream kubelet looks for its legacy docker config: `config.json` in
/// the root dir, `$HOME/.docker` and `/.docker`, then `.dockercfg` in the
/// root dir, `$HOME` and `/`. (Upstream also tries the working directory;
/// a daemon's working directory is no place for credentials, so not here.)
pub fn node_paths(root: &Path, home: Option<&Path>) -> Vec<(PathBuf, Format)> {
    let mut json = vec![root.join("config.json")];
    let mut cfg = vec![root.join(".dockercfg")];
    if let Some(h) = home.filter(|h| !h.as_os_str().is_empty()) {
        json.push(h.join(".docker/config.json"));
        cfg.push(h.join(".dockercfg"));
    }
    json.push(PathBuf::from("/.docker/config.json"));
    cfg.push(PathBuf::from("/.dockercfg"));
    let mut out: Vec<(PathBuf, Format)> = json.into_iter().map(|p| (p, Format::ConfigJson)).collect();
    out.extend(cfg.into_iter().map(|p| (p, Format::Dockercfg)));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The node's credentials: the first file of `node_paths` that exists.
/// Unlike upstream, which skips a file it cannot parse and tries the next,
/// a malformed file is an error naming it: credentials silently ignored
/// would only show up as a puzzling 401.
pub fn load_node(root: &Path) -> Result<Keyring, ImageError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut ring = Keyring::default();
    for (path, format) in node_paths(root, home.as_deref()) {
        match std::fs::read(&path) {
            Ok(bytes) => {
                ring.add(&bytes, format, &path.display().to_string())?;
                return Ok(ring);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::errno::Errno::ENOTDIR as i32) => {}
            Err(e) => return Err(ImageError::io("read credentials file", path, e)),
        }
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::objects::base64_encode;

    fn ring(doc: &str, format: Format) -> Keyring {
        let mut k = Keyring::default();
        k.add(doc.as_bytes(), format, "test").unwrap();
        k
    }

    fn users(k: &Keyring, image: &str) -> Vec<String> {
        k.lookup(image).into_iter().map(|c| c.username).collect()
    }

    fn bad(doc: &str, format: Format) -> String {
        let mut k = Keyring::default();
        let e = k.add(doc.as_bytes(), format, "secret web/regcred").unwrap_err().to_string();
        assert!(e.contains("secret web/regcred"), "{e}");
        e
    }

    #[test]
    fn entries_parse_in_every_form() {
        let auth = base64_encode(b"pi:s3c:ret");
        let k = ring(
            &format!(
                r#"{{"auths": {{"a.io": {{"auth": "{auth}", "username": "ignored"}},
                                "b.io": {{"username": "u", "password": "p"}},
                                "c.io": {{"identitytoken": "rt"}},
                                "d.io": {{}}, "e.io": {{"email": "x@y"}}}}, "credsStore": "desktop"}}"#
            ),
            Format::ConfigJson,
        );
        let a = &k.lookup("a.io/x")[0];
        assert_eq!((a.username.as_str(), a.password.as_str()), ("pi", "s3c:ret"), "the password may hold colons");
        assert_eq!(users(&k, "b.io/x"), ["u"]);
        assert_eq!(k.lookup("c.io/x")[0].identity_token.as_deref(), Some("rt"));
        assert!(k.lookup("d.io/x").is_empty() && k.lookup("e.io/x").is_empty(), "entries without credentials are skipped");
        assert!(ring(r#"{"credHelpers": {"x.io": "ecr"}}"#, Format::ConfigJson).is_empty());
        let legacy = ring(&format!(r#"{{"https://index.docker.io/v1/": {{"auth": "{auth}", "email": "e"}}}}"#), Format::Dockercfg);
        assert_eq!(users(&legacy, "docker.io/library/busybox"), ["pi"]);
        assert_eq!(format!("{a:?}"), "Credential(from test)", "Debug shows no secret");
    }

    #[test]
    fn malformed_content_says_where_and_why() {
        assert!(bad("{", Format::ConfigJson).contains("bad JSON"));
        assert!(bad("[]", Format::ConfigJson).contains("not a JSON object"));
        assert!(bad(r#"{"auths": []}"#, Format::ConfigJson).contains("auths: not an object"));
        let e = bad(r#"{"auths": {"r.io": {"auth": "!!"}}}"#, Format::ConfigJson);
        assert!(e.contains(r#"auths."r.io".auth: not base64"#), "{e}");
        let e = bad(&format!(r#"{{"r.io": {{"auth": "{}"}}}}"#, base64_encode(b"nocolon")), Format::Dockercfg);
        assert!(e.contains(r#""r.io".auth"#) && e.contains("no colon"), "{e}");
        assert!(!e.contains("nocolon"), "the value is not shown: {e}");
        assert!(bad(r#"{"auths": {"r.io": {"password": 5}}}"#, Format::ConfigJson).contains("password: not a string"));
        assert!(bad(r#"{"auths": {"r.io": "x"}}"#, Format::ConfigJson).contains("not an object"));
    }

    #[test]
    fn locations_become_keys() {
        assert_eq!(key_of("https://index.docker.io/v1/").unwrap(), "index.docker.io");
        assert_eq!(key_of("http://r.io:5000/v2/").unwrap(), "r.io:5000");
        assert_eq!(key_of("R.io/team/").unwrap(), "r.io/team");
        assert_eq!(key_of("r.io/v1/team").unwrap(), "r.io/team");
        assert_eq!(key_of("https://"), None);
    }

    #[test]
    fn matching_follows_the_kubelet_keyring() {
        let k = ring(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"username": "hub", "password": "p"},
                "quay.io": {"username": "quay", "password": "p"},
                "quay.io/coreos": {"username": "coreos", "password": "p"},
                "*.example.com": {"username": "glob", "password": "p"},
                "127.0.0.1:5000": {"username": "local", "password": "p"},
                "127.0.0.1:5000/private/app": {"username": "app", "password": "p"}}}"#,
            Format::ConfigJson,
        );
        // Most specific first, then every other match.
        assert_eq!(users(&k, "quay.io/coreos/etcd"), ["coreos", "quay"]);
        assert_eq!(users(&k, "quay.io/coreosx/etcd"), ["quay"], "paths match whole segments");
        assert_eq!(users(&k, "quay.io/other"), ["quay"]);
        // Docker Hub through index.docker.io.
        assert_eq!(users(&k, "docker.io/library/busybox"), ["hub"]);
        // One label per `*`; ports must be equal.
        assert_eq!(users(&k, "a.example.com/x"), ["glob"]);
        assert!(users(&k, "a.b.example.com/x").is_empty());
        assert!(users(&k, "example.com/x").is_empty());
        assert_eq!(users(&k, "127.0.0.1:5000/private/app"), ["app", "local"]);
        assert_eq!(users(&k, "127.0.0.1:5000/other"), ["local"]);
        assert!(users(&k, "127.0.0.1:5001/other").is_empty());
        assert!(users(&k, "127.0.0.1/other").is_empty());
        assert!(users(&k, "ghcr.io/x").is_empty());
        // A key "docker.io" matches Docker Hub images directly.
        let d = ring(r#"{"auths": {"docker.io": {"username": "d", "password": "p"}}}"#, Format::ConfigJson);
        assert_eq!(users(&d, "docker.io/library/busybox"), ["d"]);
    }

    /// A pull Secret's keys are outside input: a long or star-heavy label
    /// must neither overflow the stack nor take exponential time.
    #[test]
    fn hostile_glob_labels_stay_cheap() {
        assert!(glob(b"a*?c", b"abbc") && glob(b"*", b"") && glob(b"**x*", b"ax") && glob(b"?", b"q"));
        assert!(!glob(b"a*d", b"abc") && !glob(b"?", b"") && !glob(b"", b"a") && !glob(b"*b", b"aaa"));
        let deep = "*".repeat(1 << 20);
        let k = ring(&format!(r#"{{"auths": {{"{deep}x.io": {{"username": "deep", "password": "p"}}}}}}"#), Format::ConfigJson);
        assert_eq!(users(&k, "ax.io/app"), ["deep"]);
        let label = "a".repeat(63);
        assert!(!glob(format!("{}b", "*a".repeat(30)).as_bytes(), label.as_bytes()));
        assert!(glob(format!("{}a", "*a".repeat(30)).as_bytes(), label.as_bytes()));
    }

    #[test]
    fn docker_hub_names() {
        assert!(is_docker_hub("docker.io/library/busybox") && is_docker_hub("index.docker.io/x") && is_docker_hub("library/x"));
        assert!(!is_docker_hub("quay.io/x") && !is_docker_hub("localhost:5000/x"));
    }

    #[test]
    fn fingerprints_differ_with_content() {
        let a = ring(r#"{"auths": {"r.io": {"username": "u", "password": "a"}}}"#, Format::ConfigJson);
        let b = ring(r#"{"auths": {"r.io": {"username": "u", "password": "b"}}}"#, Format::ConfigJson);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn secret_types() {
        let mut data = std::collections::BTreeMap::new();
        data.insert(".dockerconfigjson".to_string(), b"{}".to_vec());
        assert_eq!(secret_format("kubernetes.io/dockerconfigjson", &data), Some((Format::ConfigJson, ".dockerconfigjson")));
        assert_eq!(secret_format("Opaque", &data), None, "upstream reads only the two docker types");
        assert_eq!(secret_format("kubernetes.io/dockercfg", &data), None);
        data.insert(".dockercfg".to_string(), Vec::new());
        assert_eq!(secret_format("kubernetes.io/dockercfg", &data), None, "empty data is no config");
    }

    #[test]
    fn node_file_search_order() {
        let p: Vec<String> = node_paths(Path::new("/var/lib/picolet"), Some(Path::new("/root")))
            .into_iter()
            .map(|(p, f)| format!("{} {f:?}", p.display()))
            .collect();
        assert_eq!(
            p,
            [
                "/var/lib/picolet/config.json ConfigJson",
                "/root/.docker/config.json ConfigJson",
                "/.docker/config.json ConfigJson",
                "/var/lib/picolet/.dockercfg Dockercfg",
                "/root/.dockercfg Dockercfg",
                "/.dockercfg Dockercfg",
            ]
        );
        let d = std::env::temp_dir().join(format!("picolet-creds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), r#"{"auths": {"r.io": {"auth": "x"}}}"#).unwrap();
        let e = load_node(&d).unwrap_err().to_string();
        assert!(e.contains(&d.join("config.json").display().to_string()) && e.contains("not base64"), "{e}");
        std::fs::write(d.join("config.json"), r#"{"auths": {"r.io": {"username": "u", "password": "p"}}}"#).unwrap();
        assert_eq!(load_node(&d).unwrap().lookup("r.io/x")[0].source, d.join("config.json").display().to_string());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
