//! `/metrics` and `/metrics/probes` in the Prometheus text exposition format
//! (version 0.0.4), with upstream's metric names, labels, help texts and
//! buckets, so dashboards and alerts written for the kubelet work unchanged.
//!
//! What is rendered is recorded in [`Metrics`] (crate::metrics) by the pod
//! loop and the runtime; here it is only read, on each scrape. The
//! `process_*` metrics are read from /proc/self at scrape time.
//!
//! Not here: OpenMetrics or protobuf negotiation (always text),
//! `/metrics/cadvisor`, `/metrics/resource` (stats.rs). Evictions are
//! counted by the eviction manager (pod::worker::evict).

use super::kubelet::{Conn, Context, Request};
use crate::metrics::{Histogram, Metrics};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

/// What upstream answers a text scrape with.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` body. `process` is None when /proc could not be read.
pub fn render(metrics: &Metrics, node_name: &str, process: Option<&ProcessStats>) -> String {
    let m = metrics.recorded();
    let mut w = Text::default();
    // Families in name order, as upstream's registry gathers them.
    w.family("kubelet_evictions", "[ALPHA] Cumulative number of pod evictions by eviction signal", "counter");
    for (signal, n) in &m.evictions {
        w.sample("kubelet_evictions", &[("eviction_signal", *signal)], *n as f64);
    }
    w.family("kubelet_node_name", "[ALPHA] The node's name. The count is always 1.", "gauge");
    w.sample("kubelet_node_name", &[("node", node_name)], 1.0);
    w.family(
        "kubelet_pod_start_duration_seconds",
        "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
        "histogram",
    );
    w.histogram("kubelet_pod_start_duration_seconds", &[], &m.pod_start);
    w.family(
        "kubelet_pod_start_sli_duration_seconds",
        "[ALPHA] Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started and observed via watch",
        "histogram",
    );
    w.histogram("kubelet_pod_start_sli_duration_seconds", &[], &m.pod_start_sli);
    w.family(
        "kubelet_pod_worker_duration_seconds",
        "[ALPHA] Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
        "histogram",
    );
    for (op, h) in &m.pod_worker {
        w.histogram("kubelet_pod_worker_duration_seconds", &[("operation_type", op)], h);
    }
    w.family("kubelet_running_containers", "[ALPHA] Number of containers currently running", "gauge");
    let c = &m.containers;
    for (state, n) in [("created", c.created), ("exited", c.exited), ("running", c.running), ("unknown", c.unknown)] {
        w.sample("kubelet_running_containers", &[("container_state", state)], n as f64);
    }
    w.family("kubelet_running_pods", "[ALPHA] Number of pods that have a running pod sandbox", "gauge");
    w.sample("kubelet_running_pods", &[], m.running_pods as f64);
    w.family(
        "kubelet_runtime_operations_duration_seconds",
        "[ALPHA] Duration in seconds of runtime operations. Broken down by operation type.",
        "histogram",
    );
    for (op, o) in &m.runtime {
        w.histogram("kubelet_runtime_operations_duration_seconds", &[("operation_type", op)], &o.duration);
    }
    w.family(
        "kubelet_runtime_operations_errors_total",
        "[ALPHA] Cumulative number of runtime operation errors by operation type.",
        "counter",
    );
    for (op, o) in m.runtime.iter().filter(|(_, o)| o.errors > 0) {
        w.sample("kubelet_runtime_operations_errors_total", &[("operation_type", op)], o.errors as f64);
    }
    w.family("kubelet_runtime_operations_total", "[ALPHA] Cumulative number of runtime operations by operation type.", "counter");
    for (op, o) in &m.runtime {
        w.sample("kubelet_runtime_operations_total", &[("operation_type", op)], o.total as f64);
    }
    drop(m);
    w.family(
        "kubernetes_build_info",
        "[ALPHA] A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree state, build date, Go version, and compiler from which Kubernetes was built, and platform on which it is running.",
        "gauge",
    );
    let platform = format!("linux/{}", crate::node::status::arch());
    let labels = [
        ("compiler", "rustc"),
        ("git_version", crate::node::status::KUBELET_VERSION),
        ("major", "1"),
        ("minor", "34"),
        ("platform", platform.as_str()),
    ];
    w.sample("kubernetes_build_info", &labels, 1.0);
    if let Some(p) = process {
        p.render(&mut w);
    }
    w.out
}

/// The `/metrics/probes` body.
pub fn render_probes(metrics: &Metrics) -> String {
    let m = metrics.recorded();
    let mut w = Text::default();
    w.family("prober_probe_duration_seconds", "[ALPHA] Duration in seconds for a probe response.", "histogram");
    // Upstream's duration series carry no pod_uid: a static pod being
    // replaced by one of the same name shares its series.
    let mut durations: BTreeMap<(&str, &str, &str, &str), Histogram> = BTreeMap::new();
    for (k, s) in m.probes.iter().filter(|(_, s)| s.duration.count > 0) {
        let key = (k.container.as_str(), k.namespace.as_str(), k.pod.as_str(), k.probe_type);
        match durations.get_mut(&key) {
            Some(h) => h.merge(&s.duration),
            None => {
                durations.insert(key, s.duration.clone());
            }
        }
    }
    for ((container, namespace, pod, probe_type), h) in &durations {
        let labels = [("container", *container), ("namespace", *namespace), ("pod", *pod), ("probe_type", *probe_type)];
        w.histogram("prober_probe_duration_seconds", &labels, h);
    }
    w.family("prober_probe_total", "[BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.", "counter");
    for (k, s) in &m.probes {
        for (result, n) in [("failed", s.failed), ("successful", s.successful)] {
            if n == 0 {
                continue;
            }
            let labels = [
                ("container", k.container.as_str()),
                ("namespace", k.namespace.as_str()),
                ("pod", k.pod.as_str()),
                ("pod_uid", k.pod_uid.as_str()),
                ("probe_type", k.probe_type),
                ("result", result),
            ];
            w.sample("prober_probe_total", &labels, n as f64);
        }
    }
    w.out
}

/// `GET /metrics`.
pub fn metrics(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = req;
    let process = ProcessStats::read();
    let body = render(&ctx.metrics, &ctx.node_name, process.as_ref());
    conn.respond(200, CONTENT_TYPE, body.as_bytes())
}

/// `GET /metrics/probes`.
pub fn probe_metrics(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = req;
    conn.respond(200, CONTENT_TYPE, render_probes(&ctx.metrics).as_bytes())
}

/// picolet's own process, as Prometheus' process collector reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    /// The soft limit; u64::MAX when unlimited.
    pub max_fds: Option<u64>,
    /// Seconds since the epoch.
    pub start_time: f64,
}

/// Clock ticks per second in /proc: USER_HZ is 100 on every Linux
/// architecture picolet runs on (Prometheus' procfs assumes the same).
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// Reads /proc/self (and /proc/stat for the boot time).
    pub fn read() -> Option<ProcessStats> {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        // Less the descriptor read_dir itself holds while listing.
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count().saturating_sub(1) as u64;
        let limits = read("/proc/self/limits").unwrap_or_default();
        parse_process(&read("/proc/self/stat")?, &read("/proc/self/status")?, &limits, &read("/proc/stat")?, open_fds)
    }

    fn render(&self, w: &mut Text) {
        w.family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter");
        w.sample("process_cpu_seconds_total", &[], self.cpu_seconds);
        if let Some(max) = self.max_fds {
            w.family("process_max_fds", "Maximum number of open file descriptors.", "gauge");
            w.sample("process_max_fds", &[], max as f64);
        }
        w.family("process_open_fds", "Number of open file descriptors.", "gauge");
        w.sample("process_open_fds", &[], self.open_fds as f64);
        w.family("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
        w.sample("process_resident_memory_bytes", &[], self.resident_bytes as f64);
        w.family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge");
        w.sample("process_start_time_seconds", &[], self.start_time);
        w.family("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
        w.sample("process_virtual_memory_bytes", &[], self.virtual_bytes as f64);
    }
}

/// The process figures from the texts of /proc/self/stat, /proc/self/status,
/// /proc/self/limits and /proc/stat. None when stat or the boot time is unreadable.
fn parse_process(stat: &str, status: &str, limits: &str, proc_stat: &str, open_fds: u64) -> Option<ProcessStats> {
    // The command name is in parentheses and may hold spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state) of proc(5): field n is f[n - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime, start, vsize) = (field(14)?, field(15)?, field(22)?, field(23)?);
    let btime = proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<u64>().ok()?;
    // VmRSS in kB: no page size needed (it varies on ARM kernels).
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let max_fds = limits.lines().find_map(|l| l.strip_prefix("Max open files")).and_then(|v| {
        match v.split_whitespace().next()? {
            "unlimited" => Some(u64::MAX),
            n => n.parse().ok(),
        }
    });
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        resident_bytes: rss_kb * 1024,
        virtual_bytes: vsize,
        open_fds,
        max_fds,
        start_time: btime as f64 + start as f64 / USER_HZ,
    })
}

/// A text exposition being written.
#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_float(value));
    }

    /// `_bucket` lines (cumulative, `le` last, ending with +Inf), `_sum`, `_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let bounds: Vec<String> = h.bounds.iter().map(|b| format_float(*b)).collect();
        let mut cumulative = 0;
        for (le, n) in bounds.iter().map(String::as_str).chain(["+Inf"]).zip(h.counts.iter().chain([&0])) {
            cumulative += n;
            let with_le: Vec<(&str, &str)> = labels.iter().copied().chain([("le", le)]).collect();
            // Observations above the last bound count only in +Inf.
            let value = if le == "+Inf" { h.count } else { cumulative };
            self.sample(&bucket, &with_le, value as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub(super) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (what
/// upstream's scrapes show): shortest round-trip digits, in exponent form
/// below 1e-4 and from 1e6 on: `1200`, `1.712e+09`, `2.5e-05`.
pub(super) fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the same shortest digits: "1.712e9", "-2.5e-5".
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if !(-4..6).contains(&exp) {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ContainerCounts, ProbeResult, ProbeTarget};
    use std::time::Duration;

    #[test]
    fn floats_as_go_writes_them() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (1200.0, "1200"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (24576000.0, "2.4576e+07"),
            (1712345678.12, "1.71234567812e+09"),
            (0.0001, "0.0001"),
            (0.000025, "2.5e-05"),
            (-3.0, "-3"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
            (u64::MAX as f64, "1.8446744073709552e+19"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float(v), want, "{v}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut w = Text::default();
        w.sample("m", &[("a", "x\"y"), ("b", "back\\slash\nline")], 2.0);
        assert_eq!(w.out, "m{a=\"x\\\"y\",b=\"back\\\\slash\\nline\"} 2\n");
        w.out.clear();
        w.family("m", "two\nlines \\ here", "gauge");
        assert_eq!(w.out, "# HELP m two\\nlines \\\\ here\n# TYPE m gauge\n");
    }

    #[test]
    fn histogram_lines() {
        static B: &[f64] = &[0.5, 1.0, 2.5];
        let mut h = Histogram::new(B);
        for v in [0.2, 0.5, 2.0, 7.0] {
            h.observe(v);
        }
        let mut w = Text::default();
        w.histogram("d", &[("op", "create")], &h);
        let want = "\
d_bucket{op=\"create\",le=\"0.5\"} 2
d_bucket{op=\"create\",le=\"1\"} 2
d_bucket{op=\"create\",le=\"2.5\"} 3
d_bucket{op=\"create\",le=\"+Inf\"} 4
d_sum{op=\"create\"} 9.7
d_count{op=\"create\"} 4
";
        assert_eq!(w.out, want);
        w.out.clear();
        w.histogram("e", &[], &Histogram::new(B));
        assert!(w.out.starts_with("e_bucket{le=\"0.5\"} 0\n"), "{}", w.out);
        assert!(w.out.ends_with("e_bucket{le=\"+Inf\"} 0\ne_sum 0\ne_count 0\n"), "{}", w.out);
    }

    fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn renders_kubelet_metrics() {
        let m = Metrics::default();
        m.set_running(2, ContainerCounts { created: 0, exited: 1, running: 3, unknown: 0 });
        m.observe_pod_start(Duration::from_millis(1500));
        m.observe_pod_worker("create", Duration::from_millis(30));
        m.observe_pod_worker("sync", Duration::from_millis(2));
        m.runtime_operation("start_container", Duration::from_millis(40), true);
        m.runtime_operation("create_container", Duration::from_millis(90), true);
        m.runtime_operation("create_container", Duration::from_millis(10), false);
        let text = render(&m, "pi-1", None);

        assert_eq!(lines_starting(&text, "kubelet_running_pods"), ["kubelet_running_pods 2"]);
        assert_eq!(
            lines_starting(&text, "kubelet_running_containers"),
            [
                "kubelet_running_containers{container_state=\"created\"} 0",
                "kubelet_running_containers{container_state=\"exited\"} 1",
                "kubelet_running_containers{container_state=\"running\"} 3",
                "kubelet_running_containers{container_state=\"unknown\"} 0",
            ]
        );
        assert_eq!(lines_starting(&text, "kubelet_node_name"), ["kubelet_node_name{node=\"pi-1\"} 1"]);
        assert_eq!(
            lines_starting(&text, "kubelet_runtime_operations_total"),
            [
                "kubelet_runtime_operations_total{operation_type=\"create_container\"} 2",
                "kubelet_runtime_operations_total{operation_type=\"start_container\"} 1",
            ]
        );
        assert_eq!(
            lines_starting(&text, "kubelet_runtime_operations_errors_total"),
            ["kubelet_runtime_operations_errors_total{operation_type=\"create_container\"} 1"]
        );
        assert!(text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"1\"} 0\nkubelet_pod_start_duration_seconds_bucket{le=\"2\"} 1\n"));
        assert!(text.contains("kubelet_pod_start_duration_seconds_count 1\n"));
        assert!(text.contains("kubelet_pod_start_sli_duration_seconds_count 0\n"));
        assert!(text.contains("kubelet_pod_worker_duration_seconds_bucket{operation_type=\"create\",le=\"0.05\"} 1\n"));
        assert!(text.contains("kubelet_pod_worker_duration_seconds_count{operation_type=\"sync\"} 1\n"));
        assert!(text.contains("kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"create_container\",le=\"0.0125\"} 1\n"));
        // Declared before any eviction, counted by signal after.
        assert!(text.starts_with(
            "# HELP kubelet_evictions [ALPHA] Cumulative number of pod evictions by eviction signal\n# TYPE kubelet_evictions counter\n# HELP kubelet_node_name"
        ));
        m.eviction("memory.available");
        m.eviction("memory.available");
        m.eviction("nodefs.available");
        let text = render(&m, "pi-1", None);
        assert_eq!(
            lines_starting(&text, "kubelet_evictions{"),
            ["kubelet_evictions{eviction_signal=\"memory.available\"} 2", "kubelet_evictions{eviction_signal=\"nodefs.available\"} 1"]
        );
        assert!(lines_starting(&text, "kubernetes_build_info{compiler=\"rustc\",git_version=\"v1.34.0+picolet.")[0].ends_with(" 1"));

        // Families are in name order, each declared once, every sample under its own family.
        let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()).collect();
        let mut sorted = families.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(families, sorted);
        let mut current = "";
        for l in text.lines() {
            if let Some(t) = l.strip_prefix("# TYPE ") {
                current = t.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(current), "{l} outside {current}");
            }
        }
    }

    #[test]
    fn renders_process_metrics() {
        let p = ProcessStats {
            cpu_seconds: 1.25,
            resident_bytes: 12_345_678,
            virtual_bytes: 500_000,
            open_fds: 17,
            max_fds: Some(1024),
            start_time: 1712345678.5,
        };
        let text = render(&Metrics::default(), "n", Some(&p));
        let tail = &text[text.find("# HELP process_cpu_seconds_total").unwrap()..];
        let want = "\
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.25
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1024
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 17
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2345678e+07
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.7123456785e+09
# HELP process_virtual_memory_bytes Virtual memory size in bytes.
# TYPE process_virtual_memory_bytes gauge
process_virtual_memory_bytes 500000
";
        assert_eq!(tail, want);
    }

    #[test]
    fn renders_probe_metrics() {
        let m = Metrics::default();
        let web = ProbeTarget {
            container: "web".into(),
            namespace: "default".into(),
            pod: "a\"b".into(),
            pod_uid: "u1".into(),
            probe_type: "Readiness",
        };
        m.probe(&web, ProbeResult::Successful, Duration::from_millis(3));
        m.probe(&web, ProbeResult::Successful, Duration::from_millis(20));
        m.probe(&web, ProbeResult::Failed, Duration::from_secs(1));
        let live = ProbeTarget { probe_type: "Liveness", ..web.clone() };
        m.probe(&live, ProbeResult::Failed, Duration::from_secs(1));
        let text = render_probes(&m);
        assert_eq!(
            lines_starting(&text, "prober_probe_total"),
            [
                "prober_probe_total{container=\"web\",namespace=\"default\",pod=\"a\\\"b\",pod_uid=\"u1\",probe_type=\"Liveness\",result=\"failed\"} 1",
                "prober_probe_total{container=\"web\",namespace=\"default\",pod=\"a\\\"b\",pod_uid=\"u1\",probe_type=\"Readiness\",result=\"failed\"} 1",
                "prober_probe_total{container=\"web\",namespace=\"default\",pod=\"a\\\"b\",pod_uid=\"u1\",probe_type=\"Readiness\",result=\"successful\"} 2",
            ]
        );
        assert!(text.starts_with("# HELP prober_probe_duration_seconds [ALPHA] Duration in seconds for a probe response.\n# TYPE prober_probe_duration_seconds histogram\n"));
        assert!(text.contains("# HELP prober_probe_total [BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.\n# TYPE prober_probe_total counter\n"));
        // Failed runs are not timed: only the readiness probe has a duration series.
        assert_eq!(
            lines_starting(&text, "prober_probe_duration_seconds_count"),
            ["prober_probe_duration_seconds_count{container=\"web\",namespace=\"default\",pod=\"a\\\"b\",probe_type=\"Readiness\"} 2"]
        );
        assert!(text.contains("prober_probe_duration_seconds_bucket{container=\"web\",namespace=\"default\",pod=\"a\\\"b\",probe_type=\"Readiness\",le=\"0.005\"} 1\n"));
        assert!(text.contains("prober_probe_duration_seconds_sum{container=\"web\",namespace=\"default\",pod=\"a\\\"b\",probe_type=\"Readiness\"} 0.023\n"));

        m.forget_pod("u1");
        assert!(!render_probes(&m).lines().any(|l| !l.starts_with('#')));
    }

    const STAT: &str = "4242 (pico let) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 125 0 0 20 0 9 0 123456 52428800 3000 18446744073709551615 1 1 0 0 0 0 0 4096 17639 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    const STATUS: &str = "Name:\tpicolet\nVmPeak:\t   60000 kB\nVmSize:\t   51200 kB\nVmRSS:\t   12000 kB\nThreads:\t9\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
    const PROC_STAT: &str = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n";

    #[test]
    fn parses_proc_fixtures() {
        let p = parse_process(STAT, STATUS, LIMITS, PROC_STAT, 12).unwrap();
        assert_eq!(
            p,
            ProcessStats {
                cpu_seconds: 3.75,
                resident_bytes: 12000 * 1024,
                virtual_bytes: 52428800,
                open_fds: 12,
                max_fds: Some(1024),
                start_time: 1700000000.0 + 1234.56,
            }
        );
        let unlimited = LIMITS.replace("1024                 524288", "unlimited            unlimited");
        assert_eq!(parse_process(STAT, STATUS, &unlimited, PROC_STAT, 0).unwrap().max_fds, Some(u64::MAX));
        assert_eq!(parse_process(STAT, STATUS, "", PROC_STAT, 0).unwrap().max_fds, None);
        assert!(parse_process("garbage", STATUS, LIMITS, PROC_STAT, 0).is_none());
        assert!(parse_process(STAT, STATUS, LIMITS, "cpu 1\n", 0).is_none());
    }

    #[test]
    fn reads_own_process() {
        let p = ProcessStats::read().expect("/proc/self readable");
        // Not the virtual size: qemu-user's /proc/self/stat reports 0 for it.
        assert!(p.resident_bytes > 0, "{p:?}");
        assert!(p.open_fds >= 3 && p.start_time > 1.5e9, "{p:?}");
    }
}
