//! Requests and limits → the numbers picolet and runc write to cgroup files,
//! as upstream's kubelet computes them. Pure functions; nothing is written here.
//!
//! CPU weight: upstream thinks in cgroup v1 `cpu.shares` (milliCPU × 1024 /
//! 1000, at least 2, at most 262144) and the runtime converts shares to the
//! v2 `cpu.weight`. runc 1.1.5 (Debian bookworm's) converts linearly,
//! `weight = 1 + ((shares - 2) * 9999) / 262142` (its
//! ConvertCPUSharesToCgroupV2Value; runc >= 1.3.2 switched to a quadratic
//! mapping). Containers get their shares through the OCI spec and runc
//! converts them; pod and QoS cgroups are written by picolet with the same
//! formula, so a pod's weight and its containers' stay on one scale.

use crate::api::quantity::{parse_int, parse_milli};
use crate::api::{Container, Pod};
use serde_json::{json, Value};

/// cgroup v1 shares bounds (the kernel's MIN_SHARES / MAX_SHARES).
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
/// The CFS period picolet uses everywhere (upstream's default, 100 ms).
pub const PERIOD_US: i64 = 100_000;
/// The smallest quota upstream writes (1 ms).
pub const MIN_QUOTA_US: i64 = 1_000;

/// Upstream's MilliCPUToShares: 0 (no request) and tiny requests get 2.
pub fn shares(milli_cpu: i128) -> u64 {
    let s = milli_cpu.max(0).saturating_mul(1024) / 1000;
    u64::try_from(s).unwrap_or(MAX_SHARES).clamp(MIN_SHARES, MAX_SHARES)
}

/// v1 shares → v2 cpu.weight, runc 1.1.5's linear mapping (see the module
/// doc): 2 → 1, 1024 → 39, 262144 → 10000.
pub fn weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.max(MIN_SHARES) - 2) * 9999) / 262_142
}

/// The CFS quota for a CPU limit over [`PERIOD_US`] (upstream's
/// MilliCPUToQuota): 500m → 50000.
pub fn quota(milli_cpu: i128) -> i64 {
    let q = milli_cpu.saturating_mul(PERIOD_US as i128) / 1000;
    (q.clamp(MIN_QUOTA_US as i128, i64::MAX as i128)) as i64
}

/// One container's cpu and memory, requests defaulting to limits as the API
/// server defaults them (static pods are not defaulted by anyone else).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Amounts {
    pub cpu_request: i128,
    pub cpu_limit: Option<i128>,
    pub memory_request: i64,
    pub memory_limit: Option<i64>,
}

impl Amounts {
    pub fn of(c: &Container) -> Amounts {
        let r = c.resources.clone().unwrap_or_default();
        let cpu_limit = r.limits.get("cpu").and_then(|q| parse_milli(q)).filter(|v| *v > 0);
        let memory_limit = r.limits.get("memory").and_then(|q| parse_int(q)).filter(|v| *v > 0);
        Amounts {
            cpu_request: r.requests.get("cpu").and_then(|q| parse_milli(q)).or(cpu_limit).unwrap_or(0),
            cpu_limit,
            memory_request: r.requests.get("memory").and_then(|q| parse_int(q)).or(memory_limit).unwrap_or(0),
            memory_limit,
        }
    }
}

/// What the pod as a whole asks for, as upstream's PodRequests/PodLimits:
/// app containers and sidecars (restartable init containers) add up; a
/// plain init container runs alone, so the pod needs at least the largest.
/// A limit counts only when every container declares it.
pub fn pod_amounts(pod: &Pod) -> Amounts {
    let sidecar = |c: &&Container| c.is_sidecar();
    let running: Vec<Amounts> =
        pod.spec.containers.iter().chain(pod.spec.init_containers.iter().filter(sidecar)).map(Amounts::of).collect();
    let inits: Vec<Amounts> = pod.spec.init_containers.iter().filter(|c| !sidecar(c)).map(Amounts::of).collect();
    let all = || running.iter().chain(&inits);
    let sum_max = |f: &dyn Fn(&Amounts) -> i128| {
        let sum = running.iter().map(f).fold(0, i128::saturating_add);
        inits.iter().map(f).fold(sum, i128::max)
    };
    let bytes = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
    let cpu_limited = all().all(|a| a.cpu_limit.is_some());
    let memory_limited = all().all(|a| a.memory_limit.is_some());
    Amounts {
        cpu_request: sum_max(&|a| a.cpu_request),
        cpu_limit: cpu_limited.then(|| sum_max(&|a| a.cpu_limit.unwrap_or(0))),
        memory_request: bytes(sum_max(&|a| a.memory_request as i128)),
        memory_limit: memory_limited.then(|| bytes(sum_max(&|a| a.memory_limit.unwrap_or(0) as i128))),
    }
}

/// The files of a pod's cgroup, upstream's ResourceConfigForPod on cgroup v2.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSettings {
    pub cpu_weight: u64,
    /// cpu.max quota (period [`PERIOD_US`]); None: "max".
    pub cpu_quota: Option<i64>,
    /// memory.max in bytes; None: "max".
    pub memory_max: Option<i64>,
    /// pids.max; None: "max".
    pub pids_max: Option<i64>,
}

impl PodSettings {
    /// `pod_pids_limit` is podPidsLimit (-1 or 0: unlimited).
    pub fn of(pod: &Pod, qos: &str, pod_pids_limit: i64) -> PodSettings {
        let a = pod_amounts(pod);
        let best_effort = qos == "BestEffort";
        PodSettings {
            cpu_weight: weight(if best_effort { MIN_SHARES } else { shares(a.cpu_request) }),
            cpu_quota: a.cpu_limit.filter(|_| !best_effort).map(quota),
            memory_max: a.memory_limit.filter(|_| !best_effort),
            pids_max: Some(pod_pids_limit).filter(|n| *n > 0),
        }
    }

    /// (file, value) pairs in the order they are written.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let max = |v: Option<i64>| v.map_or("max".to_string(), |n| n.to_string());
        vec![
            ("cpu.weight", self.cpu_weight.to_string()),
            ("cpu.max", format!("{} {PERIOD_US}", max(self.cpu_quota))),
            ("memory.max", max(self.memory_max)),
            ("pids.max", max(self.pids_max)),
        ]
    }
}

/// The burstable tier's cpu.weight: the sum of its pods' CPU requests
/// (upstream's QoS container manager); 2 shares when it has none.
pub fn burstable_weight<'a>(burstable_pods: impl IntoIterator<Item = &'a Pod>) -> u64 {
    weight(shares(burstable_pods.into_iter().map(|p| pod_amounts(p).cpu_request).sum()))
}

/// The besteffort tier's cpu.weight: the minimum, 2 shares.
pub fn besteffort_weight() -> u64 {
    weight(MIN_SHARES)
}

/// OCI `linux.resources` cpu and memory for a container (runc writes them to
/// the container's cgroup, converting shares with the formula above).
pub fn container_resources(c: &Container) -> (Value, Option<Value>) {
    let a = Amounts::of(c);
    let mut cpu = json!({ "shares": shares(a.cpu_request) });
    if let Some(limit) = a.cpu_limit {
        cpu["quota"] = quota(limit).into();
        cpu["period"] = PERIOD_US.into();
    }
    (cpu, a.memory_limit.map(|m| json!({ "limit": m })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PodSpec, ResourceRequirements};

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let mut r = ResourceRequirements::default();
        for (k, v) in requests {
            r.requests.insert(k.to_string(), v.to_string());
        }
        for (k, v) in limits {
            r.limits.insert(k.to_string(), v.to_string());
        }
        let any = !requests.is_empty() || !limits.is_empty();
        Container { name: "c".into(), image: "busybox".into(), resources: any.then_some(r), ..Default::default() }
    }

    fn pod(containers: Vec<Container>, inits: Vec<Container>) -> Pod {
        Pod { spec: PodSpec { containers, init_containers: inits, ..Default::default() }, ..Default::default() }
    }

    #[test]
    fn shares_and_weights_match_runc_1_1_5() {
        assert_eq!(shares(0), 2);
        assert_eq!(shares(1), 2);
        assert_eq!(shares(100), 102);
        assert_eq!(shares(1000), 1024);
        assert_eq!(shares(1_000_000), MAX_SHARES);
        assert_eq!(weight(2), 1);
        assert_eq!(weight(102), 4);
        assert_eq!(weight(1024), 39);
        assert_eq!(weight(2048), 79);
        assert_eq!(weight(MAX_SHARES), 10000);
        assert_eq!(weight(0), 0);
        assert_eq!(quota(500), 50_000);
        assert_eq!(quota(1), MIN_QUOTA_US);
        assert_eq!(besteffort_weight(), 1);
    }

    #[test]
    fn container_resources_from_requests_and_limits() {
        let (cpu, mem) = container_resources(&container(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "16Mi")]));
        assert_eq!(cpu, json!({"shares": 256, "quota": 50000, "period": 100000}));
        assert_eq!(mem, Some(json!({"limit": 16 << 20})));
        let (cpu, mem) = container_resources(&container(&[], &[]));
        assert_eq!(cpu, json!({"shares": 2}));
        assert_eq!(mem, None);
        // A limit alone is also the request.
        let (cpu, _) = container_resources(&container(&[], &[("cpu", "1")]));
        assert_eq!(cpu, json!({"shares": 1024, "quota": 100000, "period": 100000}));
    }

    #[test]
    fn pod_settings_per_qos() {
        let g = pod(vec![container(&[], &[("cpu", "500m"), ("memory", "64Mi")]), container(&[], &[("cpu", "500m"), ("memory", "64Mi")])], vec![]);
        let s = PodSettings::of(&g, "Guaranteed", 100);
        assert_eq!(s, PodSettings { cpu_weight: 39, cpu_quota: Some(100_000), memory_max: Some(128 << 20), pids_max: Some(100) });
        assert_eq!(
            s.files(),
            vec![("cpu.weight", "39".into()), ("cpu.max", "100000 100000".into()), ("memory.max", "134217728".into()), ("pids.max", "100".into())]
        );
        // Burstable: one container without a memory limit → no pod memory.max.
        let b = pod(vec![container(&[("cpu", "250m"), ("memory", "32Mi")], &[("cpu", "1"), ("memory", "64Mi")]), container(&[("cpu", "250m")], &[("cpu", "1")])], vec![]);
        let s = PodSettings::of(&b, "Burstable", -1);
        assert_eq!(s, PodSettings { cpu_weight: weight(512), cpu_quota: Some(200_000), memory_max: None, pids_max: None });
        assert_eq!(s.files()[2], ("memory.max", "max".into()));
        assert_eq!(s.files()[1], ("cpu.max", "200000 100000".into()));
        let e = pod(vec![container(&[], &[])], vec![]);
        assert_eq!(PodSettings::of(&e, "BestEffort", 0), PodSettings { cpu_weight: 1, cpu_quota: None, memory_max: None, pids_max: None });
    }

    #[test]
    fn init_containers_count_as_upstream() {
        // A big init container runs alone: the pod needs the larger of it and the app sum.
        let p = pod(vec![container(&[("cpu", "100m")], &[])], vec![container(&[("cpu", "300m")], &[])]);
        assert_eq!(pod_amounts(&p).cpu_request, 300);
        let mut side = container(&[("cpu", "300m")], &[]);
        side.restart_policy = Some("Always".into());
        let p = pod(vec![container(&[("cpu", "100m")], &[])], vec![side]);
        assert_eq!(pod_amounts(&p).cpu_request, 400);
        // An init container without a cpu limit means no pod cpu.max.
        let p = pod(vec![container(&[], &[("cpu", "1")])], vec![container(&[], &[])]);
        assert_eq!(pod_amounts(&p).cpu_limit, None);
    }

    /// The largest quantities, summed over containers: the cgroup values
    /// saturate instead of overflowing or wrapping.
    #[test]
    fn largest_quantities_saturate() {
        let max = "9223372036854775807";
        let big = || container(&[], &[("cpu", max), ("memory", max)]);
        let s = PodSettings::of(&pod(vec![big(), big()], vec![big()]), "Guaranteed", 0);
        assert_eq!(s, PodSettings { cpu_weight: 10000, cpu_quota: Some(i64::MAX), memory_max: Some(i64::MAX), pids_max: None });
        let (cpu, mem) = container_resources(&big());
        assert_eq!(cpu, json!({"shares": MAX_SHARES, "quota": i64::MAX, "period": 100000}));
        assert_eq!(mem, Some(json!({"limit": i64::MAX})));
        assert_eq!((shares(i128::MAX), shares(i128::MIN), quota(i128::MAX), quota(i128::MIN)), (MAX_SHARES, MIN_SHARES, i64::MAX, MIN_QUOTA_US));
    }

    #[test]
    fn burstable_tier_sums_requests() {
        let a = pod(vec![container(&[("cpu", "250m")], &[])], vec![]);
        let b = pod(vec![container(&[("cpu", "750m")], &[])], vec![]);
        assert_eq!(burstable_weight([&a, &b]), weight(1024));
        assert_eq!(burstable_weight([]), 1);
    }
}
