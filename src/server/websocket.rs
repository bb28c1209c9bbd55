//! WebSocket (RFC 6455) for the streaming endpoints, without I/O: what
//! kube-apiserver passes through to a kubelet when a client asks for
//! `channel.k8s.io` style protocols that it does not translate to SPDY
//! itself (the Python client, dashboards, `v4.channel.k8s.io`), as upstream's
//! `wsstream` serves them.
//!
//! Each message starts with its channel: a byte (`channel.k8s.io`,
//! `v4.channel.k8s.io`) or an ASCII digit followed by base64 data
//! (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`). Channels are all
//! open from the start; there is no half-close (the v5 CLOSE signal exists
//! only between kubectl and the API server).
//!
//! Not here: extensions (no compression), client-side masking (a server
//! never masks).

use base64::Engine;
use std::fmt;

/// The largest message accepted from a client.
pub const MAX_MESSAGE: usize = 1 << 20;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const CONTINUATION: u8 = 0;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// Whether `req` asks for a WebSocket upgrade.
pub fn is_websocket(req: &super::kubelet::Request) -> bool {
    req.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && req.headers.iter().any(|(k, v)| k == "connection" && v.to_ascii_lowercase().contains("upgrade"))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{key}{GUID}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Checks the handshake and picks the subprotocol: the first the client
/// lists that `supported` has ("" stands for none offered). On success, the
/// protocol and the 101 response head.
pub fn handshake(req: &super::kubelet::Request, supported: &[&'static str]) -> Result<(&'static str, String), (u16, String)> {
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err((400, "unable to upgrade: Sec-WebSocket-Version 13 is required".into()));
    }
    let Some(key) = req.header("sec-websocket-key").map(str::trim).filter(|k| !k.is_empty()) else {
        return Err((400, "unable to upgrade: Sec-WebSocket-Key is required".into()));
    };
    let mut offered: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k == "sec-websocket-protocol")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        offered.push("");
    }
    let Some(chosen) = offered.iter().find_map(|o| supported.iter().find(|s| *s == o)) else {
        return Err((400, format!("unable to upgrade: requested protocol(s) are not supported: {offered:?}; supports {supported:?}")));
    };
    let mut head = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n", accept_key(key));
    if !chosen.is_empty() {
        head.push_str(&format!("Sec-WebSocket-Protocol: {chosen}\r\n"));
    }
    head.push_str("\r\n");
    Ok((chosen, head))
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole data message (fragments joined).
    Message(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    /// The close code, if any.
    Close(Option<u16>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Unmasked,
    TooLarge(u64),
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unmasked => write!(f, "unmasked WebSocket frame from a client"),
            Error::TooLarge(n) => write!(f, "WebSocket message of {n} bytes is too large"),
            Error::Malformed(what) => write!(f, "malformed WebSocket frame: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Turns a client's bytes into events.
#[derive(Default)]
pub struct Decoder {
    /// A fragmented message so far.
    partial: Option<Vec<u8>>,
}

impl Decoder {
    /// The next event at the front of `buf` and the bytes used, or None
    /// until `buf` holds a whole frame (or, for a fragment, nothing to say).
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Option<Event>, usize)>, Error> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
        if buf[0] & 0x70 != 0 {
            return Err(Error::Malformed("reserved bits set"));
        }
        if buf[1] & 0x80 == 0 {
            return Err(Error::Unmasked);
        }
        let (len, mut at) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        let so_far = self.partial.as_ref().map_or(0, Vec::len) as u64;
        // Saturating: a length near 2^64 after a fragment must not wrap under the limit.
        if len.saturating_add(so_far) > MAX_MESSAGE as u64 {
            return Err(Error::TooLarge(len.saturating_add(so_far)));
        }
        let len = len as usize;
        if buf.len() < at + 4 + len {
            return Ok(None);
        }
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        let payload: Vec<u8> = buf[at..at + len].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        let used = at + len;
        let event = match opcode {
            TEXT | BINARY if self.partial.is_some() => return Err(Error::Malformed("new message inside a fragmented one")),
            TEXT | BINARY if fin => Some(Event::Message(payload)),
            TEXT | BINARY => {
                self.partial = Some(payload);
                None
            }
            CONTINUATION => {
                let Some(mut p) = self.partial.take() else { return Err(Error::Malformed("continuation without a message")) };
                p.extend_from_slice(&payload);
                if fin {
                    Some(Event::Message(p))
                } else {
                    self.partial = Some(p);
                    None
                }
            }
            CLOSE | PING | PONG if !fin || len > 125 => return Err(Error::Malformed("fragmented or long control frame")),
            CLOSE => Some(Event::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])))),
            PING => Some(Event::Ping(payload)),
            PONG => Some(Event::Pong),
            _ => return Err(Error::Malformed("unknown opcode")),
        };
        Ok(Some((event, used)))
    }
}

fn frame(out: &mut Vec<u8>, opcode: u8, payload_len: usize) {
    out.push(0x80 | opcode);
    match payload_len {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
}

/// One channel message: binary with the channel byte, or (base64 protocols)
/// text with the channel digit and the data in base64.
pub fn channel_message(out: &mut Vec<u8>, base64: bool, channel: u8, data: &[u8]) {
    if base64 {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        frame(out, TEXT, 1 + encoded.len());
        out.push(b'0' + channel);
        out.extend_from_slice(encoded.as_bytes());
    } else {
        frame(out, BINARY, 1 + data.len());
        out.push(channel);
        out.extend_from_slice(data);
    }
}

/// A client's channel message: (channel, data); None when it is not one.
pub fn parse_channel_message(base64: bool, msg: &[u8]) -> Option<(u8, Vec<u8>)> {
    let (&first, rest) = msg.split_first()?;
    if base64 {
        let data = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        Some((first.checked_sub(b'0')?, data))
    } else {
        Some((first, rest.to_vec()))
    }
}

pub fn pong(out: &mut Vec<u8>, data: &[u8]) {
    frame(out, PONG, data.len());
    out.extend_from_slice(data);
}

/// A close frame with `code` (1000: normal).
pub fn close(out: &mut Vec<u8>, code: u16) {
    frame(out, CLOSE, 2);
    out.extend_from_slice(&code.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::kubelet::Request;

    /// A client frame, masked as clients must.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = Vec::new();
        out.push(if fin { 0x80 } else { 0 } | opcode);
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn accept_key_is_rfc6455s() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn handshake_picks_the_clients_first_supported_protocol() {
        let req = |protos: &[&str]| {
            let mut headers = vec![
                ("upgrade".to_string(), "websocket".to_string()),
                ("connection".to_string(), "Upgrade".to_string()),
                ("sec-websocket-version".to_string(), "13".to_string()),
                ("sec-websocket-key".to_string(), "dGhlIHNhbXBsZSBub25jZQ==".to_string()),
            ];
            headers.extend(protos.iter().map(|p| ("sec-websocket-protocol".to_string(), p.to_string())));
            Request { headers, ..Default::default() }
        };
        let supported = ["", "channel.k8s.io", "v4.channel.k8s.io"];
        assert!(is_websocket(&req(&[])));
        let (p, head) = handshake(&req(&["v5.channel.k8s.io, v4.channel.k8s.io", "channel.k8s.io"]), &supported).unwrap();
        assert_eq!(p, "v4.channel.k8s.io");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
        assert!(head.contains("Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n"), "{head}");
        let (p, head) = handshake(&req(&[]), &supported).unwrap();
        assert_eq!(p, "");
        assert!(!head.contains("Sec-WebSocket-Protocol"));
        assert_eq!(handshake(&req(&["v9"]), &supported).unwrap_err().0, 400);
    }

    #[test]
    fn decodes_masked_frames_fragments_and_control_frames() {
        let mut bytes = client_frame(true, BINARY, b"\x00hello");
        bytes.extend(client_frame(false, TEXT, b"0aGk"));
        bytes.extend(client_frame(true, PING, b"p"));
        bytes.extend(client_frame(true, CONTINUATION, b"="));
        let big = vec![7u8; 70_000];
        bytes.extend(client_frame(true, BINARY, &big));
        bytes.extend(client_frame(true, CLOSE, &1000u16.to_be_bytes()));
        let mut d = Decoder::default();
        let mut events = Vec::new();
        let mut buf = Vec::new();
        for chunk in bytes.chunks(3) {
            buf.extend_from_slice(chunk);
            while let Some((e, used)) = d.decode(&buf).unwrap() {
                buf.drain(..used);
                events.extend(e);
            }
        }
        assert_eq!(
            events,
            vec![
                Event::Message(b"\x00hello".to_vec()),
                Event::Ping(b"p".to_vec()),
                Event::Message(b"0aGk=".to_vec()),
                Event::Message(big),
                Event::Close(Some(1000)),
            ]
        );
        assert_eq!(parse_channel_message(true, b"0aGk="), Some((0, b"hi".to_vec())));
        assert_eq!(parse_channel_message(false, b"\x04{}"), Some((4, b"{}".to_vec())));
        assert_eq!(Decoder::default().decode(&[0x82, 0x01, b'x']), Err(Error::Unmasked));
        let huge = client_frame(true, BINARY, &[]);
        let mut huge = huge[..1].to_vec();
        huge.extend_from_slice(&[0x80 | 127]);
        huge.extend_from_slice(&(u64::MAX / 2).to_be_bytes());
        assert!(matches!(Decoder::default().decode(&huge), Err(Error::TooLarge(_))));
        // After a fragment, a length that would wrap the sum under the limit.
        let mut d = Decoder::default();
        let first = client_frame(false, BINARY, b"x");
        assert_eq!(d.decode(&first), Ok(Some((None, first.len()))));
        let mut wrap = vec![CONTINUATION | 0x80, 0x80 | 127];
        wrap.extend_from_slice(&u64::MAX.to_be_bytes());
        wrap.extend_from_slice(&[0; 8]);
        assert_eq!(d.decode(&wrap), Err(Error::TooLarge(u64::MAX)));
    }

    #[test]
    fn encodes_channel_messages() {
        let mut out = Vec::new();
        channel_message(&mut out, false, 1, b"hi");
        assert_eq!(out, b"\x82\x03\x01hi");
        out.clear();
        channel_message(&mut out, true, 1, b"hi");
        assert_eq!(out, b"\x81\x051aGk=");
        out.clear();
        channel_message(&mut out, false, 1, &[0; 300]);
        assert_eq!(&out[..4], &[0x82, 126, 1, 45]);
        out.clear();
        close(&mut out, 1000);
        assert_eq!(out, b"\x88\x02\x03\xe8");
    }
}
