//! Running an `Action` against a container, asynchronously on picolet's
//! single-threaded executor, always bounded by its timeout.
//!
//! TCP and HTTP: a pod without hostNetwork has its own network namespace, so
//! the socket is created by a short-lived thread that joins that namespace
//! (`setns`) and starts a non-blocking `connect`; the socket keeps the
//! namespace it was made in, and the async side finishes the connect and the
//! exchange. Exec: the command is forked straight into the container's
//! namespaces as its configured process (`nsexec`: one fork, no runc), or
//! with `runc exec --pid-file` when that path cannot be used; on timeout the
//! command's own process is SIGKILLed (then runc). Nothing here blocks the
//! executor.

use super::http::{self, Redirect};
use super::{grpc, nsexec, Action, Outcome, ProbeError};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
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
            Action::Http { host, port, path, headers, https } => http_get(t, host, *port, path, headers, *https).await,
            Action::Grpc { host, port, service } => match grpc_check(t, host, *port, service).await {
                Ok(()) => Outcome::Success,
                Err(e) => Outcome::Failure(e),
            },
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

async fn http_get(t: &Target, host: &str, mut port: u16, path: &str, headers: &[(String, String)], https: bool) -> Outcome {
    let mut path = path.to_string();
    for _ in 0..=10 {
        let got = if https { tls::get_once(t, host, port, &path, headers).await } else { get_once(t, host, port, &path, headers).await };
        let (code, location) = match got {
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

/// One `Health/Check` call: send the request, answer the server's SETTINGS,
/// collect stream 1's DATA until it ends, then judge the message.
async fn grpc_check(t: &Target, host: &str, port: u16, service: &str) -> Result<(), String> {
    let mut s = connect_in(t.netns.clone(), host, port).await.map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("rpc error: {host}:{port}: {e}");
    s.write_all(&grpc::request(&format!("{host}:{port}"), service)).await.map_err(io)?;
    let (mut buf, mut data) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(format!("rpc error: {host}:{port} closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
        for f in grpc::take_frames(&mut buf) {
            match f.kind {
                grpc::SETTINGS if f.flags & grpc::ACK == 0 => s.write_all(&grpc::settings_ack()).await.map_err(io)?,
                grpc::DATA if f.stream == 1 => data.extend_from_slice(&f.payload),
                grpc::RST_STREAM | grpc::GOAWAY => return Err(format!("rpc error: {host}:{port} reset the call")),
                _ => {}
            }
            if f.stream == 1 && (f.kind == grpc::DATA || f.kind == grpc::HEADERS) && f.flags & grpc::END_STREAM != 0 {
                return grpc::verdict(&data);
            }
            if data.len() > 64 * 1024 {
                return Err("rpc error: health response too large".into());
            }
        }
    }
}

/// HTTPS probes as upstream's: TLS without verifying the server's
/// certificate (the pod's own, often self-signed), HTTP/1.1 inside.
mod tls {
    use super::{connect_in, http, ProbeError, Target};
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    use std::io::{Read, Write};
    use std::sync::{Arc, OnceLock};

    /// Accepts any certificate; the handshake's signatures are still checked.
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn config() -> Arc<ClientConfig> {
        static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let cfg = ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                    .with_no_client_auth();
                Arc::new(cfg)
            })
            .clone()
    }

    pub async fn get_once(t: &Target, host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Result<(u16, Option<String>), ProbeError> {
        let fail = |e: String| ProbeError::Http(format!("Get \"https://{host}:{port}{path}\": {e}"));
        let mut s = connect_in(t.netns.clone(), host, port).await?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| fail(e.to_string()))?;
        let mut conn = ClientConnection::new(config(), name).map_err(|e| fail(e.to_string()))?;
        conn.writer().write_all(http::request(host, port, path, headers).as_bytes()).map_err(|e| fail(e.to_string()))?;
        let (mut plain, mut chunk) = (Vec::new(), [0u8; 4096]);
        loop {
            while conn.wants_write() {
                let mut out = Vec::new();
                conn.write_tls(&mut out).map_err(|e| fail(e.to_string()))?;
                s.write_all(&out).await.map_err(|e| fail(e.to_string()))?;
            }
            let n = s.read(&mut chunk).await.map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                return Err(fail("EOF before the response head".into()));
            }
            conn.read_tls(&mut &chunk[..n]).map_err(|e| fail(e.to_string()))?;
            conn.process_new_packets().map_err(|e| fail(e.to_string()))?;
            loop {
                match conn.reader().read(&mut chunk) {
                    Ok(0) => break, // the server closed the TLS session
                    Ok(n) => plain.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
            if let Some(head) = http::parse_head(&plain).map_err(ProbeError::Http)? {
                return Ok(head);
            }
            if plain.len() > 64 * 1024 {
                return Err(fail("response head too large".into()));
            }
        }
    }
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

/// Which way exec runs: the setns path (`nsexec`) unless PICOLET_EXEC=runc
/// (kept for comparison and as an escape hatch).
fn use_setns() -> bool {
    static SETNS: OnceLock<bool> = OnceLock::new();
    *SETNS.get_or_init(|| std::env::var("PICOLET_EXEC").map_or(true, |v| v != "runc"))
}

/// Starts `cmd` through `nsexec` on the blocking pool; None when that path
/// cannot be used here, logged once at debug.
async fn spawn_setns(t: &Target, cmd: &[String], out: &std::fs::File) -> Option<Direct> {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let (root, id, dir, cmd, out) = (t.runtime_root.clone(), t.id.clone(), t.dir.clone(), cmd.to_vec(), out.try_clone().ok()?);
    match smol::unblock(move || nsexec::spawn(&root, &id, &dir, &cmd, out)).await {
        Ok(c) => Some(Direct(Some(c))),
        Err(e) => {
            if !LOGGED.swap(true, Ordering::Relaxed) {
                log::debug!("exec in {} without runc failed ({e}); using runc exec (logged once)", t.id);
            }
            None
        }
    }
}

/// A command started by `nsexec`: our own child, killed and reaped if the
/// probe is dropped before it ends (std's Child would leave a zombie).
struct Direct(Option<std::process::Child>);

impl Direct {
    /// Waits for the exit, woken by a pidfd (or a 10 ms poll on kernels
    /// before 5.3); None when waiting failed.
    async fn status(&mut self) -> Option<ExitStatus> {
        let child = self.0.as_mut()?;
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, child.id() as nix::libc::pid_t, 0) };
        let pidfd = (fd >= 0).then(|| Async::new(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }).ok()).flatten();
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) => {}
                Err(_) => return None,
            }
            match &pidfd {
                Some(p) => drop(p.readable().await),
                None => drop(smol::Timer::after(Duration::from_millis(10)).await),
            }
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                // Reaped off the executor: a process in D state dies late.
                smol::unblock(move || drop(c.wait())).detach();
            }
        }
    }
}

/// Runs `cmd` in the container: exit 0 is success. Through `nsexec`
/// (setns+fork+exec, one process) or, when that cannot be used, `runc exec`.
/// On timeout the command is killed (with runc: found through its pid file,
/// then runc).
async fn exec(t: &Target, cmd: &[String], timeout: Option<Duration>) -> Outcome {
    exec_with(t, cmd, timeout, use_setns()).await
}

async fn exec_with(t: &Target, cmd: &[String], timeout: Option<Duration>, setns: bool) -> Outcome {
    let n = EXEC_SEQ.fetch_add(1, Ordering::Relaxed);
    let pid_file = t.dir.join(format!("exec-{n}.pid"));
    let out_file = t.dir.join(format!("exec-{n}.out"));
    let out = match std::fs::File::create(&out_file) {
        Ok(f) => f,
        Err(e) => return Outcome::Failure(format!("{}: {e}", out_file.display())),
    };
    let status = match if setns { spawn_setns(t, cmd, &out).await } else { None } {
        Some(mut direct) => match timeout {
            None => direct.status().await,
            Some(d) => match smol::future::or(async { Some(direct.status().await) }, async {
                smol::Timer::after(d).await;
                None
            })
            .await
            {
                Some(s) => s,
                None => {
                    drop(direct); // kills and reaps
                    let _ = std::fs::remove_file(&out_file);
                    return Outcome::Failure(format!("command {cmd:?} timed out after {}s", d.as_secs_f32()));
                }
            },
        },
        None => match exec_runc(t, cmd, timeout, out, &pid_file).await {
            Ok(s) => s,
            Err(o) => {
                let _ = std::fs::remove_file(&out_file);
                return o;
            }
        },
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

/// `runc exec` of `cmd`, output to `out`; Err is the outcome to return at
/// once (could not start, or timed out: the command, found through runc's
/// pid file, and runc are killed).
async fn exec_runc(t: &Target, cmd: &[String], timeout: Option<Duration>, out: std::fs::File, pid_file: &std::path::Path) -> Result<Option<ExitStatus>, Outcome> {
    let err = out.try_clone().map_err(|e| Outcome::Failure(e.to_string()))?;
    let spawned = smol::process::Command::new(&t.runtime)
        .arg("--root")
        .arg(&t.runtime_root)
        .arg("exec")
        .arg("--pid-file")
        .arg(pid_file)
        .arg(&t.id)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn();
    let mut child = spawned.map_err(|e| Outcome::Failure(format!("cannot run {}: {e}", t.runtime.display())))?;
    match timeout {
        None => Ok(child.status().await.ok()),
        Some(d) => {
            let waited = smol::future::or(async { Some(child.status().await) }, async {
                smol::Timer::after(d).await;
                None
            })
            .await;
            match waited {
                Some(s) => Ok(s.ok()),
                None => {
                    kill_exec(pid_file);
                    let _ = child.kill();
                    let _ = child.status().await;
                    let _ = std::fs::remove_file(pid_file);
                    Err(Outcome::Failure(format!("command {cmd:?} timed out after {}s", d.as_secs_f32())))
                }
            }
        }
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

    /// What one exec costs picolet on each path, wall and CPU (self and
    /// reaped children): `PICOLET_BENCH_ROOT=<root-dir> PICOLET_BENCH_ID=<id>
    /// cargo test --release exec_cost -- --ignored --nocapture` on a running
    /// container (tests/bench/probes.sh does this).
    #[test]
    #[ignore = "a benchmark, not a test: needs a running container; tests/bench/probes.sh runs it"]
    fn exec_cost() {
        let root = PathBuf::from(std::env::var("PICOLET_BENCH_ROOT").expect("PICOLET_BENCH_ROOT"));
        let id = std::env::var("PICOLET_BENCH_ID").expect("PICOLET_BENCH_ID");
        let n: u32 = std::env::var("PICOLET_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
        let t = Target { id: id.clone(), netns: None, runtime: "runc".into(), runtime_root: root.join("runc"), dir: crate::runtime::record::dir(&root, &id) };
        let out = std::fs::File::create("/dev/null").unwrap();
        nsexec::spawn(&t.runtime_root, &id, &t.dir, &["true".into()], out).expect("setns path usable").wait().unwrap();
        let cpu = || {
            let mut total = 0.0;
            for who in [nix::libc::RUSAGE_SELF, nix::libc::RUSAGE_CHILDREN] {
                let mut ru: nix::libc::rusage = unsafe { std::mem::zeroed() };
                unsafe { nix::libc::getrusage(who, &mut ru) };
                for tv in [ru.ru_utime, ru.ru_stime] {
                    total += tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3;
                }
            }
            total
        };
        for (label, setns) in [("setns+fork+exec", true), ("runc exec", false)] {
            let (c0, t0) = (cpu(), std::time::Instant::now());
            for _ in 0..n {
                let o = smol::block_on(exec_with(&t, &["true".into()], Some(Duration::from_secs(5)), setns));
                assert_eq!(o, Outcome::Success);
            }
            let wall = t0.elapsed().as_secs_f64() * 1e3 / n as f64;
            println!("picolet {label:<36} wall {wall:6.2} ms   cpu {:6.2} ms", (cpu() - c0) / n as f64);
        }
    }

    #[test]
    fn hung_target_is_bounded_by_the_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog) but never answers
        let port = l.local_addr().unwrap().port();
        // The probe's own timeout ends it (its message says so); the
        // deadline here only turns a hang into a failure.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(http(port, 1)));
        let out = rx.recv_timeout(Duration::from_secs(60)).expect("the probe hung past its 1 s timeout");
        assert_eq!(out, Outcome::Failure("timeout after 1s".into()));
        drop(l);
        let tcp = Action::Tcp { host: "127.0.0.1".into(), port };
        let out = smol::block_on(run(&tcp, &target(), Some(Duration::from_secs(1))));
        assert!(matches!(&out, Outcome::Failure(m) if m.contains("refused")), "{out:?}");
    }
}
