//! The pod manager's health side: probes of running containers, postStart
//! and preStop hooks, and killing one container gracefully (preStop, stop
//! signal, SIGKILL at the grace deadline).
//!
//! The manager never waits here: due probes and hooks become `Job`s that
//! main runs as tasks on the executor (probe::run), and their `JobReport`s
//! come back through `Manager::report` before the next pass. What a result
//! means is decided by the pure `probe::state`; this file only wires it to
//! containers, logs (`Unhealthy`, `Killing`, `FailedPostStartHook`,
//! `FailedPreStopHook`) and the runtime.

use super::{full_name, Manager};
use crate::api::Container;
use crate::pod::events as ev;
use crate::probe::run::Target;
use crate::probe::state::{ContainerProbes, Kind, Verdict};
use crate::probe::{self, Action, Outcome};
use crate::runtime::record::{self, Record};
use crate::runtime::runc::Runtime;
use std::time::{Duration, Instant};

/// Upstream gives a container at least this long after its stop signal when
/// a preStop hook used up the grace period.
const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JobKind {
    Probe(Kind),
    PostStart,
    PreStop,
}

/// A probe or hook to run, for main to spawn.
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub action: Action,
    pub target: Target,
    pub timeout: Option<Duration>,
}

/// How a job ended, handed back to `Manager::report`.
pub struct JobReport {
    pub id: String,
    pub kind: JobKind,
    pub outcome: Outcome,
    /// How long the run took (for the probe and exec metrics).
    pub took: Duration,
}

/// One container being stopped.
pub(super) struct Kill {
    pub deadline: Instant,
    pub pre_stop_running: bool,
    pub signalled: bool,
    pub killed: bool,
}

impl<R: Runtime> Manager<R> {
    /// Takes the probes and hooks due to run.
    pub fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    pub(super) fn container_of(&self, r: &Record) -> Option<Container> {
        let p = &self.pods.get(&r.pod_uid)?.pod;
        p.spec.init_containers.iter().chain(&p.spec.containers).find(|c| c.name == r.container).cloned()
    }

    fn target(&self, r: &Record) -> Target {
        let (runtime, runtime_root) = self.runtime.exec_paths();
        let netns = self.pods.get(&r.pod_uid).and_then(|p| p.sandbox.as_ref()).and_then(|(s, _)| s.netns.clone());
        Target { id: r.id.clone(), netns, runtime, runtime_root, dir: record::dir(&self.cfg.root, &r.id) }
    }

    fn pod_ip(&self, r: &Record) -> String {
        let Some(p) = self.pods.get(&r.pod_uid) else { return String::new() };
        if p.pod.spec.host_network {
            // Probes of hostNetwork pods aim at the node; loopback reaches
            // listeners bound to 127.0.0.1 too.
            return String::new();
        }
        p.sandbox.as_ref().map(|(s, _)| s.pod_ip.clone()).unwrap_or_default()
    }

    /// Right after a start: run postStart if there is one. The container is
    /// reported Running (and probed) only once it returns.
    pub(super) fn after_start(&mut self, r: &Record) {
        let Some(c) = self.container_of(r) else { return };
        let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else { return };
        let action = probe::hook_action(h, &c, &self.pod_ip(r));
        self.jobs.push(Job { id: r.id.clone(), kind: JobKind::PostStart, action, target: self.target(r), timeout: None });
        self.post_start.insert(r.id.clone());
    }

    /// Launches the due probes of a pod's running containers and drives
    /// the kills in progress.
    pub(super) fn probe_pod(&mut self, uid: &str, now: Instant) {
        let running: Vec<Record> = self.running_attempts(uid);
        for r in running {
            if self.post_start.contains(&r.id) || self.kills.contains_key(&r.id) {
                continue;
            }
            let Some(c) = self.container_of(&r) else { continue };
            if !self.probes.contains_key(&r.id) {
                for p in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe].into_iter().flatten() {
                    if p.handler.http_get.as_ref().is_some_and(|g| g.scheme.eq_ignore_ascii_case("HTTPS")) {
                        log::warn!("container {} of pod {}: HTTPS probe checked as a TCP connect (no TLS client)", c.name, r.pod_name);
                    }
                }
            }
            let tracker = self.probes.entry(r.id.clone()).or_insert_with(|| ContainerProbes::new(&c, now));
            for (kind, timeout) in tracker.due(now) {
                let h = match kind {
                    Kind::Startup => &c.startup_probe,
                    Kind::Liveness => &c.liveness_probe,
                    Kind::Readiness => &c.readiness_probe,
                };
                let Some(p) = h else { continue };
                let action = probe::probe_action(&p.handler, &c, &self.pod_ip(&r));
                self.jobs.push(Job { id: r.id.clone(), kind: JobKind::Probe(kind), action, target: self.target(&r), timeout: Some(timeout) });
            }
        }
        self.drive_kills(uid, now);
    }

    /// True when a steady pod still needs `probe_pod`: it has probes, or a
    /// postStart hook or a kill in progress.
    pub(super) fn needs_health_pass(&self, uid: &str) -> bool {
        let st = &self.pods[uid];
        let spec = &st.pod.spec;
        let probed = spec
            .init_containers
            .iter()
            .chain(&spec.containers)
            .any(|c| c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some());
        probed || st.attempts.values().filter_map(|v| v.last()).any(|r| self.kills.contains_key(&r.id) || self.post_start.contains(&r.id))
    }

    /// Latest attempts of a pod's containers that are running.
    pub(super) fn running_attempts(&mut self, uid: &str) -> Vec<Record> {
        let latest: Vec<Record> = self.pods[uid].attempts.values().filter_map(|v| v.last().cloned()).collect();
        latest
            .into_iter()
            .filter(|r| matches!(self.observe(r), super::status::Observed::Running { .. }))
            .collect()
    }

    /// A probe or hook finished.
    pub fn report(&mut self, rep: JobReport) {
        let now = Instant::now();
        let Some(r) = self.record_by_id(&rep.id) else { return };
        let name = format!("container {} of pod {}/{}", r.container, r.pod_namespace, r.pod_name);
        self.health_changed.insert(r.pod_uid.clone());
        match rep.kind {
            JobKind::Probe(kind) => {
                if self.probes.contains_key(&rep.id) {
                    self.probe_event(&r, kind, &rep.outcome);
                    self.job_metrics(&r, rep.kind, &rep.outcome, rep.took);
                }
                let Some(tracker) = self.probes.get_mut(&rep.id) else { return };
                // Log changes, not every period (SD cards wear).
                let key = format!("{}/{}", rep.id, kind.name());
                match &rep.outcome {
                    Outcome::Failure(msg) if self.probe_failures.get(&key) == Some(msg) => {
                        log::debug!("Unhealthy: {name}: {} probe failed: {msg}", kind.name())
                    }
                    Outcome::Failure(msg) => {
                        log::info!("Unhealthy: {name}: {} probe failed: {msg}", kind.name());
                        self.probe_failures.insert(key, msg.clone());
                    }
                    Outcome::Warning(msg) => log::warn!("{name}: {} probe warning: {msg}", kind.name()),
                    Outcome::Success => {
                        if self.probe_failures.remove(&key).is_some() {
                            log::info!("{name}: {} probe succeeded again", kind.name());
                        }
                    }
                }
                if let Verdict::Kill(k) = tracker.record(kind, rep.outcome.ok(), now) {
                    let why = format!("failed {} probe, will be restarted", k.name().to_lowercase());
                    log::info!("Killing: {name} {why}");
                    let grace = self.probe_grace(&r, k);
                    let message = self.probe_kill_message(&r, k);
                    self.begin_kill_with(&r, grace, now, message);
                }
            }
            JobKind::PostStart => {
                self.job_metrics(&r, rep.kind, &rep.outcome, rep.took);
                if !self.post_start.remove(&rep.id) {
                    return;
                }
                if let Outcome::Failure(msg) = &rep.outcome {
                    log::warn!("FailedPostStartHook: {name}: {msg}");
                    // As upstream, the hook's output stays out of events (secrets).
                    let message = "PostStartHook failed".to_string();
                    self.event(&r.pod_uid, Some(&r.container), true, ev::FAILED_POST_START_HOOK, message);
                    self.kill_messages.insert(rep.id.clone(), format!("PostStartHook failed: {msg}"));
                    let grace = self.pod_grace(&r);
                    self.begin_kill_with(&r, grace, now, "FailedPostStartHook".into());
                }
            }
            JobKind::PreStop => {
                self.job_metrics(&r, rep.kind, &rep.outcome, rep.took);
                if let Outcome::Failure(msg) = &rep.outcome {
                    log::warn!("FailedPreStopHook: {name}: {msg}");
                    self.event(&r.pod_uid, Some(&r.container), true, ev::FAILED_PRE_STOP_HOOK, "PreStopHook failed".into());
                }
                if let Some(k) = self.kills.get_mut(&rep.id) {
                    k.pre_stop_running = false;
                }
                self.drive_kills(&r.pod_uid, now);
            }
        }
    }

    fn record_by_id(&self, id: &str) -> Option<Record> {
        self.pods.values().flat_map(|p| p.attempts.values()).filter_map(|v| v.last()).find(|r| r.id == id).cloned()
    }

    fn pod_grace(&self, r: &Record) -> Duration {
        let secs = self.pods.get(&r.pod_uid).and_then(|p| p.pod.spec.termination_grace_period_seconds).unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    fn probe_grace(&self, r: &Record, k: Kind) -> Duration {
        let c = self.container_of(r);
        let p = c.as_ref().and_then(|c| if k == Kind::Startup { c.startup_probe.as_ref() } else { c.liveness_probe.as_ref() });
        match p.and_then(|p| p.termination_grace_period_seconds) {
            Some(s) => Duration::from_secs(s.max(0) as u64),
            None => self.pod_grace(r),
        }
    }

    /// The Killing message for a container a probe failed, as upstream.
    fn probe_kill_message(&self, r: &Record, k: Kind) -> String {
        let c = self.container_of(r);
        let sidecar = r.init && c.as_ref().is_some_and(|c| c.restart_policy.as_deref() == Some("Always"));
        let restart = self.pods.get(&r.pod_uid).is_some_and(|p| p.pod.spec.restart_policy != "Never");
        ev::probe_kill(&r.container, &k.name().to_lowercase(), sidecar, restart)
    }

    /// Starts stopping one container: its preStop hook first (if any and it
    /// ran), then the stop signal, SIGKILL at the deadline.
    pub(super) fn begin_kill(&mut self, r: &Record, grace: Duration, now: Instant) {
        self.begin_kill_with(r, grace, now, ev::stopping(&r.container));
    }

    /// `begin_kill`, saying why in the Killing event.
    pub(super) fn begin_kill_with(&mut self, r: &Record, grace: Duration, now: Instant, message: String) {
        if self.kills.contains_key(&r.id) {
            return;
        }
        self.event(&r.pod_uid, Some(&r.container), false, ev::KILLING, message);
        self.probes.remove(&r.id);
        self.post_start.remove(&r.id);
        let mut kill = Kill { deadline: now + grace, pre_stop_running: false, signalled: false, killed: false };
        if r.started_at.is_none() {
            let _ = self.runtime.kill(&r.id, "KILL");
            kill.signalled = true;
            kill.killed = true;
        } else if let Some(c) = self.container_of(r) {
            if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                let action = probe::hook_action(h, &c, &self.pod_ip(r));
                self.jobs.push(Job { id: r.id.clone(), kind: JobKind::PreStop, action, target: self.target(r), timeout: Some(grace) });
                kill.pre_stop_running = true;
            }
        }
        self.kills.insert(r.id.clone(), kill);
        self.drive_kills(&r.pod_uid, now);
    }

    /// Sends the stop signal once preStop is done (or its time is up) and
    /// SIGKILL once the grace period is over; forgets exited containers.
    pub(super) fn drive_kills(&mut self, uid: &str, now: Instant) {
        let Some(st) = self.pods.get(uid) else { return };
        let pod = full_name(&st.pod);
        let latest: Vec<Record> = st.attempts.values().filter_map(|v| v.last().cloned()).collect();
        for r in latest {
            if !self.kills.contains_key(&r.id) {
                continue;
            }
            if matches!(self.observe(&r), super::status::Observed::Exited { .. }) {
                self.kills.remove(&r.id);
                continue;
            }
            let k = self.kills.get_mut(&r.id).unwrap();
            if !k.signalled && (!k.pre_stop_running || now >= k.deadline) {
                k.signalled = true;
                if now >= k.deadline {
                    k.deadline = now + MIN_GRACE_AFTER_HOOK;
                }
                let sig = if r.stop_signal.is_empty() { "SIGTERM" } else { r.stop_signal.as_str() };
                if let Err(e) = self.runtime.kill(&r.id, sig) {
                    log::warn!("pod {pod}: stopping {}: {e}", r.container);
                }
            } else if k.signalled && !k.killed && now >= k.deadline {
                k.killed = true;
                log::info!("pod {pod}: container {}: grace period over, killing", r.container);
                let _ = self.runtime.kill(&r.id, "KILL");
            }
        }
    }

    /// Forgets the health state of an attempt that ended or was released.
    pub(super) fn forget_health(&mut self, id: &str) {
        self.probes.remove(id);
        self.post_start.remove(id);
        let prefix = format!("{id}/");
        self.probe_failures.retain(|k, _| !k.starts_with(&prefix));
        self.kills.remove(id);
    }

    /// (started, ready, postStart still running) of a running attempt.
    pub(super) fn health_view(&self, id: &str) -> (bool, bool, bool) {
        let pending = self.post_start.contains(id);
        match self.probes.get(id) {
            Some(p) => (p.started(), p.ready() && !self.kills.contains_key(id), pending),
            // Not probed yet: a readiness or startup probe starts as failing.
            None => {
                let c = self.record_by_id(id).and_then(|r| self.container_of(&r));
                let started = c.as_ref().map_or(true, |c| c.startup_probe.is_none());
                let ready = started && c.as_ref().map_or(true, |c| c.readiness_probe.is_none());
                (started && !pending, ready && !pending && !self.kills.contains_key(id), pending)
            }
        }
    }
}
