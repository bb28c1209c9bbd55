//! CRI log lines → what `kubectl logs` prints: parsing, P (partial) chunks
//! joined to their line, `since`, timestamps and `limitBytes`. Pure: bytes in,
//! bytes out, no files.

use crate::api::time::{parse_rfc3339, rfc3339_nano};
use std::io::{self, Write};
use std::time::SystemTime;

/// A line's pieces held back per stream while waiting for its F; past this the
/// pieces go out as they come (still behind one timestamp), so a container
/// writing without newlines costs at most this much per stream and follower.
pub const PENDING_MAX: usize = 32 * 1024;

/// One parsed log line (`<time> <stream> <tag> <content>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub time: SystemTime,
    /// 0 stdout, 1 stderr.
    pub stream: usize,
    /// F: the content ends a line; P: more of the line follows.
    pub full: bool,
    pub content: &'a [u8],
}

/// Parses one line (its trailing newline optional). None for anything that is
/// not a CRI line: such lines are skipped, as upstream does.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (ts, rest) = split_space(line)?;
    let (stream, rest) = split_space(rest)?;
    let (tag, content) = split_space(rest)?;
    let time = parse_rfc3339(std::str::from_utf8(ts).ok()?)?;
    let stream = match stream {
        b"stdout" => 0,
        b"stderr" => 1,
        _ => return None,
    };
    // Tags may grow `:`-separated parts; the first is P or F.
    let full = match tag.split(|&b| b == b':').next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Entry { time, stream, full, content })
}

fn split_space(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

/// The tag of a line from its first bytes: Some(true) F, Some(false) P, None
/// when the head is not a CRI line. For the tail scan, which sees only heads.
pub fn tag(head: &[u8]) -> Option<bool> {
    let (_, rest) = split_space(head)?;
    let (_, rest) = split_space(rest)?;
    match rest.first().copied()? {
        b'F' => Some(true),
        b'P' => Some(false),
        _ => None,
    }
}

/// Whether output may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    /// `limitBytes` reached: stop.
    Full,
}

/// A line of one stream being put together.
#[derive(Debug, Default)]
struct Partial {
    active: bool,
    /// Passed `since` (decided on the line's first chunk).
    keep: bool,
    /// Its timestamp prefix already went out (the line overflowed PENDING_MAX).
    started: bool,
    time: Option<SystemTime>,
    buf: Vec<u8>,
}

impl Partial {
    /// Ready for the stream's next line; keeps the buffer's allocation.
    fn reset(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        *self = Partial { buf, ..Default::default() };
    }
}

/// Turns parsed lines into output, as upstream's logWriter but with a partial
/// line's chunks joined: one timestamp (its first chunk's) per line.
#[derive(Debug)]
pub struct Emitter {
    timestamps: bool,
    since: Option<SystemTime>,
    /// Bytes still allowed (`limitBytes`), None: no limit.
    remaining: Option<u64>,
    streams: [Partial; 2],
}

impl Emitter {
    pub fn new(timestamps: bool, since: Option<SystemTime>, limit: Option<u64>) -> Emitter {
        Emitter { timestamps, since, remaining: limit, streams: Default::default() }
    }

    /// Feeds one raw line; writes whatever lines it completes.
    pub fn push(&mut self, line: &[u8], out: &mut impl Write) -> io::Result<Flow> {
        let Some(e) = parse(line) else {
            log::debug!("skipping a log line that is not CRI: {:?}", String::from_utf8_lossy(line));
            return Ok(Flow::More);
        };
        if self.remaining == Some(0) {
            return Ok(Flow::Full);
        }
        let p = &mut self.streams[e.stream];
        if !p.active {
            p.active = true;
            p.keep = self.since.map_or(true, |s| e.time >= s);
            p.started = false;
            p.time = Some(e.time);
        }
        if !p.keep {
            p.active = !e.full;
            return Ok(Flow::More);
        }
        if e.full {
            let flow = self.emit(e.stream, e.content, true, out)?;
            self.streams[e.stream].reset();
            return Ok(flow);
        }
        if p.buf.len() + e.content.len() > PENDING_MAX {
            return self.emit(e.stream, e.content, false, out);
        }
        p.buf.extend_from_slice(e.content);
        Ok(Flow::More)
    }

    /// Writes what is held of every unfinished line, without a newline: the
    /// end of the log was reached (upstream prints a trailing P as it is).
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<Flow> {
        let mut flow = Flow::More;
        for s in 0..2 {
            let p = &self.streams[s];
            if p.active && p.keep && (p.started || !p.buf.is_empty()) && flow == Flow::More {
                flow = self.emit(s, b"", false, out)?;
            }
            self.streams[s].reset();
        }
        Ok(flow)
    }

    /// Writes stream `s`'s held bytes followed by `content` (and a newline
    /// when `end`), the timestamp first if the line has not started yet.
    fn emit(&mut self, s: usize, content: &[u8], end: bool, out: &mut impl Write) -> io::Result<Flow> {
        let p = &mut self.streams[s];
        let held = std::mem::take(&mut p.buf);
        let prefix = match (self.timestamps, p.started, p.time) {
            (true, false, Some(t)) => rfc3339_nano(t) + " ",
            _ => String::new(),
        };
        p.started = true;
        let newline: &[u8] = if end { b"\n" } else { b"" };
        let mut flow = Flow::More;
        for piece in [prefix.as_bytes(), &held, content, newline] {
            flow = limited_write(&mut self.remaining, piece, out)?;
            if flow == Flow::Full {
                break;
            }
        }
        // Keep the allocation for the next line of this stream.
        let mut held = held;
        held.clear();
        self.streams[s].buf = held;
        Ok(flow)
    }
}

/// Writes `b`, cut to what `remaining` allows.
fn limited_write(remaining: &mut Option<u64>, b: &[u8], out: &mut impl Write) -> io::Result<Flow> {
    let n = match remaining {
        Some(r) => (*r).min(b.len() as u64) as usize,
        None => b.len(),
    };
    out.write_all(&b[..n])?;
    match remaining {
        Some(r) => {
            *r -= n as u64;
            Ok(if *r == 0 { Flow::Full } else { Flow::More })
        }
        None => Ok(Flow::More),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const T0: &str = "2024-05-01T12:00:00.000000001Z";
    const T1: &str = "2024-05-01T12:00:01.500000000Z";
    const T2: &str = "2024-05-01T12:00:02.000000000Z";

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_714_564_800 + s)
    }

    fn run(e: &mut Emitter, lines: &[&str]) -> String {
        let mut out = Vec::new();
        for l in lines {
            if e.push(format!("{l}\n").as_bytes(), &mut out).unwrap() == Flow::Full {
                break;
            }
        }
        e.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_cri_lines() {
        let line = format!("{T0} stderr F hello world\n");
        let e = parse(line.as_bytes()).unwrap();
        assert_eq!((e.stream, e.full, e.content), (1, true, &b"hello world"[..]));
        assert_eq!(e.time, t(0) + Duration::from_nanos(1));
        let line = format!("{T0} stdout P  two spaces");
        let e = parse(line.as_bytes()).unwrap();
        assert_eq!((e.stream, e.full, e.content), (0, false, &b" two spaces"[..]));
        assert_eq!(parse(format!("{T0} stdout F:x \n").as_bytes()).unwrap().content, b"");
        for bad in ["garbage", "2024-05-01T12:00:00.ééééé stdout F x", "2024-05-01 stdout F x", &format!("{T0} stdin F x"), &format!("{T0} stdout X x"), &format!("{T0} stdout F")] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(tag(format!("{T0} stdout F").as_bytes()), Some(true));
        assert_eq!(tag(format!("{T0} stderr P xx").as_bytes()), Some(false));
        assert_eq!(tag(b"nope"), None);
    }

    #[test]
    fn joins_partial_chunks_per_stream() {
        let mut e = Emitter::new(false, None, None);
        let got = run(&mut e, &[&format!("{T0} stdout P ab"), &format!("{T1} stderr F err"), &format!("{T1} stdout P cd"), &format!("{T2} stdout F ef")]);
        assert_eq!(got, "err\nabcdef\n");
    }

    #[test]
    fn timestamps_once_per_line_from_its_first_chunk() {
        let mut e = Emitter::new(true, None, None);
        let got = run(&mut e, &[&format!("{T0} stdout P a"), &format!("{T1} stdout F b"), &format!("{T2} stderr F c")]);
        assert_eq!(got, format!("{T0} ab\n{T2} c\n"));
    }

    #[test]
    fn trailing_partial_line_is_printed_without_newline() {
        let mut e = Emitter::new(true, None, None);
        assert_eq!(run(&mut e, &[&format!("{T0} stdout F a"), &format!("{T1} stdout P tail")]), format!("{T0} a\n{T1} tail"));
    }

    #[test]
    fn since_drops_whole_lines_older_than_it() {
        let mut e = Emitter::new(false, Some(t(1)), None);
        let got = run(&mut e, &[&format!("{T0} stdout P old-"), &format!("{T1} stdout F still-old"), &format!("{T1} stderr F new"), &format!("{T2} stdout F newer")]);
        assert_eq!(got, "new\nnewer\n");
    }

    #[test]
    fn limit_bytes_cuts_inside_a_line_and_stops() {
        let mut e = Emitter::new(true, None, Some(40));
        let mut out = Vec::new();
        assert_eq!(e.push(format!("{T0} stdout F abc\n").as_bytes(), &mut out).unwrap(), Flow::More);
        assert_eq!(e.push(format!("{T1} stdout F defgh\n").as_bytes(), &mut out).unwrap(), Flow::Full);
        assert_eq!(e.push(format!("{T2} stdout F more\n").as_bytes(), &mut out).unwrap(), Flow::Full);
        // 31 + 4 bytes of the first line, then 5 bytes of the next one's timestamp, as upstream cuts.
        assert_eq!(String::from_utf8(out).unwrap(), format!("{T0} abc\n2024-"));
        let mut e = Emitter::new(true, None, Some(35));
        assert_eq!(e.push(format!("{T0} stdout F abc\n").as_bytes(), &mut Vec::new()).unwrap(), Flow::Full);
        let mut e = Emitter::new(false, None, Some(5));
        assert_eq!(run(&mut e, &[&format!("{T0} stdout F abc"), &format!("{T1} stdout F defgh")]), "abc\nd");
    }

    #[test]
    fn overlong_partial_lines_stream_out_under_one_timestamp() {
        let chunk = "x".repeat(PENDING_MAX / 2 + 1);
        let mut e = Emitter::new(true, None, None);
        let mut out = Vec::new();
        e.push(format!("{T0} stdout P {chunk}\n").as_bytes(), &mut out).unwrap();
        assert!(out.is_empty(), "held back");
        e.push(format!("{T1} stdout P {chunk}\n").as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), T0.len() + 1 + 2 * chunk.len(), "flushed at the cap");
        assert!(e.streams[0].buf.capacity() <= PENDING_MAX * 2);
        e.push(format!("{T2} stdout F end\n").as_bytes(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{T0} {chunk}{chunk}end\n"));
    }

    #[test]
    fn skips_junk_lines() {
        let mut e = Emitter::new(false, None, None);
        assert_eq!(run(&mut e, &["junk", &format!("{T0} stdout F ok")]), "ok\n");
    }
}
