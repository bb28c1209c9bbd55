//! What the pod manager records in the metrics registry (crate::metrics,
//! served on `/metrics`): the running pods and containers after each pass,
//! each pod sync's duration, pod startup latency, probe results and exec
//! calls.
//!
//! Startup latency, as upstream measures it, for pods picolet saw appear
//! (not those it adopted from a previous run): `pod_start_duration` from
//! first sight to phase Running; the SLI from the pod's creation timestamp
//! (first sight for static pods) to all its app containers running, less
//! the time spent pulling images and running init containers, and only
//! for pods no kubelet had started before (no `status.startTime`).

use super::status::Observed;
use super::{health::JobKind, Manager};
use crate::api::time::parse_rfc3339;
use crate::metrics::{ContainerCounts, ProbeResult, ProbeTarget};
use crate::probe::state::Kind;
use crate::probe::Outcome;
use crate::runtime::record::Record;
use crate::runtime::runc::Runtime;
use std::time::{Duration, Instant, SystemTime};

/// A pod's startup, from first sight until both latencies are recorded.
pub(super) struct Startup {
    seen: Instant,
    seen_wall: SystemTime,
    /// Phase Running reached (pod_start_duration observed).
    running: bool,
    /// The SLI is still to be observed (false: not measured for this pod).
    sli: bool,
    /// First pull started and last pull finished for the pod's images.
    pull_from: Option<Instant>,
    pull_to: Option<Instant>,
    /// First init container started, first app container started.
    init_from: Option<Instant>,
    init_to: Option<Instant>,
}

impl Startup {
    /// A pod seen for the first time; `started_before`: it came with a
    /// `status.startTime` (another kubelet, or an earlier picolet, ran it).
    pub(super) fn new(started_before: bool) -> Startup {
        Startup {
            seen: Instant::now(),
            seen_wall: SystemTime::now(),
            running: false,
            sli: !started_before,
            pull_from: None,
            pull_to: None,
            init_from: None,
            init_to: None,
        }
    }
}

/// How much of `[from, to)` the two spans cover together (overlaps counted once).
fn covered(a: Option<(Instant, Instant)>, b: Option<(Instant, Instant)>) -> Duration {
    let len = |(s, e): (Instant, Instant)| e.saturating_duration_since(s);
    match (a, b) {
        (Some(x), Some(y)) => {
            let (first, second) = if x.0 <= y.0 { (x, y) } else { (y, x) };
            if second.0 <= first.1 {
                len((first.0, first.1.max(second.1)))
            } else {
                len(first) + len(second)
            }
        }
        (Some(x), None) | (None, Some(x)) => len(x),
        (None, None) => Duration::ZERO,
    }
}

/// The SLI: `created` to `now`, less image pulls and init containers.
fn sli(created: SystemTime, now: SystemTime, s: &Startup) -> Duration {
    let pulls = s.pull_from.zip(s.pull_to);
    let init = s.init_from.zip(s.init_to);
    now.duration_since(created).unwrap_or_default().saturating_sub(covered(pulls, init))
}

impl<R: Runtime> Manager<R> {
    /// The gauges, after a pass: pods with a sandbox up and not finished,
    /// and every container attempt picolet keeps, by state.
    pub(super) fn update_gauges(&self) {
        let mut pods = 0;
        let mut c = ContainerCounts::default();
        for st in self.pods.values() {
            let finished = st.status.as_ref().is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed");
            if st.sandbox.is_some() && !finished {
                pods += 1;
            }
            // This pass observed every latest attempt; older ones exited.
            for r in st.attempts.values().flatten() {
                match self.exited.get(&r.id) {
                    Some(Observed::Exited { reason, .. }) if reason == "ContainerStatusUnknown" => c.unknown += 1,
                    Some(_) => c.exited += 1,
                    None if r.start_error.is_some() => c.exited += 1,
                    None if r.started_at.is_none() => c.created += 1,
                    None => c.running += 1,
                }
            }
        }
        self.cfg.metrics.set_running(pods, c);
    }

    /// One sync of a pod took since `began`: "create" for its first,
    /// "update" after its pod changed, "sync" otherwise.
    pub(super) fn observe_sync(&mut self, uid: &str, began: Instant) {
        let Some(st) = self.pods.get_mut(uid) else { return };
        let op = std::mem::replace(&mut st.sync_kind, "sync");
        self.cfg.metrics.observe_pod_worker(op, began.elapsed());
    }

    /// A container of the pod is being started (for the init span).
    pub(super) fn startup_container(&mut self, uid: &str, init: bool, sidecar: bool) {
        let Some(s) = self.pods.get_mut(uid).and_then(|p| p.startup.as_mut()) else { return };
        if init && !sidecar {
            s.init_from.get_or_insert_with(Instant::now);
        } else if !init && s.init_from.is_some() {
            s.init_to.get_or_insert_with(Instant::now);
        }
    }

    /// The pod waits for an image pull (started now or under way).
    pub(super) fn startup_pull_started(&mut self, uid: &str) {
        if let Some(s) = self.pods.get_mut(uid).and_then(|p| p.startup.as_mut()) {
            s.pull_from.get_or_insert_with(Instant::now);
        }
    }

    /// A pull the pod waited for ended.
    pub(super) fn startup_pull_ended(&mut self, uid: &str) {
        if let Some(s) = self.pods.get_mut(uid).and_then(|p| p.startup.as_mut()) {
            if s.pull_from.is_some() {
                s.pull_to = Some(Instant::now());
            }
        }
    }

    /// After a status update: observe the startup latencies once reached.
    pub(super) fn track_startup(&mut self, uid: &str) {
        let Some(st) = self.pods.get_mut(uid) else { return };
        let (Some(s), Some(status)) = (st.startup.as_mut(), st.status.as_ref()) else { return };
        if status.phase == "Succeeded" || status.phase == "Failed" {
            st.startup = None;
            return;
        }
        if !s.running && status.phase == "Running" {
            s.running = true;
            self.cfg.metrics.observe_pod_start(s.seen.elapsed());
        }
        let all_running = !status.container_statuses.is_empty() && status.container_statuses.iter().all(|c| c.state.running.is_some());
        if s.sli && all_running {
            s.sli = false;
            let created = st.pod.metadata.creation_timestamp.as_deref().and_then(parse_rfc3339).unwrap_or(s.seen_wall);
            self.cfg.metrics.observe_pod_start_sli(sli(created, SystemTime::now(), s));
        }
        if s.running && !s.sli {
            st.startup = None;
        }
    }

    /// A probe or hook ran: count probe results, and exec actions as the
    /// runtime's `exec_sync` (a command that fails is not a runtime error).
    pub(super) fn job_metrics(&self, r: &Record, kind: JobKind, outcome: &Outcome, took: Duration) {
        let Some(c) = self.container_of(r) else { return };
        let exec = match kind {
            JobKind::Probe(k) => {
                let probe = match k {
                    Kind::Startup => &c.startup_probe,
                    Kind::Liveness => &c.liveness_probe,
                    Kind::Readiness => &c.readiness_probe,
                };
                let result = if outcome.ok() { ProbeResult::Successful } else { ProbeResult::Failed };
                let target = ProbeTarget {
                    container: r.container.clone(),
                    namespace: r.pod_namespace.clone(),
                    pod: r.pod_name.clone(),
                    pod_uid: r.pod_uid.clone(),
                    probe_type: k.name(),
                };
                self.cfg.metrics.probe(&target, result, took);
                probe.as_ref().is_some_and(|p| p.handler.exec.is_some())
            }
            JobKind::PostStart => c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()).is_some_and(|h| h.exec.is_some()),
            JobKind::PreStop => c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()).is_some_and(|h| h.exec.is_some()),
        };
        if exec {
            self.cfg.metrics.runtime_operation("exec_sync", took, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::tests::{manager, pod, running};
    use super::super::JobReport;
    use super::*;

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn excluded_spans_count_overlaps_once() {
        let b = Instant::now();
        let span = |s, e| Some((at(b, s), at(b, e)));
        assert_eq!(covered(None, None), Duration::ZERO);
        assert_eq!(covered(span(0, 4), None), Duration::from_secs(4));
        assert_eq!(covered(None, span(2, 3)), Duration::from_secs(1));
        assert_eq!(covered(span(0, 4), span(6, 9)), Duration::from_secs(7));
        assert_eq!(covered(span(6, 9), span(0, 4)), Duration::from_secs(7));
        assert_eq!(covered(span(0, 4), span(2, 9)), Duration::from_secs(9));
        assert_eq!(covered(span(0, 9), span(2, 3)), Duration::from_secs(9));
    }

    #[test]
    fn sli_leaves_out_pulls_and_init() {
        let b = Instant::now();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let now = created + Duration::from_secs(30);
        let mut s = Startup::new(false);
        assert_eq!(sli(created, now, &s), Duration::from_secs(30));
        s.pull_from = Some(at(b, 0));
        s.pull_to = Some(at(b, 10));
        s.init_from = Some(at(b, 5));
        s.init_to = Some(at(b, 15));
        assert_eq!(sli(created, now, &s), Duration::from_secs(15));
        // A pull still under way (no end yet) excludes nothing.
        s.pull_to = None;
        assert_eq!(sli(created, now, &s), Duration::from_secs(20));
        // A clock that went backwards gives zero, not a panic.
        assert_eq!(sli(now, created, &s), Duration::ZERO);
    }

    #[test]
    fn the_pod_loop_feeds_the_metrics() {
        let (mut m, _, root) = manager("metrics");
        let mut p = pod("u-met");
        let probe = serde_json::json!({"exec": {"command": ["true"]}});
        p.spec.containers[0].readiness_probe = Some(serde_json::from_value(probe).unwrap());
        m.sync(std::slice::from_ref(&p));
        {
            let rec = m.cfg.metrics.recorded();
            assert_eq!(rec.running_pods, 1);
            assert_eq!(rec.containers.running, 0);
            assert_eq!(rec.pod_worker["create"].count, 1);
            assert_eq!(rec.pod_start.count, 0);
        }

        // The container runs: phase Running, every container running.
        let r = running(&mut m, "u-met");
        m.sync(std::slice::from_ref(&p));
        {
            let rec = m.cfg.metrics.recorded();
            assert_eq!(rec.containers.running, 1, "{:?}", *rec);
            assert_eq!(rec.pod_worker["sync"].count, 1, "{:?}", *rec);
            assert_eq!(rec.pod_start.count, 1, "{:?}", *rec);
            assert_eq!(rec.pod_start_sli.count, 1, "{:?}", *rec);
        }
        assert!(m.pods["u-met"].startup.is_none(), "recorded once");

        let took = Duration::from_millis(4);
        m.report(JobReport { id: r.id.clone(), kind: JobKind::Probe(Kind::Readiness), outcome: Outcome::Success, took });
        {
            let rec = m.cfg.metrics.recorded();
            let target = ProbeTarget {
                container: "web".into(),
                namespace: "default".into(),
                pod: "web-node1".into(),
                pod_uid: "u-met".into(),
                probe_type: "Readiness",
            };
            assert_eq!(rec.probes.len(), 1, "{:?}", *rec);
            assert_eq!((rec.probes[&target].successful, rec.probes[&target].failed), (1, 0));
            assert_eq!(rec.runtime.len(), 1, "{:?}", *rec);
            assert_eq!(rec.runtime["exec_sync"].total, 1);
        }

        // The pod goes (its container has exited): its series go with it.
        let now = crate::api::time::now();
        let exited = Observed::Exited { exit_code: 0, reason: "Completed".into(), message: String::new(), started_at: None, finished_at: now };
        m.exited.insert(r.id.clone(), exited);
        m.sync(&[]);
        m.sync(&[]);
        assert!(m.pods.is_empty());
        assert!(m.cfg.metrics.recorded().probes.is_empty());
        assert_eq!(m.cfg.metrics.recorded().running_pods, 0);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn adopted_or_already_started_pods_have_no_startup_latency() {
        let (mut m, _, root) = manager("metrics-adopted");
        let mut p = pod("u-old");
        p.status = Some(crate::api::PodStatus { start_time: Some("2024-05-01T12:00:00Z".into()), ..Default::default() });
        m.sync(std::slice::from_ref(&p));
        running(&mut m, "u-old");
        m.sync(std::slice::from_ref(&p));
        let rec = m.cfg.metrics.recorded();
        // First seen by this picolet: its start counts; the SLI does not (another kubelet started it).
        assert_eq!(rec.pod_start.count, 1, "{:?}", *rec);
        assert_eq!(rec.pod_start_sli.count, 0, "{:?}", *rec);
        drop(rec);
        let _ = std::fs::remove_dir_all(root);
    }
}
