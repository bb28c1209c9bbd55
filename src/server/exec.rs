//! `/exec`, `/attach`, `/portForward` and `/run`: the streaming endpoints the
//! API server proxies `kubectl exec/attach/port-forward` to. kubectl speaks
//! WebSocket to the API server, which speaks SPDY/3.1 to kubelets
//! ([`super::session`]); other clients' WebSocket `channel.k8s.io`
//! protocols reach the kubelet as they are ([`super::websocket`]). The
//! protocols on top are in [`super::remotecommand`] and
//! [`super::portforward`].
//!
//! Not supported: stdin for `attach` (containers have no stdin, see
//! [`super::attach`]).

use super::kubelet::{find_container, find_pod, Conn, Context, Request, Target};
use super::remotecommand::{self, Options, Outcome, Remote, Source, Starter, PROTOCOLS, WEBSOCKET_PROTOCOLS};
use super::session::{self, Wire};
use super::{attach, execproc, portforward, websocket};
use crate::runtime::record;
use std::io::{self, Write};

/// Largest `/run` output kept.
const RUN_OUTPUT_MAX: usize = 4 << 20;

/// The running container a request names, or the (status, message) to answer.
fn running_container(ctx: &Context, ns: &str, pod: &str, uid: Option<&str>, container: &str) -> Result<Target, (u16, String)> {
    let t = find_container(ctx, ns, pod, uid, container)?;
    let running = t.pod.status.as_ref().is_some_and(|s| {
        s.init_container_statuses.iter().chain(&s.container_statuses).any(|c| c.name == t.container && c.state.running.is_some())
    });
    if t.container_id.is_empty() || !running {
        // What upstream's kubelet says when the runtime has no running container.
        return Err((500, format!("container not found (\"{}\")\n", t.container)));
    }
    Ok(t)
}

fn refuse(conn: &mut Conn, (status, msg): (u16, String)) -> io::Result<()> {
    let msg = if msg.ends_with('\n') { msg } else { msg + "\n" };
    conn.text(status, &msg)
}

/// Answers a WebSocket handshake: Some(wire, protocol) once upgraded.
fn upgrade_websocket(req: &Request, conn: &mut Conn, supported: &[&'static str]) -> io::Result<Option<(Wire, &'static str)>> {
    match websocket::handshake(req, supported) {
        Ok((protocol, head)) => {
            conn.write_all(head.as_bytes())?;
            conn.flush()?;
            Ok(Some((Wire::WebSocket { base64: protocol.contains("base64") }, protocol)))
        }
        Err(r) => refuse(conn, r).map(|_| None),
    }
}

/// Upgrades to SPDY or WebSocket and runs the remote-command session.
fn serve_remote(req: &Request, conn: &mut Conn, opts: Options, start: Starter) -> io::Result<()> {
    if websocket::is_websocket(req) {
        let Some((wire, protocol)) = upgrade_websocket(req, conn, &WEBSOCKET_PROTOCOLS)? else { return Ok(()) };
        let mut h = Remote::new(remotecommand::websocket_semantics(protocol), opts, start);
        return session::serve_with(conn, &mut h, wire, &remotecommand::websocket_channels(opts));
    }
    let Some(protocol) = session::upgrade(req, conn, &PROTOCOLS)? else { return Ok(()) };
    session::serve(conn, &mut Remote::new(protocol, opts, start))
}

/// `/exec/{ns}/{pod}[/{uid}]/{container}?command=...&input=1&output=1&error=1&tty=1`.
pub fn exec(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>, container: &str) -> io::Result<()> {
    let opts = match Options::from_request(req) {
        Ok(o) => o,
        Err(e) => return refuse(conn, (400, e)),
    };
    let cmd: Vec<String> = req.query_all("command").map(str::to_string).collect();
    if cmd.is_empty() {
        return refuse(conn, (400, "no command given".into()));
    }
    let t = match running_container(ctx, ns, pod, uid, container) {
        Ok(t) => t,
        Err(r) => return refuse(conn, r),
    };
    log::info!("exec in {ns}/{pod}/{} by {}: {cmd:?}", t.container, req.user.name);
    let dir = record::dir(&ctx.root, &t.container_id);
    let id = t.container_id.clone();
    let start: Starter = Box::new(move || {
        let spec = execproc::Spec { runtime: &ctx.runtime_path, runtime_root: &ctx.runtime_root, dir: &dir, id: &id, cmd: &cmd, opts };
        match execproc::spawn(&spec) {
            Ok(e) => Ok(Box::new(e) as Box<dyn Source>),
            Err(e) => Err(format!("failed to exec in container: {e}")),
        }
    });
    serve_remote(req, conn, opts, start)
}

/// `/attach/{ns}/{pod}[/{uid}]/{container}?output=1&error=1...`.
pub fn attach(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>, container: &str) -> io::Result<()> {
    let opts = match Options::from_request(req) {
        Ok(o) => o,
        Err(e) => return refuse(conn, (400, e)),
    };
    let t = match running_container(ctx, ns, pod, uid, container) {
        Ok(t) => t,
        Err(r) => return refuse(conn, r),
    };
    log::info!("attach to {ns}/{pod}/{} by {}", t.container, req.user.name);
    let start: Starter = Box::new(move || match attach::attach(&t.log_dir, t.restart_count, &ctx.root, &t.container_id, opts.tty) {
        Ok(a) => Ok(Box::new(a) as Box<dyn Source>),
        Err(e) => Err(format!("error attaching to container: {e}")),
    });
    serve_remote(req, conn, opts, start)
}

/// `/run/{ns}/{pod}[/{uid}]/{container}?cmd=...` (POST): runs a command and
/// answers its output (stdout and stderr together), as upstream's
/// `RunInContainer`; a non-zero exit is a 500 naming the code.
pub fn run(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>, container: &str) -> io::Result<()> {
    // Upstream splits `cmd` on spaces (its legacy form of the command).
    let cmd: Vec<String> = req.query("cmd").unwrap_or_default().split_whitespace().map(str::to_string).collect();
    if cmd.is_empty() {
        return refuse(conn, (400, "no command given (cmd=...)".into()));
    }
    let t = match running_container(ctx, ns, pod, uid, container) {
        Ok(t) => t,
        Err(r) => return refuse(conn, r),
    };
    log::info!("run in {ns}/{pod}/{} by {}: {cmd:?}", t.container, req.user.name);
    let dir = record::dir(&ctx.root, &t.container_id);
    match execproc::run_to_end(&ctx.runtime_path, &ctx.runtime_root, &dir, &t.container_id, &cmd, RUN_OUTPUT_MAX) {
        Ok((Outcome::Success, out)) => conn.respond(200, "application/json", &out),
        Ok((Outcome::Exit { code, what }, out)) => {
            refuse(conn, (500, format!("{what} exited with {code}: {}", String::from_utf8_lossy(&out))))
        }
        Ok((Outcome::Error(e), _)) => refuse(conn, (500, e)),
        Err(e) => refuse(conn, (500, format!("failed to exec in container: {e}"))),
    }
}

/// `/portForward/{ns}/{pod}[/{uid}]`.
pub fn port_forward(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>) -> io::Result<()> {
    let p = match find_pod(ctx, ns, pod, uid) {
        Ok(p) => p,
        Err(r) => return refuse(conn, r),
    };
    let netns = if p.spec.host_network {
        None
    } else {
        let path = ctx.root.join("pods").join(&p.metadata.uid).join("ns").join("net");
        if !path.exists() {
            return refuse(conn, (500, format!("pod {ns}/{pod} has no network namespace yet")));
        }
        Some(path)
    };
    let target = portforward::Target { pod: format!("{ns}/{pod}"), uid: p.metadata.uid.clone(), netns };
    if websocket::is_websocket(req) {
        let ports = match portforward::websocket_ports(req) {
            Ok(p) => p,
            Err(e) => return refuse(conn, (400, e)),
        };
        let Some((wire, _)) = upgrade_websocket(req, conn, &portforward::WEBSOCKET_PROTOCOLS)? else { return Ok(()) };
        log::info!("port-forward to {ns}/{pod} ports {ports:?} by {}", req.user.name);
        let channels = portforward::websocket_channels(&ports);
        return session::serve_with(conn, &mut portforward::PortForward::new(target), wire, &channels);
    }
    if session::upgrade(req, conn, &portforward::PROTOCOLS)?.is_none() {
        return Ok(());
    }
    log::info!("port-forward to {ns}/{pod} by {}", req.user.name);
    session::serve(conn, &mut portforward::PortForward::new(target))
}
