//! Resource usage from the kubelet server: `/stats/summary` and
//! `/metrics/resource` as the cluster admin gets them (over HTTPS with the
//! admin's client certificate: the API server's node proxy refuses the
//! loopback node addresses of the test cluster), and `kubectl top node` /
//! `kubectl top pod` through the real metrics-server
//! (tests/cluster/metrics-server.sh), which scrapes picolet.

mod common;
use common::cluster::{cluster, node, Cluster};
use common::{Picolet, DEADLINE};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Polls `f` until it gives Some, for `limit`; panics with the last failure.
fn poll<T>(what: &str, p: &Picolet, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last: {last}\n--- picolet log (end) ---\n{}", tail(&p.picolet_log(), 40))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A pod that keeps a CPU busy part of the time and holds ~16 MB in a shell variable.
const BURNER: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: burner, namespace: stats}
spec:
  nodeName: NODE
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: burn
    image: busybox
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    command:
    - sh
    - -c
    - |
      echo some log; head -c 100000 /dev/zero > /scratch/file
      hold=$(head -c 16000000 /dev/zero | tr '\0' x)
      while true; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.1; done
"#;

/// GET `path` from the node's kubelet server as the cluster admin: the body
/// of a 200, else an error with the status and body.
fn get(c: &Cluster, p: &Picolet, path: &str) -> Result<String, String> {
    match c.kubelet_get(p, path) {
        (200, body) => Ok(body),
        (code, body) => Err(format!("GET {path}: {code} {body}")),
    }
}

#[test]
fn stats_metrics_and_kubectl_top() {
    let c = cluster();
    // Early: metrics-server needs two scrapes of the node before `top` works.
    c.metrics_server();
    let mut p = node(c, "stats");
    p.start();
    c.node_ready(&p);
    c.namespace("stats");
    c.apply(&BURNER.replace("NODE", &p.node));
    let pod = c.wait_pod("stats", "burner", "running", &p, |pod| {
        pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    // The Summary: the pod with CPU time and memory, then a CPU rate once two
    // requests have sampled it.
    let summary = |c: &Cluster| -> Result<Value, String> {
        let out = get(c, &p, "/stats/summary")?;
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    };
    let burner = |s: &Value| s["pods"].as_array().into_iter().flatten().find(|x| x["podRef"]["name"] == "burner").cloned();
    let s = poll("the burner pod with CPU, memory and a CPU rate in /stats/summary", &p, DEADLINE, || {
        let s = summary(c)?;
        let pod = burner(&s).ok_or_else(|| format!("no burner pod: {s}"))?;
        let ctr = &pod["containers"][0];
        let ok = num(&ctr["cpu"]["usageCoreNanoSeconds"]) > 0
            && num(&ctr["cpu"]["usageNanoCores"]) > 0
            && num(&ctr["memory"]["workingSetBytes"]) > 16_000_000
            && num(&pod["cpu"]["usageNanoCores"]) > 0;
        if ok {
            Ok(s)
        } else {
            Err(pod.to_string())
        }
    });
    let node = &s["node"];
    assert_eq!(node["nodeName"], p.node.as_str());
    assert!(num(&node["cpu"]["usageCoreNanoSeconds"]) > 0 && num(&node["memory"]["workingSetBytes"]) > 0, "{node}");
    assert!(num(&node["memory"]["availableBytes"]) > 0, "{node}");
    assert!(num(&node["fs"]["capacityBytes"]) > 0 && num(&node["runtime"]["imageFs"]["usedBytes"]) > 0, "{node}");
    assert!(num(&node["rlimit"]["maxpid"]) > 0, "{node}");
    let pod = burner(&s).unwrap();
    assert_eq!(pod["podRef"]["uid"], uid.as_str());
    assert_eq!(pod["podRef"]["namespace"], "stats");
    let ctr = &pod["containers"][0];
    assert_eq!(ctr["name"], "burn");
    assert!(ctr["startTime"].is_string(), "{ctr}");
    assert!(num(&ctr["logs"]["usedBytes"]) > 0, "{ctr}");
    assert!(num(&ctr["rootfs"]["capacityBytes"]) > 0, "{ctr}");
    assert_eq!(pod["volume"][0]["name"], "scratch");
    assert!(num(&pod["volume"][0]["usedBytes"]) >= 100_000, "{pod}");
    assert!(num(&pod["ephemeral-storage"]["usedBytes"]) >= 100_000, "{pod}");

    // /metrics/resource: the series metrics-server reads, with timestamps.
    let text = get(c, &p, "/metrics/resource").unwrap();
    let labels = r#"{container="burn",namespace="stats",pod="burner"}"#;
    for series in [
        format!("container_cpu_usage_seconds_total{labels} "),
        format!("container_memory_working_set_bytes{labels} "),
        format!("container_start_time_seconds{labels} "),
        r#"pod_cpu_usage_seconds_total{namespace="stats",pod="burner"} "#.to_string(),
        r#"pod_memory_working_set_bytes{namespace="stats",pod="burner"} "#.to_string(),
        "node_cpu_usage_seconds_total ".into(),
        "node_memory_working_set_bytes ".into(),
    ] {
        let line = text.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("no {series}in:\n{text}"));
        let fields: Vec<&str> = line[series.len()..].split(' ').collect();
        assert!(fields[0].parse::<f64>().unwrap() > 0.0, "{line}");
        // Start times carry no timestamp; the rest a millisecond one.
        assert_eq!(fields.len(), if series.starts_with("container_start") { 1 } else { 2 }, "{line}");
    }
    assert!(text.contains("\nresource_scrape_error 0\n"), "{text}");

    // kubectl top, through the aggregated metrics API.
    let top = |args: &[&str]| -> Result<String, String> { c.try_kubectl(args).ok_or_else(|| "kubectl top failed".to_string()) };
    let row = |out: &str, name: &str| out.lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_string);
    let limit = DEADLINE * 2; // two scrapes, 10 s apart, after metrics-server sees the pod
    let out = poll("kubectl top node", &p, limit, || top(&["top", "node", &p.node]));
    let cols: Vec<String> = row(&out, &p.node).unwrap_or_else(|| panic!("{out}")).split_whitespace().map(String::from).collect();
    assert!(cols[1].ends_with('m') && cols[2].ends_with('%') && cols[3].ends_with("Mi") && cols[4].ends_with('%'), "{out}");
    let out = poll("kubectl top pod burner", &p, limit, || top(&["top", "pod", "burner", "-n", "stats"]));
    let cols: Vec<String> = row(&out, "burner").unwrap_or_else(|| panic!("{out}")).split_whitespace().map(String::from).collect();
    let mib: u64 = cols[2].trim_end_matches("Mi").parse().unwrap_or_else(|_| panic!("{out}"));
    assert!(cols[1].ends_with('m') && mib >= 15, "{out}"); // 16 MB held
    let out = poll("kubectl top pod --containers", &p, limit, || top(&["top", "pod", "burner", "-n", "stats", "--containers"]));
    assert!(out.lines().any(|l| l.split_whitespace().take(2).eq(["burner", "burn"])), "{out}");

    c.kubectl(&["delete", "pod", "burner", "-n", "stats", "--grace-period=0", "--force", "--wait=false"]);
    p.kill();
}
