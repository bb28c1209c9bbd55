//! `/exec`, `/attach`, `/portForward` and `/run`: the streaming endpoints the
//! API server proxies `kubectl exec/attach/port-forward` to (SPDY/3.1).
//!
//! STUB (issue 8): to be filled in.

use super::kubelet::{Conn, Context, Request};
use std::io;

/// `/exec/{ns}/{pod}[/{uid}]/{container}`.
pub fn exec(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>, container: &str) -> io::Result<()> {
    let _ = (ctx, req, ns, pod, uid, container);
    conn.text(501, "exec: not implemented yet\n")
}

/// `/attach/{ns}/{pod}[/{uid}]/{container}`.
pub fn attach(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>, container: &str) -> io::Result<()> {
    let _ = (ctx, req, ns, pod, uid, container);
    conn.text(501, "attach: not implemented yet\n")
}

/// `/run/{ns}/{pod}[/{uid}]/{container}?cmd=...` (POST): runs a command, answers its output.
pub fn run(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>, container: &str) -> io::Result<()> {
    let _ = (ctx, req, ns, pod, uid, container);
    conn.text(501, "run: not implemented yet\n")
}

/// `/portForward/{ns}/{pod}[/{uid}]`.
pub fn port_forward(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, uid: Option<&str>) -> io::Result<()> {
    let _ = (ctx, req, ns, pod, uid);
    conn.text(501, "portForward: not implemented yet\n")
}
