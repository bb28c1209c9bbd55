//! The pure parts of a gRPC health probe: one unary call of
//! `grpc.health.v1.Health/Check` over cleartext HTTP/2 (prior knowledge, as
//! the kubelet's own prober speaks it), written and read frame by frame.
//!
//! Only what the call needs: the request headers are HPACK literals without
//! indexing (no Huffman, no dynamic table), so nothing is ever decoded from
//! the server's headers: the verdict comes from the response message (the
//! DATA frames), and a call that ends without one failed (its grpc-status
//! would say why, but reading it would need a full HPACK decoder).

/// `PRI * HTTP/2.0...`, SETTINGS, then the call on stream 1 (HEADERS + DATA).
pub fn request(authority: &str, service: &str) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "kube-probe/1.34"),
    ] {
        block.push(0x00); // literal header field without indexing, new name
        hpack_string(&mut block, name);
        hpack_string(&mut block, value);
    }
    frame(&mut out, HEADERS, END_HEADERS, 1, &block);
    // HealthCheckRequest { service = 1 }, in a gRPC length-prefixed message.
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut data = vec![0u8];
    data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    data.extend_from_slice(&msg);
    frame(&mut out, DATA, END_STREAM, 1, &data);
    out
}

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// Takes the complete frames at the front of `buf`, leaving a partial one.
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 9 {
        let h = &buf[at..at + 9];
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        if buf.len() - at - 9 < len {
            break;
        }
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        frames.push(Frame { kind: h[3], flags: h[4], stream, payload: buf[at + 9..at + 9 + len].to_vec() });
        at += 9 + len;
    }
    buf.drain(..at);
    frames
}

/// The SETTINGS acknowledgement a client owes the server.
pub fn settings_ack() -> Vec<u8> {
    let mut out = Vec::new();
    frame(&mut out, SETTINGS, ACK, 0, &[]);
    out
}

/// The verdict from the response message bytes (DATA payloads of stream 1,
/// concatenated): Ok for SERVING, else the message upstream's prober gives.
pub fn verdict(data: &[u8]) -> Result<(), String> {
    if data.len() < 5 {
        return Err("rpc error: the call ended without a health response".into());
    }
    if data[0] != 0 {
        return Err("rpc error: compressed health response".into());
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let msg = 5usize.checked_add(len).and_then(|end| data.get(5..end)).ok_or("rpc error: truncated health response")?;
    // HealthCheckResponse { status = 1 (enum) }; absent means UNKNOWN (0).
    let mut status = 0;
    let mut i = 0;
    while i < msg.len() {
        let (tag, n) = read_varint(&msg[i..]).ok_or("rpc error: malformed health response")?;
        i += n;
        match (tag >> 3, tag & 7) {
            (1, 0) => {
                let (v, n) = read_varint(&msg[i..]).ok_or("rpc error: malformed health response")?;
                status = v;
                i += n;
            }
            (_, 0) => i += read_varint(&msg[i..]).ok_or("rpc error: malformed health response")?.1,
            (_, 2) => {
                // The server's length: checked, or a wrapped sum could loop here forever.
                let (l, n) = read_varint(&msg[i..]).ok_or("rpc error: malformed health response")?;
                i = usize::try_from(l).ok().and_then(|l| (i + n).checked_add(l)).ok_or("rpc error: malformed health response")?;
            }
            _ => return Err("rpc error: malformed health response".into()),
        }
    }
    let name = match status {
        1 => return Ok(()),
        0 => "UNKNOWN",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNRECOGNIZED",
    };
    Err(format!("service unhealthy (responded with \"{name}\")"))
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string literal, not Huffman-coded: length with a 7-bit prefix.
fn hpack_string(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        let mut rest = len - 127;
        while rest >= 128 {
            out.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(s.as_bytes());
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_parse_back() {
        let mut req = request("127.0.0.1:9000", "svc");
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert!(req.starts_with(preface));
        req.drain(..preface.len());
        let frames = take_frames(&mut req);
        assert!(req.is_empty());
        let kinds: Vec<(u8, u8, u32)> = frames.iter().map(|f| (f.kind, f.flags, f.stream)).collect();
        assert_eq!(kinds, [(SETTINGS, 0, 0), (HEADERS, END_HEADERS, 1), (DATA, END_STREAM, 1)]);
        assert_eq!(frames[2].payload, [0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']);
        let block = &frames[1].payload;
        assert_eq!(&block[..9], &[0, 7, b':', b'm', b'e', b't', b'h', b'o', b'd']);
    }

    #[test]
    fn partial_frames_wait() {
        let mut buf = settings_ack();
        buf.extend_from_slice(&[0, 0, 5, 0, 1, 0, 0, 0]);
        let frames = take_frames(&mut buf);
        assert_eq!(frames.len(), 1);
        assert_eq!(buf.len(), 8);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(()));
        assert_eq!(verdict(&[0, 0, 0, 0, 2, 0x08, 2]).unwrap_err(), "service unhealthy (responded with \"NOT_SERVING\")");
        assert_eq!(verdict(&[0, 0, 0, 0, 0]).unwrap_err(), "service unhealthy (responded with \"UNKNOWN\")");
        assert!(verdict(&[]).unwrap_err().contains("without a health response"));
        assert!(verdict(&[0, 0, 0, 0, 9, 0x08]).unwrap_err().contains("truncated"));
        assert!(verdict(&[0, 0xff, 0xff, 0xff, 0xff, 0x08]).unwrap_err().contains("truncated"));
        // A length-delimited field as long as a varint goes, and one whose
        // length would wrap the position back to its own start.
        let mut huge = vec![0x12];
        huge.extend([0xff; 9]);
        huge.push(0x01);
        let mut wrap = vec![0x12];
        varint(&mut wrap, u64::MAX - 10); // after the tag and these 10 bytes: 11 + it wraps to 0
        for msg in [huge, wrap] {
            let mut data = vec![0, 0, 0, 0, msg.len() as u8];
            data.extend(&msg);
            assert_eq!(verdict(&data), Err("rpc error: malformed health response".into()), "{msg:?}");
        }
    }
}
