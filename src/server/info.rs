//! `/pods`, `/runningpods/` and `/configz` on `:10250`.
//!
//! `/pods` is the pods picolet runs with their status (as the read-only
//! port); `/runningpods/` is upstream's view from the runtime: the pods with a
//! running container, with only their names, UIDs and those containers' names
//! and images; `/configz` is the effective configuration as
//! KubeletConfiguration v1beta1 field names under `kubeletconfig`.

use super::kubelet::{Conn, Context, Request};
use crate::api;
use crate::config::Config;
use serde_json::{json, Map, Value};
use std::io;
use std::time::Duration;

pub fn pods(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = req;
    conn.json(&pod_list(snapshot(ctx)))
}

pub fn running_pods(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = req;
    conn.json(&running(&snapshot(ctx)))
}

pub fn configz(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = req;
    conn.json(&ctx.configz)
}

fn snapshot(ctx: &Context) -> Vec<api::Pod> {
    ctx.pods.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A v1 PodList of `items`.
pub fn pod_list(items: Vec<api::Pod>) -> api::PodList {
    api::PodList { api_version: "v1".into(), kind: "PodList".into(), metadata: Default::default(), items }
}

/// Upstream's `/runningpods/`: a PodList of the pods with at least one running
/// container (init containers included), each with just its name, namespace,
/// UID and the running containers' names and images, shaped as upstream
/// encodes it (`creationTimestamp: null`, empty resources and status).
pub fn running(pods: &[api::Pod]) -> Value {
    let items: Vec<Value> = pods
        .iter()
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let containers: Vec<Value> = status
                .init_container_statuses
                .iter()
                .chain(status.container_statuses.iter())
                .filter(|c| c.state.running.is_some())
                .map(|c| json!({"name": c.name, "image": c.image, "resources": {}}))
                .collect();
            if containers.is_empty() {
                return None;
            }
            let m = &p.metadata;
            Some(json!({
                "metadata": {"name": m.name, "namespace": m.namespace, "uid": m.uid, "creationTimestamp": null},
                "spec": {"containers": containers},
                "status": {},
            }))
        })
        .collect();
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
}

/// What `/configz` serves: `{"kubeletconfig": {...}}` with the
/// KubeletConfiguration (v1beta1) names of the settings picolet has, durations
/// as Go writes them ("20s", "5m0s") and sizes as quantities ("10Mi"). Empty
/// strings and unset paths are left out, as upstream's `omitempty`.
pub fn configz_json(cfg: &Config) -> Value {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let mut x509 = Map::new();
    if let Some(ca) = path(&cfg.client_ca_file) {
        x509.insert("clientCAFile".into(), ca.into());
    }
    let mut kc = json!({
        "enableServer": true,
        "address": cfg.address,
        "port": cfg.port,
        "healthzPort": cfg.healthz_port,
        "healthzBindAddress": cfg.healthz_bind_address,
        "authentication": {
            "x509": x509,
            "webhook": {
                "enabled": cfg.authentication_token_webhook,
                "cacheTTL": go_duration(cfg.authentication_token_webhook_cache_ttl),
            },
            "anonymous": {"enabled": cfg.anonymous_auth},
        },
        "authorization": {
            "mode": cfg.authorization_mode,
            "webhook": {
                "cacheAuthorizedTTL": go_duration(cfg.authorization_webhook_cache_authorized_ttl),
                "cacheUnauthorizedTTL": go_duration(cfg.authorization_webhook_cache_unauthorized_ttl),
            },
        },
        "maxPods": cfg.max_pods,
        "podLogsDir": cfg.pod_logs_dir.display().to_string(),
        "containerLogMaxSize": quantity(cfg.container_log_max_size),
        "containerLogMaxFiles": cfg.container_log_max_files,
        "nodeStatusUpdateFrequency": go_duration(cfg.node_status_update_frequency),
        "nodeStatusReportFrequency": go_duration(cfg.node_status_report_frequency),
        "nodeLeaseDurationSeconds": cfg.node_lease_duration_seconds,
        "cgroupsPerQOS": cfg.cgroups_per_qos,
        "enforceNodeAllocatable": cfg.enforce_node_allocatable,
        "fileCheckFrequency": go_duration(cfg.file_check_frequency),
    });
    let obj = kc.as_object_mut().expect("an object");
    if cfg.read_only_port != 0 {
        obj.insert("readOnlyPort".into(), cfg.read_only_port.into());
    }
    for (k, v) in [
        ("staticPodPath", path(&cfg.pod_manifest_path)),
        ("tlsCertFile", path(&cfg.tls_cert_file)),
        ("tlsPrivateKeyFile", path(&cfg.tls_private_key_file)),
    ] {
        if let Some(v) = v {
            obj.insert(k.into(), v.into());
        }
    }
    // issue 6: eviction
    let hard: Map<String, Value> = cfg.eviction_hard.entries().into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
    obj.insert("evictionHard".into(), hard.into());
    obj.insert("evictionPressureTransitionPeriod".into(), go_duration(cfg.eviction_pressure_transition_period).into());
    obj.insert("imageGCHighThresholdPercent".into(), cfg.image_gc_high_threshold_percent.into());
    obj.insert("imageGCLowThresholdPercent".into(), cfg.image_gc_low_threshold_percent.into());
    obj.insert("imageMinimumGCAge".into(), go_duration(cfg.image_minimum_gc_age).into());
    json!({ "kubeletconfig": kc })
}

/// A duration as Go's `time.Duration.String()` writes it: "0s", "1.5s",
/// "5m0s", "1h0m0s", "250ms".
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", decimal(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", decimal(ns, 1_000_000));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = decimal(u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()), 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `v / unit` with the fraction's trailing zeros dropped.
fn decimal(v: u128, unit: u128) -> String {
    let (int, frac) = (v / unit, v % unit);
    if frac == 0 {
        return int.to_string();
    }
    let width = unit.to_string().len() - 1;
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Bytes as a binary-suffixed quantity when exact ("10Mi"), else plain.
fn quantity(bytes: u64) -> String {
    for (shift, suffix) in [(60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod, PodStatus};

    #[test]
    fn durations_as_go_writes_them() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(20), "20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3725), "1h2m5s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(1200), "1.2µs"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::new(61, 5_000_000), "1m1.005s"),
        ] {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity(10 << 20), "10Mi");
        assert_eq!(quantity(3072), "3Ki");
        assert_eq!(quantity(1536), "1536");
        assert_eq!(quantity(1 << 30), "1Gi");
        assert_eq!(quantity(1000), "1000");
        assert_eq!(quantity(0), "0");
    }

    #[test]
    fn configz_has_upstream_names_and_defaults() {
        let cfg = Config::default();
        let v = configz_json(&cfg);
        let kc = &v["kubeletconfig"];
        assert_eq!(kc["address"], "0.0.0.0");
        assert_eq!(kc["port"], 10250);
        assert_eq!(kc["readOnlyPort"], 10255);
        assert_eq!(kc["healthzPort"], 10248);
        assert_eq!(kc["healthzBindAddress"], "127.0.0.1");
        assert_eq!(kc["authentication"]["webhook"]["enabled"], true);
        assert_eq!(kc["authentication"]["webhook"]["cacheTTL"], "2m0s");
        assert_eq!(kc["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(kc["authentication"]["x509"], json!({}));
        assert_eq!(kc["authorization"]["mode"], "Webhook");
        assert_eq!(kc["authorization"]["webhook"]["cacheAuthorizedTTL"], "5m0s");
        assert_eq!(kc["authorization"]["webhook"]["cacheUnauthorizedTTL"], "30s");
        assert_eq!(kc["maxPods"], 110);
        assert_eq!(kc["containerLogMaxSize"], "10Mi");
        assert_eq!(kc["containerLogMaxFiles"], 5);
        assert_eq!(kc["nodeStatusUpdateFrequency"], "10s");
        assert_eq!(kc["nodeStatusReportFrequency"], "5m0s");
        assert_eq!(kc["nodeLeaseDurationSeconds"], 40);
        // issue 6: eviction
        assert_eq!(
            kc["evictionHard"],
            json!({"memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%", "imagefs.available": "15%"})
        );
        assert_eq!(kc["evictionPressureTransitionPeriod"], "5m0s");
        assert_eq!((kc["imageGCHighThresholdPercent"].as_u64(), kc["imageGCLowThresholdPercent"].as_u64()), (Some(85), Some(80)));
        assert_eq!(kc["imageMinimumGCAge"], "2m0s");
        assert_eq!(kc["cgroupsPerQOS"], true);
        assert_eq!(kc["enforceNodeAllocatable"], json!(["pods"]));
        assert_eq!(kc["fileCheckFrequency"], "20s");
        for absent in ["staticPodPath", "tlsCertFile", "tlsPrivateKeyFile"] {
            assert!(kc.get(absent).is_none(), "{absent}");
        }

        let cfg = Config {
            pod_manifest_path: Some("/etc/kubernetes/manifests".into()),
            client_ca_file: Some("/etc/ca.crt".into()),
            tls_cert_file: Some("/etc/kubelet.crt".into()),
            read_only_port: 0,
            ..Config::default()
        };
        let kc = configz_json(&cfg)["kubeletconfig"].clone();
        assert_eq!(kc["staticPodPath"], "/etc/kubernetes/manifests");
        assert_eq!(kc["authentication"]["x509"]["clientCAFile"], "/etc/ca.crt");
        assert_eq!(kc["tlsCertFile"], "/etc/kubelet.crt");
        assert!(kc.get("readOnlyPort").is_none(), "0 is omitted, as upstream");
    }

    fn pod(name: &str, statuses: Vec<ContainerStatus>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = "ns".into();
        p.metadata.uid = format!("uid-{name}");
        p.status = Some(PodStatus { container_statuses: statuses, ..Default::default() });
        p
    }

    fn st(name: &str, running: bool) -> ContainerStatus {
        let state = if running {
            ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() }
        } else {
            ContainerState { terminated: Some(ContainerStateTerminated::default()), ..Default::default() }
        };
        ContainerStatus { name: name.into(), image: format!("img-{name}"), state, ..Default::default() }
    }

    #[test]
    fn running_pods_lists_only_running_containers() {
        let pods = vec![pod("a", vec![st("web", true), st("job", false)]), pod("b", vec![st("done", false)]), Pod::default()];
        let v = running(&pods);
        assert_eq!(v["kind"], "PodList");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(
            v["items"],
            json!([{
                "metadata": {"name": "a", "namespace": "ns", "uid": "uid-a", "creationTimestamp": null},
                "spec": {"containers": [{"name": "web", "image": "img-web", "resources": {}}]},
                "status": {},
            }])
        );
        let list = serde_json::to_value(pod_list(pods)).unwrap();
        assert_eq!((list["kind"].as_str(), list["apiVersion"].as_str()), (Some("PodList"), Some("v1")));
        assert_eq!(list["items"].as_array().unwrap().len(), 3);
    }
}
