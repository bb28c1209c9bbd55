//! `/containerLogs/{namespace}/{pod}/{container}`: CRI log files as
//! `kubectl logs` asks for them (upstream's kuberuntime/logs).
//!
//! The query is a v1 PodLogOptions (`follow`, `previous`, `sinceSeconds`,
//! `sinceTime`, `timestamps`, `tailLines`, `limitBytes`); the container's
//! status picks the attempt (its `<restartCount>.log` and rotated files, see
//! [`files`]); [`cri`] turns the lines into output. With `follow` the live
//! file is polled every [`POLL`] until the attempt's logs are complete (the
//! pump's `logs.done`) or the client goes away: no inotify, one thread and a
//! few bounded buffers per follower.
//!
//! Not here: `/logs/` (node log files), the `stream` option (stdout/stderr
//! only), Docker JSON logs.

mod cri;
mod files;

use super::kubelet::{find_container, Conn, Context, Request};
use crate::api::time;
use crate::api::ContainerStatus;
use crate::runtime::record::{self, Record};
use std::io::{self, BufWriter, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How often a follower looks for new lines, rotation and the end.
pub const POLL: Duration = Duration::from_millis(250);

/// The PodLogOptions picolet honours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// Lines older than this are left out (`sinceSeconds`/`sinceTime`).
    pub since: Option<SystemTime>,
    /// Only the last so many lines (`tailLines`).
    pub tail: Option<u64>,
    /// At most so many bytes (`limitBytes`).
    pub limit: Option<u64>,
}

/// Reads the options from the query, as the API server's conversion and
/// validation would; the error names the parameter.
pub fn parse_options(query: &[(String, String)], now: SystemTime) -> Result<Options, String> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    // Go's query conversion: absent, "false" and "0" are false, anything else true.
    let flag = |k: &str| get(k).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
    let int = |k: &str, v: &str| v.parse::<i64>().map_err(|_| format!("invalid {k} {v:?}: not an integer"));
    let mut o = Options { follow: flag("follow"), previous: flag("previous"), timestamps: flag("timestamps"), ..Default::default() };
    // `tail` is the old name of tailLines; "all" means no limit.
    let tail = match get("tail") {
        Some("all") => None,
        Some(v) => Some(("tail", v)),
        None => get("tailLines").map(|v| ("tailLines", v)),
    };
    if let Some((k, v)) = tail {
        let n = int(k, v)?;
        if n < 0 {
            return Err(format!("invalid {k} {v:?}: must be greater than or equal to 0"));
        }
        o.tail = Some(n as u64);
    }
    if let Some(v) = get("limitBytes") {
        let n = int("limitBytes", v)?;
        if n < 1 {
            return Err(format!("invalid limitBytes {v:?}: must be greater than 0"));
        }
        o.limit = Some(n as u64);
    }
    match (get("sinceSeconds"), get("sinceTime")) {
        (Some(_), Some(_)) => return Err("at most one of sinceTime or sinceSeconds may be specified".into()),
        (Some(v), None) => {
            let n = int("sinceSeconds", v)?;
            if n < 1 {
                return Err(format!("invalid sinceSeconds {v:?}: must be greater than 0"));
            }
            o.since = Some(now.checked_sub(Duration::from_secs(n as u64)).unwrap_or(SystemTime::UNIX_EPOCH));
        }
        (None, Some(v)) => {
            let t = time::parse(v).map_err(|e| format!("invalid sinceTime {v:?}: {e}"))?;
            o.since = Some(t);
        }
        (None, None) => {}
    }
    Ok(o)
}

/// The container (runc id) whose log a request reads, from the container's
/// status, with upstream's rules and words (validateContainerLogStatus):
/// `previous` is the last terminated one, otherwise the running or else the
/// last one that ran.
pub fn pick(status: Option<&ContainerStatus>, pod: &str, container: &str, previous: bool) -> Result<String, String> {
    let Some(st) = status else { return Err(format!("container {container:?} in pod {pod:?} is not available")) };
    let last = st.last_state.terminated.as_ref();
    let id = if previous {
        match last {
            Some(t) if !t.container_id.is_empty() => t.container_id.clone(),
            _ => return Err(format!("previous terminated container {container:?} in pod {pod:?} not found")),
        }
    } else if st.state.running.is_some() {
        st.container_id.clone()
    } else if let Some(t) = &st.state.terminated {
        if !t.container_id.is_empty() {
            t.container_id.clone()
        } else {
            last.map(|t| t.container_id.clone()).unwrap_or_default()
        }
    } else if let Some(t) = last {
        t.container_id.clone()
    } else if let Some(w) = &st.state.waiting {
        return Err(match w.reason.as_str() {
            "ErrImagePull" => format!("container {container:?} in pod {pod:?} is waiting to start: image can't be pulled"),
            "ImagePullBackOff" => format!("container {container:?} in pod {pod:?} is waiting to start: trying and failing to pull image"),
            r => format!("container {container:?} in pod {pod:?} is waiting to start: {r}"),
        });
    } else {
        String::new()
    };
    match id.rsplit("://").next() {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(format!("container {container:?} in pod {pod:?} is not available")),
    }
}

/// Which attempt (log file number) container `id` was: its record says; if
/// it is gone, the status: the latest attempt is restartCount, the one
/// before restartCount-1.
fn attempt_of(root: &Path, id: &str, st: Option<&ContainerStatus>) -> u32 {
    let rec = std::fs::read(record::dir(root, id).join("record.json")).ok().and_then(|b| serde_json::from_slice::<Record>(&b).ok());
    if let Some(r) = rec {
        return r.attempt;
    }
    let Some(st) = st else { return 0 };
    let n = st.restart_count.max(0) as u32;
    if st.container_id.rsplit("://").next() == Some(id) {
        n
    } else {
        n.saturating_sub(1)
    }
}

/// Whether container `id`'s output is all in its log: the pump marked it
/// done, or the container is gone altogether.
fn logs_complete(root: &Path, id: &str) -> bool {
    let dir = record::dir(root, id);
    dir.join("logs.done").exists() || !dir.exists()
}

pub fn container_logs(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, container: &str) -> io::Result<()> {
    let container = if container.is_empty() { req.query("container").unwrap_or("") } else { container };
    let opts = match parse_options(&req.query, SystemTime::now()) {
        Ok(o) => o,
        Err(msg) => return conn.text(400, &msg),
    };
    let target = match find_container(ctx, ns, pod, None, container) {
        Ok(t) => t,
        Err((code, msg)) => return conn.text(code, &msg),
    };
    let status = target.pod.status.as_ref().and_then(|s| {
        s.container_statuses.iter().chain(s.init_container_statuses.iter()).find(|c| c.name == target.container)
    });
    let id = match pick(status, pod, &target.container, opts.previous) {
        Ok(id) => id,
        Err(msg) => return conn.text(400, &msg),
    };
    let attempt = attempt_of(&ctx.root, &id, status);
    let what = format!("logs of container {} in pod {ns}/{pod}", target.container);
    let prepared = files::Snapshot::open(&target.log_dir, attempt).and_then(|snap| {
        let start = match opts.tail {
            Some(n) => files::tail_start(&snap.files, n)?,
            None => files::Pos::default(),
        };
        Ok(files::Reader::new(&target.log_dir, attempt, snap, start))
    });
    let mut reader = match prepared {
        Ok(r) => r,
        Err(e) => {
            log::warn!("{what}: {e}");
            return conn.text(500, &format!("reading {what}: {e}"));
        }
    };
    let mut emitter = cri::Emitter::new(opts.timestamps, opts.since, opts.limit);
    let chunked = conn.chunked("text/plain; charset=utf-8")?;
    // Lines are small: gather them into chunks of a few KiB.
    let mut out = BufWriter::with_capacity(8 * 1024, chunked);
    let follow = opts.follow.then_some((ctx.root.as_path(), id.as_str()));
    let full = stream(&mut reader, &mut emitter, &mut out, follow, |out| wait_or_gone(&out.get_ref().conn.sock, POLL))?;
    if !full {
        emitter.finish(&mut out)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.finish()
}

/// Copies the lines to `out`; with `follow` (root, container id) keeps going
/// until that container's logs are complete, calling `wait` between polls
/// (true: the client left). True when `limitBytes` was reached.
fn stream<W: Write>(
    reader: &mut files::Reader,
    emitter: &mut cri::Emitter,
    out: &mut W,
    follow: Option<(&Path, &str)>,
    mut wait: impl FnMut(&mut W) -> bool,
) -> io::Result<bool> {
    let mut finishing = false;
    loop {
        let drained = reader.drain(|line| Ok(emitter.push(line, out)? == cri::Flow::More))?;
        if drained == files::Drained::Stopped {
            return Ok(true);
        }
        let Some((root, id)) = follow else { return Ok(false) };
        if reader.refresh()? {
            continue;
        }
        if finishing {
            return Ok(false);
        }
        // Checked before one last round, so that round sees every line.
        if logs_complete(root, id) {
            finishing = true;
            continue;
        }
        out.flush()?;
        if wait(out) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "client went away"));
        }
    }
}

/// Waits `d`; true as soon as the peer closes its side of the connection.
fn wait_or_gone(sock: &TcpStream, d: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let start = std::time::Instant::now();
    // Only the peer's FIN (POLLRDHUP) is asked for: data the client sends
    // does not wake us. nix has no name for the flag and reports revents
    // holding it as None.
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::from_bits_retain(nix::libc::POLLRDHUP))];
    let gone = match poll(&mut fds, PollTimeout::try_from(d).unwrap_or(PollTimeout::ZERO)) {
        Ok(0) => return false,
        Ok(_) => fds[0].revents().map_or(true, |ev| ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)),
        Err(_) => false,
    };
    if !gone {
        std::thread::sleep(d.saturating_sub(start.elapsed()));
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting};

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800)
    }

    #[test]
    fn parses_pod_log_options() {
        let o = parse_options(&q(&[("follow", "true"), ("timestamps", "1"), ("previous", "false"), ("tailLines", "5"), ("limitBytes", "100"), ("sinceSeconds", "60")]), now()).unwrap();
        assert_eq!(
            o,
            Options { follow: true, previous: false, timestamps: true, since: Some(now() - Duration::from_secs(60)), tail: Some(5), limit: Some(100) }
        );
        assert_eq!(parse_options(&[], now()).unwrap(), Options::default());
        // Go's bool conversion: only "false" and "0" are false.
        assert!(parse_options(&q(&[("follow", "")]), now()).unwrap().follow);
        assert!(!parse_options(&q(&[("follow", "FALSE")]), now()).unwrap().follow);
        assert_eq!(parse_options(&q(&[("tail", "3"), ("tailLines", "9")]), now()).unwrap().tail, Some(3));
        assert_eq!(parse_options(&q(&[("tail", "all"), ("tailLines", "9")]), now()).unwrap().tail, None);
        assert_eq!(parse_options(&q(&[("tailLines", "0")]), now()).unwrap().tail, Some(0));
        let o = parse_options(&q(&[("sinceTime", "2024-05-01T14:00:00+02:00")]), now()).unwrap();
        assert_eq!(o.since, Some(now()));
        let o = parse_options(&q(&[("sinceTime", "2024-05-01T11:30:00.5-00:30")]), now()).unwrap();
        assert_eq!(o.since, Some(now() + Duration::from_millis(500)));
        for junk in ["aéééé", "é", "+02:00", "2024-05-01T14:00:00*02:00", "2024-05-01T12:00:00.éééééZ"] {
            assert!(parse_options(&q(&[("sinceTime", junk)]), now()).is_err(), "{junk}");
        }
    }

    #[test]
    fn bad_options_name_the_parameter() {
        for (pairs, want) in [
            (vec![("tailLines", "-1")], "invalid tailLines \"-1\": must be greater than or equal to 0"),
            (vec![("tailLines", "x")], "invalid tailLines \"x\": not an integer"),
            (vec![("tail", "ten")], "invalid tail \"ten\": not an integer"),
            (vec![("limitBytes", "0")], "invalid limitBytes \"0\": must be greater than 0"),
            (vec![("sinceSeconds", "0")], "invalid sinceSeconds \"0\": must be greater than 0"),
            (vec![("sinceSeconds", "1.5")], "invalid sinceSeconds \"1.5\": not an integer"),
            (vec![("sinceTime", "yesterday")], "invalid sinceTime \"yesterday\": want RFC 3339, like 2006-01-02T15:04:05Z"),
            (vec![("sinceTime", "99999999999-01-01T00:00:00Z")], "invalid sinceTime \"99999999999-01-01T00:00:00Z\": want RFC 3339, like 2006-01-02T15:04:05Z"),
            (vec![("sinceTime", "999999999999999-01-01T00:00:00Z")], "invalid sinceTime \"999999999999999-01-01T00:00:00Z\": want RFC 3339, like 2006-01-02T15:04:05Z"),
            (vec![("sinceTime", "2024-01-01T99999999999999999:00:00Z")], "invalid sinceTime \"2024-01-01T99999999999999999:00:00Z\": want RFC 3339, like 2006-01-02T15:04:05Z"),
            (vec![("sinceTime", "2024-02-30T00:00:00Z")], "invalid sinceTime \"2024-02-30T00:00:00Z\": day out of range"),
            (vec![("sinceTime", "2024-01-01T00:00:00+99:99")], "invalid sinceTime \"2024-01-01T00:00:00+99:99\": time zone offset out of range"),
            (vec![("sinceTime", "2024-05-01T12:00:00Z"), ("sinceSeconds", "5")], "at most one of sinceTime or sinceSeconds may be specified"),
        ] {
            assert_eq!(parse_options(&q(&pairs), now()), Err(want.to_string()), "{pairs:?}");
        }
    }

    fn terminated(id: &str) -> Option<ContainerStateTerminated> {
        Some(ContainerStateTerminated { exit_code: 1, container_id: id.into(), ..Default::default() })
    }

    fn status(state: ContainerState, last: Option<ContainerStateTerminated>, id: &str, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            state,
            last_state: ContainerState { terminated: last, ..Default::default() },
            container_id: id.into(),
            restart_count: restarts,
            ..Default::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState { waiting: Some(ContainerStateWaiting { reason: reason.into(), message: String::new() }), ..Default::default() }
    }

    #[test]
    fn picks_the_container_as_upstream() {
        let st = status(running(), terminated("runc://old"), "runc://new", 1);
        assert_eq!(pick(Some(&st), "p", "c", false), Ok("new".into()));
        assert_eq!(pick(Some(&st), "p", "c", true), Ok("old".into()));
        assert_eq!(attempt_of(Path::new("/nonexistent"), "new", Some(&st)), 1);
        assert_eq!(attempt_of(Path::new("/nonexistent"), "old", Some(&st)), 0);

        let first = status(running(), None, "runc://a", 0);
        assert_eq!(pick(Some(&first), "p", "c", true), Err("previous terminated container \"c\" in pod \"p\" not found".into()));

        // Crash loop: waiting, the attempt that ended is lastState: both read it.
        let looping = status(waiting("CrashLoopBackOff"), terminated("runc://b"), "runc://b", 2);
        assert_eq!(pick(Some(&looping), "p", "c", false), Ok("b".into()));
        assert_eq!(pick(Some(&looping), "p", "c", true), Ok("b".into()));
        assert_eq!(attempt_of(Path::new("/nonexistent"), "b", Some(&looping)), 2);

        let done = status(ContainerState { terminated: terminated("runc://z"), ..Default::default() }, None, "runc://z", 0);
        assert_eq!(pick(Some(&done), "p", "c", false), Ok("z".into()));

        assert_eq!(
            pick(Some(&status(waiting("ContainerCreating"), None, "", 0)), "p", "c", false),
            Err("container \"c\" in pod \"p\" is waiting to start: ContainerCreating".into())
        );
        assert_eq!(
            pick(Some(&status(waiting("ImagePullBackOff"), None, "", 0)), "p", "c", false),
            Err("container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image".into())
        );
        assert_eq!(pick(None, "p", "c", false), Err("container \"c\" in pod \"p\" is not available".into()));
    }

    /// A follower over logs the real LogWriter writes while it reads.
    #[test]
    fn follow_streams_until_the_logs_are_complete() {
        use crate::runtime::logs::{LogWriter, Stream};
        let root = std::env::temp_dir().join(format!("picolet-srvlogs-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let log_dir = root.join("log");
        Record { id: "c1".into(), attempt: 1, ..Default::default() }.save(&root).unwrap();
        let mut w = LogWriter::open(&log_dir, 1, 500, 3).unwrap();
        w.write(Stream::Stdout, b"before\n").unwrap();
        let snap = files::Snapshot::open(&log_dir, 1).unwrap();
        let mut reader = files::Reader::new(&log_dir, 1, snap, files::Pos::default());
        let mut emitter = cri::Emitter::new(false, None, None);
        let mut out = Vec::new();
        let mut round = 0;
        let full = stream(&mut reader, &mut emitter, &mut out, Some((&root, "c1")), |_| {
            // Between polls the container writes (a line split in two, rotations) and then ends.
            round += 1;
            match round {
                1 => w.write(Stream::Stderr, b"half-").unwrap(),
                2 => w.write(Stream::Stderr, b"line\n").unwrap(),
                3..=12 => w.write(Stream::Stdout, format!("line {round:02} {}\n", "r".repeat(40)).as_bytes()).unwrap(),
                13 => {
                    w.write(Stream::Stdout, b"last, no newline").unwrap();
                    w.finish(Stream::Stdout).unwrap();
                    std::fs::write(record::dir(&root, "c1").join("logs.done"), b"").unwrap();
                }
                _ => panic!("still following after the logs were complete"),
            }
            false
        })
        .unwrap();
        assert!(!full);
        emitter.finish(&mut out).unwrap();
        let mut want = "before\nhalf-line\n".to_string();
        for r in 3..=12 {
            want += &format!("line {r:02} {}\n", "r".repeat(40));
        }
        want += "last, no newline";
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert!(std::fs::read_dir(&log_dir).unwrap().count() > 1, "rotated meanwhile");

        // A client leaving ends it too.
        let snap = files::Snapshot::open(&log_dir, 1).unwrap();
        let mut reader = files::Reader::new(&log_dir, 1, snap, files::Pos::default());
        std::fs::remove_file(record::dir(&root, "c1").join("logs.done")).unwrap();
        let r = stream(&mut reader, &mut emitter, &mut Vec::new(), Some((&root, "c1")), |_| true);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn notices_a_peer_that_closed() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        // Data from the client is no reason to stop.
        client.write_all(b"x").unwrap();
        assert!(!wait_or_gone(&server, Duration::from_millis(50)));
        drop(client);
        assert!(wait_or_gone(&server, Duration::from_secs(5)));
    }

    #[test]
    fn attempt_comes_from_the_record_when_there_is_one() {
        let root = std::env::temp_dir().join(format!("picolet-srvlogs-rec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        Record { id: "x".into(), attempt: 7, ..Default::default() }.save(&root).unwrap();
        assert_eq!(attempt_of(&root, "x", None), 7);
        assert!(!logs_complete(&root, "x"));
        std::fs::write(record::dir(&root, "x").join("logs.done"), b"").unwrap();
        assert!(logs_complete(&root, "x"));
        assert!(logs_complete(&root, "gone"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
