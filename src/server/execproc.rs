//! The process behind `kubectl exec`: `runc exec` in the container, in the
//! foreground so its exit code is the command's.
//!
//! Without a tty, runc gets pipes (stdin only when asked for; stdout and
//! stderr always, so their EOF says runc is exiting). With a tty, runc gets
//! the slave of a pty picolet opens as its own terminal: runc then makes the
//! container's pty and copies between the two, and picks up picolet's
//! window size on SIGWINCH. (runc only hands the container's pty master to a
//! `--console-socket` when it detaches, and a detached exec's exit code
//! would go to whoever reaps the orphan, not to picolet.) The command's pid
//! (`--pid-file`) is what gets SIGKILLed when the client goes away, as
//! containerd does: runc cannot forward SIGKILL.
//!
//! runc's own failures (no such command, container stopped) exit 255 with
//! a message in its JSON log: they become an InternalError, as upstream's
//! "failed to exec in container"; any other exit code is the command's.

use super::remotecommand::{Channel, Options, Outcome, Source};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// stdin accepted ahead of the process.
const STDIN_MAX: usize = 64 * 1024;
/// Largest read from the process at once.
const READ_MAX: usize = 32 * 1024;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// What to run where.
pub struct Spec<'a> {
    pub runtime: &'a Path,
    pub runtime_root: &'a Path,
    /// The container's directory, for the pid and log files.
    pub dir: &'a Path,
    pub id: &'a str,
    pub cmd: &'a [String],
    pub opts: Options,
}

/// A running `runc exec`.
pub struct Exec {
    child: Option<Child>,
    pid_file: PathBuf,
    log_file: PathBuf,
    tty: bool,
    /// Pipe to the process, or a dup of the pty master.
    stdin: Option<std::fs::File>,
    stdin_buf: Vec<u8>,
    stdin_eof: bool,
    /// stdout (or the pty master) and stderr; None once at EOF.
    outs: [Option<std::fs::File>; 2],
    read_buf: Vec<u8>,
    what: String,
    outcome: Option<Outcome>,
}

fn nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map(drop).map_err(io::Error::from)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// A pty pair, both ends close-on-exec from the start so no other child
/// spawned meanwhile holds the slave (its EOF tells us runc is gone).
fn pty() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?;
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(master.into_raw_fd()), OwnedFd::from_raw_fd(slave)) })
}

/// Starts the command.
pub fn spawn(s: &Spec) -> io::Result<Exec> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid_file = s.dir.join(format!("exec-session-{n}.pid"));
    let log_file = s.dir.join(format!("exec-session-{n}.log"));
    let mut cmd = Command::new(s.runtime);
    cmd.arg("--root").arg(s.runtime_root).arg("--log").arg(&log_file).arg("--log-format").arg("json");
    cmd.arg("exec").arg("--pid-file").arg(&pid_file);
    if s.opts.tty {
        // As containerd does for a tty exec.
        cmd.arg("--tty").arg("--env").arg("TERM=xterm");
    }
    cmd.arg(s.id).args(s.cmd);
    let mut stdin = None;
    let mut outs = [None, None];
    if s.opts.tty {
        let (master, slave) = pty()?;
        cmd.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
        nonblocking(&master)?;
        stdin = Some(std::fs::File::from(master.try_clone()?));
        outs[0] = Some(std::fs::File::from(master));
    } else {
        if s.opts.stdin {
            let (r, w) = pipe()?;
            cmd.stdin(Stdio::from(r));
            nonblocking(&w)?;
            stdin = Some(std::fs::File::from(w));
        } else {
            cmd.stdin(Stdio::null());
        }
        let (r, w) = pipe()?;
        cmd.stdout(Stdio::from(w));
        nonblocking(&r)?;
        outs[0] = Some(std::fs::File::from(r));
        let (r, w) = pipe()?;
        cmd.stderr(Stdio::from(w));
        nonblocking(&r)?;
        outs[1] = Some(std::fs::File::from(r));
    }
    let child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", s.runtime.display())))?;
    // Our copies of runc's ends (held by `cmd`) must go, or EOF never comes.
    drop(cmd);
    Ok(Exec {
        child: Some(child),
        pid_file,
        log_file,
        tty: s.opts.tty,
        stdin,
        stdin_buf: Vec::new(),
        stdin_eof: false,
        outs,
        read_buf: Vec::new(),
        what: format!("command '{}'", s.cmd.join(" ")),
        outcome: None,
    })
}

impl Exec {
    fn write_stdin(&mut self) {
        while !self.stdin_buf.is_empty() {
            let Some(f) = self.stdin.as_mut() else { break };
            match f.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The process closed its stdin (EPIPE): drop what it won't read.
                    self.stdin = None;
                    self.stdin_buf.clear();
                }
            }
        }
        // Closing the pipe is the process's EOF; a pty has no such thing.
        if self.stdin_eof && self.stdin_buf.is_empty() && !self.tty {
            self.stdin = None;
        }
    }

    /// runc is exiting (its output ended): collect how.
    fn reap(&mut self) -> Outcome {
        let Some(mut child) = self.child.take() else { return Outcome::Error("exec process lost".into()) };
        let status = match child.wait() {
            Ok(s) => s,
            Err(e) => return Outcome::Error(format!("waiting for runc exec: {e}")),
        };
        outcome_of(status, &self.log_file, &self.what)
    }
}

impl Source for Exec {
    fn fds(&self, room: bool, fds: &mut Vec<(RawFd, i16)>) {
        // Fixed slots (fd -1 = not polled) so `ready` knows which is which.
        let stdin = match &self.stdin {
            Some(f) if !self.stdin_buf.is_empty() => f.as_raw_fd(),
            _ => -1,
        };
        fds.push((stdin, libc::POLLOUT));
        for o in &self.outs {
            fds.push((o.as_ref().filter(|_| room).map_or(-1, |f| f.as_raw_fd()), libc::POLLIN));
        }
    }

    fn ready(&mut self, revents: &[i16], mut room: usize, emit: &mut dyn FnMut(Channel, &[u8])) {
        if revents.first().is_some_and(|&r| r != 0) {
            self.write_stdin();
        }
        for (i, ch) in [(0, Channel::Stdout), (1, Channel::Stderr)] {
            if revents.get(1 + i).map_or(true, |&r| r == 0) || room == 0 {
                continue;
            }
            let Some(f) = self.outs[i].as_mut() else { continue };
            self.read_buf.resize(READ_MAX.min(room), 0);
            match f.read(&mut self.read_buf) {
                Ok(0) => self.outs[i] = None,
                Ok(n) => {
                    room -= n;
                    emit(ch, &self.read_buf[..n]);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                // EIO: a pty whose slave side is all closed.
                Err(_) => self.outs[i] = None,
            }
        }
        if self.outs.iter().all(Option::is_none) && self.outcome.is_none() && self.child.is_some() {
            self.outcome = Some(self.reap());
        }
    }

    fn stdin(&mut self, data: &[u8]) {
        if self.stdin.is_some() && !self.stdin_eof {
            self.stdin_buf.extend_from_slice(data);
            self.write_stdin();
        }
    }

    fn stdin_eof(&mut self) {
        self.stdin_eof = true;
        self.write_stdin();
    }

    fn wants_stdin(&self) -> bool {
        self.stdin_buf.len() < STDIN_MAX
    }

    fn resize(&mut self, width: u16, height: u16) {
        let (Some(master), Some(child)) = (self.outs[0].as_ref().filter(|_| self.tty), self.child.as_ref()) else { return };
        let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } == 0 {
            // runc copies its terminal's size to the container's on SIGWINCH.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGWINCH);
        }
    }

    fn outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        kill_pid_file(&self.pid_file);
        let _ = child.kill();
        let _ = child.wait();
        // runc may have started the command after we looked.
        kill_pid_file(&self.pid_file);
    }
}

/// How `runc exec` of `what` ended: runc's own failures exit 255 with an
/// error in its log; any other code is the command's.
fn outcome_of(status: std::process::ExitStatus, log_file: &Path, what: &str) -> Outcome {
    match status.code() {
        Some(0) => Outcome::Success,
        Some(255) => match crate::runtime::reaper::runc_log_error(log_file) {
            Some(msg) => Outcome::Error(format!("failed to exec in container: {msg}")),
            None => Outcome::Exit { code: 255, what: what.to_string() },
        },
        Some(code) => Outcome::Exit { code, what: what.to_string() },
        None => Outcome::Error(format!("runc exec ended by {status}")),
    }
}

fn kill_pid_file(path: &Path) {
    let pid = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|&p| p > 1) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = std::fs::remove_file(&self.log_file);
    }
}

/// `/run`: runs `cmd` to its end; stdout and stderr together, at most `max`
/// bytes kept (the rest is read and dropped so the command never blocks).
pub fn run_to_end(runtime: &Path, runtime_root: &Path, dir: &Path, id: &str, cmd: &[String], max: usize) -> io::Result<(Outcome, Vec<u8>)> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let log_file = dir.join(format!("exec-session-{n}.log"));
    let (r, w) = pipe()?;
    let mut c = Command::new(runtime);
    c.arg("--root").arg(runtime_root).arg("--log").arg(&log_file).arg("--log-format").arg("json");
    c.arg("exec").arg(id).args(cmd);
    c.stdin(Stdio::null()).stdout(Stdio::from(w.try_clone()?)).stderr(Stdio::from(w));
    let spawned = c.spawn();
    drop(c);
    let mut child = spawned.map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", runtime.display())))?;
    let mut out = Vec::new();
    let mut r = std::fs::File::from(r);
    let mut buf = vec![0u8; READ_MAX];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k.min(max.saturating_sub(out.len()))]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&log_file);
                return Err(e);
            }
        }
    }
    let status = child.wait()?;
    let outcome = outcome_of(status, &log_file, &format!("command '{}'", cmd.join(" ")));
    let _ = std::fs::remove_file(&log_file);
    Ok((outcome, out))
}
