//! The kubelet server on `:10250`: HTTPS, every request authenticated and
//! authorized (see [`super::auth`]), one thread per connection.
//!
//! This file owns the connection (TLS handshake, request head, routing); each
//! endpoint lives in its own module and gets the [`Context`], the parsed
//! [`Request`] and the [`Conn`] to answer on (plain responses, chunked
//! streams or a protocol upgrade).

use crate::api;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What the endpoints may look at. Cheap to share: one per server.
pub struct Context {
    pub node_name: String,
    /// picolet's state directory: `containers/<id>/record.json`, `pods/<uid>/ns/net`...
    pub root: PathBuf,
    /// Where CRI logs live: `<logs_dir>/<ns>_<pod>_<uid>/<container>/<restart>.log`.
    pub logs_dir: PathBuf,
    /// The OCI runtime binary (runc) and its `--root`.
    pub runtime_path: PathBuf,
    pub runtime_root: PathBuf,
    /// The pods as `/pods` shows them (spec + status), refreshed by the pod loop.
    pub pods: Arc<Mutex<Vec<api::Pod>>>,
    /// `/configz`: the effective configuration as KubeletConfiguration JSON.
    pub configz: serde_json::Value,
    /// Counters and histograms for `/metrics`, shared with the pod loop.
    pub metrics: Arc<super::metrics::Metrics>,
}

/// One request's head, authenticated.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The path without the query, as sent (not percent-decoded).
    pub path: String,
    /// Decoded query parameters in order; a name may repeat (`command=a&command=b`).
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// Who made it (after authentication).
    pub user: super::auth::User,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`.
    pub fn query_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter as Go's strconv.ParseBool reads it ("1", "t", "true"...).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.query(name), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
    }

    /// Header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The client's connection: TLS over TCP. Read and Write go through TLS; the
/// fields are public for endpoints that multiplex (SPDY) and need to poll the
/// socket themselves: plaintext already decrypted sits in `tls.reader()`.
pub struct Conn {
    pub tls: rustls::ServerConnection,
    pub sock: TcpStream,
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        rustls::Stream::new(&mut self.tls, &mut self.sock).read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        rustls::Stream::new(&mut self.tls, &mut self.sock).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        rustls::Stream::new(&mut self.tls, &mut self.sock).flush()
    }
}

impl Conn {
    /// A whole response with a body and `Connection: close`.
    pub fn respond(&mut self, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            reason(status),
            body.len()
        );
        self.write_all(head.as_bytes())?;
        self.write_all(body)?;
        self.flush()
    }

    /// 200 with `value` as JSON.
    pub fn json(&mut self, value: &impl serde::Serialize) -> io::Result<()> {
        match serde_json::to_vec(value) {
            Ok(body) => self.respond(200, "application/json", &body),
            Err(e) => self.text(500, &format!("encoding response: {e}\n")),
        }
    }

    /// A plain-text response.
    pub fn text(&mut self, status: u16, body: &str) -> io::Result<()> {
        self.respond(status, "text/plain; charset=utf-8", body.as_bytes())
    }

    /// Starts a streamed 200 response; write the body through the returned
    /// writer (each write is one chunk) and call [`Chunked::finish`].
    pub fn chunked(&mut self, content_type: &str) -> io::Result<Chunked<'_>> {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        self.write_all(head.as_bytes())?;
        self.flush()?;
        Ok(Chunked { conn: self })
    }
}

/// A chunked response body in progress.
pub struct Chunked<'a> {
    pub conn: &'a mut Conn,
}

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let size = format!("{:x}\r\n", buf.len());
        self.conn.write_all(size.as_bytes())?;
        self.conn.write_all(buf)?;
        self.conn.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}

impl Chunked<'_> {
    /// The terminating chunk.
    pub fn finish(self) -> io::Result<()> {
        self.conn.write_all(b"0\r\n\r\n")?;
        self.conn.flush()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A container a request names, found among the pods picolet runs.
#[derive(Debug, Clone)]
pub struct Target {
    pub pod: api::Pod,
    /// The container's name as the request gave it.
    pub container: String,
    /// The running (or last) attempt's runc id, "" when it never started.
    pub container_id: String,
    pub restart_count: u32,
    /// `<logs_dir>/<ns>_<pod>_<uid>/<container>`.
    pub log_dir: PathBuf,
}

/// Why a request's pod or container could not be used: (HTTP status, message).
pub type Refusal = (u16, String);

/// Finds `container` of pod `ns/name` (and `uid`, when the path carries one).
/// An empty container name picks the pod's only container, as upstream does.
pub fn find_container(ctx: &Context, ns: &str, name: &str, uid: Option<&str>, container: &str) -> Result<Target, Refusal> {
    let pod = find_pod(ctx, ns, name, uid)?;
    let all = pod.spec.init_containers.iter().chain(pod.spec.containers.iter());
    let container = if container.is_empty() {
        match pod.spec.containers.as_slice() {
            [only] => only.name.clone(),
            _ => return Err((400, format!("a container name must be specified for pod {name}"))),
        }
    } else if all.clone().any(|c| c.name == container) {
        container.to_string()
    } else {
        return Err((404, format!("container {container} is not valid for pod {name}")));
    };
    let status = pod.status.as_ref().and_then(|s| {
        s.init_container_statuses.iter().chain(s.container_statuses.iter()).find(|c| c.name == container).cloned()
    });
    let (container_id, restart_count) = match &status {
        Some(s) => (s.container_id.rsplit("://").next().unwrap_or("").to_string(), s.restart_count.max(0) as u32),
        None => (String::new(), 0),
    };
    let log_dir = ctx.logs_dir.join(format!("{ns}_{name}_{}", pod.metadata.uid)).join(&container);
    Ok(Target { pod, container, container_id, restart_count, log_dir })
}

/// Pod `ns/name` (with `uid` when given).
pub fn find_pod(ctx: &Context, ns: &str, name: &str, uid: Option<&str>) -> Result<api::Pod, Refusal> {
    let pods = ctx.pods.lock().unwrap_or_else(|p| p.into_inner());
    pods.iter()
        .find(|p| p.metadata.namespace == ns && p.metadata.name == name && uid.map_or(true, |u| p.metadata.uid == u))
        .cloned()
        .ok_or_else(|| (404, format!("pod {ns}/{name} not found")))
}
