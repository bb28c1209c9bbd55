//! An upgraded connection, SPDY/3.1 or WebSocket ([`Wire`]), served by the
//! connection's own thread.
//!
//! One loop polls the TLS socket together with whatever descriptors the
//! endpoint's [`Handler`] names (a process's pipes, a pty, a pod's socket,
//! an inotify fd), so input (stdin, resizes, pings) and output flow at once
//! without helper threads. Memory stays bounded both ways: output is read
//! from the handler's descriptors only while [`Out::room`] says the frames
//! not yet handed to TLS are under [`OUT_HIGH`], and the socket is read only
//! while the handler [`Handler::wants_input`]; a client that stops reading
//! stalls the producer (the process blocks on its pipe) instead of growing
//! buffers.
//!
//! Streams are opened by the client only (a kubelet never creates any;
//! WebSocket channels are all there from the start); a client's GOAWAY ends
//! the input of every stream, as in spdystream. The connection ends when the
//! handler is done and the client has closed (or has not, 10 s later), when
//! the client goes away ([`Handler::abort`]), or after four idle hours as
//! upstream's `streamingConnectionIdleTimeout`.

use super::kubelet::{Conn, Request};
use super::spdy::{self, Decoder, Encoder, Frame, Headers};
use super::websocket;
use nix::libc;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Encoded frames not yet handed to TLS, beyond which handlers stop reading.
pub const OUT_HIGH: usize = 128 * 1024;
/// Largest DATA frame sent (what Go's io.Copy moves at once).
pub const MAX_DATA: usize = 32 * 1024;
/// Plaintext read ahead of the decoder.
const IN_MAX: usize = 64 * 1024;
/// rustls' own outgoing buffer.
const TLS_BUFFER: usize = 64 * 1024;
/// A connection with no frames either way for this long is closed.
const IDLE: Duration = Duration::from_secs(4 * 3600);
/// After the handler is done, how long the client gets to close.
const LINGER: Duration = Duration::from_secs(10);

/// What the loop needs from an endpoint.
pub trait Handler {
    /// A new stream from the client: true accepts it (SYN_REPLY), false
    /// refuses it (RST_STREAM). Nothing may be sent from here.
    fn accept(&mut self, id: u32, headers: &Headers) -> bool;
    /// An accepted stream, now replied to.
    fn opened(&mut self, out: &mut Out, id: u32, headers: &Headers);
    fn data(&mut self, out: &mut Out, id: u32, data: &[u8]);
    /// The client half-closed stream `id` (FIN).
    fn fin(&mut self, out: &mut Out, id: u32);
    /// The client reset stream `id`.
    fn reset(&mut self, out: &mut Out, id: u32);
    /// The client sent GOAWAY: it opens no more streams (their input has
    /// ended through [`Handler::fin`]).
    fn goaway(&mut self) {}
    /// Whether more stream data can be taken now; false stops reading the socket.
    fn wants_input(&self) -> bool {
        true
    }
    /// Descriptors to poll and the events wanted (`libc::POLLIN`...).
    fn fds(&self, out: &Out, fds: &mut Vec<(RawFd, i16)>);
    /// Their `revents`, in the order [`Handler::fds`] gave them.
    fn ready(&mut self, out: &mut Out, revents: &[i16]);
    /// When [`Handler::tick`] is due, if ever.
    fn deadline(&self, _out: &Out) -> Option<Instant> {
        None
    }
    fn tick(&mut self, _out: &mut Out, _now: Instant) {}
    /// Everything is said: the client may close now.
    fn done(&self) -> bool;
    /// The client went away before the handler was done.
    fn abort(&mut self);
}

/// What the connection speaks after the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Spdy,
    /// Channels over WebSocket messages; base64 for the `*base64*` protocols.
    WebSocket { base64: bool },
}

/// Our half of each open stream and the frames on their way out.
pub struct Out {
    wire: Wire,
    enc: Encoder,
    buf: Vec<u8>,
    /// Stream → (we sent FIN, the client sent FIN).
    streams: HashMap<u32, (bool, bool)>,
    /// A WebSocket close frame was sent: nothing more may follow.
    closing: bool,
}

impl Out {
    fn new(wire: Wire) -> Out {
        Out { wire, enc: Encoder::default(), buf: Vec::new(), streams: HashMap::new(), closing: false }
    }

    /// Whether streams are WebSocket channels (all open from the start, no half-close).
    pub fn websocket(&self) -> bool {
        self.wire != Wire::Spdy
    }

    /// A WebSocket channel message even when `data` is empty (upstream's
    /// "connection established" message); on SPDY the same as [`Out::data`].
    pub fn message(&mut self, id: u32, data: &[u8]) {
        match self.wire {
            Wire::WebSocket { base64 } if self.writable(id) && !self.closing => websocket::channel_message(&mut self.buf, base64, id as u8, data),
            _ => self.data(id, data),
        }
    }

    /// How many more bytes may be produced now.
    pub fn room(&self) -> usize {
        OUT_HIGH.saturating_sub(self.buf.len())
    }

    /// Whether we may still send on `id`.
    pub fn writable(&self, id: u32) -> bool {
        matches!(self.streams.get(&id), Some((false, _)))
    }

    /// Sends `data` on `id` (dropped if the stream is closed on our side).
    pub fn data(&mut self, id: u32, data: &[u8]) {
        if !self.writable(id) || self.closing {
            return;
        }
        for chunk in data.chunks(MAX_DATA) {
            match self.wire {
                Wire::Spdy => Encoder::data(&mut self.buf, id, false, chunk),
                Wire::WebSocket { base64 } => websocket::channel_message(&mut self.buf, base64, id as u8, chunk),
            }
        }
    }

    /// Half-closes `id` (FIN).
    pub fn fin(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.0 {
                s.0 = true;
                // A WebSocket channel has no half-close: it ends with the connection.
                if self.wire == Wire::Spdy {
                    Encoder::data(&mut self.buf, id, true, &[]);
                }
                if s.1 {
                    self.streams.remove(&id);
                }
            }
        }
    }

    /// Resets `id` (RST_STREAM, CANCEL), both directions.
    pub fn reset(&mut self, id: u32) {
        if self.streams.remove(&id).is_some() && self.wire == Wire::Spdy {
            Encoder::rst_stream(&mut self.buf, id, spdy::CANCEL);
        }
    }

    fn remote_fin(&mut self, id: u32) -> bool {
        match self.streams.get_mut(&id) {
            Some(s) if !s.1 => {
                s.1 = true;
                if s.0 {
                    self.streams.remove(&id);
                }
                true
            }
            _ => false,
        }
    }
}

/// Why an upgrade request is refused: (status, message, the protocols to
/// list in `X-Accepted-Stream-Protocol-Versions`).
pub type UpgradeRefusal = (u16, String, bool);

/// Checks an upgrade request and negotiates the subprotocol as upstream's
/// `httpstream.Handshake`: the first of the client's
/// `X-Stream-Protocol-Version` values (repeated or comma-separated) that
/// `supported` has.
pub fn negotiate(req: &Request, supported: &[&'static str]) -> Result<&'static str, UpgradeRefusal> {
    let has = |name: &str, want: &str| req.headers.iter().any(|(k, v)| k == name && v.to_ascii_lowercase().contains(want));
    if !has("connection", "upgrade") || !has("upgrade", "spdy/3.1") {
        return Err((400, "unable to upgrade: missing upgrade headers in request".into(), false));
    }
    let offered: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k == "x-stream-protocol-version")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Err((400, "unable to upgrade: X-Stream-Protocol-Version is required".into(), false));
    }
    match offered.iter().find_map(|o| supported.iter().find(|s| *s == o)) {
        Some(chosen) => Ok(chosen),
        None => Err((403, format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"), true)),
    }
}

/// [`negotiate`], then the answer: 101 with the chosen protocol (returned),
/// or the refusal (None).
pub fn upgrade(req: &Request, conn: &mut Conn, supported: &[&'static str]) -> io::Result<Option<&'static str>> {
    let (status, body, list) = match negotiate(req, supported) {
        Ok(chosen) => {
            let head = format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {chosen}\r\n\r\n");
            conn.write_all(head.as_bytes())?;
            conn.flush()?;
            return Ok(Some(chosen));
        }
        Err(r) => r,
    };
    let body = body + "\n";
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        super::kubelet::reason(status),
        body.len()
    );
    if list {
        for s in supported {
            head.push_str(&format!("X-Accepted-Stream-Protocol-Versions: {s}\r\n"));
        }
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())?;
    conn.flush()?;
    Ok(None)
}

/// Serves an upgraded SPDY connection until it ends.
pub fn serve(conn: &mut Conn, h: &mut dyn Handler) -> io::Result<()> {
    serve_with(conn, h, Wire::Spdy, &[])
}

/// Serves an upgraded connection until it ends. On WebSocket, `channels`
/// are the streams that exist from the start (they are opened with the
/// handler before anything is read). The socket is left blocking, with a
/// write timeout so closing it cannot hang.
pub fn serve_with(conn: &mut Conn, h: &mut dyn Handler, wire: Wire, channels: &[(u32, Headers)]) -> io::Result<()> {
    conn.sock.set_nonblocking(true)?;
    conn.tls.set_buffer_limit(Some(TLS_BUFFER));
    let reader = match wire {
        Wire::Spdy => Reader::Spdy(Decoder::default()),
        Wire::WebSocket { base64 } => Reader::WebSocket(websocket::Decoder::default(), base64),
    };
    let mut out = Out::new(wire);
    for (id, headers) in channels {
        out.streams.insert(*id, (false, false));
        h.opened(&mut out, *id, headers);
    }
    let result = Loop { conn: &mut *conn, reader, inbuf: Vec::new(), peer_eof: false, last_id: 0, goaway: false, ws_closed: false }.run(h, out);
    conn.sock.set_nonblocking(false)?;
    conn.sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    result
}

enum Reader {
    Spdy(Decoder),
    WebSocket(websocket::Decoder, bool),
}

struct Loop<'c> {
    conn: &'c mut Conn,
    reader: Reader,
    /// Plaintext not yet decoded.
    inbuf: Vec<u8>,
    /// The client closed (TLS close_notify or TCP EOF).
    peer_eof: bool,
    /// Highest stream id the client opened.
    last_id: u32,
    /// The client sent GOAWAY: its frames are no longer read.
    goaway: bool,
    /// The client sent a WebSocket close: it is gone.
    ws_closed: bool,
}

impl Loop<'_> {
    fn run(&mut self, h: &mut dyn Handler, mut out: Out) -> io::Result<()> {
        let mut fds: Vec<(RawFd, i16)> = Vec::new();
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        let mut last_frame = Instant::now();
        let mut done_at: Option<Instant> = None;
        loop {
            // Frames already received, then plaintext rustls already holds.
            loop {
                while h.wants_input() && !self.ws_closed {
                    match self.decode(h, &mut out) {
                        Ok(true) => last_frame = Instant::now(),
                        Ok(false) => break,
                        Err(e) => {
                            h.abort();
                            match self.reader {
                                Reader::Spdy(_) => Encoder::goaway(&mut out.buf, self.last_id, 1),
                                Reader::WebSocket(..) => websocket::close(&mut out.buf, 1002),
                            }
                            let _ = self.flush(&mut out);
                            return Err(e);
                        }
                    }
                }
                if !h.wants_input() || !self.read_plaintext()? {
                    break;
                }
            }
            let before = out.buf.len();
            self.flush(&mut out)?;
            if out.buf.len() != before {
                last_frame = Instant::now();
            }
            if h.done() && done_at.is_none() {
                done_at = Some(Instant::now());
                if out.websocket() && !out.closing {
                    websocket::close(&mut out.buf, 1000);
                    out.closing = true;
                    self.flush(&mut out)?;
                }
            }
            if (self.peer_eof && self.inbuf.is_empty()) || self.ws_closed {
                if done_at.is_none() {
                    h.abort();
                }
                return Ok(());
            }
            let now = Instant::now();
            if done_at.is_some_and(|d| now >= d + LINGER) || now >= last_frame + IDLE {
                if done_at.is_none() {
                    log::debug!("streaming connection idle for {}s, closing", IDLE.as_secs());
                    h.abort();
                }
                return Ok(());
            }

            fds.clear();
            h.fds(&out, &mut fds);
            let mut sock_events = 0;
            if !self.peer_eof && h.wants_input() && self.inbuf.len() < IN_MAX {
                sock_events |= libc::POLLIN;
            }
            if self.conn.tls.wants_write() {
                sock_events |= libc::POLLOUT;
            }
            pollfds.clear();
            pollfds.push(libc::pollfd { fd: self.conn.sock.as_raw_fd(), events: sock_events, revents: 0 });
            pollfds.extend(fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }));
            let mut wake = last_frame + IDLE;
            if let Some(d) = done_at {
                wake = wake.min(d + LINGER);
            }
            if let Some(d) = h.deadline(&out) {
                wake = wake.min(d);
            }
            let timeout = wake.saturating_duration_since(now).as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: pollfds is a valid array of pollfd for its length.
            let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let sock = pollfds[0].revents;
            if sock & (libc::POLLHUP | libc::POLLERR) != 0 {
                // Reset or shut down both ways: nobody will read what is left.
                if done_at.is_none() {
                    h.abort();
                }
                return Ok(());
            }
            if sock & libc::POLLIN != 0 {
                self.read_socket()?;
            }
            if sock & libc::POLLOUT != 0 {
                self.write_socket()?;
            }
            let revents: Vec<i16> = pollfds[1..].iter().map(|p| p.revents).collect();
            if revents.iter().any(|&r| r != 0) {
                h.ready(&mut out, &revents);
            }
            if h.deadline(&out).is_some_and(|d| Instant::now() >= d) {
                h.tick(&mut out, Instant::now());
            }
        }
    }

    /// Decodes and dispatches the next frame in `inbuf`; false when it
    /// holds no whole frame.
    fn decode(&mut self, h: &mut dyn Handler, out: &mut Out) -> io::Result<bool> {
        let bad = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        match &mut self.reader {
            Reader::Spdy(d) => match d.decode(&self.inbuf).map_err(|e| bad(&e))? {
                Some((frame, used)) => {
                    self.inbuf.drain(..used);
                    self.dispatch(frame, h, out);
                    Ok(true)
                }
                None => Ok(false),
            },
            Reader::WebSocket(d, base64) => {
                let base64 = *base64;
                match d.decode(&self.inbuf).map_err(|e| bad(&e))? {
                    Some((event, used)) => {
                        self.inbuf.drain(..used);
                        if let Some(e) = event {
                            self.dispatch_websocket(e, base64, h, out);
                        }
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
        }
    }

    fn dispatch_websocket(&mut self, event: websocket::Event, base64: bool, h: &mut dyn Handler, out: &mut Out) {
        match event {
            websocket::Event::Message(m) => {
                // Not a channel message, or for a channel that is not open: ignored, as upstream.
                if let Some((ch, data)) = websocket::parse_channel_message(base64, &m) {
                    let id = u32::from(ch);
                    if !data.is_empty() && matches!(out.streams.get(&id), Some((_, false))) {
                        h.data(out, id, &data);
                    }
                }
            }
            websocket::Event::Ping(p) if !out.closing => websocket::pong(&mut out.buf, &p),
            websocket::Event::Close(code) => {
                if !out.closing {
                    websocket::close(&mut out.buf, code.unwrap_or(1000));
                    out.closing = true;
                }
                self.ws_closed = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, frame: Frame, h: &mut dyn Handler, out: &mut Out) {
        if self.goaway {
            return;
        }
        match frame {
            Frame::SynStream { id, fin, unidirectional, headers, .. } => {
                // Client streams are odd and increasing (spdystream checks the same).
                if id % 2 == 0 || id <= self.last_id {
                    Encoder::rst_stream(&mut out.buf, id, spdy::PROTOCOL_ERROR);
                    return;
                }
                self.last_id = id;
                if !h.accept(id, &headers) {
                    Encoder::rst_stream(&mut out.buf, id, spdy::CANCEL);
                    return;
                }
                out.enc.syn_reply(&mut out.buf, id, false, &[]);
                out.streams.insert(id, (unidirectional, false));
                h.opened(out, id, &headers);
                if fin && out.remote_fin(id) {
                    h.fin(out, id);
                }
            }
            Frame::Data { id, fin, data } => {
                if !matches!(out.streams.get(&id), Some((_, false))) {
                    return; // unknown or half-closed by the client: ignored, as spdystream does
                }
                if !data.is_empty() {
                    h.data(out, id, &data);
                }
                if fin && out.remote_fin(id) {
                    h.fin(out, id);
                }
            }
            Frame::RstStream { id, .. } => {
                if out.streams.remove(&id).is_some() {
                    h.reset(out, id);
                }
            }
            // Client pings are odd: echo them.
            Frame::Ping(id) if id % 2 == 1 => Encoder::ping(&mut out.buf, id),
            Frame::GoAway { .. } => {
                // As spdystream: after GOAWAY nothing more is read from the
                // peer, and every stream's input ends (a stdin sees EOF, so the
                // command it feeds can finish even though the client left).
                self.goaway = true;
                let mut open: Vec<u32> = out.streams.iter().filter(|(_, s)| !s.1).map(|(id, _)| *id).collect();
                open.sort_unstable();
                for id in open {
                    if out.remote_fin(id) {
                        h.fin(out, id);
                    }
                }
                h.goaway();
            }
            // No flow control, no server push, nothing else to do.
            _ => {}
        }
    }

    /// Moves plaintext from rustls into `inbuf`; true if any came.
    fn read_plaintext(&mut self) -> io::Result<bool> {
        let room = IN_MAX.saturating_sub(self.inbuf.len());
        if room == 0 || self.peer_eof {
            return Ok(false);
        }
        let at = self.inbuf.len();
        self.inbuf.resize(at + room.min(16 * 1024), 0);
        let r = self.conn.tls.reader().read(&mut self.inbuf[at..]);
        let n = match r {
            Ok(0) => {
                self.peer_eof = true;
                0
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.peer_eof = true;
                0
            }
            Err(e) => {
                self.inbuf.truncate(at);
                return Err(e);
            }
        };
        self.inbuf.truncate(at + n);
        Ok(n > 0)
    }

    /// Reads TLS records from the socket until it would block.
    fn read_socket(&mut self) -> io::Result<()> {
        loop {
            match self.conn.tls.read_tls(&mut self.conn.sock) {
                Ok(0) => {
                    self.peer_eof = true;
                    break;
                }
                Ok(_) => match self.conn.tls.process_new_packets() {
                    // Leave the rest in the socket until the plaintext is taken:
                    // rustls refuses to read more while its plaintext buffer is full.
                    Ok(state) if state.plaintext_bytes_to_read() > 0 => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = self.write_socket();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
                    self.peer_eof = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Hands queued frames to rustls and writes what the socket takes.
    fn flush(&mut self, out: &mut Out) -> io::Result<()> {
        while !out.buf.is_empty() {
            match self.conn.tls.writer().write(&out.buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.buf.drain(..n);
                }
                Err(e) => return Err(e),
            }
        }
        self.write_socket()
    }

    fn write_socket(&mut self) -> io::Result<()> {
        while self.conn.tls.wants_write() {
            match self.conn.tls.write_tls(&mut self.conn.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                    self.peer_eof = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request { headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Default::default() }
    }

    const SUPPORTED: [&str; 2] = ["v4.channel.k8s.io", "v3.channel.k8s.io"];

    #[test]
    fn negotiates_as_upstream() {
        let up = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")];
        let with = |protos: &[&'static str]| {
            let mut h = up.to_vec();
            h.extend(protos.iter().map(|p| ("x-stream-protocol-version", *p)));
            negotiate(&req(&h), &SUPPORTED)
        };
        // The client's order wins; headers repeat or carry lists.
        assert_eq!(with(&["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"]), Ok("v4.channel.k8s.io"));
        assert_eq!(with(&["v3.channel.k8s.io, v4.channel.k8s.io"]), Ok("v3.channel.k8s.io"));
        let (status, msg, list) = with(&["v9.channel.k8s.io"]).unwrap_err();
        assert_eq!((status, list), (403, true), "{msg}");
        assert_eq!(with(&[]).unwrap_err().0, 400);
        // Not an upgrade to SPDY.
        let ws = req(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("x-stream-protocol-version", "v4.channel.k8s.io")]);
        assert_eq!(negotiate(&ws, &SUPPORTED).unwrap_err().0, 400);
    }

    /// Echoes stream data back, refuses streams of type "refuse", is done
    /// once a stream of type "last" is half-closed by the client.
    #[derive(Default)]
    struct Echo {
        last: Option<u32>,
        done: bool,
        aborted: bool,
    }

    impl Handler for Echo {
        fn accept(&mut self, _id: u32, headers: &Headers) -> bool {
            spdy::header(headers, "streamtype") != Some("refuse")
        }
        fn opened(&mut self, _out: &mut Out, id: u32, headers: &Headers) {
            if spdy::header(headers, "streamtype") == Some("last") {
                self.last = Some(id);
            }
        }
        fn data(&mut self, out: &mut Out, id: u32, data: &[u8]) {
            out.data(id, data);
        }
        fn fin(&mut self, out: &mut Out, id: u32) {
            out.fin(id);
            self.done |= Some(id) == self.last;
        }
        fn reset(&mut self, _out: &mut Out, _id: u32) {}
        fn fds(&self, _out: &Out, _fds: &mut Vec<(RawFd, i16)>) {}
        fn ready(&mut self, _out: &mut Out, _revents: &[i16]) {}
        fn done(&self) -> bool {
            self.done
        }
        fn abort(&mut self) {
            self.aborted = true;
        }
    }

    /// A TLS server running `serve` with an [`Echo`] on one connection, and
    /// a client connected to it; the server thread returns the handler.
    fn start(name: &str) -> (std::thread::JoinHandle<Echo>, rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>) {
        let dir = std::env::temp_dir().join(format!("picolet-session-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = super::super::tls::TlsSettings {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            root_dir: &dir,
            node_name: "localhost",
            node_ip: None,
        };
        let config = super::super::tls::server_config(&settings).unwrap();
        let pem = std::fs::read(dir.join("pki/kubelet.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in crate::api::client::certs(&pem, "test").unwrap() {
            roots.add(rustls::pki_types::CertificateDer::from(c.der().to_vec())).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut conn = Conn { tls: rustls::ServerConnection::new(config).unwrap(), sock };
            while conn.tls.is_handshaking() {
                conn.tls.complete_io(&mut conn.sock).unwrap();
            }
            let mut h = Echo::default();
            serve(&mut conn, &mut h).unwrap();
            h
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap()).unwrap();
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        (server, rustls::StreamOwned::new(tls, sock))
    }

    /// Reads frames until `n` have come (DATA pieces joined per frame end).
    fn read_frames(client: &mut impl Read, dec: &mut Decoder, buf: &mut Vec<u8>, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut chunk = [0u8; 4096];
        while frames.len() < n {
            while let Some((f, used)) = dec.decode(buf).unwrap() {
                buf.drain(..used);
                frames.push(f);
            }
            if frames.len() >= n {
                break;
            }
            let k = client.read(&mut chunk).unwrap();
            assert!(k > 0, "server closed after {frames:?}");
            buf.extend_from_slice(&chunk[..k]);
        }
        frames
    }

    #[test]
    fn serves_streams_pings_and_ends_when_the_client_closes() {
        let (server, mut client) = start("echo");
        let mut enc = Encoder::default();
        let mut out = Vec::new();
        enc.syn_stream(&mut out, 1, false, &[("streamtype", "last")]);
        enc.syn_stream(&mut out, 3, false, &[("streamtype", "refuse")]);
        Encoder::data(&mut out, 1, false, b"hello");
        Encoder::ping(&mut out, 1);
        Encoder::data(&mut out, 1, true, b"");
        client.write_all(&out).unwrap();
        let (mut dec, mut buf) = (Decoder::default(), Vec::new());
        let frames = read_frames(&mut client, &mut dec, &mut buf, 5);
        assert_eq!(
            frames,
            vec![
                Frame::SynReply { id: 1, fin: false, headers: vec![] },
                Frame::RstStream { id: 3, status: spdy::CANCEL },
                Frame::Data { id: 1, fin: false, data: b"hello".to_vec() },
                Frame::Ping(1),
                Frame::Data { id: 1, fin: true, data: vec![] },
            ]
        );
        // Done: the server waits for the client to close, then returns.
        client.conn.send_close_notify();
        client.flush().unwrap();
        let h = server.join().unwrap();
        assert!(h.done && !h.aborted);
    }

    /// A client's GOAWAY ends the input of every stream, as spdystream's
    /// server side does; frames after it are not read.
    #[test]
    fn goaway_ends_every_streams_input() {
        let (server, mut client) = start("goaway");
        let mut enc = Encoder::default();
        let mut out = Vec::new();
        enc.syn_stream(&mut out, 1, false, &[("streamtype", "last")]);
        Encoder::goaway(&mut out, 0, 0);
        Encoder::data(&mut out, 1, false, b"ignored");
        client.write_all(&out).unwrap();
        let (mut dec, mut buf) = (Decoder::default(), Vec::new());
        let frames = read_frames(&mut client, &mut dec, &mut buf, 2);
        assert_eq!(frames, vec![Frame::SynReply { id: 1, fin: false, headers: vec![] }, Frame::Data { id: 1, fin: true, data: vec![] }]);
        drop(client);
        let h = server.join().unwrap();
        assert!(h.done && !h.aborted);
    }

    #[test]
    fn a_client_that_leaves_aborts_the_handler() {
        let (server, mut client) = start("leave");
        let mut out = Vec::new();
        Encoder::default().syn_stream(&mut out, 1, false, &[("streamtype", "last")]);
        client.write_all(&out).unwrap();
        let (mut dec, mut buf) = (Decoder::default(), Vec::new());
        assert_eq!(read_frames(&mut client, &mut dec, &mut buf, 1), vec![Frame::SynReply { id: 1, fin: false, headers: vec![] }]);
        drop(client);
        let h = server.join().unwrap();
        assert!(!h.done && h.aborted);
    }
}
