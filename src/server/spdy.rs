//! SPDY/3.1 framing, without I/O: what kube-apiserver (through moby's
//! spdystream) speaks to a kubelet after `Upgrade: SPDY/3.1` for exec,
//! attach and port-forward.
//!
//! Does: decode and encode every SPDY/3 frame type; header blocks are one
//! zlib stream per direction and connection, primed with the SPDY/3
//! dictionary. Incoming blocks are inflated with flate2 (its miniz_oxide
//! backend has no `set_dictionary`, so the raw inflater is first fed a stored
//! block holding the dictionary, which puts it in the window). Outgoing blocks
//! are stored (uncompressed) deflate blocks after a zlib header without a
//! dictionary, which Go's zlib reader accepts and costs no compressor state.
//! DATA frames are handed out in pieces as they arrive, so a large frame
//! never has to sit whole in memory.
//!
//! Not here: flow control (spdystream neither sends nor honours
//! WINDOW_UPDATE, so neither does picolet), server push, stream priorities,
//! CREDENTIAL frames (SPDY/3 only, unused).

use flate2::{Decompress, FlushDecompress, Status};
use std::fmt;

/// Largest control frame accepted (header blocks are a few hundred bytes).
pub const MAX_CONTROL: usize = 64 * 1024;
/// Largest inflated header block accepted.
const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// RST_STREAM status codes (SPDY/3 section 2.6.3).
pub const PROTOCOL_ERROR: u32 = 1;
pub const CANCEL: u32 = 5;

/// Header names (lowercase) and values; a name with several values appears
/// once per value.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name`.
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// One frame (or, for DATA, one piece of a frame: `fin` is set on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream { id: u32, associated: u32, priority: u8, fin: bool, unidirectional: bool, headers: Headers },
    SynReply { id: u32, fin: bool, headers: Headers },
    RstStream { id: u32, status: u32 },
    /// (flags, id, value) triples.
    Settings(Vec<(u8, u32, u32)>),
    Ping(u32),
    GoAway { last_good: u32, status: u32 },
    Headers { id: u32, fin: bool, headers: Headers },
    WindowUpdate { id: u32, delta: u32 },
    Data { id: u32, fin: bool, data: Vec<u8> },
    /// A control frame type SPDY/3 does not define: to be ignored.
    Unknown { kind: u16 },
}

/// Why the peer's bytes could not be decoded; the connection is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Version(u16),
    TooLarge { kind: u16, len: usize },
    /// A frame whose fields do not fit its type.
    Malformed(&'static str),
    /// The header block's zlib stream is broken.
    Compression(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Version(v) => write!(f, "SPDY version {v} is not 3"),
            Error::TooLarge { kind, len } => write!(f, "SPDY control frame type {kind} of {len} bytes is too large"),
            Error::Malformed(what) => write!(f, "malformed SPDY frame: {what}"),
            Error::Compression(e) => write!(f, "SPDY header block: {e}"),
        }
    }
}

impl std::error::Error for Error {}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 1;
const FLAG_UNIDIRECTIONAL: u8 = 2;

/// The SPDY/3 header dictionary (draft-mbelshe-httpbis-spdy-00 section
/// 2.6.10.1): these names, each prefixed by its length as a big-endian u32,
/// then [`DICTIONARY_TAIL`].
const DICTIONARY_NAMES: [&str; 65] = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
];
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);
/// Adler-32 of the dictionary: the DICTID a zlib header names it by.
const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for name in DICTIONARY_NAMES {
        d.extend_from_slice(&(name.len() as u32).to_be_bytes());
        d.extend_from_slice(name.as_bytes());
    }
    d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    d
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Inflates the peer's header blocks: one zlib stream across the connection.
struct Inflater {
    /// None until the first block, whose zlib header says whether the
    /// dictionary is in use.
    z: Option<Decompress>,
}

impl Inflater {
    fn inflate(&mut self, mut block: &[u8]) -> Result<Vec<u8>, Error> {
        let bad = |what: &str| Error::Compression(what.to_string());
        if self.z.is_none() {
            if block.len() < 2 || block[0] & 0x0f != 8 || (u16::from(block[0]) << 8 | u16::from(block[1])) % 31 != 0 {
                return Err(bad("not a zlib stream"));
            }
            let mut z = Decompress::new(false);
            if block[1] & 0x20 != 0 {
                if block.len() < 6 || be32(&block[2..6]) != DICTIONARY_ID {
                    return Err(bad("unknown preset dictionary"));
                }
                // A stored block carrying the dictionary: once inflated it is
                // the window that the peer's back-references point into.
                let dict = dictionary();
                let len = dict.len() as u16;
                let mut prime = vec![0u8];
                prime.extend_from_slice(&len.to_le_bytes());
                prime.extend_from_slice(&(!len).to_le_bytes());
                prime.extend_from_slice(&dict);
                let mut sink = Vec::with_capacity(dict.len());
                z.decompress_vec(&prime, &mut sink, FlushDecompress::Sync).map_err(|e| Error::Compression(e.to_string()))?;
                if sink != dict {
                    return Err(bad("priming the dictionary failed"));
                }
                block = &block[6..];
            } else {
                block = &block[2..];
            }
            self.z = Some(z);
        }
        let z = self.z.as_mut().expect("set above");
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let (in0, out0) = (z.total_in(), out.len());
            let status = z.decompress_vec(block, &mut out, FlushDecompress::Sync).map_err(|e| Error::Compression(e.to_string()))?;
            block = &block[(z.total_in() - in0) as usize..];
            if out.len() > MAX_HEADER_BLOCK {
                return Err(Error::TooLarge { kind: 0, len: out.len() });
            }
            if status == Status::StreamEnd {
                return Err(bad("the stream ended"));
            }
            // Done when all input is used and the last call had output room to spare.
            if block.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if z.total_in() == in0 && out.len() == out0 && out.len() < out.capacity() {
                return Err(bad("truncated block"));
            }
        }
    }
}

/// Parses an inflated header block.
fn parse_headers(b: &[u8]) -> Result<Headers, Error> {
    let mut at = 0;
    let next = |at: &mut usize| -> Result<&[u8], Error> {
        let len = b.get(*at..*at + 4).map(be32).ok_or(Error::Malformed("header block"))? as usize;
        // 32-bit targets: a length near 4 GiB must not wrap the end around.
        let end = (*at + 4).checked_add(len).ok_or(Error::Malformed("header block"))?;
        let s = b.get(*at + 4..end).ok_or(Error::Malformed("header block"))?;
        *at = end;
        Ok(s)
    };
    let count = b.get(0..4).map(be32).ok_or(Error::Malformed("header block"))? as usize;
    at += 4;
    if count > b.len() / 8 {
        return Err(Error::Malformed("header count"));
    }
    let mut h = Vec::with_capacity(count);
    for _ in 0..count {
        let name = String::from_utf8_lossy(next(&mut at)?).to_ascii_lowercase();
        let values = next(&mut at)?;
        for v in values.split(|&c| c == 0) {
            h.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(h)
}

/// Turns the peer's bytes into frames.
pub struct Decoder {
    inflater: Inflater,
    /// Inside a DATA frame: (stream, bytes still to come, FIN flag).
    data: Option<(u32, usize, bool)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { inflater: Inflater { z: None }, data: None }
    }
}

impl Decoder {
    /// Decodes the next frame at the front of `buf`: the frame and the bytes
    /// it used, or None until `buf` holds enough. A DATA frame comes out in
    /// pieces as its payload arrives.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, Error> {
        if let Some((id, left, fin)) = self.data {
            if buf.is_empty() {
                return Ok(None);
            }
            let n = left.min(buf.len());
            self.data = (n < left).then_some((id, left - n, fin));
            return Ok(Some((Frame::Data { id, fin: fin && n == left, data: buf[..n].to_vec() }, n)));
        }
        if buf.len() < 8 {
            return Ok(None);
        }
        let flags = buf[4];
        let len = (be32(&buf[4..8]) & 0x00ff_ffff) as usize;
        if buf[0] & 0x80 == 0 {
            let id = be32(&buf[0..4]);
            if id == 0 {
                return Err(Error::Malformed("DATA on stream 0"));
            }
            let fin = flags & FLAG_FIN != 0;
            if len == 0 {
                return Ok(Some((Frame::Data { id, fin, data: Vec::new() }, 8)));
            }
            if buf.len() == 8 {
                return Ok(None);
            }
            let n = len.min(buf.len() - 8);
            self.data = (n < len).then_some((id, len - n, fin));
            return Ok(Some((Frame::Data { id, fin: fin && n == len, data: buf[8..8 + n].to_vec() }, 8 + n)));
        }
        let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
        let kind = u16::from_be_bytes([buf[2], buf[3]]);
        if version != 3 {
            return Err(Error::Version(version));
        }
        if len > MAX_CONTROL {
            return Err(Error::TooLarge { kind, len });
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let p = &buf[8..8 + len];
        let need = |n: usize| if p.len() < n { Err(Error::Malformed("short control frame")) } else { Ok(()) };
        let id31 = |b: &[u8]| be32(b) & 0x7fff_ffff;
        let fin = flags & FLAG_FIN != 0;
        let frame = match kind {
            SYN_STREAM => {
                need(10)?;
                let headers = parse_headers(&self.inflater.inflate(&p[10..])?)?;
                let id = id31(&p[0..4]);
                if id == 0 {
                    return Err(Error::Malformed("SYN_STREAM for stream 0"));
                }
                Frame::SynStream {
                    id,
                    associated: id31(&p[4..8]),
                    priority: p[8] >> 5,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4)?;
                let headers = parse_headers(&self.inflater.inflate(&p[4..])?)?;
                let id = id31(&p[0..4]);
                if kind == SYN_REPLY {
                    Frame::SynReply { id, fin, headers }
                } else {
                    Frame::Headers { id, fin, headers }
                }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream { id: id31(&p[0..4]), status: be32(&p[4..8]) }
            }
            SETTINGS => {
                need(4)?;
                let n = be32(&p[0..4]) as usize;
                // checked: on 32-bit targets 4 + n * 8 wraps for a large n.
                if n.checked_mul(8).and_then(|b| b.checked_add(4)).map_or(true, |need| p.len() < need) {
                    return Err(Error::Malformed("SETTINGS count"));
                }
                Frame::Settings(
                    (0..n)
                        .map(|i| {
                            let e = &p[4 + 8 * i..];
                            (e[0], be32(&e[0..4]) & 0x00ff_ffff, be32(&e[4..8]))
                        })
                        .collect(),
                )
            }
            PING => {
                need(4)?;
                Frame::Ping(be32(&p[0..4]))
            }
            GOAWAY => {
                need(4)?;
                // SPDY/2 had no status; accept its absence.
                Frame::GoAway { last_good: id31(&p[0..4]), status: p.get(4..8).map(be32).unwrap_or(0) }
            }
            WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate { id: id31(&p[0..4]), delta: be32(&p[4..8]) & 0x7fff_ffff }
            }
            _ => Frame::Unknown { kind },
        };
        Ok(Some((frame, 8 + len)))
    }
}

/// Turns frames into bytes, appended to the caller's buffer.
#[derive(Default)]
pub struct Encoder {
    /// The zlib header of our header-block stream has been sent.
    started: bool,
}

impl Encoder {
    fn control(out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]) {
        out.extend_from_slice(&(0x8003u16).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(u32::from(flags) << 24 | payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// The next piece of our header-block zlib stream: stored deflate
    /// blocks, byte-aligned, ended like a sync flush.
    fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut names: Vec<&str> = Vec::new();
        for (k, _) in headers {
            if !names.contains(k) {
                names.push(k);
            }
        }
        let mut raw = Vec::new();
        raw.extend_from_slice(&(names.len() as u32).to_be_bytes());
        for name in names {
            let values: Vec<&str> = headers.iter().filter(|(k, _)| *k == name).map(|(_, v)| *v).collect();
            let value = values.join("\0");
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut z = Vec::with_capacity(raw.len() + 8);
        if !self.started {
            // CM 8, 32K window, no preset dictionary, check bits.
            z.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in raw.chunks(0xffff) {
            let len = chunk.len() as u16;
            z.push(0); // BFINAL 0, BTYPE 00 (stored), padding
            z.extend_from_slice(&len.to_le_bytes());
            z.extend_from_slice(&(!len).to_le_bytes());
            z.extend_from_slice(chunk);
        }
        // An empty stored block, as a zlib sync flush ends: Go's inflater
        // hands out a block's bytes only once it has seen the next block.
        z.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        z
    }

    pub fn syn_reply(&mut self, out: &mut Vec<u8>, id: u32, fin: bool, headers: &[(&str, &str)]) {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&self.header_block(headers));
        Self::control(out, SYN_REPLY, if fin { FLAG_FIN } else { 0 }, &p);
    }

    /// Used by tests to play the client.
    #[cfg(test)]
    pub fn syn_stream(&mut self, out: &mut Vec<u8>, id: u32, fin: bool, headers: &[(&str, &str)]) {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&self.header_block(headers));
        Self::control(out, SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &p);
    }

    pub fn rst_stream(out: &mut Vec<u8>, id: u32, status: u32) {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&status.to_be_bytes());
        Self::control(out, RST_STREAM, 0, &p);
    }

    pub fn ping(out: &mut Vec<u8>, id: u32) {
        Self::control(out, PING, 0, &id.to_be_bytes());
    }

    pub fn goaway(out: &mut Vec<u8>, last_good: u32, status: u32) {
        let mut p = last_good.to_be_bytes().to_vec();
        p.extend_from_slice(&status.to_be_bytes());
        Self::control(out, GOAWAY, 0, &p);
    }

    /// One DATA frame; `data` must be under 16 MiB.
    pub fn data(out: &mut Vec<u8>, id: u32, fin: bool, data: &[u8]) {
        debug_assert!(data.len() < 1 << 24);
        out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&(u32::from(if fin { FLAG_FIN } else { 0 }) << 24 | data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(b: &[u8]) -> u32 {
        let (mut a, mut s) = (1u32, 0u32);
        for &x in b {
            a = (a + u32::from(x)) % 65521;
            s = (s + a) % 65521;
        }
        s << 16 | a
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Decodes all of `bytes`, feeding them `step` at a time.
    fn decode_all(bytes: &[u8], step: usize) -> Vec<Frame> {
        let mut d = Decoder::default();
        let (mut buf, mut frames) = (Vec::new(), Vec::new());
        for chunk in bytes.chunks(step) {
            buf.extend_from_slice(chunk);
            while let Some((f, used)) = d.decode(&buf).unwrap() {
                buf.drain(..used);
                frames.push(f);
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        frames
    }

    /// Rejoins DATA pieces so frame lists compare whatever the feeding step.
    fn join(frames: Vec<Frame>) -> Vec<Frame> {
        let mut out: Vec<Frame> = Vec::new();
        for f in frames {
            if let (Some(Frame::Data { id: pid, fin: pfin, data: pdata }), Frame::Data { id, fin, data }) = (out.last_mut(), &f) {
                if *pid == *id && !*pfin {
                    pdata.extend_from_slice(data);
                    *pfin = *fin;
                    continue;
                }
            }
            out.push(f);
        }
        out
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(adler32(&d), DICTIONARY_ID);
    }

    /// Written by moby/spdystream's framer (Go's zlib at BestCompression with
    /// the SPDY/3 dictionary), as kube-apiserver sends them: SYN_STREAMs for
    /// an exec's error/stdin/stdout/resize streams and a port-forward pair,
    /// DATA with and without FIN, PING, SETTINGS, WINDOW_UPDATE, RST_STREAM,
    /// GOAWAY. Generated once by a small Go program outside the repository.
    const GO_CLIENT: &str = include_str!("testdata/spdy_go_client.hex");

    #[test]
    fn decodes_spdystream_client_frames() {
        let bytes = unhex(GO_CLIENT);
        let want = vec![
            Frame::SynStream { id: 1, associated: 0, priority: 0, fin: false, unidirectional: false, headers: h(&[("streamtype", "error")]) },
            Frame::SynStream { id: 3, associated: 0, priority: 0, fin: false, unidirectional: false, headers: h(&[("streamtype", "stdin")]) },
            Frame::SynStream { id: 5, associated: 0, priority: 0, fin: false, unidirectional: false, headers: h(&[("streamtype", "stdout")]) },
            Frame::SynStream { id: 7, associated: 0, priority: 0, fin: false, unidirectional: false, headers: h(&[("streamtype", "resize")]) },
            Frame::Data { id: 3, fin: false, data: b"hello\n".to_vec() },
            Frame::Data { id: 7, fin: false, data: b"{\"Width\":80,\"Height\":24}\n".to_vec() },
            Frame::Data { id: 3, fin: true, data: Vec::new() },
            Frame::Ping(1),
            Frame::Settings(vec![(0, 7, 65536)]),
            Frame::WindowUpdate { id: 5, delta: 1000 },
            Frame::Data { id: 3, fin: true, data: vec![b'x'; 3000] },
            Frame::RstStream { id: 5, status: CANCEL },
            Frame::GoAway { last_good: 0, status: 0 },
        ];
        for step in [1, 7, 4096, bytes.len()] {
            let got = join(decode_all(&bytes, step));
            let (syn, rest) = got.split_at(4);
            assert_eq!(syn, &want[..4], "step {step}");
            assert_eq!(rest, &want[4..], "step {step}");
        }
    }

    /// A port-forward pair: three headers per block, values as Go wrote them.
    #[test]
    fn decodes_port_forward_headers() {
        let bytes = unhex(include_str!("testdata/spdy_go_portforward.hex"));
        let frames = decode_all(&bytes, 3);
        let Frame::SynStream { id: 1, headers, .. } = &frames[0] else { panic!("{frames:?}") };
        assert_eq!(header(headers, "streamtype"), Some("error"));
        assert_eq!(header(headers, "port"), Some("8080"));
        assert_eq!(header(headers, "requestid"), Some("0"));
        let Frame::SynStream { id: 3, headers, .. } = &frames[1] else { panic!("{frames:?}") };
        assert_eq!(header(headers, "streamtype"), Some("data"));
        assert_eq!(header(headers, "port"), Some("8080"));
    }

    #[test]
    fn encoder_round_trips_through_decoder() {
        let mut e = Encoder::default();
        let mut out = Vec::new();
        e.syn_stream(&mut out, 1, false, &[("streamtype", "data"), ("port", "80"), ("port", "81")]);
        e.syn_reply(&mut out, 1, false, &[]);
        e.syn_reply(&mut out, 3, true, &[("x-a", "b")]);
        Encoder::data(&mut out, 1, false, b"abc");
        Encoder::data(&mut out, 1, true, b"");
        Encoder::rst_stream(&mut out, 3, CANCEL);
        Encoder::ping(&mut out, 2);
        Encoder::goaway(&mut out, 7, 0);
        let frames = join(decode_all(&out, 5));
        assert_eq!(
            frames,
            vec![
                Frame::SynStream {
                    id: 1,
                    associated: 0,
                    priority: 0,
                    fin: false,
                    unidirectional: false,
                    headers: h(&[("streamtype", "data"), ("port", "80"), ("port", "81")])
                },
                Frame::SynReply { id: 1, fin: false, headers: vec![] },
                Frame::SynReply { id: 3, fin: true, headers: h(&[("x-a", "b")]) },
                Frame::Data { id: 1, fin: true, data: b"abc".to_vec() },
                Frame::RstStream { id: 3, status: CANCEL },
                Frame::Ping(2),
                Frame::GoAway { last_good: 7, status: 0 },
            ]
        );
    }

    /// What picolet sends, byte for byte; spdystream's framer (Go's zlib
    /// reader with the dictionary) decoded exactly this stream as two
    /// SYN_REPLYs with no headers and one with `x-a: b`, when the test was
    /// written.
    #[test]
    fn encoder_output_is_stable() {
        let mut e = Encoder::default();
        let mut out = Vec::new();
        e.syn_reply(&mut out, 1, false, &[]);
        e.syn_reply(&mut out, 3, false, &[]);
        e.syn_reply(&mut out, 5, true, &[("x-a", "b")]);
        let want = unhex(
            "80030002 00000014 00000001 7801 000400fbff 00000000 000000ffff
             80030002 00000012 00000003 000400fbff 00000000 000000ffff
             80030002 0100001e 00000005 001000efff 00000001 00000003 782d61 00000001 62 000000ffff",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn rejects_bad_input() {
        let mut d = Decoder::default();
        // SPDY/2 control frame.
        assert_eq!(d.decode(&unhex("80020001 00000000")), Err(Error::Version(2)));
        // A control frame larger than allowed.
        assert!(matches!(Decoder::default().decode(&unhex("80030001 00ffffff")), Err(Error::TooLarge { .. })));
        // A header block that is not zlib.
        let mut bad = unhex("80030001 00000010 00000001 00000000 0000");
        bad.extend_from_slice(b"garbage!");
        bad.truncate(8 + 16);
        assert!(matches!(Decoder::default().decode(&bad), Err(Error::Compression(_))));
        // DATA on stream 0.
        assert!(matches!(Decoder::default().decode(&unhex("00000000 00000001 61")), Err(Error::Malformed(_))));
        // Unknown control types are passed on (to be ignored).
        assert_eq!(Decoder::default().decode(&unhex("8003000a 00000000")), Ok(Some((Frame::Unknown { kind: 10 }, 8))));
    }

    #[test]
    fn header_count_cannot_claim_more_than_the_block() {
        assert!(parse_headers(&unhex("7fffffff 00000000")).is_err());
        assert!(parse_headers(&unhex("00000001 00000005 6162")).is_err());
        assert_eq!(parse_headers(&unhex("00000001 00000001 61 00000003 620063")).unwrap(), h(&[("a", "b"), ("a", "c")]));
        // Lengths near 4 GiB (that would wrap on 32-bit targets) are malformed, not a panic.
        assert!(parse_headers(&unhex("00000001 fffffffc 61626364 00000000")).is_err());
        assert!(parse_headers(&unhex("00000001 ffffffff 61626364 00000000")).is_err());
    }

    /// A SETTINGS count whose size would wrap on 32-bit targets (armv7).
    #[test]
    fn settings_count_cannot_claim_more_than_the_frame() {
        for count in ["20000000", "1fffffff", "ffffffff"] {
            let frame = unhex(&format!("80030004 00000004 {count}"));
            assert_eq!(Decoder::default().decode(&frame), Err(Error::Malformed("SETTINGS count")), "{count}");
        }
        let one = unhex("80030004 0000000c 00000001 01000007 00000064");
        assert_eq!(Decoder::default().decode(&one), Ok(Some((Frame::Settings(vec![(1, 7, 100)]), 20))));
    }
}
