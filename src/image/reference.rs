//! Image references, normalised the way Docker does ("busybox" →
//! "docker.io/library/busybox:latest"). This only parses and rewrites names;
//! it never looks anything up.

use super::ImageError;

/// A reference split into its parts; `domain` and `path` are already normalised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// `domain/path`, without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

/// Normalises a reference: adds `docker.io`, `library/` and `:latest` where
/// Docker would. A digest is kept and suppresses the default tag; a tag and a
/// digest together are both kept.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    let r = parse(reference)?;
    let mut out = r.repository();
    match (&r.tag, &r.digest) {
        (None, None) => out.push_str(":latest"),
        (tag, digest) => {
            if let Some(t) = tag {
                out.push(':');
                out.push_str(t);
            }
            if let Some(d) = digest {
                out.push('@');
                out.push_str(d);
            }
        }
    }
    Ok(out)
}


pub(crate) fn parse(reference: &str) -> Result<Reference, ImageError> {
    let err = |reason: &str| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    if reference.is_empty() {
        return Err(err("empty"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((name, d)) => (name, Some(parse_digest(d).map_err(&err)?)),
        None => (reference, None),
    };
    // A tag is whatever follows the last ':' after the last '/' (a ':' before
    // the first '/' may be a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let i = last_slash + i;
            (&rest[..i], Some(&rest[i + 1..]))
        }
        None => (rest, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(err("bad tag"));
        }
    }
    if name.is_empty() {
        return Err(err("empty name"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            if !valid_domain(first) {
                return Err(err("bad registry host"));
            }
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" { "docker.io".to_string() } else { domain };
    if path.split('/').any(|c| !valid_component(c)) {
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        return Err(err("bad repository name"));
    }
    let path = if domain == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path };
    if domain.len() + 1 + path.len() > 255 {
        return Err(err("name longer than 255 characters"));
    }
    Ok(Reference { domain, path, tag: tag.map(str::to_string), digest })
}

fn parse_digest(d: &str) -> Result<String, &'static str> {
    let hex = d.strip_prefix("sha256:").ok_or("digest must be sha256:<64 hex>")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("digest must be sha256:<64 hex>");
    }
    Ok(d.to_string())
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalisation_table() {
        let cases: Vec<(String, String)> = vec![
            ("busybox".into(), "docker.io/library/busybox:latest".into()),
            ("busybox:1.36".into(), "docker.io/library/busybox:1.36".into()),
            ("library/busybox".into(), "docker.io/library/busybox:latest".into()),
            ("docker.io/busybox".into(), "docker.io/library/busybox:latest".into()),
            ("index.docker.io/library/busybox:x".into(), "docker.io/library/busybox:x".into()),
            ("foo/bar:1".into(), "docker.io/foo/bar:1".into()),
            ("localhost/x".into(), "localhost/x:latest".into()),
            ("localhost:5000/x".into(), "localhost:5000/x:latest".into()),
            ("localhost:5000/a/b:v2".into(), "localhost:5000/a/b:v2".into()),
            ("registry.k8s.io/pause:3.9".into(), "registry.k8s.io/pause:3.9".into()),
            (format!("ghcr.io/a/b@{D}"), format!("ghcr.io/a/b@{D}")),
            (format!("busybox@{D}"), format!("docker.io/library/busybox@{D}")),
            (format!("busybox:1@{D}"), format!("docker.io/library/busybox:1@{D}")),
            ("a__b/c-d.e_f:Tag_1.0-x".into(), "docker.io/a__b/c-d.e_f:Tag_1.0-x".into()),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(&input).unwrap(), want, "input {input}");
        }
    }

    #[test]
    fn invalid_references() {
        let bad = [
            "",
            "BusyBox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "localhost:port/x",
            "busybox:tag with space",
            ":latest",
        ];
        for b in bad {
            let e = normalize(b).expect_err(b);
            assert!(matches!(e, ImageError::InvalidReference { .. }), "{b}: {e}");
            assert!(e.to_string().contains("invalid image reference"), "{e}");
        }
        assert!(normalize("BusyBox").unwrap_err().to_string().contains("lowercase"));
        assert!(normalize("busybox@sha256:abc").unwrap_err().to_string().contains("digest"));
    }

    /// The tag and digest as `parse` splits them (a registry port is not a
    /// tag), and the pull policy's default agrees: `Always` exactly for tag
    /// `latest` or neither tag nor digest.
    #[test]
    fn latest_or_no_tag() {
        let some = |s: &str| Some(s.to_string());
        for (reference, tag, digest) in [
            ("busybox".to_string(), None, None),
            ("busybox:latest".into(), some("latest"), None),
            ("localhost:5000/x".into(), None, None),
            (format!("busybox:latest@{D}"), some("latest"), some(D)),
            ("busybox:1.36".into(), some("1.36"), None),
            ("localhost:5000/x:v1".into(), some("v1"), None),
            (format!("busybox@{D}"), None, some(D)),
        ] {
            let r = parse(&reference).unwrap();
            assert_eq!((&r.tag, &r.digest), (&tag, &digest), "{reference}");
            let floats = tag.as_deref() == Some("latest") || (tag.is_none() && digest.is_none());
            let want = if floats { "Always" } else { "IfNotPresent" };
            assert_eq!(crate::api::defaults::pull_policy_for(&reference), want, "{reference}");
        }
    }
}
