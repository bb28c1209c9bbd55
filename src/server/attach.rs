//! The source behind `kubectl attach`: the container's output as it is
//! written, taken from its CRI log (`<log_dir>/<restart>.log`) from the
//! moment of attaching, across rotations, until the container has exited
//! and its log is complete.
//!
//! picolet's containers run with stdin on /dev/null and stdout/stderr on
//! the log FIFOs (no terminal), so there is nothing to attach stdin to:
//! input from the client is read and dropped, and resize events are
//! ignored. With `tty=1` both output streams go to the client's stdout, as a
//! terminal would merge them.
//!
//! Woken by inotify on the log directory (writes, rotation) and on the
//! container's directory (`logs.done` marking the log complete).

use super::remotecommand::{Channel, Outcome, Source};
use crate::runtime::record;
use nix::libc;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Largest read from the log at once.
const READ_MAX: usize = 32 * 1024;
/// An unterminated log line longer than this is passed on as it is.
const MAX_LINE: usize = 64 * 1024;
/// Made in the container's directory once both its output pipes are copied
/// into the log (main.rs, `pump_logs`).
const LOGS_DONE: &str = "logs.done";

pub struct Attach {
    path: PathBuf,
    container_dir: PathBuf,
    file: Option<File>,
    inotify: Inotify,
    container_wd: WatchDescriptor,
    /// The tail of the log not yet ending in a newline.
    partial: Vec<u8>,
    read_buf: Vec<u8>,
    tty: bool,
    /// There may be log bytes not read yet.
    behind: bool,
    /// The container may have finished: look at its record at the next EOF.
    check_exit: bool,
    /// The log is complete: read to its end and stop.
    draining: bool,
    done: bool,
    outcome: Option<Outcome>,
}

/// Starts following `<log_dir>/<restart>.log` of container `id` at its end.
pub fn attach(log_dir: &Path, restart: u32, root: &Path, id: &str, tty: bool) -> io::Result<Attach> {
    let path = log_dir.join(format!("{restart}.log"));
    let container_dir = record::dir(root, id);
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let dir_events = AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_MOVED_FROM;
    inotify.add_watch(log_dir, dir_events).map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("watching {}: {e}", log_dir.display())))?;
    let container_wd = inotify
        .add_watch(&container_dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE_SELF)
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("watching {}: {e}", container_dir.display())))?;
    let mut file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    file.seek(SeekFrom::End(0))?;
    Ok(Attach {
        path,
        container_dir,
        file: Some(file),
        inotify,
        container_wd,
        partial: Vec::new(),
        read_buf: Vec::new(),
        tty,
        behind: true,
        check_exit: true,
        draining: false,
        done: false,
        outcome: None,
    })
}

/// One CRI log line (without its newline): the content and which stream,
/// with a newline added unless the line is a partial (`P`) chunk.
pub fn parse_line(line: &[u8]) -> Option<(Channel, Vec<u8>)> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let _time = parts.next()?;
    let channel = match parts.next()? {
        b"stdout" => Channel::Stdout,
        b"stderr" => Channel::Stderr,
        _ => return None,
    };
    let tag = parts.next()?;
    let mut content = parts.next().unwrap_or_default().to_vec();
    if !tag.starts_with(b"P") {
        content.push(b'\n');
    }
    Some((channel, content))
}

impl Attach {
    /// The container's log is complete (or the container is gone).
    fn container_finished(&self) -> bool {
        self.container_dir.join(LOGS_DONE).exists() || !self.container_dir.exists()
    }

    /// The log at our path is a new file (the one we read was rotated away).
    fn rotated(&self) -> bool {
        let ours = self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| (m.dev(), m.ino()));
        let now = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        now.is_some() && now != ours
    }

    fn emit_lines(&mut self, emit: &mut dyn FnMut(Channel, &[u8])) {
        let tty = self.tty;
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|&b| b == b'\n') {
            if let Some((ch, content)) = parse_line(&self.partial[start..start + end]) {
                emit(if tty { Channel::Stdout } else { ch }, &content);
            }
            start += end + 1;
        }
        self.partial.drain(..start);
        if self.partial.len() > MAX_LINE {
            emit(Channel::Stdout, &self.partial);
            self.partial.clear();
        }
    }
}

impl Source for Attach {
    fn fds(&self, _room: bool, fds: &mut Vec<(RawFd, i16)>) {
        fds.push((self.inotify.as_fd().as_raw_fd(), libc::POLLIN));
    }

    fn ready(&mut self, revents: &[i16], mut room: usize, emit: &mut dyn FnMut(Channel, &[u8])) {
        if self.done {
            return;
        }
        if revents.first().is_some_and(|&r| r != 0) {
            for ev in self.inotify.read_events().unwrap_or_default() {
                if ev.wd == self.container_wd {
                    self.check_exit = true;
                }
            }
            self.behind = true;
        }
        while self.behind && room > 0 {
            let Some(f) = self.file.as_mut() else {
                self.behind = false;
                break;
            };
            self.read_buf.resize(READ_MAX.min(room), 0);
            match f.read(&mut self.read_buf) {
                Ok(0) if self.rotated() => {
                    // The old file is drained: go on with the new one.
                    self.file = File::open(&self.path).ok();
                }
                Ok(0) if self.draining => {
                    self.behind = false;
                    self.done = true;
                    self.outcome = Some(Outcome::Success);
                }
                Ok(0) => {
                    self.behind = false;
                    // logs.done is made after the last log line is written:
                    // once it is there, one more read to the end gets everything.
                    if std::mem::take(&mut self.check_exit) && self.container_finished() {
                        self.draining = true;
                        self.behind = true;
                    }
                }
                Ok(n) => {
                    // Emitted bytes never exceed those read: room holds.
                    room -= n;
                    self.partial.extend_from_slice(&self.read_buf[..n]);
                    self.emit_lines(emit);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    self.outcome = Some(Outcome::Error(format!("reading {}: {e}", self.path.display())));
                }
            }
        }
    }

    fn stdin(&mut self, _data: &[u8]) {}

    fn stdin_eof(&mut self) {}

    fn wants_stdin(&self) -> bool {
        true
    }

    fn resize(&mut self, _width: u16, _height: u16) {}

    fn outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    fn kill(&mut self) {}

    fn deadline(&self) -> Option<Instant> {
        self.behind.then(Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_cri_lines() {
        assert_eq!(parse_line(b"2024-01-01T00:00:00Z stdout F hello"), Some((Channel::Stdout, b"hello\n".to_vec())));
        assert_eq!(parse_line(b"2024-01-01T00:00:00Z stderr P part"), Some((Channel::Stderr, b"part".to_vec())));
        assert_eq!(parse_line(b"2024-01-01T00:00:00Z stdout F "), Some((Channel::Stdout, b"\n".to_vec())));
        assert_eq!(parse_line(b"garbage"), None);
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    /// Waits (bounded) for the inotify fd, then lets the source read once
    /// with `room`; with `drain`, again while it says it is behind.
    fn step(a: &mut Attach, room: usize, drain: bool) -> (Vec<(Channel, String)>, Option<Outcome>) {
        let mut fds = Vec::new();
        a.fds(true, &mut fds);
        let mut p = libc::pollfd { fd: fds[0].0, events: fds[0].1, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 10_000) };
        let mut got = Vec::new();
        a.ready(&[p.revents], room, &mut |ch, b| got.push((ch, String::from_utf8_lossy(b).into_owned())));
        while drain && a.deadline().is_some() {
            a.ready(&[], room, &mut |ch, b| got.push((ch, String::from_utf8_lossy(b).into_owned())));
        }
        (got, a.outcome())
    }

    #[test]
    fn follows_new_output_across_rotation_until_the_logs_are_done() {
        let base = std::env::temp_dir().join(format!("picolet-attach-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (logs, root) = (base.join("logs"), base.join("root"));
        let cdir = record::dir(&root, "c1");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&cdir).unwrap();
        let log = logs.join("2.log");
        append(&log, "t stdout F before attaching\n");
        let mut a = attach(&logs, 2, &root, "c1", false).unwrap();
        let mut first = Vec::new();
        while a.deadline().is_some() {
            a.ready(&[], 1024, &mut |ch, b| first.push((ch, b.to_vec())));
        }
        assert!(first.is_empty(), "history was sent: {first:?}");

        append(&log, "t stdout F one\nt stderr P par");
        let (got, done) = step(&mut a, 1024, true);
        assert_eq!(got, vec![(Channel::Stdout, "one\n".to_string())]);
        assert_eq!(done, None);
        // The partial line ends, then a rotation with a line in each file.
        append(&log, "t\nt stderr F tial\nt stdout F last in old\n");
        std::fs::rename(&log, logs.join("2.log.20240101-000000")).unwrap();
        append(&log, "t stdout F first in new\n");
        let mut all = Vec::new();
        while all.len() < 4 {
            let (got, _) = step(&mut a, 1024, true);
            all.extend(got);
        }
        assert_eq!(
            all,
            vec![
                (Channel::Stderr, "part".to_string()),
                (Channel::Stderr, "tial\n".to_string()),
                (Channel::Stdout, "last in old\n".to_string()),
                (Channel::Stdout, "first in new\n".to_string())
            ]
        );
        // Little room: a read takes no more (the second line waits whole),
        // and the source asks to be called again.
        append(&log, "t stdout F 0123456789\nt stdout F abcdefghij\n");
        let (got, _) = step(&mut a, 30, false);
        assert_eq!(got, vec![(Channel::Stdout, "0123456789\n".to_string())]);
        assert!(a.deadline().is_some());
        // The container ends: the last lines, then success.
        append(&log, "t stdout F bye\n");
        std::fs::write(cdir.join(LOGS_DONE), b"").unwrap();
        let mut rest = Vec::new();
        let outcome = loop {
            let (got, done) = step(&mut a, 1024, true);
            rest.extend(got);
            if let Some(o) = done {
                break o;
            }
        };
        assert_eq!(rest, vec![(Channel::Stdout, "abcdefghij\n".to_string()), (Channel::Stdout, "bye\n".to_string())]);
        assert_eq!(outcome, Outcome::Success);
        let _ = std::fs::remove_dir_all(&base);
    }
}
