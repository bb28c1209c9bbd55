//! `/metrics` and `/metrics/probes` of a picolet node of the test cluster,
//! scraped over HTTPS as Prometheus scrapes a kubelet (the cluster admin's
//! client certificate; the API server's node proxy refuses the loopback
//! node addresses the test nodes have).

mod common;
use common::cluster::{cluster, node, Cluster};
use common::Picolet;
use serde_json::Value;

fn condition<'a>(obj: &'a Value, t: &str) -> &'a str {
    obj["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == t)).and_then(|c| c["status"].as_str()).unwrap_or("")
}

/// The value of `series` (name and labels exactly as exposed) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every sample line belongs to the family declared last (`# TYPE`), every
/// family is declared once with its HELP, and every value is a number.
fn check_exposition(text: &str) {
    let mut family = String::new();
    let mut declared = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{l}");
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
            assert!(!declared.contains(&name.to_string()), "{name} declared twice");
            declared.push(name.to_string());
            family = name.to_string();
        } else if !l.starts_with('#') {
            assert!(l.starts_with(&family), "{l} outside family {family}");
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{l}");
        }
    }
}

/// GET `path` from the node's server as the cluster admin; the body.
fn scrape(c: &Cluster, p: &Picolet, path: &str) -> String {
    let (code, body) = c.kubelet_get(p, path);
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

#[test]
fn metrics_show_pods_containers_runtime_calls_and_probes() {
    let c = cluster();
    let mut p = node(c, "metrics");
    p.start();
    c.node_ready(&p);
    c.namespace("metrics");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: ready, namespace: metrics}}\nspec:\n  nodeName: {}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: busybox\n    command: [sleep, '1000']\n    readinessProbe: {{exec: {{command: ['true']}}, periodSeconds: 1}}\n",
        p.node
    ));
    let pod = c.wait_pod("metrics", "ready", "Ready", &p, |pod| condition(pod, "Ready") == "True");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    let raw = |path: &str| scrape(c, &p, path);
    let mut text = String::new();
    c.wait("kubelet_running_pods 1", Some(&p), || {
        text = raw("/metrics");
        sample(&text, "kubelet_running_pods") == Some(1.0)
    });
    check_exposition(&text);
    assert_eq!(sample(&text, &format!("kubelet_node_name{{node=\"{}\"}}", p.node)), Some(1.0));
    assert_eq!(sample(&text, "kubelet_running_containers{container_state=\"running\"}"), Some(1.0), "{text}");
    assert!(sample(&text, "kubelet_pod_start_duration_seconds_count").unwrap() >= 1.0, "{text}");
    assert!(sample(&text, "kubelet_pod_start_duration_seconds_bucket{le=\"+Inf\"}").unwrap() >= 1.0, "{text}");
    assert!(sample(&text, "kubelet_pod_start_sli_duration_seconds_count").unwrap() >= 1.0, "{text}");
    assert!(sample(&text, "kubelet_pod_worker_duration_seconds_count{operation_type=\"create\"}").unwrap() >= 1.0, "{text}");
    for op in ["create_container", "start_container", "version"] {
        let n = sample(&text, &format!("kubelet_runtime_operations_total{{operation_type=\"{op}\"}}"));
        assert!(n.unwrap_or(0.0) >= 1.0, "{op}: {text}");
    }
    assert!(text.contains("# TYPE kubelet_evictions counter\n"), "{text}");
    assert!(text.contains("kubernetes_build_info{"), "{text}");
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0, "{text}");
    assert!(sample(&text, "process_open_fds").unwrap() > 0.0, "{text}");
    assert!(sample(&text, "process_start_time_seconds").unwrap() > 1.5e9, "{text}");

    // The readiness probe's results, with upstream's labels.
    let series = format!(
        "prober_probe_total{{container=\"app\",namespace=\"metrics\",pod=\"ready\",pod_uid=\"{uid}\",probe_type=\"Readiness\",result=\"successful\"}}"
    );
    let mut probes = String::new();
    c.wait("a successful readiness probe in /metrics/probes", Some(&p), || {
        probes = raw("/metrics/probes");
        sample(&probes, &series).is_some_and(|n| n >= 1.0)
    });
    check_exposition(&probes);
    let duration = "prober_probe_duration_seconds_count{container=\"app\",namespace=\"metrics\",pod=\"ready\",probe_type=\"Readiness\"}";
    assert!(sample(&probes, duration).unwrap() >= 1.0, "{probes}");
    // Exec probes are the runtime's exec_sync.
    assert!(sample(&raw("/metrics"), "kubelet_runtime_operations_total{operation_type=\"exec_sync\"}").unwrap() >= 1.0);

    // The pod goes: its probe series go, the gauges come down.
    c.kubectl(&["delete", "pod", "-n", "metrics", "ready", "--wait=true"]);
    c.wait("no pod running and no probe series for it", Some(&p), || {
        let text = raw("/metrics");
        sample(&text, "kubelet_running_pods") == Some(0.0)
            && sample(&text, "kubelet_running_containers{container_state=\"running\"}") == Some(0.0)
            && !raw("/metrics/probes").contains(&uid)
    });
    let text = raw("/metrics");
    assert!(sample(&text, "kubelet_runtime_operations_total{operation_type=\"stop_container\"}").unwrap() >= 1.0, "{text}");
    assert!(sample(&text, "kubelet_runtime_operations_total{operation_type=\"remove_container\"}").unwrap() >= 1.0, "{text}");
    p.kill();
}
