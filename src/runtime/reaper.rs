//! The reaper: one small process per node that outlives picolet.
//!
//! Without a per-container shim something must be the parent of every
//! container's init to learn its exit code, and must keep each container's log
//! pipe alive so nothing written while picolet is down is lost. picolet starts
//! `picolet reaper` once (detached, in its own session); the reaper marks
//! itself a child subreaper and runs `runc create` for picolet, so every
//! container init becomes its child. When one exits it writes
//! `<container dir>/exit.json` atomically. It also holds a read end of each
//! container's stdout/stderr FIFO until picolet releases the container, so
//! buffered output survives a picolet restart.
//!
//! Protocol: one JSON request line per connection on `<root>/reaper.sock`,
//! one JSON reply line.

use super::RuntimeError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

const SOCKET: &str = "reaper.sock";
const LOCK: &str = "reaper.lock";

/// What the reaper records when a container's init exits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub finished_at: String,
    /// The kernel's OOM killer killed a process in the container's cgroup
    /// (memory.events, read before the cgroup is removed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

impl ExitInfo {
    pub fn read(container_dir: &Path) -> Option<ExitInfo> {
        let text = std::fs::read(container_dir.join("exit.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Request {
    Create { runtime: PathBuf, root: PathBuf, id: String, bundle: PathBuf, stdout: PathBuf, stderr: PathBuf },
    Release { id: String },
}

#[derive(Serialize, Deserialize)]
struct Reply {
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    error: String,
}

/// picolet's side: talks to the reaper, starting it if it is not running.
pub struct ReaperClient {
    root_dir: PathBuf,
    socket: PathBuf,
}

impl ReaperClient {
    pub fn connect_or_spawn(root_dir: &Path) -> Result<ReaperClient, RuntimeError> {
        let client = ReaperClient { root_dir: root_dir.to_path_buf(), socket: root_dir.join(SOCKET) };
        client.connect().map(|_| client)
    }

    /// Connects, starting the reaper first if none answers (first start, or
    /// the reaper died: then it is started again rather than failing pods).
    fn connect(&self) -> Result<UnixStream, RuntimeError> {
        if let Ok(s) = UnixStream::connect(&self.socket) {
            return Ok(s);
        }
        let exe = std::env::current_exe().map_err(|e| RuntimeError::Spawn("picolet reaper".into(), e))?;
        let log_path = self.root_dir.join("reaper.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| RuntimeError::Io(log_path, e))?;
        let mut cmd = Command::new(exe);
        cmd.arg("reaper").arg("--root-dir").arg(&self.root_dir);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        // Its own session: a signal to picolet's process group must not reach it.
        unsafe {
            cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
        }
        let mut child = cmd.spawn().map_err(|e| RuntimeError::Spawn("picolet reaper".into(), e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = UnixStream::connect(&self.socket) {
                // The reaper is reparented once picolet exits; until then reap it if it ends.
                std::thread::spawn(move || child.wait());
                log::info!("started the reaper (pid {})", std::fs::read_to_string(self.root_dir.join("reaper.pid")).unwrap_or_default());
                return Ok(s);
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Lost a race with another reaper that now holds the lock: fine if it answers.
                if let Ok(s) = UnixStream::connect(&self.socket) {
                    return Ok(s);
                }
                return Err(RuntimeError::Reaper(format!("reaper exited at start ({status}); see reaper.log")));
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Reaper("reaper did not come up within 10s".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn call(&self, req: &Request) -> Result<Reply, RuntimeError> {
        let err = |e: std::io::Error| RuntimeError::Reaper(format!("{}: {e}", self.socket.display()));
        let mut stream = self.connect()?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(err)?;
        let mut line = serde_json::to_vec(req).expect("request serialises");
        line.push(b'\n');
        stream.write_all(&line).map_err(err)?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).map_err(err)?;
        serde_json::from_str(&reply).map_err(|e| RuntimeError::Reaper(format!("bad reply {reply:?}: {e}")))
    }

    pub fn create(&self, runtime: &Path, root: &Path, id: &str, bundle: &Path, stdout: &Path, stderr: &Path) -> Result<u32, RuntimeError> {
        let req = Request::Create {
            runtime: runtime.into(),
            root: root.into(),
            id: id.into(),
            bundle: bundle.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        let reply = self.call(&req)?;
        if reply.error.is_empty() {
            Ok(reply.pid)
        } else {
            Err(RuntimeError::Failed { verb: "create".into(), id: id.into(), stderr: reply.error })
        }
    }

    pub fn release(&self, id: &str) {
        if let Err(e) = self.call(&Request::Release { id: id.into() }) {
            log::debug!("reaper release {id}: {e}");
        }
    }
}

// ---- the reaper process ----

#[derive(Default)]
struct Shared {
    /// Exit statuses reaped but not yet claimed, by pid, with when they were
    /// reaped: a `runc create` claims its own at once; the rest (processes
    /// orphaned inside containers) are dropped after a minute.
    exits: HashMap<i32, (std::process::ExitStatus, Instant)>,
    /// Container inits: pid -> bundle dir (where exit.json goes) and the
    /// container's cgroup v2 directory (for its OOM count at exit).
    containers: HashMap<i32, (PathBuf, Option<PathBuf>)>,
}

/// Runs the reaper until killed. Returns only on a start-up error.
pub fn serve(root_dir: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(root_dir).map_err(|e| RuntimeError::Io(root_dir.into(), e))?;
    let lock_path = root_dir.join(LOCK);
    let lock = File::create(&lock_path).map_err(|e| RuntimeError::Io(lock_path.clone(), e))?;
    let lock = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err(_) => return Err(RuntimeError::Reaper("another reaper holds the lock".into())),
    };
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        // qemu-user refuses it; containers then run, but their exit codes go
        // to init instead of exit.json.
        eprintln!("picolet reaper: PR_SET_CHILD_SUBREAPER: {e}: exit codes of containers will be unknown");
    }
    let sock = root_dir.join(SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(|e| RuntimeError::Io(sock.clone(), e))?;
    let pid_path = root_dir.join("reaper.pid");
    std::fs::write(&pid_path, std::process::id().to_string()).map_err(|e| RuntimeError::Io(pid_path, e))?;

    let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
    let reaper = shared.clone();
    std::thread::spawn(move || reap_forever(&reaper));

    // Read ends of log FIFOs, held until picolet releases the container.
    let mut held: HashMap<String, (File, File)> = HashMap::new();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Create { runtime, root, id, bundle, stdout, stderr }) => {
                match create(&shared, &runtime, &root, &id, &bundle, &stdout, &stderr) {
                    Ok((pid, fds)) => {
                        held.insert(id, fds);
                        Reply { pid, error: String::new() }
                    }
                    Err(e) => Reply { pid: 0, error: e },
                }
            }
            Ok(Request::Release { id }) => {
                held.remove(&id);
                Reply { pid: 0, error: String::new() }
            }
            Err(e) => Reply { pid: 0, error: format!("bad request: {e}") },
        };
        let mut out = serde_json::to_vec(&reply).expect("reply serialises");
        out.push(b'\n');
        let _ = (&conn).write_all(&out);
    }
    drop(lock);
    Ok(())
}

fn open_fifo(path: &Path) -> Result<(File, File), String> {
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let writer = OpenOptions::new().write(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((reader, writer))
}

fn create(
    shared: &Arc<(Mutex<Shared>, Condvar)>,
    runtime: &Path,
    root: &Path,
    id: &str,
    bundle: &Path,
    stdout: &Path,
    stderr: &Path,
) -> Result<(u32, (File, File)), String> {
    let (out_r, out_w) = open_fifo(stdout)?;
    let (err_r, err_w) = open_fifo(stderr)?;
    let pid_file = bundle.join("init.pid");
    let log_file = bundle.join("runc.log");
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&log_file);
    let (lock, cvar) = &**shared;
    // Hold the lock across spawn so the reaper thread cannot miss the pid.
    let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    // runc passes its own stdio to the container (detached, no terminal).
    let child = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .arg("--log")
        .arg(&log_file)
        .arg("--log-format")
        .arg("json")
        .arg("create")
        .arg("--bundle")
        .arg(bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(out_w)
        .stderr(err_w)
        .spawn()
        .map_err(|e| format!("{}: {e}", runtime.display()))?;
    let runc_pid = child.id() as i32;
    drop(child); // never waited through std: the reaper thread collects it
    cvar.notify_all();
    let status = loop {
        if let Some((s, _)) = guard.exits.remove(&runc_pid) {
            break s;
        }
        guard = cvar.wait(guard).unwrap_or_else(|p| p.into_inner());
    };
    if !status.success() {
        return Err(runc_log_error(&log_file).unwrap_or_else(|| format!("runc create exited with {status}")));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("{}: no pid written", pid_file.display()))?;
    // Read now, while the init lives: at its exit /proc no longer says.
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| crate::cgroup::oom::cgroup_dir(Path::new(crate::cgroup::FS_ROOT), &t));
    if let Some((status, _)) = guard.exits.remove(&pid) {
        write_exit(bundle, status, cgroup.as_deref());
    } else {
        guard.containers.insert(pid, (bundle.to_path_buf(), cgroup));
    }
    Ok((pid as u32, (out_r, err_r)))
}

/// The last error message runc wrote to its JSON log.
pub fn runc_log_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .last()
}

fn reap_forever(shared: &Arc<(Mutex<Shared>, Condvar)>) {
    use nix::sys::wait::{waitpid, WaitStatus};
    let (lock, cvar) = &**shared;
    loop {
        match waitpid(None, None) {
            Ok(ws) => {
                let (pid, status) = match ws {
                    WaitStatus::Exited(pid, code) => (pid, std::process::ExitStatus::from_raw((code & 0xff) << 8)),
                    WaitStatus::Signaled(pid, sig, _) => (pid, std::process::ExitStatus::from_raw(sig as i32)),
                    _ => continue,
                };
                let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((dir, cgroup)) = g.containers.remove(&pid.as_raw()) {
                    write_exit(&dir, status, cgroup.as_deref());
                } else {
                    g.exits.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(60));
                    g.exits.insert(pid.as_raw(), (status, Instant::now()));
                    cvar.notify_all();
                }
            }
            Err(nix::errno::Errno::ECHILD) => {
                // No children yet: wait until a create spawns one.
                let g = lock.lock().unwrap_or_else(|p| p.into_inner());
                let _ = cvar.wait_timeout(g, Duration::from_millis(200));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn write_exit(dir: &Path, status: std::process::ExitStatus, cgroup: Option<&Path>) {
    let info = ExitInfo {
        exit_code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        signal: status.signal(),
        finished_at: crate::api::time::rfc3339(SystemTime::now()),
        // The cgroup outlives its init until `runc delete`, which picolet
        // runs only after it has seen this file.
        oom_killed: cgroup.is_some_and(crate::cgroup::oom::killed),
    };
    let body = serde_json::to_vec(&info).expect("exit info serialises");
    if let Err(e) = crate::hostfs::write_atomic(&dir.join("exit.json"), &body) {
        eprintln!("reaper: {}: {e}", dir.display());
    }
}
