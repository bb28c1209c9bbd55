//! `/stats/summary` and `/metrics/resource`: CPU, memory and filesystem usage
//! of the node, its pods and containers, for metrics-server and `kubectl top`.
//!
//! STUB (issue 8): to be filled in.

use super::kubelet::{Conn, Context, Request};
use std::io;

pub fn summary(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = (ctx, req);
    conn.text(501, "stats/summary: not implemented yet\n")
}

pub fn resource_metrics(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = (ctx, req);
    conn.text(501, "metrics/resource: not implemented yet\n")
}
