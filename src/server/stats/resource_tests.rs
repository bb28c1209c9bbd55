use super::*;
use crate::stats::{CpuStats, MemoryStats, PodRef};
use std::time::Duration;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn mem(ws: u64, at: SystemTime) -> Option<MemoryStats> {
    Some(MemoryStats {
        time: at,
        available_bytes: None,
        usage_bytes: Some(ws),
        working_set_bytes: Some(ws),
        rss_bytes: None,
        page_faults: None,
        major_page_faults: None,
    })
}

#[test]
fn resource_metrics_text() {
    let at = UNIX_EPOCH + Duration::from_millis(1_714_564_810_123);
    let cpu = |ns| Some(CpuStats { time: at, usage_nano_cores: None, usage_core_nano_seconds: Some(ns) });
    let mut s = Summary::default();
    s.node.cpu = cpu(1_234_500_000_000);
    s.node.memory = mem(2_000_000_000, at);
    s.pods.push(PodStats {
        pod_ref: PodRef { name: "web".into(), namespace: "default".into(), uid: "u1".into() },
        cpu: cpu(500_000_000),
        memory: mem(1_048_576, at),
        containers: vec![
            ContainerStats { name: "app".into(), start_time: Some(t(1_714_564_805)), cpu: cpu(500_000_000), memory: mem(1_048_576, at), ..Default::default() },
            // No cgroup figures (exited meanwhile): only its start time.
            ContainerStats { name: "side\"car".into(), start_time: Some(t(1_714_564_806)), ..Default::default() },
        ],
        ..Default::default()
    });
    let want = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 0.5 1714564810123
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 1.048576e+06 1714564810123
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="app",namespace="default",pod="web"} 1.714564805e+09
container_start_time_seconds{container="side\"car",namespace="default",pod="web"} 1.714564806e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 1234.5 1714564810123
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 2e+09 1714564810123
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="default",pod="web"} 0.5 1714564810123
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="default",pod="web"} 1.048576e+06 1714564810123
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
# HELP scrape_error [ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#;
    assert_eq!(render_resource_metrics(&s, false), want);

    let failed = render_resource_metrics(&Summary::default(), true);
    assert!(failed.starts_with("# HELP resource_scrape_error"), "{failed}");
    assert!(failed.contains("\nresource_scrape_error 1\n") && failed.ends_with("\nscrape_error 1\n"), "{failed}");
}
