//! The files of one container attempt's log, read in order with bounded
//! buffers: the rotated `<n>.log.<stamp>[-k]` (older ones `.gz`) oldest
//! first, then the live `<n>.log` (names from [`crate::runtime::logs`]).
//!
//! [`Snapshot::open`] opens them all at once, so a rotation while a request
//! reads them neither loses nor repeats lines; [`tail_start`] finds where the
//! last N lines begin, reading plain files backward; [`Reader`] hands out the
//! lines from there and, when following, notices the live file being rotated
//! (by its inode, polled: no inotify per follower).

use super::cri;
use crate::runtime::logs::rotation_key;
use flate2::read::GzDecoder;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Room for one CRI line (16 KiB of content plus its header) and then some.
const LINE_BUF: usize = 20 * 1024;
/// Bytes read per step when scanning backward.
const BLOCK: usize = 16 * 1024;
/// Enough of a line's start to read its time, stream and tag.
const HEAD: usize = 64;

type RotationKey = (String, u32);
type FileId = (u64, u64);

/// A place in the log: a file of the snapshot and an (uncompressed) offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub file: usize,
    pub offset: u64,
}

/// Attempt `n`'s files among `names`, in reading order: the rotated ones by
/// rotation key (one seen both plain and `.gz`, mid-compression, once, plain),
/// then the live one.
pub fn order(names: impl IntoIterator<Item = String>, n: u32) -> Vec<String> {
    let live = format!("{n}.log");
    let mut rotated: Vec<(RotationKey, String)> = Vec::new();
    let mut has_live = false;
    for name in names {
        if name == live {
            has_live = true;
        } else if let Some(key) = key_of(&name, n) {
            rotated.push((key, name));
        }
    }
    // Same key: "x" sorts before "x.gz", and dedup keeps the first.
    rotated.sort();
    rotated.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut out: Vec<String> = rotated.into_iter().map(|(_, name)| name).collect();
    if has_live {
        out.push(live);
    }
    out
}

/// The rotation key of a rotated file of attempt `n`; None for anything else
/// (the live file, other attempts, compressions in progress).
fn key_of(name: &str, n: u32) -> Option<RotationKey> {
    let rest = name.strip_prefix(&format!("{n}.log."))?;
    if rest.ends_with(".tmp") {
        return None;
    }
    rotation_key(rest)
}

fn list(dir: &Path) -> io::Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(context(e, "listing", dir)),
    }
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn id(m: &fs::Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// One open log file.
#[derive(Debug)]
pub struct LogFile {
    pub path: PathBuf,
    pub gz: bool,
    pub file: File,
}

impl LogFile {
    /// Opens `dir/name`; a plain rotated file compressed meanwhile is taken as
    /// its `.gz`. None when it is gone (trimmed by rotation).
    fn open(dir: &Path, name: &str) -> io::Result<Option<LogFile>> {
        let mut path = dir.join(name);
        let mut gz = name.ends_with(".gz");
        loop {
            match File::open(&path) {
                Ok(file) => return Ok(Some(LogFile { path, gz, file })),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !gz && name.contains(".log.") => {
                    path = dir.join(format!("{name}.gz"));
                    gz = true;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(context(e, "opening", &path)),
            }
        }
    }

    /// Its content (decompressed) from `offset`.
    fn source(&self, offset: u64) -> io::Result<Source> {
        let mut f = self.file.try_clone().map_err(|e| context(e, "reading", &self.path))?;
        if self.gz {
            f.seek(SeekFrom::Start(0))?;
            let mut d = GzDecoder::new(f);
            io::copy(&mut (&mut d).take(offset), &mut io::sink()).map_err(|e| context(e, "reading", &self.path))?;
            Ok(Source::Gz(d))
        } else {
            f.seek(SeekFrom::Start(offset))?;
            Ok(Source::Plain(f))
        }
    }
}

enum Source {
    Plain(File),
    Gz(GzDecoder<File>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(buf),
            Source::Gz(d) => d.read(buf),
        }
    }
}

/// Attempt `n`'s log files, all open.
#[derive(Debug)]
pub struct Snapshot {
    pub files: Vec<LogFile>,
    /// The live file, when it is the last of `files`.
    live: Option<File>,
    /// The newest rotation key among the files listed.
    known: Option<RotationKey>,
}

impl Snapshot {
    /// Opens the files of attempt `n` in `dir` (none yet: empty). Lists again
    /// afterwards and starts over if a rotation happened in between, so the
    /// files are consecutive.
    pub fn open(dir: &Path, n: u32) -> io::Result<Snapshot> {
        let mut tries = 0;
        loop {
            let names = order(list(dir)?, n);
            let mut files = Vec::new();
            for name in &names {
                files.extend(LogFile::open(dir, name)?);
            }
            tries += 1;
            let again = order(list(dir)?, n);
            if tries < 3 && plain(&again) != plain(&names) {
                continue;
            }
            let live_name = format!("{n}.log");
            let live = match files.last() {
                Some(f) if f.path.file_name().is_some_and(|x| *x == *live_name) => {
                    Some(f.file.try_clone().map_err(|e| context(e, "reading", &f.path))?)
                }
                _ => None,
            };
            let known = names.iter().filter_map(|x| key_of(x, n)).max();
            return Ok(Snapshot { files, live, known });
        }
    }
}

/// The first bytes of a file (decompressed): None when it is empty. Reads
/// plain files positionally: `f` may share its offset with a reader.
fn head(f: &File, gz: bool) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(HEAD);
    if gz {
        let mut r = f.try_clone()?;
        r.seek(SeekFrom::Start(0))?;
        GzDecoder::new(r).take(HEAD as u64).read_to_end(&mut buf)?;
    } else {
        let mut b = [0u8; HEAD];
        let mut n = 0;
        while n < HEAD {
            match f.read_at(&mut b[n..], n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        buf.extend_from_slice(&b[..n]);
    }
    Ok((!buf.is_empty()).then_some(buf))
}

/// Names without `.gz`: compressing a file does not change the listing.
fn plain(names: &[String]) -> Vec<&str> {
    names.iter().map(|n| n.strip_suffix(".gz").unwrap_or(n)).collect()
}

/// Complete lines out of a byte stream, one buffer of [`LINE_BUF`]. An
/// unfinished last line stays buffered until more arrives (a live file).
struct Lines<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Offset in the stream of `buf[pos]`.
    offset: u64,
}

impl<R: Read> Lines<R> {
    fn new(inner: R, offset: u64) -> Lines<R> {
        Lines { inner, buf: vec![0; LINE_BUF], pos: 0, len: 0, offset }
    }

    /// The next complete line (newline included) and its offset; None when
    /// the stream has nothing more for now.
    fn next(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        loop {
            if let Some(i) = self.buf[self.pos..self.len].iter().position(|&b| b == b'\n') {
                let (start, end) = (self.pos, self.pos + i + 1);
                let off = self.offset;
                self.pos = end;
                self.offset += (end - start) as u64;
                return Ok(Some((off, &self.buf[start..end])));
            }
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            }
            if self.len == self.buf.len() {
                // A whole buffer without a newline is no line picolet wrote:
                // hand it out as one (it won't parse) rather than grow.
                let off = self.offset;
                self.pos = self.len;
                self.offset += self.len as u64;
                return Ok(Some((off, &self.buf[..self.len])));
            }
            match self.inner.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(None),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Visits the complete lines among the first `len` bytes of `f`, last to
/// first, as (offset, head): up to [`HEAD`] bytes of the line's start. An
/// unterminated last line (a write in progress) is left out. Stops when
/// `visit` returns false.
fn scan_back(f: &File, len: u64, mut visit: impl FnMut(u64, &[u8]) -> bool) -> io::Result<()> {
    let mut buf = vec![0u8; BLOCK + HEAD];
    // buf[..carry] holds the start of the region after `pos`, read last round.
    let mut carry = 0;
    let mut pos = len;
    // Where the last complete line ends: after the last newline.
    let mut complete: Option<u64> = None;
    while pos > 0 {
        let n = BLOCK.min(pos as usize);
        let from = pos - n as u64;
        buf.copy_within(0..carry, n);
        f.read_exact_at(&mut buf[..n], from)?;
        let filled = n + carry;
        for i in (0..n).rev() {
            if buf[i] != b'\n' {
                continue;
            }
            let start = from + i as u64 + 1;
            match complete {
                None => complete = Some(start),
                Some(c) if start < c => {
                    if !visit(start, &buf[i + 1..(i + 1 + HEAD).min(filled)]) {
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
        }
        carry = HEAD.min(filled);
        pos = from;
    }
    if complete.is_some_and(|c| c > 0) {
        visit(0, &buf[..carry]);
    }
    Ok(())
}

/// The length of `f`'s complete lines (up to its last newline).
fn complete_len(f: &File) -> io::Result<u64> {
    let mut pos = f.metadata()?.len();
    let mut buf = [0u8; 4096];
    while pos > 0 {
        let n = buf.len().min(pos as usize);
        let from = pos - n as u64;
        f.read_exact_at(&mut buf[..n], from)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        pos = from;
    }
    Ok(0)
}

/// Where to start for the last `n` lines of `files`: a line's P chunks count
/// once, with its F, and an unfinished last line counts too (upstream counts
/// raw lines). Output starts just after the (n+1)-th last F, so a long line
/// whose chunks the other stream interleaved may come out without its start. Plain files are read backward from their end; compressed ones
/// (only reached for large `n`) forward, twice, in constant memory.
pub fn tail_start(files: &[LogFile], n: u64) -> io::Result<Pos> {
    let Some(last) = files.len().checked_sub(1) else { return Ok(Pos::default()) };
    let end = match &files[last] {
        f if f.gz => Pos { file: last, offset: u64::MAX },
        f => Pos { file: last, offset: complete_len(&f.file).map_err(|e| context(e, "reading", &f.path))? },
    };
    if n == 0 {
        return Ok(end);
    }
    // Counting line ends backward, the (n+1)-th one found ends the line
    // before the first wanted: output starts just after it.
    let want = n + 1;
    let mut seen = 0u64;
    // The newest line seen: a P there is an unfinished line, and counts.
    let mut first = true;
    // Start of the line visited last (the one after the current one).
    let mut next_start = end;
    for (i, f) in files.iter().enumerate().rev() {
        let err = |e| context(e, "reading", &f.path);
        if f.gz {
            let (fulls, last_partial) = count_gz(f).map_err(err)?;
            let ends = fulls + u64::from(first && last_partial);
            if seen + ends >= want {
                let k = ends - (want - seen) + 1;
                return Ok(Pos { file: i, offset: after_full(f, k).map_err(err)? });
            }
            seen += ends;
            first &= fulls == 0 && !last_partial;
            next_start = Pos { file: i, offset: 0 };
            continue;
        }
        let len = if i == last { end.offset } else { f.file.metadata().map_err(err)?.len() };
        let mut found = None;
        scan_back(&f.file, len, |start, head| {
            let is_end = match cri::tag(head) {
                Some(full) => full || first,
                None => false,
            };
            first = false;
            if is_end {
                seen += 1;
                if seen == want {
                    found = Some(next_start);
                    return false;
                }
            }
            next_start = Pos { file: i, offset: start };
            true
        })
        .map_err(err)?;
        if let Some(p) = found {
            return Ok(p);
        }
    }
    Ok(Pos::default())
}

/// A compressed file's count of F lines, and whether its last line is a P.
fn count_gz(f: &LogFile) -> io::Result<(u64, bool)> {
    let mut lines = Lines::new(f.source(0)?, 0);
    let (mut fulls, mut last_partial) = (0, false);
    while let Some((_, line)) = lines.next()? {
        let tag = cri::tag(line);
        fulls += u64::from(tag == Some(true));
        last_partial = tag == Some(false);
    }
    Ok((fulls, last_partial))
}

/// The offset just after the `k`-th F line of a compressed file (its end
/// when there are fewer).
fn after_full(f: &LogFile, k: u64) -> io::Result<u64> {
    let mut lines = Lines::new(f.source(0)?, 0);
    let mut count = 0;
    let mut end = 0;
    while let Some((off, line)) = lines.next()? {
        end = off + line.len() as u64;
        if cri::tag(line) == Some(true) {
            count += 1;
            if count == k {
                break;
            }
        }
    }
    Ok(end)
}

/// What [`Reader::drain`] ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Everything there is has been read.
    Caught,
    /// The visitor asked to stop.
    Stopped,
}

/// Hands out the lines of a snapshot from a position on; when following,
/// [`Reader::refresh`] picks up what rotation moved aside and the new live file.
pub struct Reader {
    dir: PathBuf,
    attempt: u32,
    /// Files not started yet, with the offset to start at.
    queue: VecDeque<(LogFile, u64)>,
    cur: Option<Lines<Source>>,
    cur_path: PathBuf,
    /// The live file read (or queued) last.
    live: Option<File>,
    known: Option<RotationKey>,
}

impl Reader {
    pub fn new(dir: &Path, attempt: u32, snap: Snapshot, start: Pos) -> Reader {
        let queue = snap
            .files
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i >= start.file)
            .map(|(i, f)| (f, if i == start.file { start.offset } else { 0 }))
            .collect();
        Reader { dir: dir.to_path_buf(), attempt, queue, cur: None, cur_path: PathBuf::new(), live: snap.live, known: snap.known }
    }

    /// Passes every complete line there is now to `visit` (false: stop).
    /// Finished files are left behind; the last one stays open, to go on
    /// from when it grows.
    pub fn drain(&mut self, mut visit: impl FnMut(&[u8]) -> io::Result<bool>) -> io::Result<Drained> {
        loop {
            if let Some(lines) = &mut self.cur {
                while let Some((_, line)) = lines.next().map_err(|e| context(e, "reading", &self.cur_path))? {
                    if !visit(line)? {
                        return Ok(Drained::Stopped);
                    }
                }
            }
            let Some((f, offset)) = self.queue.pop_front() else { return Ok(Drained::Caught) };
            self.cur = Some(Lines::new(f.source(offset)?, offset));
            self.cur_path = f.path;
        }
    }

    /// Follows the live file: when `<n>.log` is another file than the one
    /// read (rotated, or created since), queues the files rotated meanwhile
    /// and the new live file. True when something was queued.
    pub fn refresh(&mut self) -> io::Result<bool> {
        let live_name = format!("{}.log", self.attempt);
        let live_path = self.dir.join(&live_name);
        let ours = match &self.live {
            Some(f) => Some(id(&f.metadata()?)),
            None => None,
        };
        for _ in 0..3 {
            match fs::metadata(&live_path) {
                Ok(m) if Some(id(&m)) == ours => return Ok(false),
                Ok(_) => {}
                // Between rename and re-create, or not created yet.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(context(e, "reading", &live_path)),
            }
            let names = self.rotated_since()?;
            let Some(new_live) = LogFile::open(&self.dir, &live_name)? else { continue };
            if self.rotated_since()? != names {
                continue; // rotated again meanwhile: look again
            }
            // The old live file, read already, is among them unless rotation
            // trimmed it (then all of them are newer): found by its first
            // line, which holds a nanosecond timestamp.
            let our_head = match &self.live {
                Some(f) => head(f, false)?,
                None => None,
            };
            let mut opened = Vec::new();
            for (_, name) in &names {
                opened.extend(LogFile::open(&self.dir, name)?);
            }
            let mut skip = 0;
            if our_head.is_some() {
                for (i, f) in opened.iter().enumerate() {
                    if head(&f.file, f.gz).map_err(|e| context(e, "reading", &f.path))? == our_head {
                        skip = i + 1;
                        break;
                    }
                }
            }
            self.queue.extend(opened.into_iter().skip(skip).map(|f| (f, 0)));
            if let Some(k) = names.last() {
                self.known = Some(k.0.clone());
            }
            self.live = Some(new_live.file.try_clone().map_err(|e| context(e, "reading", &new_live.path))?);
            self.queue.push_back((new_live, 0));
            return Ok(true);
        }
        Ok(false)
    }

    /// The rotated files newer than those known, oldest first.
    fn rotated_since(&self) -> io::Result<Vec<(RotationKey, String)>> {
        let mut out: Vec<(RotationKey, String)> = order(list(&self.dir)?, self.attempt)
            .into_iter()
            .filter_map(|name| Some((key_of(&name, self.attempt)?, name)))
            .filter(|(k, _)| self.known.as_ref().map_or(true, |known| k > known))
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::logs::{LogWriter, Stream};
    use std::io::Write;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("picolet-srvlogs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn orders_rotated_files_then_the_live_one() {
        let got = order(
            names(&[
                "1.log",
                "1.log.20240501-120000-1",
                "1.log.20240501-120000.gz",
                "1.log.20240501-115959.gz",
                "1.log.20240501-120001",
                "1.log.20240501-120001.gz", // mid-compression: both exist
                "1.log.20240501-120002.gz.tmp",
                "0.log",
                "0.log.20240501-110000",
                "10.log",
                "junk",
            ]),
            1,
        );
        assert_eq!(
            got,
            [
                "1.log.20240501-115959.gz",
                "1.log.20240501-120000.gz",
                "1.log.20240501-120000-1",
                "1.log.20240501-120001",
                "1.log"
            ]
        );
        assert_eq!(order(names(&["0.log.20240501-110000"]), 0), ["0.log.20240501-110000"]);
        assert!(order(names(&["2.log"]), 1).is_empty());
    }

    /// Every line `lines` hands out from `r`, as text.
    fn all(r: impl Read) -> Vec<String> {
        let mut l = Lines::new(r, 0);
        let mut out = Vec::new();
        while let Some((_, line)) = l.next().unwrap() {
            out.push(String::from_utf8_lossy(line).into_owned());
        }
        out
    }

    #[test]
    fn lines_keep_an_unfinished_line_until_it_ends() {
        let d = tempdir("lines");
        let p = d.join("f");
        fs::write(&p, "a\nbb\nunfin").unwrap();
        let mut l = Lines::new(File::open(&p).unwrap(), 0);
        assert_eq!(l.next().unwrap(), Some((0, &b"a\n"[..])));
        assert_eq!(l.next().unwrap(), Some((2, &b"bb\n"[..])));
        assert_eq!(l.next().unwrap(), None);
        fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"ished\n").unwrap();
        assert_eq!(l.next().unwrap(), Some((5, &b"unfinished\n"[..])));
        assert_eq!(l.next().unwrap(), None);
        // A run longer than the buffer comes out in buffer-sized pieces.
        let long = vec![b'x'; LINE_BUF + 10];
        let got = all(&long[..]);
        assert_eq!(got.len(), 1, "the 10 unterminated bytes stay behind");
        assert_eq!(got[0].len(), LINE_BUF);
    }

    #[test]
    fn scans_lines_backward_with_their_heads() {
        let d = tempdir("back");
        let p = d.join("f");
        // Lines around the block size, and an unterminated tail.
        let mut text = String::new();
        let mut want = Vec::new();
        for i in 0..40 {
            want.push((text.len() as u64, format!("line{i:02}")));
            text += &format!("line{i:02} {}\n", "y".repeat(i * 997 % 20000));
        }
        text += "partial";
        fs::write(&p, &text).unwrap();
        let f = File::open(&p).unwrap();
        let mut got = Vec::new();
        scan_back(&f, text.len() as u64, |off, head| {
            got.push((off, String::from_utf8_lossy(&head[..6]).into_owned()));
            true
        })
        .unwrap();
        want.reverse();
        assert_eq!(got, want);
        assert_eq!(complete_len(&f).unwrap(), (text.len() - "partial".len()) as u64);
        let mut n = 0;
        scan_back(&f, text.len() as u64, |_, _| {
            n += 1;
            n < 3
        })
        .unwrap();
        assert_eq!(n, 3, "stops when told");
    }

    /// A log dir written by the real LogWriter: `lines` lines of ~60 bytes on
    /// stdout, rotating every 600 bytes, keeping 4 files (2 compressed).
    fn written(name: &str, lines: usize) -> (PathBuf, Vec<String>) {
        let d = tempdir(name);
        let mut w = LogWriter::open(&d, 2, 600, 4).unwrap();
        let mut all = Vec::new();
        for i in 0..lines {
            let msg = format!("message {i:04} {}", "z".repeat(20));
            w.write(Stream::Stdout, format!("{msg}\n").as_bytes()).unwrap();
            all.push(msg);
        }
        (d, all)
    }

    fn read_from(d: &Path, start: Option<u64>) -> Vec<String> {
        let snap = Snapshot::open(d, 2).unwrap();
        let pos = match start {
            Some(n) => tail_start(&snap.files, n).unwrap(),
            None => Pos::default(),
        };
        let mut r = Reader::new(d, 2, snap, pos);
        let mut out = Vec::new();
        r.drain(|line| {
            out.push(cri::parse(line).map(|e| String::from_utf8_lossy(e.content).into_owned()).unwrap_or_default());
            Ok(true)
        })
        .unwrap();
        out
    }

    #[test]
    fn reads_rotated_and_compressed_files_in_order() {
        let (d, all) = written("rot", 60);
        let files = order(list(&d).unwrap(), 2);
        assert_eq!(files.iter().filter(|n| n.ends_with(".gz")).count(), 2, "{files:?}");
        let got = read_from(&d, None);
        assert!(got.len() > 20 && got.len() < 60, "{}", got.len());
        assert_eq!(got, all[all.len() - got.len()..]);
    }

    #[test]
    fn tail_counts_from_the_end_across_files() {
        let (d, all) = written("tail", 60);
        let kept = read_from(&d, None);
        for n in [0, 1, 3, 10, 15, 25, kept.len() as u64, 1000] {
            let got = read_from(&d, Some(n));
            let want = &kept[kept.len().saturating_sub(n as usize)..];
            assert_eq!(got, want, "tail {n}");
        }
        assert_eq!(kept.last(), all.last());
    }

    #[test]
    fn tail_counts_a_partial_line_once() {
        let d = tempdir("tailp");
        let t = "2024-05-01T12:00:00.000000000Z";
        let text = format!("{t} stdout F one\n{t} stdout P tw\n{t} stderr F err\n{t} stdout F o\n{t} stdout P thr\n{t} stdout P ee\n");
        fs::write(d.join("0.log"), &text).unwrap();
        let snap = Snapshot::open(&d, 0).unwrap();
        let off = |needle: &str| text.find(needle).unwrap() as u64 - t.len() as u64 - 8;
        // By their ends the lines are: one, err, two (P tw + F o), three
        // (unfinished, counts). Output starts after the (n+1)-th last end,
        // so with the other stream in between, tail 2 gets only "o" of two.
        assert_eq!(tail_start(&snap.files, 1).unwrap(), Pos { file: 0, offset: off("P thr") });
        assert_eq!(tail_start(&snap.files, 2).unwrap(), Pos { file: 0, offset: off("F o\n") });
        assert_eq!(tail_start(&snap.files, 3).unwrap(), Pos { file: 0, offset: off("P tw") });
        assert_eq!(tail_start(&snap.files, 4).unwrap(), Pos::default());
        assert_eq!(tail_start(&snap.files, 5).unwrap(), Pos::default());
        // Without interleaving a P..F line is whole.
        let text = format!("{t} stdout F one\n{t} stdout P tw\n{t} stdout F o\n");
        fs::write(d.join("0.log"), &text).unwrap();
        let snap = Snapshot::open(&d, 0).unwrap();
        assert_eq!(tail_start(&snap.files, 1).unwrap(), Pos { file: 0, offset: text.find(&format!("{t} stdout P")).unwrap() as u64 });
    }

    #[test]
    fn follows_the_live_file_across_rotation() {
        let d = tempdir("follow");
        let mut w = LogWriter::open(&d, 2, 600, 3).unwrap();
        w.write(Stream::Stdout, b"first\n").unwrap();
        let snap = Snapshot::open(&d, 2).unwrap();
        let mut r = Reader::new(&d, 2, snap, Pos::default());
        let mut got = Vec::new();
        let take = |r: &mut Reader, got: &mut Vec<String>| {
            loop {
                r.drain(|line| {
                    got.push(String::from_utf8_lossy(cri::parse(line).unwrap().content).into_owned());
                    Ok(true)
                })
                .unwrap();
                if !r.refresh().unwrap() {
                    break;
                }
            }
        };
        take(&mut r, &mut got);
        assert_eq!(got, ["first"]);
        // Enough to rotate several times between two polls (older files get compressed).
        let mut want = vec!["first".to_string()];
        for i in 0..25 {
            let msg = format!("line {i:03} {}", "q".repeat(30));
            w.write(Stream::Stdout, format!("{msg}\n").as_bytes()).unwrap();
            want.push(msg);
            if i == 3 {
                take(&mut r, &mut got);
            }
        }
        take(&mut r, &mut got);
        // The file being read was rotated, compressed and trimmed; the ones
        // rotated after it (one compressed) are read in order, nothing twice.
        let names = order(list(&d).unwrap(), 2);
        assert!(!names.iter().any(|n| n.starts_with("2.log.") && head(&File::open(d.join(n)).unwrap(), n.ends_with(".gz")).unwrap().unwrap().windows(8).any(|w| w == b"F first\n")));
        assert_eq!(names.iter().filter(|n| n.ends_with(".gz")).count(), 1, "{names:?}");
        assert_eq!(got, want);
    }

    #[test]
    fn follows_a_live_file_created_later() {
        let d = tempdir("later");
        let snap = Snapshot::open(&d, 0).unwrap();
        assert!(snap.files.is_empty());
        let mut r = Reader::new(&d, 0, snap, Pos::default());
        assert!(!r.refresh().unwrap());
        LogWriter::open(&d, 0, 0, 5).unwrap().write(Stream::Stderr, b"hello\n").unwrap();
        assert!(r.refresh().unwrap());
        let mut n = 0;
        r.drain(|_| {
            n += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(n, 1);
        assert!(!r.refresh().unwrap());
    }
}
