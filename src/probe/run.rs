//! Running an `Action` against a container, asynchronously on picolet's
//! single-threaded executor, always bounded by its timeout.
//!
//! TCP and HTTP: a pod without hostNetwork has its own network namespace, so
//! the socket is created by a short-lived thread that joins that namespace
//! (`setns`) and starts a non-blocking `connect`; the socket keeps the
//! namespace it was made in, and the async side finishes the connect and the
//! exchange. Exec: `runc exec --pid-file` in the container (its env, cwd and
//! user come from the bundle's config.json); on timeout the command's own
//! process is SIGKILLed, then runc. Nothing here blocks the executor.

use super::http::{self, Redirect};
use super::{Action, Outcome, ProbeError};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where an action runs: the container and the pod's network namespace.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    /// The pinned netns to connect from; None for hostNetwork pods.
    pub netns: Option<PathBuf>,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    /// The container's directory (for exec's pid and output files).
    pub dir: PathBuf,
}

/// Runs `action`; a run that takes longer than `timeout` fails.
pub async fn run(action: &Action, t: &Target, timeout: Option<Duration>) -> Outcome {
    if let Action::Exec(cmd) = action {
        return exec(t, cmd, timeout).await;
    }
    let work = async {
        match action {
            Action::Tcp { host, port } => match connect_in(t.netns.clone(), host, *port).await {
                Ok(_) => Outcome::Success,
                Err(e) => Outcome::Failure(e.to_string()),
            },
            // No TLS client: an HTTPS target is checked as a TCP connect.
            Action::Http { host, port, https: true, .. } => match connect_in(t.netns.clone(), host, *port).await {
                Ok(_) => Outcome::Success,
                Err(e) => Outcome::Failure(e.to_string()),
            },
            Action::Http { host, port, path, headers, .. } => http_get(t, host, *port, path, headers).await,
            Action::Sleep(d) => {
                smol::Timer::after(*d).await;
                Outcome::Success
            }
            Action::Unsupported(msg) => Outcome::Failure(msg.clone()),
            Action::Exec(_) => unreachable!(),
        }
    };
    match timeout {
        None => work.await,
        Some(d) => {
            let expire = async {
                smol::Timer::after(d).await;
                Outcome::Failure(ProbeError::Timeout(d).to_string())
            };
            smol::future::or(work, expire).await
        }
    }
}

async fn http_get(t: &Target, host: &str, mut port: u16, path: &str, headers: &[(String, String)]) -> Outcome {
    let mut path = path.to_string();
    for _ in 0..=10 {
        let (code, location) = match get_once(t, host, port, &path, headers).await {
            Ok(x) => x,
            Err(e) => return Outcome::Failure(e.to_string()),
        };
        match (code, location) {
            (300..=399, Some(loc)) => match http::redirect(&loc, host, port) {
                Redirect::Follow { port: p, path: next } => {
                    port = p;
                    path = next;
                }
                Redirect::Elsewhere(to) => return Outcome::Warning(format!("Probe terminated redirects, Response body: redirect to {to}")),
                Redirect::Invalid(to) => return Outcome::Failure(format!("invalid redirect location {to:?}")),
            },
            (200..=399, _) => return Outcome::Success,
            (code, _) => return Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        }
    }
    Outcome::Failure("stopped after 10 redirects".into())
}

async fn get_once(t: &Target, host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Result<(u16, Option<String>), ProbeError> {
    let mut s = connect_in(t.netns.clone(), host, port).await?;
    let req = http::request(host, port, path, headers);
    let io = |e: std::io::Error| ProbeError::Http(format!("Get \"http://{host}:{port}{path}\": {e}"));
    s.write_all(req.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(ProbeError::Http(format!("Get \"http://{host}:{port}{path}\": EOF before the response head")));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = http::parse_head(&buf).map_err(ProbeError::Http)? {
            return Ok(head);
        }
    }
}

/// A TCP connection to host:port made from inside `netns` (or picolet's own
/// namespace when None).
pub async fn connect_in(netns: Option<PathBuf>, host: &str, port: u16) -> Result<Async<TcpStream>, ProbeError> {
    let label = format!("{host}:{port}");
    let (tx, rx) = smol::channel::bounded(1);
    let host = host.to_string();
    let spawned = std::thread::Builder::new().name("probe-connect".into()).spawn(move || {
        let r = start_connect(netns, &host, port);
        let _ = tx.send_blocking(r);
    });
    if let Err(e) = spawned {
        return Err(ProbeError::Connect(label, e));
    }
    let (fd, addr) = match rx.recv().await {
        Ok(r) => r.map_err(|e| ProbeError::Connect(label.clone(), e))?,
        Err(_) => return Err(ProbeError::Connect(label, std::io::Error::other("connect thread died"))),
    };
    let stream = Async::new(TcpStream::from(fd)).map_err(|e| ProbeError::Connect(label.clone(), e))?;
    stream.writable().await.map_err(|e| ProbeError::Connect(label.clone(), e))?;
    match stream.get_ref().take_error() {
        Ok(None) => Ok(stream),
        Ok(Some(e)) | Err(e) => Err(ProbeError::Connect(addr.to_string(), e)),
    }
}

/// Runs on the short-lived thread: join the namespace, resolve, and start a
/// non-blocking connect. The thread ends right after; it never blocks on the
/// peer.
fn start_connect(netns: Option<PathBuf>, host: &str, port: u16) -> std::io::Result<(OwnedFd, SocketAddr)> {
    if let Some(ns) = netns {
        let f = std::fs::File::open(&ns)?;
        setns(&f, CloneFlags::CLONE_NEWNET)?;
    }
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address for {host}")))?;
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    let sa = SockaddrStorage::from(addr);
    match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok((fd, addr)),
        Err(e) => Err(e.into()),
    }
}

static EXEC_SEQ: AtomicU64 = AtomicU64::new(0);

/// `runc exec` of `cmd` in the container: exit 0 is success. On timeout the
/// command (found through runc's pid file) and runc are killed.
async fn exec(t: &Target, cmd: &[String], timeout: Option<Duration>) -> Outcome {
    let n = EXEC_SEQ.fetch_add(1, Ordering::Relaxed);
    let pid_file = t.dir.join(format!("exec-{n}.pid"));
    let out_file = t.dir.join(format!("exec-{n}.out"));
    let out = match std::fs::File::create(&out_file) {
        Ok(f) => f,
        Err(e) => return Outcome::Failure(format!("{}: {e}", out_file.display())),
    };
    let err = match out.try_clone() {
        Ok(f) => f,
        Err(e) => return Outcome::Failure(e.to_string()),
    };
    let spawned = smol::process::Command::new(&t.runtime)
        .arg("--root")
        .arg(&t.runtime_root)
        .arg("exec")
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&t.id)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("cannot run {}: {e}", t.runtime.display())),
    };
    let status = match timeout {
        None => child.status().await.ok(),
        Some(d) => {
            let waited = smol::future::or(async { Some(child.status().await) }, async {
                smol::Timer::after(d).await;
                None
            })
            .await;
            match waited {
                Some(s) => s.ok(),
                None => {
                    kill_exec(&pid_file);
                    let _ = child.kill();
                    let _ = child.status().await;
                    let _ = std::fs::remove_file(&pid_file);
                    let _ = std::fs::remove_file(&out_file);
                    return Outcome::Failure(format!("command {cmd:?} timed out after {}s", d.as_secs_f32()));
                }
            }
        }
    };
    let output = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&out_file);
    let text = String::from_utf8_lossy(&output[..output.len().min(1024)]).trim().to_string();
    match status.and_then(|s| s.code()) {
        Some(0) => Outcome::Success,
        Some(code) if text.is_empty() => Outcome::Failure(format!("command {cmd:?} exited with {code}")),
        Some(code) => Outcome::Failure(format!("command {cmd:?} exited with {code}: {text}")),
        None => Outcome::Failure(format!("command {cmd:?} was killed")),
    }
}

/// Kills the exec'd process itself: runc forwards signals but SIGKILL
/// cannot be forwarded, and killing runc alone would leave it running.
fn kill_exec(pid_file: &std::path::Path) {
    let pid = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|p| *p > 1) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn target() -> Target {
        Target { id: "x".into(), netns: None, runtime: "runc".into(), runtime_root: "/nonexistent".into(), dir: std::env::temp_dir() }
    }

    /// A server answering each connection with the next canned response.
    fn serve(responses: Vec<&'static str>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for r in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(r.as_bytes());
            }
        });
        port
    }

    fn http(port: u16, timeout: u64) -> Outcome {
        let a = Action::Http { host: "127.0.0.1".into(), port, path: "/".into(), headers: vec![], https: false };
        smol::block_on(run(&a, &target(), Some(Duration::from_secs(timeout))))
    }

    #[test]
    fn http_status_and_redirects() {
        assert_eq!(http(serve(vec!["HTTP/1.1 204 No Content\r\n\r\n"]), 2), Outcome::Success);
        let p = serve(vec!["HTTP/1.1 500 Oops\r\n\r\n"]);
        assert_eq!(http(p, 2), Outcome::Failure("HTTP probe failed with statuscode: 500".into()));
        let p = serve(vec!["HTTP/1.1 302 Found\r\nLocation: /next\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"]);
        assert_eq!(http(p, 2), Outcome::Success);
        let p = serve(vec!["HTTP/1.1 301 Moved\r\nLocation: http://example.com/\r\n\r\n"]);
        assert!(matches!(http(p, 2), Outcome::Warning(_)));
    }

    #[test]
    fn hung_target_is_bounded_by_the_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog) but never answers
        let port = l.local_addr().unwrap().port();
        let t0 = std::time::Instant::now();
        assert_eq!(http(port, 1), Outcome::Failure("timeout after 1s".into()));
        assert!(t0.elapsed() < Duration::from_millis(1500));
        drop(l);
        let tcp = Action::Tcp { host: "127.0.0.1".into(), port };
        let out = smol::block_on(run(&tcp, &target(), Some(Duration::from_secs(1))));
        assert!(matches!(&out, Outcome::Failure(m) if m.contains("refused")), "{out:?}");
    }
}
