//! Quality of service as upstream decides it, and what it means for the
//! kernel's OOM killer.

use crate::api::quantity::parse_milli;
use crate::api::{Container, Pod};

/// Guaranteed when every container has cpu and memory limits equal to its
/// requests; BestEffort when no container asks for anything; else Burstable.
pub fn qos_class(pod: &Pod) -> &'static str {
    let all: Vec<&Container> = pod.spec.init_containers.iter().chain(&pod.spec.containers).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.clone().unwrap_or_default();
        if !r.requests.is_empty() || !r.limits.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = r.limits.get(res).and_then(|q| parse_milli(q));
            let request = r.requests.get(res).and_then(|q| parse_milli(q)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `oom_score_adj` for a container, upstream's policy: Guaranteed -997,
/// BestEffort 1000, Burstable `1000 - 1000 * memoryRequest / capacity`
/// clamped to [3, 999]: 3 is `1000 + (-997)`, where a Guaranteed container
/// using all memory would score, and 999 stays below BestEffort.
/// Without this, containers would inherit picolet's own -999.
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> i64 {
    match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.get("memory").or_else(|| r.limits.get("memory")))
                .and_then(|q| crate::api::quantity::parse_int(q))
                .unwrap_or(0);
            if memory_capacity <= 0 {
                return 999;
            }
            let adj = 1000 - (1000 * request as i128 / memory_capacity as i128) as i64;
            adj.clamp(3, 999)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PodSpec, ResourceRequirements};

    fn pod(policy: &str, names: &[&str]) -> Pod {
        Pod {
            spec: PodSpec {
                restart_policy: policy.into(),
                containers: names.iter().map(|n| Container { name: n.to_string(), image: "busybox".into(), ..Default::default() }).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn qos_classes() {
        let mut p = pod("Always", &["a"]);
        assert_eq!(qos_class(&p), "BestEffort");
        let mut r = ResourceRequirements::default();
        r.limits.insert("cpu".into(), "1".into());
        r.limits.insert("memory".into(), "64Mi".into());
        p.spec.containers[0].resources = Some(r.clone());
        assert_eq!(qos_class(&p), "Guaranteed");
        r.requests.insert("memory".into(), "32Mi".into());
        p.spec.containers[0].resources = Some(r);
        assert_eq!(qos_class(&p), "Burstable");
    }

    #[test]
    fn oom_scores_follow_qos() {
        let gib = 1 << 30;
        let mut p = pod("Always", &["a"]);
        assert_eq!(oom_score_adj(&p, &p.spec.containers[0].clone(), gib), 1000);
        let mut r = ResourceRequirements::default();
        r.requests.insert("memory".into(), "256Mi".into());
        p.spec.containers[0].resources = Some(r.clone());
        assert_eq!(oom_score_adj(&p, &p.spec.containers[0].clone(), gib), 750);
        r.requests.insert("memory".into(), "2Gi".into());
        p.spec.containers[0].resources = Some(r.clone());
        assert_eq!(oom_score_adj(&p, &p.spec.containers[0].clone(), gib), 3);
        r.requests.insert("memory".into(), "1".into());
        p.spec.containers[0].resources = Some(r);
        assert_eq!(oom_score_adj(&p, &p.spec.containers[0].clone(), gib), 999);
        let mut g = ResourceRequirements::default();
        g.limits.insert("cpu".into(), "1".into());
        g.limits.insert("memory".into(), "64Mi".into());
        p.spec.containers[0].resources = Some(g);
        assert_eq!(oom_score_adj(&p, &p.spec.containers[0].clone(), gib), -997);
    }
}
