//! Container logs in the kubelet's CRI format, with size-based rotation.
//!
//! A container's stdout and stderr reach picolet through two FIFOs ([`make_fifos`]); one
//! [`pump`] per FIFO reads it and feeds a [`LogWriter`] shared by both streams of the container.
//! The writer frames the bytes into lines `<RFC3339Nano> <stdout|stderr> <P|F> <content>\n`
//! (F = full line, P = partial chunk: a line longer than 16 KiB is cut into P chunks ended by an F,
//! and an unterminated tail at EOF becomes a P) and appends them to
//! `<dir>/<restartCount>.log`, rotating it when it passes the size limit.
//!
//! Restart safety: every line is written with one `write()` to an `O_APPEND` file, and a
//! restarted picolet reopens the same file and continues from what is still in the pipe, so
//! complete lines are neither lost nor duplicated. What is lost if picolet dies: a partial line
//! held in memory (bytes read after the last newline of a stream) and lines read from the pipe
//! but not yet written (a window of one read).
//!
//! Not done here: choosing the directory (`/var/log/pods/<ns>_<name>_<uid>/<container>`),
//! deleting logs of restarts older than the previous one, or serving logs over HTTP.

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use crate::api::time::{rfc3339, rfc3339_nano};

/// Longest content of one log line; longer lines are split into P chunks.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream of a container some bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The word written in a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What went wrong, and on which path.
#[derive(Debug)]
pub enum LogError {
    CreateDir { path: PathBuf, source: io::Error },
    Open { path: PathBuf, source: io::Error },
    Write { path: PathBuf, source: io::Error },
    Rotate { path: PathBuf, source: io::Error },
    Compress { path: PathBuf, source: io::Error },
    MakeFifo { path: PathBuf, source: nix::Error },
    ReadFifo { path: PathBuf, source: io::Error },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::CreateDir { path, source } => {
                write!(f, "creating log directory {}: {source}", path.display())
            }
            LogError::Open { path, source } => write!(f, "opening {}: {source}", path.display()),
            LogError::Write { path, source } => write!(f, "writing {}: {source}", path.display()),
            LogError::Rotate { path, source } => write!(f, "rotating {}: {source}", path.display()),
            LogError::Compress { path, source } => {
                write!(f, "compressing {}: {source}", path.display())
            }
            LogError::MakeFifo { path, source } => {
                write!(f, "creating FIFO {}: {source}", path.display())
            }
            LogError::ReadFifo { path, source } => {
                write!(f, "reading FIFO {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for LogError {}

/// Appends one container's log lines to `<dir>/<restartCount>.log` and rotates it.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    restart_count: u32,
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// Bytes after the last newline, per stream (indexed by `Stream::index`).
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (append) `dir/<restart_count>.log`, creating dir; existing size counted toward
    /// rotation. `max_size` 0 disables rotation; `max_files` below 2 is treated as 2 (the live
    /// file plus the one just rotated).
    pub fn open(
        dir: &Path,
        restart_count: u32,
        max_size: u64,
        max_files: u32,
    ) -> Result<LogWriter, LogError> {
        fs::create_dir_all(dir)
            .map_err(|source| LogError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(format!("{restart_count}.log"));
        let (file, size) = open_append(&path)?;
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            restart_count,
            path,
            file,
            size,
            max_size,
            max_files: max_files.max(2),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Feeds raw bytes read from one stream; writes complete lines (and 16 KiB P chunks) with
    /// timestamps; rotates when the file passes max_size.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), LogError> {
        let mut buf = std::mem::take(&mut self.pending[stream.index()]);
        buf.extend_from_slice(data);
        let (frames, consumed) = split_lines(&buf);
        let mut result = Ok(());
        for (content, full) in frames {
            result = self.write_line(stream, content, full);
            if result.is_err() {
                break;
            }
        }
        // Written or not, framed bytes leave the buffer: retrying them later would reorder
        // them behind newer output, and holding them would grow without bound.
        buf.drain(..consumed);
        self.pending[stream.index()] = buf;
        result
    }

    /// Flushes a pending partial line of `stream` as a P line (stream hit EOF).
    pub fn finish(&mut self, stream: Stream) -> Result<(), LogError> {
        let buf = std::mem::take(&mut self.pending[stream.index()]);
        if buf.is_empty() {
            return Ok(());
        }
        self.write_line(stream, &buf, false)
    }

    /// The live log file.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_line(&mut self, stream: Stream, content: &[u8], full: bool) -> Result<(), LogError> {
        let line = frame(SystemTime::now(), stream, content, full);
        // One write() per line on an O_APPEND file, so lines of the two streams (and of a
        // restarted picolet) never mix.
        self.file
            .write_all(&line)
            .map_err(|source| LogError::Write { path: self.path.clone(), source })?;
        self.size += line.len() as u64;
        if self.max_size > 0 && self.size > self.max_size {
            self.rotate()?;
        }
        Ok(())
    }

    /// Renames the live file to `<n>.log.<stamp>`, starts a fresh one, then trims and
    /// compresses the rotated files.
    fn rotate(&mut self) -> Result<(), LogError> {
        let rotated = self.rotated_name(SystemTime::now());
        fs::rename(&self.path, &rotated)
            .map_err(|source| LogError::Rotate { path: self.path.clone(), source })?;
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        log::debug!("rotated {} to {}", self.path.display(), rotated.display());
        self.trim_and_compress()
    }

    /// `<n>.log.<stamp>`, or `<n>.log.<stamp>-<k>` past the highest `k` already used in that
    /// second, so names keep sorting in rotation order even after older ones were deleted.
    fn rotated_name(&self, now: SystemTime) -> PathBuf {
        let st = stamp(now);
        let prefix = format!("{}.log.", self.restart_count);
        let mut last: Option<u32> = None;
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.strip_prefix(&prefix).and_then(rotation_key);
            if let Some((_, k)) = key.filter(|(s, _)| *s == st) {
                last = Some(last.map_or(k, |l| l.max(k)));
            }
        }
        let name = match last {
            None => format!("{prefix}{st}"),
            Some(k) => format!("{prefix}{st}-{}", k + 1),
        };
        self.dir.join(name)
    }

    fn trim_and_compress(&self) -> Result<(), LogError> {
        let prefix = format!("{}.log.", self.restart_count);
        let entries = fs::read_dir(&self.dir)
            .map_err(|source| LogError::Rotate { path: self.dir.clone(), source })?;
        let mut rotated: Vec<((String, u32), PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else { continue };
            if rest.ends_with(".tmp") {
                // A compression interrupted by a crash; the source file is still there.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(key) = rotation_key(rest) {
                rotated.push((key, entry.path()));
            }
        }
        rotated.sort();
        let keep = self.max_files as usize - 1; // the live file counts too
        let excess = rotated.len().saturating_sub(keep);
        for (_, path) in rotated.drain(..excess) {
            fs::remove_file(&path).map_err(|source| LogError::Rotate { path, source })?;
        }
        // The newest rotated file stays plain, as upstream: readers may still be tailing it.
        let newest = rotated.len().saturating_sub(1);
        for (_, path) in &rotated[..newest] {
            if path.extension().is_some_and(|e| e == "gz") {
                continue;
            }
            compress(path)?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<(File, u64), LogError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LogError::Open { path: path.to_path_buf(), source })?;
    let size = file
        .metadata()
        .map_err(|source| LogError::Open { path: path.to_path_buf(), source })?
        .len();
    Ok((file, size))
}

/// Cuts `buf` into (content, is_full) frames; returns them and how many bytes they used.
fn split_lines(buf: &[u8]) -> (Vec<(&[u8], bool)>, usize) {
    let mut frames = Vec::new();
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let window = &rest[..rest.len().min(MAX_LINE + 1)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) if i <= MAX_LINE => {
                frames.push((&rest[..i], true));
                start += i + 1;
            }
            _ if rest.len() >= MAX_LINE => {
                frames.push((&rest[..MAX_LINE], false));
                start += MAX_LINE;
            }
            _ => break,
        }
    }
    (frames, start)
}

/// One CRI log line, newline included.
fn frame(t: SystemTime, stream: Stream, content: &[u8], full: bool) -> Vec<u8> {
    let ts = rfc3339_nano(t);
    let mut line = Vec::with_capacity(ts.len() + content.len() + 12);
    line.extend_from_slice(ts.as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.as_str().as_bytes());
    line.extend_from_slice(if full { b" F " } else { b" P " });
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// `YYYYMMDD-hhmmss` in UTC.
fn stamp(t: SystemTime) -> String {
    let s = rfc3339(t); // 2024-05-01T12:00:00Z
    format!("{}{}{}-{}{}{}", &s[0..4], &s[5..7], &s[8..10], &s[11..13], &s[14..16], &s[17..19])
}

/// Orders rotated names `<stamp>[-N][.gz]` oldest first; None for names that aren't ours.
pub(crate) fn rotation_key(rest: &str) -> Option<(String, u32)> {
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    let (st, suffix) = (rest.get(..15)?, rest.get(15..)?);
    let valid =
        st.bytes().enumerate().all(|(i, b)| if i == 8 { b == b'-' } else { b.is_ascii_digit() });
    if !valid {
        return None;
    }
    let n = if suffix.is_empty() { 0 } else { suffix.strip_prefix('-')?.parse().ok()? };
    Some((st.to_string(), n))
}

/// Gzips `path` to `path.gz` (through a temporary name, so a crash leaves no half file), then
/// removes `path`.
fn compress(path: &Path) -> Result<(), LogError> {
    let err = |source| LogError::Compress { path: path.to_path_buf(), source };
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!("{name}.gz.tmp"));
    let gz = path.with_file_name(format!("{name}.gz"));
    let mut input = File::open(path).map_err(err)?;
    let out = File::create(&tmp).map_err(err)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    io::copy(&mut input, &mut enc).map_err(err)?;
    enc.finish().map_err(err)?;
    fs::rename(&tmp, &gz).map_err(err)?;
    fs::remove_file(path).map_err(err)
}

/// Creates the two FIFOs (mode 0600) if absent: `<dir>/stdout`, `<dir>/stderr`.
pub fn make_fifos(dir: &Path) -> Result<(PathBuf, PathBuf), LogError> {
    fs::create_dir_all(dir)
        .map_err(|source| LogError::CreateDir { path: dir.to_path_buf(), source })?;
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    for p in [&out, &err] {
        match nix::unistd::mkfifo(p.as_path(), nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(source) => return Err(LogError::MakeFifo { path: p.clone(), source }),
        }
    }
    Ok((out, err))
}

thread_local! {
    /// The one read buffer of every pump on the thread (see `pump`).
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 64 * 1024]);
}

/// Pumps one FIFO into the shared writer until EOF (all writers closed = the container exited
/// and its children too). Opens `fifo` O_RDONLY|O_NONBLOCK and reads it through smol's `Async`
/// (a FIFO is pollable), so one thread serves every container. At EOF the stream's partial
/// line is flushed as a P line.
///
/// Errors writing the log are logged and the data dropped rather than returned: the pipe must
/// keep draining or the container would block on a full pipe (e.g. when the disk is full).
///
/// Call it only once the container exists (after `runc create`): a read that
/// finds no writer is taken as the end. That also holds after a picolet
/// restart, when the pipe may still hold what the container wrote before it
/// exited (the reaper kept the pipe alive): the data is read, then the end.
pub async fn pump(
    fifo: PathBuf,
    stream: Stream,
    writer: Rc<RefCell<LogWriter>>,
) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(|source| LogError::Open { path: fifo.clone(), source })?;
    let file =
        smol::Async::new(file).map_err(|source| LogError::Open { path: fifo.clone(), source })?;
    let mut failing = false;
    'pipe: loop {
        file.readable().await.map_err(|source| LogError::ReadFifo { path: fifo.clone(), source })?;
        // Read synchronously into one buffer shared by every pump on this
        // thread: no await happens while it is borrowed, and a pod costs no
        // buffer of its own.
        loop {
            let res = READ_BUF.with_borrow_mut(|buf| match (&*file.get_ref()).read(buf) {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(writer.borrow_mut().write(stream, &buf[..n]))),
                Err(e) => Err(e),
            });
            match res {
                // No writer left: the container and everything that inherited
                // its stdio are gone (picolet only pumps after `create`).
                Ok(None) => break 'pipe,
                Ok(Some(written)) => report(&mut failing, written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(LogError::ReadFifo { path: fifo.clone(), source }),
            }
        }
    }
    let res = writer.borrow_mut().finish(stream);
    report(&mut failing, res);
    Ok(())
}

fn report(failing: &mut bool, res: Result<(), LogError>) {
    match res {
        Ok(()) => *failing = false,
        Err(e) if !*failing => {
            log::warn!("container log: {e}; dropping output until writes succeed again");
            *failing = true;
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn tempdir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("picolet-logs-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// (stream, tag, content) of every line of a log file, checking the timestamp's shape.
    fn lines(path: &Path) -> Vec<(String, String, String)> {
        let text = fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(crate::api::time::parse_rfc3339(ts).is_some(), "bad time in {l:?}");
                assert_eq!(ts.len(), 30, "{ts}");
                let (s, t) = (it.next().unwrap(), it.next().unwrap());
                (s.to_string(), t.to_string(), it.next().unwrap_or("").to_string())
            })
            .collect()
    }

    fn l(s: &str, t: &str, c: &str) -> (String, String, String) {
        (s.into(), t.into(), c.into())
    }

    #[test]
    fn frames_full_and_partial_lines() {
        let d = tempdir("frame");
        let mut w = LogWriter::open(&d, 0, 0, 5).unwrap();
        w.write(Stream::Stdout, b"hello\nwor").unwrap();
        w.write(Stream::Stdout, b"ld\n\nlast").unwrap();
        w.finish(Stream::Stdout).unwrap();
        w.finish(Stream::Stdout).unwrap(); // nothing pending: no empty P line
        assert_eq!(w.path(), d.join("0.log"));
        assert_eq!(
            lines(w.path()),
            vec![
                l("stdout", "F", "hello"),
                l("stdout", "F", "world"),
                l("stdout", "F", ""),
                l("stdout", "P", "last"),
            ]
        );
    }

    #[test]
    fn splits_long_lines_into_16k_chunks() {
        let d = tempdir("long");
        let mut w = LogWriter::open(&d, 3, 0, 5).unwrap();
        let mut data = vec![b'a'; MAX_LINE];
        data.extend(vec![b'b'; MAX_LINE]);
        data.extend(b"cc\n");
        data.extend(vec![b'd'; MAX_LINE]); // exactly 16 KiB, then newline: one F line
        data.push(b'\n');
        for chunk in data.chunks(1000) {
            w.write(Stream::Stderr, chunk).unwrap();
        }
        let got = lines(&d.join("3.log"));
        let want = vec![
            l("stderr", "P", &"a".repeat(MAX_LINE)),
            l("stderr", "P", &"b".repeat(MAX_LINE)),
            l("stderr", "F", "cc"),
            l("stderr", "F", &"d".repeat(MAX_LINE)),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn streams_keep_their_own_partial_lines() {
        let d = tempdir("streams");
        let mut w = LogWriter::open(&d, 0, 0, 5).unwrap();
        w.write(Stream::Stdout, b"out-").unwrap();
        w.write(Stream::Stderr, b"err-").unwrap();
        w.write(Stream::Stderr, b"line\nerr2").unwrap();
        w.write(Stream::Stdout, b"line\n").unwrap();
        w.finish(Stream::Stderr).unwrap();
        assert_eq!(
            lines(w.path()),
            vec![
                l("stderr", "F", "err-line"),
                l("stdout", "F", "out-line"),
                l("stderr", "P", "err2")
            ]
        );
    }

    #[test]
    fn appends_to_existing_file() {
        let d = tempdir("append");
        LogWriter::open(&d, 1, 0, 5).unwrap().write(Stream::Stdout, b"one\n").unwrap();
        let mut w = LogWriter::open(&d, 1, 0, 5).unwrap();
        assert!(w.size > 0);
        w.write(Stream::Stdout, b"two\n").unwrap();
        assert_eq!(lines(w.path()), vec![l("stdout", "F", "one"), l("stdout", "F", "two")]);
    }

    #[test]
    fn rotates_compresses_and_trims() {
        let d = tempdir("rotate");
        fs::write(d.join("0.log"), "previous attempt\n").unwrap();
        // A leftover from a compression cut short by a crash.
        fs::write(d.join("1.log.20000101-000000.gz.tmp"), "junk").unwrap();
        let mut w = LogWriter::open(&d, 1, 200, 3).unwrap();
        let mut all = Vec::new();
        for i in 0..40 {
            let msg = format!("message number {i:03}\n"); // ~60 bytes framed
            all.push(msg.trim_end().to_string());
            w.write(Stream::Stdout, msg.as_bytes()).unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let ours: Vec<&String> = names.iter().filter(|n| n.starts_with("1.log")).collect();
        assert_eq!(ours.len(), 3, "{names:?}");
        assert!(names.contains(&"0.log".to_string()), "previous attempt's log kept: {names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        let gz: Vec<_> = ours.iter().filter(|n| n.ends_with(".gz")).collect();
        let plain: Vec<_> =
            ours.iter().filter(|n| n.starts_with("1.log.") && !n.ends_with(".gz")).collect();
        assert_eq!((gz.len(), plain.len()), (1, 1), "{names:?}");
        assert!(rotation_key(&plain[0]["1.log.".len()..]).is_some());
        // Content: gz (oldest kept) + plain rotated + live is the tail of all lines, in order.
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(d.join(gz[0])).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text += &fs::read_to_string(d.join(plain[0])).unwrap();
        text += &fs::read_to_string(d.join("1.log")).unwrap();
        let got: Vec<&str> = text.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap()).collect();
        assert!(got.len() >= 6 && got.len() < 40, "{}", got.len());
        assert_eq!(got, all[all.len() - got.len()..].to_vec());
        assert!(fs::metadata(d.join("1.log")).unwrap().len() <= 200 + 60);
    }

    #[test]
    fn rotation_names_order_with_suffixes() {
        assert!(rotation_key("20240501-120000") < rotation_key("20240501-120000-1"));
        assert!(rotation_key("20240501-120000-2.gz") < rotation_key("20240501-120000-10"));
        assert!(rotation_key("20240501-120000-9") < rotation_key("20240501-120001"));
        assert_eq!(rotation_key("20240501-120000.gz.tmp"), None);
        assert_eq!(rotation_key("garbage"), None);
        assert_eq!(
            stamp(std::time::UNIX_EPOCH + Duration::from_secs(1_714_564_801)),
            "20240501-120001"
        );
    }

    #[test]
    fn make_fifos_is_idempotent() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let d = tempdir("fifo").join("c");
        let (o, e) = make_fifos(&d).unwrap();
        assert_eq!((o.clone(), e.clone()), make_fifos(&d).unwrap());
        for p in [o, e] {
            let m = fs::metadata(&p).unwrap();
            assert!(m.file_type().is_fifo());
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
    }

    /// A blocking write end of `fifo` (a reader must already be open).
    fn write_end(fifo: &Path) -> OwnedFd {
        let f =
            OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(fifo).unwrap();
        let fd = OwnedFd::from(f);
        let fl = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let mut fl = nix::fcntl::OFlag::from_bits_truncate(fl);
        fl.remove(nix::fcntl::OFlag::O_NONBLOCK);
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(fl)).unwrap();
        fd
    }

    fn sh(script: &str, stdout: OwnedFd, stderr: Option<OwnedFd>) -> std::process::Child {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::from(stdout));
        if let Some(e) = stderr {
            c.stderr(Stdio::from(e));
        }
        c.spawn().unwrap()
    }

    #[test]
    fn pump_reads_both_streams_to_eof() {
        let d = tempdir("pump");
        let (out, err) = make_fifos(&d.join("fifo")).unwrap();
        let w = Rc::new(RefCell::new(LogWriter::open(&d.join("log"), 0, 0, 5).unwrap()));
        // As the reaper does: hold read ends so the writer can open, then start it.
        let holders: Vec<File> = [&out, &err]
            .iter()
            .map(|p| OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(p).unwrap())
            .collect();
        let mut child = sh(
            "printf 'a\\n'; printf 'e1\\n' >&2; printf 'b\\nno-newline'; printf 'e2' >&2",
            write_end(&out),
            Some(write_end(&err)),
        );
        drop(child.stdin.take());
        smol::block_on(async {
            let p_out = pump(out.clone(), Stream::Stdout, w.clone());
            let p_err = pump(err.clone(), Stream::Stderr, w.clone());
            let (a, b) = smol::future::zip(p_out, p_err).await;
            a.unwrap();
            b.unwrap();
        });
        child.wait().unwrap();
        drop(holders);
        let mut got = lines(&d.join("log/0.log"));
        let stdout: Vec<_> = got.iter().filter(|x| x.0 == "stdout").cloned().collect();
        assert_eq!(
            stdout,
            vec![l("stdout", "F", "a"), l("stdout", "F", "b"), l("stdout", "P", "no-newline")]
        );
        got.retain(|x| x.0 == "stderr");
        assert_eq!(got, vec![l("stderr", "F", "e1"), l("stderr", "P", "e2")]);
    }

    #[test]
    fn restarted_pump_continues_without_loss_or_duplicates() {
        let d = tempdir("restart");
        let (out, _) = make_fifos(&d.join("fifo")).unwrap();
        let log_dir = d.join("log");
        // Stands in for the process that keeps the pipe open while picolet is down.
        let holder =
            OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(&out).unwrap();
        let mut child = sh(
            "printf 'one\\ntwo\\n'; read x; printf 'three\\nfo'; read x; printf 'ur\\nfive\\n'",
            write_end(&out),
            None,
        );
        let mut stdin = child.stdin.take().unwrap();
        let log = log_dir.join("0.log");
        let wait_for = |needle: &'static str| {
            let log = log.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !fs::read_to_string(&log).unwrap_or_default().contains(needle) {
                    assert!(Instant::now() < deadline, "timed out waiting for {needle}");
                    smol::Timer::after(Duration::from_millis(10)).await;
                }
                Ok(())
            }
        };
        // First life: reads two lines, then "dies" (the pump and writer are dropped mid-run).
        smol::block_on(async {
            let w = Rc::new(RefCell::new(LogWriter::open(&log_dir, 0, 0, 5).unwrap()));
            smol::future::race(pump(out.clone(), Stream::Stdout, w), wait_for("two")).await
        })
        .unwrap();
        // While picolet is down the container writes a line and a half into the pipe.
        stdin.write_all(b"\n").unwrap();
        // Second life: same file, picks up what waited in the pipe.
        smol::block_on(async {
            let w = Rc::new(RefCell::new(LogWriter::open(&log_dir, 0, 0, 5).unwrap()));
            let p = pump(out.clone(), Stream::Stdout, w);
            let feed = async {
                wait_for("three").await.unwrap();
                stdin.write_all(b"\n").unwrap();
                drop(stdin);
            };
            let (r, ()) = smol::future::zip(p, feed).await;
            r.unwrap();
        });
        child.wait().unwrap();
        drop(holder);
        let got: Vec<String> =
            lines(&log).into_iter().map(|x| format!("{} {}", x.1, x.2)).collect();
        assert_eq!(got, vec!["F one", "F two", "F three", "F four", "F five"]);
    }
}
