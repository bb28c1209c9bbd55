//! `/containerLogs/{namespace}/{pod}/{container}`: CRI log files as
//! `kubectl logs` asks for them.
//!
//! STUB (issue 8): to be filled in.

use super::kubelet::{Conn, Context, Request};
use std::io;

pub fn container_logs(ctx: &Context, req: &Request, conn: &mut Conn, ns: &str, pod: &str, container: &str) -> io::Result<()> {
    let _ = (ctx, req, ns, pod, container);
    conn.text(501, "containerLogs: not implemented yet\n")
}
