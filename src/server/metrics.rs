//! `/metrics` (and `/metrics/probes`) in the Prometheus text format, with
//! upstream's metric names; the pod loop updates the counters.
//!
//! STUB (issue 8): to be filled in.

use super::kubelet::{Conn, Context, Request};
use std::io;

/// The counters and histograms the pod loop and the server update.
#[derive(Debug, Default)]
pub struct Metrics {}

pub fn metrics(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = (ctx, req);
    conn.text(501, "metrics: not implemented yet\n")
}

pub fn probe_metrics(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = (ctx, req);
    conn.text(501, "metrics/probes: not implemented yet\n")
}
