//! The defaults the API server would fill into a Pod, so a static pod read
//! from disk looks like one fetched from the API.
//!
//! Only fields that are empty are set; nothing written in the manifest is
//! changed. Probes get their timing defaults and httpGet its scheme and path,
//! as the API server writes them; nothing here validates.

use crate::api::types::{Container, DownwardApiVolumeFile, HttpGetAction, Pod, PodSecurityContext, Probe, Volume};

/// Fills in the API server's defaults for every unset field picolet knows.
pub fn apply(pod: &mut Pod) {
    if pod.metadata.namespace.is_empty() {
        pod.metadata.namespace = "default".into();
    }
    let spec = &mut pod.spec;
    set_if_empty(&mut spec.restart_policy, "Always");
    spec.termination_grace_period_seconds.get_or_insert(30);
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.scheduler_name, "default-scheduler");
    spec.security_context.get_or_insert_with(PodSecurityContext::default);
    spec.enable_service_links.get_or_insert(true);
    let host_network = spec.host_network;
    for c in spec.init_containers.iter_mut().chain(spec.containers.iter_mut()) {
        container(c, host_network);
    }
    for v in &mut spec.volumes {
        if let Some(hp) = &mut v.host_path {
            hp.type_.get_or_insert_with(String::new);
        }
        volume_modes(v);
    }
}

/// The API server's defaults for API-backed volumes: defaultMode 0644 (420),
/// fieldRef apiVersion v1, token expirationSeconds 3600.
fn volume_modes(v: &mut Volume) {
    const MODE: i32 = 0o644;
    if let Some(cm) = &mut v.config_map {
        cm.default_mode.get_or_insert(MODE);
    }
    if let Some(s) = &mut v.secret {
        s.default_mode.get_or_insert(MODE);
    }
    if let Some(d) = &mut v.downward_api {
        d.default_mode.get_or_insert(MODE);
        d.items.iter_mut().for_each(downward_file);
    }
    if let Some(p) = &mut v.projected {
        p.default_mode.get_or_insert(MODE);
        for s in &mut p.sources {
            if let Some(d) = &mut s.downward_api {
                d.items.iter_mut().for_each(downward_file);
            }
            if let Some(t) = &mut s.service_account_token {
                t.expiration_seconds.get_or_insert(3600);
            }
        }
    }
}

fn downward_file(f: &mut DownwardApiVolumeFile) {
    if let Some(r) = &mut f.field_ref {
        set_if_empty(&mut r.api_version, "v1");
    }
}

fn set_if_empty(field: &mut String, value: &str) {
    if field.is_empty() {
        *field = value.to_string();
    }
}

fn container(c: &mut Container, host_network: bool) {
    set_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_if_empty(&mut c.termination_message_policy, "File");
    if c.image_pull_policy.is_empty() {
        c.image_pull_policy = pull_policy_for(&c.image).to_string();
    }
    for p in &mut c.ports {
        set_if_empty(&mut p.protocol, "TCP");
        // With the host's network the container port is the host port.
        if host_network && p.host_port.unwrap_or(0) == 0 {
            p.host_port = Some(p.container_port);
        }
    }
    for p in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
        probe(p);
    }
    if let Some(l) = &mut c.lifecycle {
        for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
            if let Some(g) = &mut h.http_get {
                http_get(g);
            }
        }
    }
    if let Some(r) = &mut c.resources {
        for (name, limit) in &r.limits {
            r.requests.entry(name.clone()).or_insert_with(|| limit.clone());
        }
    }
}

fn probe(p: &mut Probe) {
    // Zero means unset here, as in the API server's defaulting.
    for (field, value) in [(&mut p.timeout_seconds, 1), (&mut p.period_seconds, 10), (&mut p.success_threshold, 1), (&mut p.failure_threshold, 3)] {
        if field.unwrap_or(0) == 0 {
            *field = Some(value);
        }
    }
    // initialDelaySeconds stays unset (0), as upstream leaves it.
    if let Some(g) = &mut p.handler.http_get {
        http_get(g);
    }
}

fn http_get(g: &mut HttpGetAction) {
    set_if_empty(&mut g.path, "/");
    set_if_empty(&mut g.scheme, "HTTP");
}

/// `Always` for an image that floats (no tag and no digest, or tag `latest`),
/// `IfNotPresent` for one pinned by tag or digest, as upstream decides it.
pub fn pull_policy_for(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // A ':' before the last '/' belongs to a registry host:port, not a tag.
    let last_part = name.rsplit('/').next().unwrap_or(name);
    let tag = last_part.rsplit_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) => "Always",
        (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::*;

    fn pod() -> Pod {
        let c = Container { name: "c".into(), image: "busybox".into(), ..Default::default() };
        let mut p = Pod::default();
        p.spec.containers.push(c.clone());
        p.spec.init_containers.push(Container { name: "i".into(), image: "busybox:1.36".into(), ..c });
        p
    }

    #[test]
    fn pull_policy_table() {
        for (image, want) in [
            ("busybox", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("busybox:latest", "Always"),
            ("localhost:5000/x", "Always"),
            ("localhost:5000/x:2", "IfNotPresent"),
            ("localhost:5000/x:latest", "Always"),
            ("x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "IfNotPresent"),
            ("x:1@sha256:0123", "IfNotPresent"),
            // upstream parses the tag "latest" here and pulls Always
            ("x:latest@sha256:0123", "Always"),
            ("x:latest", "Always"),
            ("docker.io/library/nginx:1.25-alpine", "IfNotPresent"),
        ] {
            assert_eq!(pull_policy_for(image), want, "{image}");
        }
    }

    #[test]
    fn pod_level_defaults() {
        let mut p = pod();
        apply(&mut p);
        assert_eq!(p.metadata.namespace, "default");
        assert_eq!(p.spec.restart_policy, "Always");
        assert_eq!(p.spec.termination_grace_period_seconds, Some(30));
        assert_eq!(p.spec.dns_policy, "ClusterFirst");
        assert_eq!(p.spec.scheduler_name, "default-scheduler");
        assert_eq!(p.spec.security_context, Some(PodSecurityContext::default()));
        assert_eq!(p.spec.enable_service_links, Some(true));
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut p = pod();
        p.metadata.namespace = "kube-system".into();
        p.spec.restart_policy = "Never".into();
        p.spec.termination_grace_period_seconds = Some(0);
        p.spec.dns_policy = "Default".into();
        p.spec.enable_service_links = Some(false);
        p.spec.containers[0].image_pull_policy = "Never".into();
        p.spec.containers[0].termination_message_policy = "FallbackToLogsOnError".into();
        apply(&mut p);
        assert_eq!(p.metadata.namespace, "kube-system");
        assert_eq!(p.spec.restart_policy, "Never");
        assert_eq!(p.spec.termination_grace_period_seconds, Some(0));
        assert_eq!(p.spec.dns_policy, "Default");
        assert_eq!(p.spec.enable_service_links, Some(false));
        assert_eq!(p.spec.containers[0].image_pull_policy, "Never");
        assert_eq!(p.spec.containers[0].termination_message_policy, "FallbackToLogsOnError");
    }

    #[test]
    fn container_defaults_cover_init_containers() {
        let mut p = pod();
        apply(&mut p);
        for c in p.spec.init_containers.iter().chain(&p.spec.containers) {
            assert_eq!(c.termination_message_path, "/dev/termination-log");
            assert_eq!(c.termination_message_policy, "File");
        }
        assert_eq!(p.spec.containers[0].image_pull_policy, "Always");
        assert_eq!(p.spec.init_containers[0].image_pull_policy, "IfNotPresent");
    }

    #[test]
    fn ports_get_tcp_and_host_port_on_host_network() {
        let mut p = pod();
        p.spec.containers[0].ports = vec![
            ContainerPort { container_port: 80, ..Default::default() },
            ContainerPort { container_port: 53, protocol: "UDP".into(), ..Default::default() },
        ];
        let mut q = p.clone();
        apply(&mut p);
        assert_eq!(p.spec.containers[0].ports[0].protocol, "TCP");
        assert_eq!(p.spec.containers[0].ports[1].protocol, "UDP");
        assert_eq!(p.spec.containers[0].ports[0].host_port, None);
        q.spec.host_network = true;
        apply(&mut q);
        assert_eq!(q.spec.containers[0].ports[0].host_port, Some(80));
    }

    #[test]
    fn requests_default_to_limits() {
        let mut p = pod();
        let mut r = ResourceRequirements::default();
        r.limits.insert("cpu".into(), "500m".into());
        r.limits.insert("memory".into(), "64Mi".into());
        r.requests.insert("cpu".into(), "100m".into());
        p.spec.containers[0].resources = Some(r);
        apply(&mut p);
        let r = p.spec.containers[0].resources.as_ref().unwrap();
        assert_eq!(r.requests["cpu"], "100m");
        assert_eq!(r.requests["memory"], "64Mi");
        assert!(p.spec.init_containers[0].resources.is_none());
    }

    #[test]
    fn volumes() {
        let mut p = pod();
        p.spec.volumes = vec![
            Volume { name: "a".into(), empty_dir: Some(Default::default()), ..Default::default() },
            Volume {
                name: "b".into(),
                host_path: Some(HostPathVolumeSource { path: "/x".into(), type_: None }),
                ..Default::default()
            },
        ];
        apply(&mut p);
        assert_eq!(p.spec.volumes[0].empty_dir.as_ref().unwrap().medium, "");
        assert_eq!(p.spec.volumes[1].host_path.as_ref().unwrap().type_.as_deref(), Some(""));
    }

    #[test]
    fn api_volume_defaults() {
        // The kube-api-access volume as ServiceAccount admission writes it, before defaults.
        let json = r#"{"containers":[{"name":"c","image":"busybox"}],"volumes":[
            {"name":"cm","configMap":{"name":"x","defaultMode":256}},
            {"name":"s","secret":{"secretName":"y"}},
            {"name":"d","downwardAPI":{"items":[{"path":"n","fieldRef":{"fieldPath":"metadata.name"}}]}},
            {"name":"kube-api-access-abcde","projected":{"sources":[
                {"serviceAccountToken":{"path":"token","expirationSeconds":3607}},
                {"serviceAccountToken":{"path":"other","audience":"vault"}},
                {"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},
                {"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"fieldPath":"metadata.namespace"}}]}}]}}]}"#;
        let mut p = pod();
        p.spec = serde_json::from_str(json).unwrap();
        apply(&mut p);
        let v = &p.spec.volumes;
        assert_eq!(v[0].config_map.as_ref().unwrap().default_mode, Some(0o400));
        assert_eq!(v[1].secret.as_ref().unwrap().default_mode, Some(420));
        let d = v[2].downward_api.as_ref().unwrap();
        assert_eq!(d.default_mode, Some(420));
        assert_eq!(d.items[0].field_ref.as_ref().unwrap().api_version, "v1");
        let pr = v[3].projected.as_ref().unwrap();
        assert_eq!(pr.default_mode, Some(420));
        assert_eq!(pr.sources[0].service_account_token.as_ref().unwrap().expiration_seconds, Some(3607));
        assert_eq!(pr.sources[1].service_account_token.as_ref().unwrap().expiration_seconds, Some(3600));
        assert_eq!(pr.sources[3].downward_api.as_ref().unwrap().items[0].field_ref.as_ref().unwrap().api_version, "v1");
        // Written back with the API's field names.
        let back = serde_json::to_value(&p.spec.volumes[3]).unwrap();
        assert_eq!(back["projected"]["sources"][3]["downwardAPI"]["items"][0]["path"], "namespace");
        assert_eq!(back["projected"]["defaultMode"], 420);
    }

    #[test]
    fn probe_defaults() {
        let mut p = pod();
        p.spec.containers[0].liveness_probe = Some(Probe {
            handler: ProbeHandler { http_get: Some(HttpGetAction { port: IntOrString::Int(80), ..Default::default() }), ..Default::default() },
            period_seconds: Some(5),
            ..Default::default()
        });
        apply(&mut p);
        let l = p.spec.containers[0].liveness_probe.as_ref().unwrap();
        assert_eq!((l.timeout_seconds, l.period_seconds, l.success_threshold, l.failure_threshold), (Some(1), Some(5), Some(1), Some(3)));
        assert_eq!(l.initial_delay_seconds, None);
        let g = l.handler.http_get.as_ref().unwrap();
        assert_eq!((g.path.as_str(), g.scheme.as_str()), ("/", "HTTP"));
    }

    #[test]
    fn idempotent() {
        let mut p = pod();
        apply(&mut p);
        let once = p.clone();
        apply(&mut p);
        assert_eq!(p, once);
    }
}
