//! `/portForward` over SPDY (`portforward.k8s.io`), as upstream's
//! `k8s.io/kubelet/pkg/cri/streaming/portforward` with containerd's
//! forwarder behind it.
//!
//! Each forwarded connection is a pair of client streams sharing a
//! `requestID` header (or, from old clients, derived from the stream ids):
//! `streamType: error` and `streamType: data`, both with a `port` header.
//! Once both are open, picolet connects to localhost:port inside the pod's
//! network namespace (a short-lived thread joins it with setns(2) and
//! connects; the socket keeps that namespace) and copies bytes both ways;
//! hostNetwork pods connect from the host. A failure is written on the error
//! stream and both streams are reset. When one direction ends, the other gets
//! a second to finish (as containerd), then both streams are closed.
//!
//! Over WebSocket (upstream's v4 protocol) the ports come from the `port`
//! query, one connection each, on channels 2i (data) and 2i+1 (error), each
//! starting with the port as two little-endian bytes; the session ends when
//! all of them have.

use super::session::{Handler, Out, MAX_DATA};
use super::spdy::{header, Headers};
use nix::libc;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The one protocol version there is.
pub const PROTOCOLS: [&str; 1] = ["portforward.k8s.io"];
/// Over WebSocket ("": none named, binary).
pub const WEBSOCKET_PROTOCOLS: [&str; 3] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", ""];

/// The `port` query values (repeated or comma-separated) of a WebSocket
/// port-forward, as upstream's `NewV4Options`.
pub fn websocket_ports(req: &super::kubelet::Request) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for v in req.query_all("port") {
        for p in v.split(',') {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("unable to parse {p:?} as a port")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

/// The WebSocket channels for `ports`, as streams: data 2i, error 2i+1.
pub fn websocket_channels(ports: &[u16]) -> Vec<(u32, Headers)> {
    let mut c = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        for (kind, id) in [("data", 2 * i), ("error", 2 * i + 1)] {
            let h = vec![("streamtype".into(), kind.into()), ("port".into(), port.to_string()), ("requestid".into(), i.to_string())];
            c.push((id as u32, h));
        }
    }
    c
}

/// How long a pair has to get its second stream (upstream's default).
const STREAM_CREATION: Duration = Duration::from_secs(30);
/// After one direction ends, how long the other may go on (containerd's).
const HALF_CLOSED: Duration = Duration::from_secs(1);
/// Client bytes buffered per connection ahead of the pod.
const TO_POD_MAX: usize = 64 * 1024;

/// Where the pod's ports are.
pub struct Target {
    /// `<ns>/<name>` for messages.
    pub pod: String,
    pub uid: String,
    /// The pod's pinned network namespace; None: the host's (hostNetwork).
    pub netns: Option<PathBuf>,
}

struct Pair {
    port: u16,
    data: Option<u32>,
    error: Option<u32>,
    created: Instant,
    sock: Option<TcpStream>,
    to_pod: Vec<u8>,
    /// The client ended its data stream (FIN).
    client_done: bool,
    /// The pod's side ended (EOF).
    pod_done: bool,
    /// When the first direction ended.
    half_closed: Option<Instant>,
}

pub struct PortForward {
    target: Target,
    pairs: HashMap<String, Pair>,
    /// Stream → its pair's request id.
    streams: HashMap<u32, String>,
    /// Pairs in poll order (rebuilt by `fds`).
    order: std::cell::RefCell<Vec<String>>,
    read_buf: Vec<u8>,
    /// Channels over WebSocket (fixed, set up at the start).
    websocket: bool,
}

impl PortForward {
    pub fn new(target: Target) -> PortForward {
        PortForward { target, pairs: HashMap::new(), streams: HashMap::new(), order: Default::default(), read_buf: Vec::new(), websocket: false }
    }

    /// Ends pair `rid`: both streams closed (or reset), the socket dropped.
    fn close(&mut self, out: &mut Out, rid: &str, reset: bool) {
        if let Some(p) = self.pairs.remove(rid) {
            for id in [p.data, p.error].into_iter().flatten() {
                if reset {
                    out.reset(id);
                } else {
                    out.fin(id);
                }
                self.streams.remove(&id);
            }
        }
    }

    fn connect(&mut self, out: &mut Out, rid: &str) {
        let Some(p) = self.pairs.get_mut(rid) else { return };
        match connect_in(self.target.netns.clone(), p.port) {
            Ok(s) => p.sock = Some(s),
            Err(e) => {
                let msg = format!("error forwarding port {} to pod {}, uid {}: {e}", p.port, self.target.pod, self.target.uid);
                log::info!("port-forward: {msg}");
                if let Some(id) = p.error {
                    out.data(id, msg.as_bytes());
                }
                self.close(out, rid, true);
            }
        }
    }

    /// Moves buffered client bytes to the pod; finishes the pair when both
    /// directions are done.
    fn progress(&mut self, out: &mut Out, rid: &str) {
        let Some(p) = self.pairs.get_mut(rid) else { return };
        if let Some(sock) = p.sock.as_mut() {
            while !p.to_pod.is_empty() {
                match sock.write(&p.to_pod) {
                    Ok(n) => {
                        p.to_pod.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        p.to_pod.clear();
                        p.pod_done = true;
                    }
                }
            }
            if p.client_done && p.to_pod.is_empty() {
                let _ = sock.shutdown(Shutdown::Write);
            }
        }
        if (p.client_done || p.pod_done) && p.half_closed.is_none() {
            p.half_closed = Some(Instant::now());
        }
        if p.client_done && p.pod_done && p.to_pod.is_empty() {
            self.close(out, rid, false);
        }
    }
}

/// Connects to localhost:`port` from `netns` (None: here), IPv4 then IPv6,
/// and returns the socket non-blocking.
pub fn connect_in(netns: Option<PathBuf>, port: u16) -> io::Result<TcpStream> {
    let dial = move || -> io::Result<TcpStream> {
        if let Some(ns) = &netns {
            let f = std::fs::File::open(ns).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", ns.display())))?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| io::Error::other(format!("setns {}: {e}", ns.display())))?;
        }
        let timeout = Duration::from_secs(5);
        let v4 = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout);
        let s = match v4 {
            Ok(s) => s,
            Err(e4) => TcpStream::connect_timeout(&SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), timeout)
                .map_err(|e6| io::Error::new(e4.kind(), format!("failed to connect to localhost:{port} inside the pod's network namespace, IPv4: {e4} IPv6: {e6}")))?,
        };
        s.set_nonblocking(true)?;
        Ok(s)
    };
    // Only this short-lived thread enters the namespace; the socket keeps it.
    std::thread::Builder::new()
        .name("portforward-dial".into())
        .stack_size(64 << 10)
        .spawn(dial)?
        .join()
        .map_err(|_| io::Error::other("port-forward dial thread panicked"))?
}

impl Handler for PortForward {
    fn accept(&mut self, _id: u32, headers: &Headers) -> bool {
        // As upstream: a valid port and a known stream type, else refused.
        let port_ok = header(headers, "port").and_then(|p| p.parse::<u16>().ok()).is_some_and(|p| p > 0);
        port_ok && matches!(header(headers, "streamtype"), Some("error" | "data"))
    }

    fn opened(&mut self, out: &mut Out, id: u32, headers: &Headers) {
        let kind = header(headers, "streamtype").unwrap_or_default();
        let port = header(headers, "port").and_then(|p| p.parse().ok()).unwrap_or(0);
        // Old clients send no request id: derive it as upstream does.
        let rid = match header(headers, "requestid") {
            Some(r) if !r.is_empty() => r.to_string(),
            _ if kind == "error" => id.to_string(),
            _ => id.saturating_sub(2).to_string(),
        };
        let p = self.pairs.entry(rid.clone()).or_insert_with(|| Pair {
            port,
            data: None,
            error: None,
            created: Instant::now(),
            sock: None,
            to_pod: Vec::new(),
            client_done: false,
            pod_done: false,
            half_closed: None,
        });
        let slot = if kind == "error" { &mut p.error } else { &mut p.data };
        if slot.is_some() {
            let msg = format!("error processing stream for request {rid}: {kind} stream already assigned");
            if let Some(e) = p.error {
                out.data(e, msg.as_bytes());
            }
            out.reset(id);
            return;
        }
        *slot = Some(id);
        self.streams.insert(id, rid.clone());
        if out.websocket() {
            // Each channel starts with its port, little-endian (upstream's v4).
            out.message(id, &port.to_le_bytes());
            self.websocket = true;
        }
        if p.data.is_some() && p.error.is_some() {
            self.connect(out, &rid);
        }
    }

    fn data(&mut self, out: &mut Out, id: u32, data: &[u8]) {
        let Some(rid) = self.streams.get(&id).cloned() else { return };
        let Some(p) = self.pairs.get_mut(&rid) else { return };
        // Bytes on the error stream mean nothing; on data before the pair is
        // complete they wait (within the same bound).
        if p.data == Some(id) && !p.client_done {
            p.to_pod.extend_from_slice(data);
            self.progress(out, &rid);
        }
    }

    fn fin(&mut self, out: &mut Out, id: u32) {
        let Some(rid) = self.streams.get(&id).cloned() else { return };
        if let Some(p) = self.pairs.get_mut(&rid) {
            if p.data == Some(id) {
                p.client_done = true;
                self.progress(out, &rid);
            }
        }
    }

    fn reset(&mut self, out: &mut Out, id: u32) {
        if let Some(rid) = self.streams.get(&id).cloned() {
            self.close(out, &rid, true);
        }
    }

    fn wants_input(&self) -> bool {
        self.pairs.values().all(|p| p.to_pod.len() < TO_POD_MAX)
    }

    fn fds(&self, out: &Out, fds: &mut Vec<(RawFd, i16)>) {
        let mut order = self.order.borrow_mut();
        order.clear();
        for (rid, p) in &self.pairs {
            let Some(s) = &p.sock else { continue };
            let mut ev = 0;
            if !p.pod_done && out.room() > 0 {
                ev |= libc::POLLIN;
            }
            if !p.to_pod.is_empty() {
                ev |= libc::POLLOUT;
            }
            if ev != 0 {
                fds.push((s.as_raw_fd(), ev));
                order.push(rid.clone());
            }
        }
    }

    fn ready(&mut self, out: &mut Out, revents: &[i16]) {
        let order = self.order.borrow().clone();
        for (rid, &rev) in order.iter().zip(revents) {
            if rev == 0 {
                continue;
            }
            if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && out.room() > 0 {
                let room = out.room().min(MAX_DATA);
                let Some(p) = self.pairs.get_mut(rid) else { continue };
                if let (Some(sock), Some(id)) = (p.sock.as_mut(), p.data) {
                    self.read_buf.resize(room, 0);
                    match sock.read(&mut self.read_buf) {
                        Ok(0) => {
                            p.pod_done = true;
                            out.fin(id);
                        }
                        Ok(n) => out.data(id, &self.read_buf[..n]),
                        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                        Err(_) => {
                            p.pod_done = true;
                            out.fin(id);
                        }
                    }
                }
            }
            self.progress(out, rid);
        }
    }

    fn deadline(&self, _out: &Out) -> Option<Instant> {
        self.pairs
            .values()
            .filter_map(|p| match (p.sock.is_some(), p.half_closed) {
                (false, _) => Some(p.created + STREAM_CREATION),
                (true, Some(t)) => Some(t + HALF_CLOSED),
                (true, None) => None,
            })
            .min()
    }

    fn tick(&mut self, out: &mut Out, now: Instant) {
        let expired: Vec<(String, bool)> = self
            .pairs
            .iter()
            .filter_map(|(rid, p)| match (p.sock.is_some(), p.half_closed) {
                (false, _) if now >= p.created + STREAM_CREATION => Some((rid.clone(), true)),
                (true, Some(t)) if now >= t + HALF_CLOSED => Some((rid.clone(), false)),
                _ => None,
            })
            .collect();
        for (rid, incomplete) in expired {
            if incomplete {
                let msg = format!("timed out waiting for streams of request {rid}");
                if let Some(e) = self.pairs.get(&rid).and_then(|p| p.error) {
                    out.data(e, msg.as_bytes());
                }
            } else if let Some(id) = self.pairs.get(&rid).and_then(|p| p.data) {
                out.fin(id);
            }
            self.close(out, &rid, false);
        }
    }

    /// Over SPDY port-forwarding lasts until the client closes the
    /// connection; over WebSocket until every port's connection has ended.
    fn done(&self) -> bool {
        self.websocket && self.pairs.is_empty()
    }

    fn abort(&mut self) {
        self.pairs.clear();
        self.streams.clear();
    }
}
