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
//! container's directory (`record.json` marking the logs complete).

use super::remotecommand::{Channel, Outcome, Source};
use crate::runtime::record::{self, Record};
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
    /// The record says the log is complete: read to its end and stop.
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
        .add_watch(&container_dir, AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_DELETE_SELF)
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
        match std::fs::read(self.container_dir.join("record.json")) {
            Ok(b) => serde_json::from_slice::<Record>(&b).map_or(false, |r| r.logs_done),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
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
                    // The record is saved after the last log line is written:
                    // once it says the logs are complete, one more read to
                    // the end gets everything.
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
