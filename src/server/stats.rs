//! `/stats/summary` and `/metrics/resource`: CPU, memory and filesystem usage
//! of the node, its pods and containers, for metrics-server and `kubectl top`.
//!
//! The figures are collected by crate::stats for the pods `/pods` shows, with
//! `usageNanoCores` from the rates this server keeps across requests
//! (`Context::cpu_rates`). `/stats/summary` answers the Summary as JSON;
//! `?only_cpu_and_memory=true` skips the filesystem walks as upstream does.
//! `/metrics/resource` renders the CPU and memory part in the Prometheus text
//! format (resource.rs), upstream's names, labels and millisecond
//! timestamps, which is what metrics-server reads.
//!
//! Not here: reading cgroups, /proc and filesystems (crate::stats).

mod resource;

pub use resource::render_resource_metrics;

use super::kubelet::{Conn, Context, Request};
use crate::cgroup::stats::Roots;
use crate::stats::{collect, running_pods, Detail, Sources, Summary};
use std::io;
use std::time::Instant;

pub fn summary(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let detail = if req.flag("only_cpu_and_memory") { Detail::CpuAndMemory } else { Detail::Full };
    let summary = gather(ctx, detail).map_err(|e| e.to_string());
    match summary {
        Ok(s) => conn.json(&s),
        Err(e) => conn.text(500, &format!("Internal Error: failed to get node stats: {e}\n")),
    }
}

pub fn resource_metrics(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = req;
    let body = match gather(ctx, Detail::CpuAndMemory) {
        Ok(s) => render_resource_metrics(&s, false),
        Err(e) => {
            log::warn!("metrics/resource: {e}");
            render_resource_metrics(&Summary::default(), true)
        }
    };
    conn.respond(200, "text/plain; version=0.0.4; charset=utf-8", body.as_bytes())
}

fn gather(ctx: &Context, detail: Detail) -> io::Result<Summary> {
    let pods = {
        let pods = ctx.pods.lock().unwrap_or_else(|p| p.into_inner());
        running_pods(&pods)
    };
    let src = Sources { roots: Roots::default(), root: ctx.root.clone(), logs_dir: ctx.logs_dir.clone() };
    let mut s = collect(&src, &ctx.node_name, &pods, detail)?;
    ctx.cpu_rates.lock().unwrap_or_else(|p| p.into_inner()).apply(&mut s, Instant::now());
    Ok(s)
}
