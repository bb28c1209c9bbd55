//! systemd's readiness and watchdog protocol (sd_notify(3)): one datagram of
//! `KEY=value` lines to the Unix socket named by `$NOTIFY_SOCKET`. A path
//! starting with `@` names a socket in the abstract namespace. Every function is
//! a no-op when the variable is unset (not started by systemd, or the unit is
//! not `Type=notify`); send failures are logged at debug level and otherwise
//! ignored, as losing a notification must never stop the kubelet.
//!
//! Call [`init`] first thing at start-up, before any thread or child process
//! exists: it takes `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` out of
//! the environment so the reaper and runc do not inherit them. That matters for
//! runc: with `NOTIFY_SOCKET` set, `runc create/start` proxies the socket into
//! the container and `runc start` waits for the *container* to send READY=1.
//! The unit's `NotifyAccess=main` also means only picolet itself may notify.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// What systemd passed in the environment, read once.
struct Env {
    socket: Option<OsString>,
    watchdog: Option<Duration>,
}

static ENV: OnceLock<Env> = OnceLock::new();

/// Reads the notification settings and removes them from the environment.
/// Call it before spawning threads or children; later calls do nothing.
pub fn init() {
    ENV.get_or_init(|| take_env(true));
}

/// `READY=1`: start-up is complete (for picolet: the read-only port is bound
/// and the first sync has run). systemd then considers the unit started.
pub fn ready() {
    send_env("READY=1");
}

/// `STATUS=msg`: a one-line status shown by `systemctl status`.
pub fn status(msg: &str) {
    send_env(&format!("STATUS={}", one_line(msg)));
}

/// `WATCHDOG=1`: the keep-alive ping; send it at least every
/// [`watchdog_interval`] while the main loop is healthy.
pub fn watchdog() {
    send_env("WATCHDOG=1");
}

/// How often to call [`watchdog`]: half of `WatchdogSec=` as systemd
/// recommends, or `None` when the watchdog is off or meant for another process
/// (`$WATCHDOG_PID` names a different pid).
pub fn watchdog_interval() -> Option<Duration> {
    env().watchdog
}

/// The settings; without [`init`] they are read (not removed) on first use.
fn env() -> &'static Env {
    ENV.get_or_init(|| take_env(false))
}

fn take_env(remove: bool) -> Env {
    let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    if remove {
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(k);
        }
    }
    Env { socket, watchdog: interval_from(usec.as_deref(), pid.as_deref(), std::process::id()) }
}

fn send_env(state: &str) {
    let Some(path) = env().socket.as_deref() else { return };
    if let Err(e) = send_to(path, state) {
        log::debug!("sd_notify {state:?} to {path:?}: {e}");
    }
}

/// Sends `state` as one datagram to the socket named `path` (`@name` for the
/// abstract namespace).
fn send_to(path: &OsStr, state: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let sock = UnixDatagram::unbound()?;
    let sent = match bytes.first() {
        None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty NOTIFY_SOCKET")),
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?;
            sock.send_to_addr(state.as_bytes(), &addr)?
        }
        Some(b'/') => sock.send_to(state.as_bytes(), path)?,
        Some(_) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is neither absolute nor @abstract")),
    };
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

fn interval_from(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// A newline would start a new assignment in the datagram.
fn one_line(msg: &str) -> String {
    msg.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn takes_the_socket_from_the_environment_and_sends_to_it() {
        let dir = std::env::temp_dir().join(format!("picolet-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // The only test that touches these variables, so no other test races it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "30000000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        let env = take_env(true);
        assert!(std::env::var_os("NOTIFY_SOCKET").is_none(), "children must not inherit it");
        assert!(std::env::var_os("WATCHDOG_USEC").is_none());
        assert_eq!(env.watchdog, Some(Duration::from_secs(15)));
        let to = env.socket.unwrap();
        send_to(&to, "READY=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
        send_to(&to, &format!("STATUS={}", one_line("syncing\n3 pods"))).unwrap();
        assert_eq!(recv(&sock), "STATUS=syncing 3 pods");
        // Unset: nothing to send to.
        assert!(take_env(false).socket.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("picolet-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn bad_socket_names_are_errors_not_panics() {
        assert!(send_to(OsStr::new(""), "READY=1").is_err());
        assert!(send_to(OsStr::new("relative.sock"), "READY=1").is_err());
        assert!(send_to(OsStr::new("/nonexistent/picolet/notify.sock"), "READY=1").is_err());
    }

    #[test]
    fn watchdog_interval_is_half_the_period_for_this_pid() {
        assert_eq!(interval_from(Some("30000000"), None, 7), Some(Duration::from_secs(15)));
        assert_eq!(interval_from(Some("30000000"), Some("7"), 7), Some(Duration::from_secs(15)));
        assert_eq!(interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(interval_from(Some("30000000"), Some("x"), 7), None);
        assert_eq!(interval_from(None, None, 7), None);
        assert_eq!(interval_from(Some("0"), None, 7), None);
        assert_eq!(interval_from(Some("soon"), None, 7), None);
    }
}
