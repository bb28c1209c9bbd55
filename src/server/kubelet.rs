//! The kubelet server on `:10250`: HTTPS, every request authenticated and
//! authorized (see [`super::auth`]), one thread per connection.
//!
//! This file owns the connection (TLS handshake, request head, routing); each
//! endpoint lives in its own module and gets the [`Context`], the parsed
//! [`Request`] and the [`Conn`] to answer on (plain responses, chunked
//! streams or a protocol upgrade).

use crate::api;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
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
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The CPU samples of the previous stats requests, for `usageNanoCores`
    /// (one set, as upstream's stats provider keeps one cache; pruned to what
    /// the last request saw).
    pub cpu_rates: Mutex<crate::stats::Rates>,
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

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has for the TLS handshake and its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept (each costs a thread).
const MAX_CONNECTIONS: usize = 1024;
/// Connection threads do little on their stack (buffers are on the heap).
const THREAD_STACK: usize = 256 << 10;

/// The server's shared parts.
pub struct Server {
    pub tls: Arc<rustls::ServerConfig>,
    pub auth: super::auth::Auth,
    pub ctx: Context,
}

/// Serves `listener` until the process exits: one thread accepts, one thread
/// per connection handles it.
pub fn serve(listener: TcpListener, server: Server) -> io::Result<()> {
    let server = Arc::new(server);
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("kubelet-server".into()).spawn(move || {
        for conn in listener.incoming() {
            let sock = match conn {
                Ok(s) => s,
                Err(e) => {
                    // Usually out of file descriptors: don't spin on it.
                    log::warn!("kubelet server accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::SeqCst);
                log::warn!("kubelet server: {MAX_CONNECTIONS} connections open, refusing another");
                continue;
            }
            let (server, open2) = (server.clone(), open.clone());
            let spawned = std::thread::Builder::new().name("kubelet-conn".into()).stack_size(THREAD_STACK).spawn(move || {
                let peer = sock.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                if let Err(e) = handle(&server, sock) {
                    log::debug!("kubelet server: connection from {peer}: {e}");
                }
                if open2.fetch_sub(1, Ordering::SeqCst) == 1 {
                    release_memory();
                }
            });
            if let Err(e) = spawned {
                open.fetch_sub(1, Ordering::SeqCst);
                log::warn!("kubelet server: cannot start a connection thread: {e}");
            }
        }
    })?;
    Ok(())
}

/// After the last connection closed: glibc keeps what the connection
/// threads freed in their arenas; hand it back to the kernel.
fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks malloc's own free lists.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn handle(server: &Server, sock: TcpStream) -> io::Result<()> {
    sock.set_read_timeout(Some(HEAD_TIMEOUT))?;
    sock.set_write_timeout(Some(HEAD_TIMEOUT))?;
    sock.set_nodelay(true)?;
    let tls = rustls::ServerConnection::new(server.tls.clone()).map_err(io::Error::other)?;
    let mut conn = Conn { tls, sock };
    let head = match read_head(&mut conn)? {
        Some(h) => h,
        None => return conn.text(431, "request header too large\n"),
    };
    let Some(mut req) = parse_head(&head) else {
        return conn.text(400, "bad request\n");
    };
    // Endpoints stream for as long as they like; they set their own limits.
    conn.sock.set_read_timeout(None)?;
    conn.sock.set_write_timeout(None)?;
    let peer = conn.tls.peer_certificates().and_then(|c| c.first()).cloned();
    req.user = match server.auth.authenticate(peer.as_ref(), req.header("authorization")) {
        Ok(u) => u,
        Err(d) => return conn.text(d.status, &d.message),
    };
    if let Err(d) = server.auth.authorize(&req.user, &req.method, &req.path) {
        return conn.text(d.status, &d.message);
    }
    log::debug!("kubelet server: {} {} by {}", req.method, req.path, req.user.name);
    route(&server.ctx, &req, &mut conn)?;
    conn.tls.send_close_notify();
    let _ = conn.flush();
    Ok(())
}

/// Reads the request head through TLS (which also completes the handshake),
/// a byte at a time so nothing past the head is consumed: an upgraded
/// connection's first frames belong to the endpoint. None: too large.
fn read_head(conn: &mut Conn) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HEAD {
            return Ok(None);
        }
        match conn.read(&mut byte)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => head.push(byte[0]),
        }
    }
    Ok(Some(head))
}

/// Request line and headers; None when malformed.
fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if first.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') || method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: parse_query(query),
        headers,
        user: Default::default(),
    })
}

/// `a=1&b=x%20y&b=z` → pairs, percent- and `+`-decoded.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = || std::str::from_utf8(b.get(i + 1..i + 3)?).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex()) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends the request to its endpoint.
fn route(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    match (req.method.as_str(), segs.as_slice()) {
        (_, ["healthz"]) if get => conn.text(200, "ok"),
        (_, ["pods"] | ["pods", ""]) if get => super::info::pods(ctx, req, conn),
        (_, ["runningpods", ..]) if get => super::info::running_pods(ctx, req, conn),
        (_, ["configz"]) if get => super::info::configz(ctx, req, conn),
        (_, ["metrics"]) if get => super::metrics::metrics(ctx, req, conn),
        (_, ["metrics", "probes"]) if get => super::metrics::probe_metrics(ctx, req, conn),
        (_, ["metrics", "resource"]) if get => super::stats::resource_metrics(ctx, req, conn),
        ("GET" | "POST", ["stats", "summary"]) => super::stats::summary(ctx, req, conn),
        (_, ["containerLogs", ns, pod, container]) if get => super::logs::container_logs(ctx, req, conn, ns, pod, container),
        ("GET" | "POST", ["exec", ns, pod, container]) => super::exec::exec(ctx, req, conn, ns, pod, None, container),
        ("GET" | "POST", ["exec", ns, pod, uid, container]) => super::exec::exec(ctx, req, conn, ns, pod, Some(uid), container),
        ("GET" | "POST", ["attach", ns, pod, container]) => super::exec::attach(ctx, req, conn, ns, pod, None, container),
        ("GET" | "POST", ["attach", ns, pod, uid, container]) => super::exec::attach(ctx, req, conn, ns, pod, Some(uid), container),
        ("POST", ["run", ns, pod, container]) => super::exec::run(ctx, req, conn, ns, pod, None, container),
        ("POST", ["run", ns, pod, uid, container]) => super::exec::run(ctx, req, conn, ns, pod, Some(uid), container),
        ("GET" | "POST", ["portForward", ns, pod]) => super::exec::port_forward(ctx, req, conn, ns, pod, None),
        ("GET" | "POST", ["portForward", ns, pod, uid]) => super::exec::port_forward(ctx, req, conn, ns, pod, Some(uid)),
        _ => conn.text(404, "404 page not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_and_queries() {
        let r = parse_head(b"POST /exec/ns/p/c?command=sh&command=-c&command=echo+a%20b&stdout=1 HTTP/1.1\r\nHost: x\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/exec/ns/p/c");
        assert_eq!(r.query_all("command").collect::<Vec<_>>(), ["sh", "-c", "echo a b"]);
        assert!(r.flag("stdout") && !r.flag("stdin"));
        assert_eq!(r.header("x-stream-protocol-version"), Some("v4.channel.k8s.io"));
        assert!(parse_head(b"get / HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_head(b"GET / SPDY/3\r\n\r\n").is_none());
        assert!(parse_head(b"GET /x HTTP/1.1\r\nno-colon\r\n\r\n").is_none());
        assert_eq!(unescape("%zz%4"), "%zz%4");
        assert_eq!(unescape("a%2Fb"), "a/b");
    }
}
