//! The pure half of an HTTP probe: the request picolet writes, reading the
//! status line and Location header, and upstream's redirect rule (follow a
//! redirect to the same host name, at most 10; a redirect elsewhere ends
//! the probe as a success with a warning). No I/O here.

/// upstream's probe user agent for the Kubernetes version picolet follows.
pub const USER_AGENT: &str = "kube-probe/1.34";

/// Headers are read up to this size; a longer head is a failure.
pub const MAX_HEAD: usize = 16 * 1024;

/// An HTTP/1.1 GET with upstream's default headers; a `Host` or
/// `User-Agent` in `headers` replaces the default one.
pub fn request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let mut r = format!("GET {path} HTTP/1.1\r\n");
    if !has("Host") {
        let h = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        r += &format!("Host: {h}:{port}\r\n");
    }
    if !has("User-Agent") {
        r += &format!("User-Agent: {USER_AGENT}\r\n");
    }
    if !has("Accept") {
        r += "Accept: */*\r\n";
    }
    for (k, v) in headers {
        r += &format!("{k}: {v}\r\n");
    }
    r += "Connection: close\r\n\r\n";
    r
}

/// The status code and Location header once the head is complete; `None`
/// while more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<(u16, Option<String>)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Err("response head too long".into()) } else { Ok(None) };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !proto.starts_with("HTTP/") {
        return Err(format!("malformed HTTP response {status_line:?}"));
    }
    let code: u16 = code.parse().map_err(|_| format!("malformed HTTP status line {status_line:?}"))?;
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    Ok(Some((code, location)))
}

/// Where a redirect leads.
#[derive(Debug, PartialEq)]
pub enum Redirect {
    /// Same host name: GET this port and path next.
    Follow { port: u16, path: String },
    /// Another host: not followed; the probe succeeds with a warning.
    Elsewhere(String),
    Invalid(String),
}

/// Applies a `Location` against the current host and port.
pub fn redirect(location: &str, host: &str, port: u16) -> Redirect {
    if location.starts_with('/') && !location.starts_with("//") {
        return Redirect::Follow { port, path: location.to_string() };
    }
    let Some(rest) = location.strip_prefix("http://").or_else(|| location.strip_prefix("https://")) else {
        if location.contains("://") {
            return Redirect::Invalid(location.to_string());
        }
        // A relative path without a slash: relative to the root, good enough for probes.
        return Redirect::Follow { port, path: format!("/{location}") };
    };
    let default_port = if location.starts_with("https") { 443 } else { 80 };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (h, p) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => match p.parse() {
            Ok(p) => (h, p),
            Err(_) => return Redirect::Invalid(location.to_string()),
        },
        _ => (authority, default_port),
    };
    if h.trim_matches(['[', ']']) == host {
        Redirect::Follow { port: p, path }
    } else {
        Redirect::Elsewhere(location.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_upstream_headers() {
        let r = request("127.0.0.1", 8080, "/healthz", &[("X-Custom".into(), "1".into())]);
        assert_eq!(
            r,
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nX-Custom: 1\r\nConnection: close\r\n\r\n"
        );
        let r = request("127.0.0.1", 80, "x", &[("Host".into(), "example.com".into())]);
        assert!(r.starts_with("GET /x HTTP/1.1\r\nUser-Agent"), "{r}");
        assert!(r.contains("Host: example.com\r\n"));
    }

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"), Ok(None));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n\r\nbody"), Ok(Some((200, None))));
        assert_eq!(parse_head(b"HTTP/1.0 302 Found\r\nlocation: /b\r\n\r\n"), Ok(Some((302, Some("/b".into())))));
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn redirects() {
        assert_eq!(redirect("/b", "127.0.0.1", 80), Redirect::Follow { port: 80, path: "/b".into() });
        assert_eq!(redirect("http://127.0.0.1:81/c", "127.0.0.1", 80), Redirect::Follow { port: 81, path: "/c".into() });
        assert_eq!(redirect("http://127.0.0.1", "127.0.0.1", 8080), Redirect::Follow { port: 80, path: "/".into() });
        assert_eq!(redirect("http://example.com/", "127.0.0.1", 80), Redirect::Elsewhere("http://example.com/".into()));
        assert_eq!(redirect("ftp://x/", "127.0.0.1", 80), Redirect::Invalid("ftp://x/".into()));
    }
}
