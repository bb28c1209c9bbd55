//! `/metrics/resource`: the CPU and memory part of a [`Summary`] in the
//! Prometheus text format, as upstream's resource metrics collector writes it.

use crate::stats::{ContainerStats, PodStats, Summary};
use crate::server::metrics::{escape_label, format_float};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prometheus text as upstream's resource metrics collector writes it:
/// families in name order, series with millisecond timestamps.
pub fn render_resource_metrics(s: &Summary, scrape_error: bool) -> String {
    const STABLE: &str = "[STABLE]";
    let mut out = String::new();
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let secs = |ns: u64| ns as f64 / 1e9;
    let labels = |p: &PodStats, c: Option<&ContainerStats>| match c {
        Some(c) => format!("{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}", escape_label(&c.name), escape_label(&p.pod_ref.namespace), escape_label(&p.pod_ref.name)),
        None => format!("{{namespace=\"{}\",pod=\"{}\"}}", escape_label(&p.pod_ref.namespace), escape_label(&p.pod_ref.name)),
    };
    let containers = || s.pods.iter().flat_map(|p| p.containers.iter().map(move |c| (p, c)));

    let mut family = |name: &str, help: &str, kind: &str, series: Vec<String>| {
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for line in series {
            let _ = writeln!(out, "{name}{line}");
        }
    };
    family(
        "container_cpu_usage_seconds_total",
        &format!("{STABLE} Cumulative cpu time consumed by the container in core-seconds"),
        "counter",
        containers()
            .filter_map(|(p, c)| {
                let cpu = c.cpu.as_ref()?;
                Some(format!("{} {} {}", labels(p, Some(c)), format_float(secs(cpu.usage_core_nano_seconds?)), ms(cpu.time)))
            })
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        &format!("{STABLE} Current working set of the container in bytes"),
        "gauge",
        containers()
            .filter_map(|(p, c)| {
                let m = c.memory.as_ref()?;
                Some(format!("{} {} {}", labels(p, Some(c)), format_float(m.working_set_bytes? as f64), ms(m.time)))
            })
            .collect(),
    );
    family(
        "container_start_time_seconds",
        &format!("{STABLE} Start time of the container since unix epoch in seconds"),
        "gauge",
        containers()
            .filter_map(|(p, c)| {
                let d = c.start_time?.duration_since(UNIX_EPOCH).ok().filter(|d| d.as_secs() > 0)?;
                Some(format!("{} {}", labels(p, Some(c)), format_float(d.as_nanos() as f64 / 1e9)))
            })
            .collect(),
    );
    let node_cpu = s.node.cpu.as_ref().and_then(|c| Some(format!(" {} {}", format_float(secs(c.usage_core_nano_seconds?)), ms(c.time))));
    family("node_cpu_usage_seconds_total", &format!("{STABLE} Cumulative cpu time consumed by the node in core-seconds"), "counter", node_cpu.into_iter().collect());
    let node_mem = s.node.memory.as_ref().and_then(|m| Some(format!(" {} {}", format_float(m.working_set_bytes? as f64), ms(m.time))));
    family("node_memory_working_set_bytes", &format!("{STABLE} Current working set of the node in bytes"), "gauge", node_mem.into_iter().collect());
    family(
        "pod_cpu_usage_seconds_total",
        &format!("{STABLE} Cumulative cpu time consumed by the pod in core-seconds"),
        "counter",
        s.pods
            .iter()
            .filter_map(|p| {
                let cpu = p.cpu.as_ref()?;
                Some(format!("{} {} {}", labels(p, None), format_float(secs(cpu.usage_core_nano_seconds?)), ms(cpu.time)))
            })
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        &format!("{STABLE} Current working set of the pod in bytes"),
        "gauge",
        s.pods
            .iter()
            .filter_map(|p| {
                let m = p.memory.as_ref()?;
                Some(format!("{} {} {}", labels(p, None), format_float(m.working_set_bytes? as f64), ms(m.time)))
            })
            .collect(),
    );
    let err = if scrape_error { "1" } else { "0" };
    let help = "1 if there was an error while getting container metrics, 0 otherwise";
    family("resource_scrape_error", &format!("{STABLE} {help}"), "gauge", vec![format!(" {err}")]);
    family("scrape_error", &format!("[ALPHA] (Deprecated since 1.29.0) {help}"), "gauge", vec![format!(" {err}")]);
    out
}

#[cfg(test)]
#[path = "resource_tests.rs"]
mod tests;
