//! picolet's HTTP servers: the authenticated kubelet server on `--port`
//! (kubelet.rs: logs, exec, attach, port-forward, stats, metrics...) and,
//! here, the tiny server behind the read-only port and healthz. The top
//! floor but for the daemon: it renders what the floors below record
//! (crate::metrics, crate::stats) and collects nothing itself.
//!
//! The read-only HTTP endpoint (upstream's read-only port: `/healthz`, `/pods`).
//!
//! A deliberately tiny HTTP/1.1 server on a std `TcpListener` in its own thread: it serves one
//! connection at a time, reads only the request head (at most 8 KiB, within 5 s in total, so a
//! slow client can delay others but never block them for long), answers with
//! `Connection: close`, and accepts only GET and HEAD. The caller's handler does the routing
//! ([`route`] helps) and builds the [`Response`].
//!
//! Not here: TLS, authentication, keep-alive, chunked encoding, request bodies, streaming.

pub mod attach;
pub mod auth;
pub mod exec;
pub mod execproc;
pub mod info;
pub mod kubelet;
pub mod logs;
pub mod metrics;
pub mod portforward;
pub mod remotecommand;
pub mod session;
pub mod spdy;
pub mod stats;
pub mod tls;
pub mod websocket;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest request head accepted; bigger gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head (and to take the response).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The caller's request handler: (method, path including the query) → response.
pub type Handler = Arc<dyn Fn(&str, &str) -> Response + Send + Sync>;

/// What to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with `value` as JSON; 500 if it cannot be serialized.
    pub fn json(value: &impl serde::Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response { status: 200, content_type: "application/json", body },
            Err(e) => Response::text(500, &format!("encoding response: {e}\n")),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, s: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: s.as_bytes().to_vec() }
    }

    /// 404 with upstream's body.
    pub fn not_found() -> Response {
        Response::text(404, "404 page not found\n")
    }
}

/// The endpoints picolet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Pods,
    NotFound,
}

/// Maps a request path (query string ignored) to a [`Route`].
pub fn route(path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or("");
    match path {
        "/healthz" => Route::Healthz,
        "/pods" | "/pods/" => Route::Pods,
        _ => Route::NotFound,
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    Spawn(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Spawn(e) => write!(f, "starting the HTTP server thread: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Serves `listener` in a dedicated thread until the process exits.
pub fn serve(listener: TcpListener, handler: Handler) -> Result<JoinHandle<()>, ServerError> {
    serve_with(listener, handler, CLIENT_TIMEOUT)
}

fn serve_with(
    listener: TcpListener,
    handler: Handler,
    timeout: Duration,
) -> Result<JoinHandle<()>, ServerError> {
    if let Ok(addr) = listener.local_addr() {
        log::info!("serving read-only HTTP on {addr}");
    }
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = handle(stream, &handler, timeout) {
                            log::debug!("http connection: {e}");
                        }
                    }
                    Err(e) => {
                        // Usually out of file descriptors: don't spin on it.
                        log::warn!("http accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(ServerError::Spawn)
}

/// What reading the request head gave.
#[derive(Debug, PartialEq)]
enum Head {
    /// The head's bytes, up to and including the blank line.
    Complete(Vec<u8>),
    TooLarge,
    /// The client went away or ran out of time before finishing.
    Incomplete,
}

fn handle(mut stream: TcpStream, handler: &Handler, timeout: Duration) -> io::Result<()> {
    stream.set_write_timeout(Some(timeout))?;
    let (resp, head_only) = match read_head(&mut stream, Instant::now() + timeout)? {
        Head::Incomplete => return Ok(()),
        Head::TooLarge => (Response::text(431, "request header too large\n"), false),
        Head::Complete(bytes) => match parse_request_line(&bytes) {
            None => (Response::text(400, "bad request\n"), false),
            Some((method, _)) if method != "GET" && method != "HEAD" => {
                (Response::text(405, "method not allowed\n"), false)
            }
            Some((method, path)) => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handler(&method, &path)
                }))
                .unwrap_or_else(|_| Response::text(500, "internal error\n"));
                (r, method == "HEAD")
            }
        },
    };
    stream.write_all(&encode(&resp, head_only))?;
    stream.flush()?;
    linger(stream);
    Ok(())
}

/// Closes after the client has read the response: closing with unread request bytes (an
/// oversized head) would reset the connection and could destroy the response in flight.
fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut budget: usize = 64 * 1024;
    while budget > 0 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => budget = budget.saturating_sub(n),
            _ => break,
        }
    }
}

/// Reads until the blank line ending the head, at most [`MAX_HEAD`] bytes, before `deadline`.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::Incomplete);
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(Head::Incomplete),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Ok(Head::Incomplete)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, from) {
            if end > MAX_HEAD {
                return Ok(Head::TooLarge);
            }
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

/// Index just past the first blank line (`\r\n\r\n` or bare `\n\n`) at or after `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// `METHOD SP target SP HTTP/1.x` → (method, target); None for anything else.
fn parse_request_line(head: &[u8]) -> Option<(String, String)> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
    let target_ok = target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic());
    if parts.next().is_some() || !token(method) || !target_ok || !version.starts_with("HTTP/1.") {
        return None;
    }
    Some((method.to_string(), target.to_string()))
}

/// The bytes on the wire; `head_only` for HEAD (same headers, no body).
fn encode(r: &Response, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        kubelet::reason(r.status),
        r.content_type,
        r.body.len()
    );
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn start(timeout: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(|_method, path| match route(path) {
            Route::Healthz => Response::text(200, "ok"),
            Route::Pods => Response::json(&serde_json::json!({"kind": "PodList", "items": []})),
            Route::NotFound => Response::not_found(),
        });
        serve_with(listener, handler, timeout).unwrap();
        addr
    }

    fn request(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may answer (431) and close before reading everything we send.
        let _ = s.write_all(raw);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn routes() {
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/healthz?verbose"), Route::Healthz);
        assert_eq!(route("/pods"), Route::Pods);
        assert_eq!(route("/pods/"), Route::Pods);
        assert_eq!(route("/pods?x=1"), Route::Pods);
        assert_eq!(route("/podsx"), Route::NotFound);
        assert_eq!(route("/"), Route::NotFound);
    }

    #[test]
    fn serves_json_404_405_and_head() {
        let addr = start(CLIENT_TIMEOUT);
        let r = request(addr, b"GET /pods?watch=0 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: application/json\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["kind"], "PodList");

        let r = request(addr, b"GET /nope HTTP/1.0\n\n");
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        assert!(r.ends_with("404 page not found\n"), "{r}");

        let r = request(addr, b"POST /pods HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");

        let r = request(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 2\r\n") && r.ends_with("\r\n\r\n"), "{r}");
    }

    #[test]
    fn rejects_junk_and_oversized_heads() {
        let addr = start(CLIENT_TIMEOUT);
        for junk in [
            &b"\x16\x03\x01\x02\x00\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
        ] {
            let r = request(addr, junk);
            assert!(r.starts_with("HTTP/1.1 400 "), "{junk:?}: {r}");
        }
        let mut big = b"GET /pods HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(vec![b'a'; MAX_HEAD]);
        big.extend(b"\r\n\r\n");
        let r = request(addr, &big);
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        // Still serving afterwards.
        assert!(request(addr, b"GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn slow_client_does_not_block_others_forever() {
        let timeout = Duration::from_millis(300);
        let addr = start(timeout);
        // Sends half a request line and then nothing.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /po").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(request(addr, b"GET /healthz HTTP/1.1\r\n\r\n"));
        });
        // A deadline only: a starved client would wait for ever.
        let r = rx.recv_timeout(Duration::from_secs(60)).expect("second client starved");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // The slow client got nothing but a close.
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = slow.read_to_end(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn trickling_client_is_cut_at_the_deadline() {
        let timeout = Duration::from_millis(300);
        let addr = start(timeout);
        let mut slow = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        // One byte every 50 ms never trips a per-read timeout; the head deadline must.
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(5) {
            if slow.write_all(b"G").is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(closed, "server kept a trickling client for 5 s");
    }
}
