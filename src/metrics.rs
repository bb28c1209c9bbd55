//! picolet's metrics registry: the counters and histograms that the pod
//! worker and the runtime record (running pods and containers, pod start and
//! pod worker durations, runtime operations, probe results, evictions), with
//! upstream's buckets, so that `/metrics` matches the kubelet's.
//!
//! [`Metrics`] is shared (one `Arc`) between the pod loop and the runtime,
//! which feed it, and the kubelet server, which reads it on each scrape. No
//! client library: one mutex around a few small maps.
//!
//! Not here: the Prometheus text format (server::metrics renders it), the
//! `process_*` figures (read from /proc at scrape time, server::metrics),
//! resource usage of the node and its pods (stats/).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upstream's pod startup buckets (seconds): round numbers, roughly exponential.
const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0,
    900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// Prometheus' default buckets (pod worker and probe durations).
const DEFAULT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Runtime operation buckets: 14, from 5 ms, each 2.5 times the last,
/// computed by repeated multiplication as upstream does (same floats).
fn runtime_buckets() -> &'static [f64] {
    static B: OnceLock<Vec<f64>> = OnceLock::new();
    B.get_or_init(|| {
        let mut v = vec![0.005];
        while v.len() < 14 {
            let last = v[v.len() - 1];
            v.push(last * 2.5);
        }
        v
    })
}

/// How many of the node's containers are in each state (upstream's
/// `container_state` label values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerCounts {
    pub created: u64,
    pub exited: u64,
    pub running: u64,
    pub unknown: u64,
}

/// The result of one probe run, as `prober_probe_total` counts it
/// (upstream's third value, "unknown", never comes out of picolet's probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Successful,
    Failed,
}

/// Which probe of which container: the labels of the probe metrics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProbeTarget {
    // Field order is label-name order: series sort the way upstream's do.
    pub container: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    /// "Liveness", "Readiness" or "Startup".
    pub probe_type: &'static str,
}

/// Counters and histograms the pod loop and the server update.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Recorded>,
}

/// What was recorded, as the renderer reads it.
#[derive(Debug)]
pub struct Recorded {
    pub running_pods: u64,
    pub containers: ContainerCounts,
    pub pod_start: Histogram,
    pub pod_start_sli: Histogram,
    /// By operation_type (create, update, sync).
    pub pod_worker: BTreeMap<&'static str, Histogram>,
    /// By operation_type.
    pub runtime: BTreeMap<String, RuntimeOp>,
    pub probes: BTreeMap<ProbeTarget, ProbeSeries>,
    /// By eviction_signal.
    pub evictions: BTreeMap<&'static str, u64>,
}

impl Default for Recorded {
    fn default() -> Recorded {
        Recorded {
            running_pods: 0,
            containers: ContainerCounts::default(),
            pod_start: Histogram::new(POD_START_BUCKETS),
            pod_start_sli: Histogram::new(POD_START_BUCKETS),
            pod_worker: BTreeMap::new(),
            runtime: BTreeMap::new(),
            probes: BTreeMap::new(),
            evictions: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
pub struct RuntimeOp {
    pub total: u64,
    pub errors: u64,
    pub duration: Histogram,
}

#[derive(Debug)]
pub struct ProbeSeries {
    pub successful: u64,
    pub failed: u64,
    /// Successful runs only, as upstream.
    pub duration: Histogram,
}

/// A histogram: per-bucket counts (not cumulative), sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// Adds `other`'s observations (same buckets).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pod evicted for `signal` (memory.available, nodefs.available...).
    pub fn eviction(&self, signal: &'static str) {
        *self.lock().evictions.entry(signal).or_default() += 1;
    }

    /// Pods with a sandbox up and containers by state, as of the last pass.
    pub fn set_running(&self, pods: u64, containers: ContainerCounts) {
        let mut m = self.lock();
        m.running_pods = pods;
        m.containers = containers;
    }

    /// A pod reached phase Running this long after picolet first saw it.
    pub fn observe_pod_start(&self, took: Duration) {
        self.lock().pod_start.observe(took.as_secs_f64());
    }

    /// A pod's startup latency SLI: creation to all containers running,
    /// less image pulls and init containers.
    pub fn observe_pod_start_sli(&self, took: Duration) {
        self.lock().pod_start_sli.observe(took.as_secs_f64());
    }

    /// One pass of one pod's sync: `op` is "create", "update" or "sync".
    pub fn observe_pod_worker(&self, op: &'static str, took: Duration) {
        let mut m = self.lock();
        m.pod_worker.entry(op).or_insert_with(|| Histogram::new(DEFAULT_BUCKETS)).observe(took.as_secs_f64());
    }

    /// One call into the container runtime (`create_container`,
    /// `start_container`, `stop_container`, `remove_container`, `exec_sync`,
    /// `version`...) and whether it failed.
    pub fn runtime_operation(&self, op: &str, took: Duration, ok: bool) {
        let mut m = self.lock();
        if !m.runtime.contains_key(op) {
            let fresh = RuntimeOp { total: 0, errors: 0, duration: Histogram::new(runtime_buckets()) };
            m.runtime.insert(op.to_string(), fresh);
        }
        let o = m.runtime.get_mut(op).expect("inserted above");
        o.total += 1;
        if !ok {
            o.errors += 1;
        }
        o.duration.observe(took.as_secs_f64());
    }

    /// One probe run and its result.
    pub fn probe(&self, target: &ProbeTarget, result: ProbeResult, took: Duration) {
        let mut m = self.lock();
        if !m.probes.contains_key(target) {
            let fresh = ProbeSeries { successful: 0, failed: 0, duration: Histogram::new(DEFAULT_BUCKETS) };
            m.probes.insert(target.clone(), fresh);
        }
        let s = m.probes.get_mut(target).expect("inserted above");
        match result {
            ProbeResult::Successful => {
                s.successful += 1;
                s.duration.observe(took.as_secs_f64());
            }
            ProbeResult::Failed => s.failed += 1,
        }
    }

    /// Drops a removed pod's probe series (upstream deletes them when the
    /// pod's probe workers stop), so they do not pile up with pod churn.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.lock().probes.retain(|k, _| k.pod_uid != pod_uid);
    }

    /// What was recorded so far, locked while the renderer reads it.
    pub fn recorded(&self) -> impl Deref<Target = Recorded> + '_ {
        self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_buckets_are_upstreams() {
        let b = runtime_buckets();
        assert_eq!(b.len(), 14);
        assert_eq!(b[0].to_string(), "0.005");
        assert_eq!(b[1].to_string(), "0.0125");
        assert_eq!(b[13].to_string(), "745.0580596923828");
    }
}
