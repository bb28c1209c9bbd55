//! The remote-command protocol of `/exec` and `/attach` over SPDY
//! (`channel.k8s.io` v1 to v4), as upstream's
//! `k8s.io/kubelet/pkg/cri/streaming/remotecommand` serves it.
//!
//! The client opens one stream per channel, each named by its `streamType`
//! header: `error`, then `stdin`, `stdout`, `stderr` as the request's
//! `input`/`output`/`error` query flags asked, and `resize` when `tty=1`
//! (v3+). Once all have arrived the command starts; its output goes out on
//! stdout/stderr, which are half-closed at its end, and the result is
//! written on the error stream: v4 sends a `metav1.Status` as JSON (Success,
//! or Failure with reason NonZeroExitCode and the code as an ExitCode cause,
//! or InternalError); v1–v3 send an error's text only. Resize events are
//! JSON objects `{"Width":w,"Height":h}` one after another.
//!
//! Over WebSocket the same channels are numbered (stdin 0, stdout 1, stderr
//! 2, error 3, resize 4) and all open from the start
//! ([`websocket_channels`]).
//!
//! The command itself is a [`Source`]: a process (`execproc`) or a
//! container's log (`attach`).

use super::kubelet::Request;
use super::session::{Handler, Out};
use super::spdy::{header, Headers};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// What picolet speaks over SPDY, preferred first (upstream's list; v5 only
/// adds a WebSocket close signal).
pub const PROTOCOLS: [&str; 4] = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/// What picolet speaks over WebSocket ("": none named, binary).
pub const WEBSOCKET_PROTOCOLS: [&str; 5] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io", ""];

/// The SPDY protocol whose behaviour a WebSocket protocol has: v4 sends
/// the status as JSON; the older ones send error text, as SPDY v3 (and,
/// unlike SPDY v1/v2, always have a resize channel).
pub fn websocket_semantics(protocol: &str) -> &'static str {
    if protocol.starts_with("v4.") {
        PROTOCOLS[0]
    } else {
        PROTOCOLS[1]
    }
}

/// The WebSocket channels of a session, as streams: stdin 0, stdout 1,
/// stderr 2, error 3, resize 4 (the ones `opts` asks for, and error).
pub fn websocket_channels(opts: Options) -> Vec<(u32, Headers)> {
    let named = |id: u32, t: &str| (id, vec![("streamtype".to_string(), t.to_string())]);
    let mut c = vec![named(3, "error")];
    for (want, id, t) in [(opts.stdin, 0, "stdin"), (opts.stdout, 1, "stdout"), (opts.stderr, 2, "stderr"), (opts.tty, 4, "resize")] {
        if want {
            c.push(named(id, t));
        }
    }
    c
}

/// How long the client has to open all its streams (upstream's default).
const STREAM_CREATION: Duration = Duration::from_secs(30);
/// Largest resize message kept while incomplete.
const MAX_RESIZE: usize = 4096;

/// Which channels a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// From the query as upstream reads it: `input`, `output`, `error`,
    /// `tty` equal to "1". A tty has no separate stderr.
    pub fn from_request(req: &Request) -> Result<Options, String> {
        let one = |k: &str| req.query(k) == Some("1");
        let tty = one("tty");
        let o = Options { stdin: one("input"), stdout: one("output"), stderr: one("error") && !tty, tty };
        if !o.stdin && !o.stdout && !o.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(o)
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Exited with a non-zero code; `what` describes the command.
    Exit { code: i32, what: String },
    /// Could not run, or broke: becomes an InternalError.
    Error(String),
}

/// The v4 error-stream message for `o` (`metav1.Status` as JSON).
pub fn status_json(o: &Outcome) -> serde_json::Value {
    match o {
        Outcome::Success => serde_json::json!({"metadata": {}, "status": "Success"}),
        Outcome::Exit { code, what } => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {what} exited with {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Error(e) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {e}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": e}]},
            "code": 500,
        }),
    }
}

/// What goes on the error stream for `o` under `protocol`: v4 always sends
/// the status; older versions send only an error's message.
pub fn error_stream_message(protocol: &str, o: &Outcome) -> Vec<u8> {
    if protocol == PROTOCOLS[0] {
        return serde_json::to_vec(&status_json(o)).unwrap_or_default();
    }
    match status_json(o)["message"].as_str() {
        Some(m) if *o != Outcome::Success => m.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// Complete terminal sizes from `buf`, (width, height) in order; what is
/// left is an incomplete message. A line that is not a size is skipped.
pub fn parse_resizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width", default)]
        width: u16,
        #[serde(rename = "Height", default)]
        height: u16,
    }
    let mut sizes = Vec::new();
    let mut used = 0;
    loop {
        let mut stream = serde_json::Deserializer::from_slice(&buf[used..]).into_iter::<Size>();
        match stream.next() {
            Some(Ok(s)) => {
                sizes.push((s.width, s.height));
                used += stream.byte_offset();
            }
            Some(Err(e)) if !e.is_eof() => match buf[used..].iter().position(|&b| b == b'\n') {
                Some(p) => used += p + 1,
                None => used = buf.len(),
            },
            _ => break,
        }
    }
    buf.drain(..used);
    if buf.len() > MAX_RESIZE {
        buf.clear();
    }
    sizes
}

/// Output channel of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
}

/// The command behind a session: a process or a container's output.
pub trait Source {
    /// Descriptors to poll; `room` is false when output must wait.
    fn fds(&self, room: bool, fds: &mut Vec<(RawFd, i16)>);
    /// After poll, with the `revents` of [`Source::fds`] (empty when called
    /// for the deadline): reads at most `room` bytes of output, handing them
    /// to `emit`.
    fn ready(&mut self, revents: &[i16], room: usize, emit: &mut dyn FnMut(Channel, &[u8]));
    /// Input from the client's stdin stream.
    fn stdin(&mut self, data: &[u8]);
    /// The client closed stdin.
    fn stdin_eof(&mut self);
    /// Whether more stdin can be taken now.
    fn wants_stdin(&self) -> bool;
    fn resize(&mut self, width: u16, height: u16);
    /// The outcome, once all output has been emitted.
    fn outcome(&mut self) -> Option<Outcome>;
    /// The client left: stop the command.
    fn kill(&mut self);
    /// When [`Source::ready`] must be called even without events.
    fn deadline(&self) -> Option<Instant> {
        None
    }
}

/// Starts the source once the client's streams are all there.
pub type Starter<'a> = Box<dyn FnOnce() -> Result<Box<dyn Source>, String> + 'a>;

/// The streams of one session, by type.
#[derive(Debug, Default, Clone, Copy)]
struct Ids {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

/// The session handler: collects streams, runs the source, reports.
pub struct Remote<'a> {
    protocol: &'static str,
    expected: usize,
    received: usize,
    ids: Ids,
    start: Option<Starter<'a>>,
    source: Option<Box<dyn Source>>,
    resize_buf: Vec<u8>,
    created: Instant,
    done: bool,
}

impl<'a> Remote<'a> {
    pub fn new(protocol: &'static str, opts: Options, start: Starter<'a>) -> Remote<'a> {
        let resize = opts.tty && matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
        let expected = 1 + [opts.stdin, opts.stdout, opts.stderr, resize].iter().filter(|&&b| b).count();
        Remote {
            protocol,
            expected,
            received: 0,
            ids: Ids::default(),
            start: Some(start),
            source: None,
            resize_buf: Vec::new(),
            created: Instant::now(),
            done: false,
        }
    }

    /// Ends the session with `outcome`: output streams half-closed, the
    /// result on the error stream, which is then closed too.
    fn finish(&mut self, out: &mut Out, outcome: &Outcome) {
        if let Outcome::Error(e) = outcome {
            log::info!("exec/attach session: {e}");
        }
        for id in [self.ids.stdout, self.ids.stderr].into_iter().flatten() {
            out.fin(id);
        }
        if let Some(id) = self.ids.error {
            let msg = error_stream_message(self.protocol, outcome);
            if !msg.is_empty() {
                out.data(id, &msg);
            }
            out.fin(id);
        }
        for id in [self.ids.stdin, self.ids.resize].into_iter().flatten() {
            out.fin(id);
        }
        self.source = None;
        self.done = true;
    }

    fn pump(&mut self, out: &mut Out, revents: &[i16]) {
        let Some(src) = self.source.as_mut() else { return };
        let ids = self.ids;
        src.ready(revents, out.room(), &mut |ch, bytes| {
            let id = match ch {
                Channel::Stdout => ids.stdout,
                Channel::Stderr => ids.stderr,
            };
            if let Some(id) = id {
                out.data(id, bytes);
            }
        });
        if let Some(o) = src.outcome() {
            self.finish(out, &o);
        }
    }
}

impl Handler for Remote<'_> {
    fn accept(&mut self, _id: u32, _headers: &Headers) -> bool {
        // Upstream accepts every stream and sorts them afterwards.
        !self.done
    }

    fn opened(&mut self, out: &mut Out, id: u32, headers: &Headers) {
        if self.source.is_some() || self.start.is_none() {
            return; // a stream past the expected ones: ignored
        }
        let slot = match header(headers, "streamtype") {
            Some("error") => &mut self.ids.error,
            Some("stdin") => &mut self.ids.stdin,
            Some("stdout") => &mut self.ids.stdout,
            Some("stderr") => &mut self.ids.stderr,
            Some("resize") if self.protocol != PROTOCOLS[2] && self.protocol != PROTOCOLS[3] => &mut self.ids.resize,
            other => {
                log::debug!("exec/attach: ignoring stream {id} of type {other:?}");
                return;
            }
        };
        if slot.is_none() {
            *slot = Some(id);
            self.received += 1;
        }
        if self.received < self.expected {
            return;
        }
        // SPDY v1 closes stdin at once (its historical behaviour).
        if self.protocol == PROTOCOLS[3] {
            if let Some(id) = self.ids.stdin {
                out.fin(id);
            }
        }
        // On WebSocket, an empty message on the first output channel tells
        // the client the session is set up (upstream does the same).
        if out.websocket() {
            if let Some(id) = self.ids.stdout.or(self.ids.stderr).or(self.ids.error) {
                out.message(id, &[]);
            }
        }
        let start = self.start.take().expect("checked above");
        match start() {
            Ok(s) => self.source = Some(s),
            Err(e) => self.finish(out, &Outcome::Error(e)),
        }
    }

    fn data(&mut self, _out: &mut Out, id: u32, data: &[u8]) {
        if Some(id) == self.ids.resize {
            self.resize_buf.extend_from_slice(data);
            let sizes = parse_resizes(&mut self.resize_buf);
            if let Some(src) = self.source.as_mut() {
                for (w, h) in sizes {
                    src.resize(w, h);
                }
            }
        } else if Some(id) == self.ids.stdin {
            if let Some(src) = self.source.as_mut() {
                src.stdin(data);
            }
        }
    }

    fn fin(&mut self, _out: &mut Out, id: u32) {
        if Some(id) == self.ids.stdin {
            if let Some(src) = self.source.as_mut() {
                src.stdin_eof();
            }
        }
    }

    fn reset(&mut self, _out: &mut Out, id: u32) {
        // A reset stdin is an end of input; a reset output just discards.
        self.fin(_out, id);
    }

    fn wants_input(&self) -> bool {
        self.source.as_ref().map_or(true, |s| s.wants_stdin())
    }

    fn fds(&self, out: &Out, fds: &mut Vec<(RawFd, i16)>) {
        if let Some(src) = &self.source {
            src.fds(out.room() > 0, fds);
        }
    }

    fn ready(&mut self, out: &mut Out, revents: &[i16]) {
        self.pump(out, revents);
    }

    fn deadline(&self, out: &Out) -> Option<Instant> {
        match &self.source {
            // Without room, the socket's progress wakes the loop instead.
            Some(s) if out.room() > 0 => s.deadline(),
            Some(_) => None,
            None if !self.done => Some(self.created + STREAM_CREATION),
            None => None,
        }
    }

    fn tick(&mut self, out: &mut Out, now: Instant) {
        if self.source.is_none() && !self.done && now >= self.created + STREAM_CREATION {
            log::info!("exec/attach: timed out waiting for the client to create streams");
            self.start = None;
            self.done = true;
            return;
        }
        self.pump(out, &[]);
    }

    fn done(&self) -> bool {
        self.done
    }

    fn abort(&mut self) {
        if let Some(mut s) = self.source.take() {
            s.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_query() {
        let req = |q: &[(&str, &str)]| Request {
            query: q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        assert_eq!(
            Options::from_request(&req(&[("input", "1"), ("output", "1"), ("error", "1")])),
            Ok(Options { stdin: true, stdout: true, stderr: true, tty: false })
        );
        // A tty merges stderr into stdout.
        assert_eq!(
            Options::from_request(&req(&[("output", "1"), ("error", "1"), ("tty", "1")])),
            Ok(Options { stdin: false, stdout: true, stderr: false, tty: true })
        );
        assert!(Options::from_request(&req(&[("output", "true")])).is_err());
        assert!(Options::from_request(&req(&[])).is_err());
    }

    #[test]
    fn v4_status_json() {
        assert_eq!(
            serde_json::to_string(&status_json(&Outcome::Success)).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let v = status_json(&Outcome::Exit { code: 3, what: "command [sh -c exit 3]".into() });
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let v = status_json(&Outcome::Error("boom".into()));
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert_eq!(v["message"], "Internal error occurred: boom");
    }

    #[test]
    fn older_protocols_send_only_errors() {
        assert!(error_stream_message("v3.channel.k8s.io", &Outcome::Success).is_empty());
        assert_eq!(error_stream_message("v2.channel.k8s.io", &Outcome::Error("x".into())), b"Internal error occurred: x");
        assert!(error_stream_message("v4.channel.k8s.io", &Outcome::Success).starts_with(b"{"));
    }

    #[test]
    fn resize_messages_split_anywhere() {
        let mut buf = Vec::new();
        let all = b"{\"Width\":80,\"Height\":24}\n{\"Width\":100,\"Height\":30}\n";
        let mut got = Vec::new();
        for chunk in all.chunks(7) {
            buf.extend_from_slice(chunk);
            got.extend(parse_resizes(&mut buf));
        }
        assert_eq!(got, vec![(80, 24), (100, 30)]);
        assert!(buf.iter().all(u8::is_ascii_whitespace));
        buf.clear();
        buf.extend_from_slice(b"junk\n{\"Width\":1,\"Height\":2}\n");
        assert_eq!(parse_resizes(&mut buf), vec![(1, 2)]);
    }
}
