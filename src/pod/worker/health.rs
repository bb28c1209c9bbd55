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
//!
//! What a restart of picolet must not forget is kept per container in
//! `health.json` beside its record (see [`Saved`]): a postStart that has not
//! returned, a kill under way with its wall-clock deadline, and why picolet
//! killed the container. Kubernetes delivers hooks at least once, so a hook
//! cut short by the restart runs again; a kill keeps its deadline.

use super::{full_name, Manager};
use crate::api::time;
use crate::api::Container;
use crate::pod::events as ev;
use crate::probe::run::Target;
use crate::probe::state::{ContainerProbes, Kind, Verdict};
use crate::probe::{self, Action, Outcome};
use crate::runtime::record::{self, Record};
use crate::runtime::runc::Runtime;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Kill {
    pub deadline: Instant,
    pub pre_stop_running: bool,
    pub signalled: bool,
    pub killed: bool,
}

/// One container's `health.json`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Saved {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    post_start_pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kill: Option<SavedKill>,
    /// The terminated message picolet gives the attempt (a failed postStart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedKill {
    /// Unix milliseconds: an Instant means nothing to the next process.
    deadline_ms: u64,
    pre_stop_running: bool,
    signalled: bool,
    killed: bool,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl SavedKill {
    fn of(k: &Kill, now: Instant, wall: SystemTime) -> SavedKill {
        let deadline = time::wall_deadline(wall, k.deadline.saturating_duration_since(now));
        SavedKill { deadline_ms: unix_ms(deadline), pre_stop_running: k.pre_stop_running, signalled: k.signalled, killed: k.killed }
    }

    /// Back to a Kill; a deadline that passed while picolet was away is now.
    fn restore(&self, now: Instant, wall: SystemTime) -> Kill {
        let left = Duration::from_millis(self.deadline_ms.saturating_sub(unix_ms(wall)));
        Kill { deadline: time::deadline(now, left), pre_stop_running: self.pre_stop_running, signalled: self.signalled, killed: self.killed }
    }
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
        self.save_health(&r.id);
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
        let latest = self.pods[uid].latest_records();
        latest.into_iter().filter(|r| matches!(self.observe(r), super::status::Observed::Running { .. })).collect()
    }

    /// Latest attempts of a pod's containers that have not exited: running,
    /// or created and not started yet.
    pub(super) fn unexited_attempts(&mut self, uid: &str) -> Vec<Record> {
        let latest = self.pods[uid].latest_records();
        latest.into_iter().filter(|r| !matches!(self.observe(r), super::status::Observed::Exited { .. })).collect()
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
                self.save_health(&rep.id);
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
                    self.save_health(&rep.id);
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
        time::seconds(secs)
    }

    fn probe_grace(&self, r: &Record, k: Kind) -> Duration {
        let c = self.container_of(r);
        let p = c.as_ref().and_then(|c| if k == Kind::Startup { c.startup_probe.as_ref() } else { c.liveness_probe.as_ref() });
        match p.and_then(|p| p.termination_grace_period_seconds) {
            Some(s) => time::seconds(s),
            None => self.pod_grace(r),
        }
    }

    /// The Killing message for a container a probe failed, as upstream.
    fn probe_kill_message(&self, r: &Record, k: Kind) -> String {
        let c = self.container_of(r);
        let sidecar = r.init && c.as_ref().is_some_and(|c| c.is_sidecar());
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
        let mut kill = Kill { deadline: time::deadline(now, grace), pre_stop_running: false, signalled: false, killed: false };
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
        self.save_health(&r.id);
        self.drive_kills(&r.pod_uid, now);
    }

    /// Stops a pod's `running` containers in upstream's order, all by
    /// `deadline`: the regular ones (app and plain init containers) first;
    /// once none of them runs, the sidecars, last declared first, each once
    /// the ones declared after it have exited (so an app draining on
    /// shutdown keeps its proxy). Called each pass until all are gone; a
    /// container already being killed keeps its own deadline.
    pub(super) fn stop_in_order(&mut self, uid: &str, running: &[Record], deadline: Instant, now: Instant) {
        let next: Vec<Record> = {
            let spec = &self.pods[uid].pod.spec;
            // A sidecar's place among the init containers; None for the rest.
            let sidecar_rank = |r: &Record| r.init.then(|| spec.init_containers.iter().position(|c| c.name == r.container && c.is_sidecar())).flatten();
            let (sidecars, regular): (Vec<&Record>, Vec<&Record>) = running.iter().partition(|r| sidecar_rank(r).is_some());
            if regular.is_empty() {
                sidecars.into_iter().max_by_key(|r| sidecar_rank(r)).cloned().into_iter().collect()
            } else {
                regular.into_iter().cloned().collect()
            }
        };
        for r in next {
            self.begin_kill(&r, deadline.saturating_duration_since(now), now);
        }
    }

    /// Sends the stop signal once preStop is done (or its time is up) and
    /// SIGKILL once the grace period is over; forgets exited containers.
    pub(super) fn drive_kills(&mut self, uid: &str, now: Instant) {
        self.launch_restored_hooks(uid);
        let Some(st) = self.pods.get(uid) else { return };
        let pod = full_name(&st.pod);
        for r in st.latest_records() {
            if !self.kills.contains_key(&r.id) {
                continue;
            }
            if matches!(self.observe(&r), super::status::Observed::Exited { .. }) {
                self.kills.remove(&r.id);
                self.save_health(&r.id);
                continue;
            }
            let k = self.kills.get_mut(&r.id).unwrap();
            let before = k.clone();
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
            if self.kills.get(&r.id) != Some(&before) {
                self.save_health(&r.id);
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
        self.save_health(id);
    }

    /// Writes (or removes, when there is nothing) a container's `health.json`.
    pub(super) fn save_health(&self, id: &str) {
        let dir = record::dir(&self.cfg.root, id);
        let saved = Saved {
            post_start_pending: self.post_start.contains(id),
            kill: self.kills.get(id).map(|k| SavedKill::of(k, Instant::now(), SystemTime::now())),
            message: self.kill_messages.get(id).cloned(),
        };
        let path = dir.join("health.json");
        let result = if saved == Saved::default() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        } else if !dir.is_dir() {
            // The attempt's directory is gone (released): nothing to keep.
            Ok(())
        } else {
            serde_json::to_vec(&saved).map_err(std::io::Error::other).and_then(|b| crate::hostfs::write_atomic(&path, &b))
        };
        if let Err(e) = result {
            log::warn!("container {id}: cannot save {}: {e}", path.display());
        }
    }

    /// At start-up: takes back what a previous picolet saved for a recovered
    /// attempt. Hooks it left running are queued to run again.
    pub(super) fn restore_health(&mut self, r: &Record) {
        let path = record::dir(&self.cfg.root, &r.id).join("health.json");
        let Ok(bytes) = std::fs::read(&path) else { return };
        let saved: Saved = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("container {}: ignoring unreadable {}: {e}", r.id, path.display());
                return;
            }
        };
        if let Some(m) = saved.message {
            self.kill_messages.insert(r.id.clone(), m);
        }
        if saved.post_start_pending {
            self.post_start.insert(r.id.clone());
            self.rerun_hooks.push((r.id.clone(), JobKind::PostStart));
        }
        if let Some(k) = saved.kill {
            let now = Instant::now();
            let mut kill = k.restore(now, SystemTime::now());
            if kill.pre_stop_running && !kill.signalled {
                if kill.deadline > now {
                    self.rerun_hooks.push((r.id.clone(), JobKind::PreStop));
                } else {
                    // Its time ran out while picolet was away: on to the signal.
                    kill.pre_stop_running = false;
                }
            }
            log::info!("container {} of pod {}: resuming its stop ({}s left)", r.container, r.pod_name, kill.deadline.saturating_duration_since(Instant::now()).as_secs());
            self.kills.insert(r.id.clone(), kill);
        }
    }

    /// Queues the hooks `restore_health` found cut short, for a pod whose
    /// sandbox (pod IP) is known again or which is being stopped.
    fn launch_restored_hooks(&mut self, uid: &str) {
        if self.rerun_hooks.is_empty() {
            return;
        }
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rerun_hooks)
            .into_iter()
            .partition(|(id, _)| self.record_by_id(id).is_some_and(|r| r.pod_uid == uid));
        self.rerun_hooks = rest;
        let now = Instant::now();
        for (id, kind) in mine {
            let Some(r) = self.record_by_id(&id) else { continue };
            if !matches!(self.observe(&r), super::status::Observed::Running { .. }) {
                // Exited while picolet was away: no hook to finish.
                self.post_start.remove(&id);
                self.save_health(&id);
                continue;
            }
            let Some(c) = self.container_of(&r) else { continue };
            let lifecycle = c.lifecycle.as_ref();
            let (hook, timeout) = match kind {
                JobKind::PostStart => (lifecycle.and_then(|l| l.post_start.as_ref()), None),
                _ => (lifecycle.and_then(|l| l.pre_stop.as_ref()), self.kills.get(&id).map(|k| k.deadline.saturating_duration_since(now))),
            };
            let Some(h) = hook else { continue };
            log::info!("container {} of pod {}: running its {} hook again (cut short by a restart)", r.container, r.pod_name, if kind == JobKind::PostStart { "postStart" } else { "preStop" });
            let action = probe::hook_action(h, &c, &self.pod_ip(&r));
            self.jobs.push(Job { id, kind, action, target: self.target(&r), timeout });
        }
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

#[cfg(test)]
mod tests {
    use super::super::events::tests::{manager, manager_in, pod, running, Fake};
    use super::*;

    fn hooked(uid: &str) -> crate::api::Pod {
        let mut p = pod(uid);
        let hooks = serde_json::json!({"postStart": {"exec": {"command": ["x"]}}, "preStop": {"exec": {"command": ["y"]}}});
        p.spec.containers[0].lifecycle = Some(serde_json::from_value(hooks).unwrap());
        p
    }

    /// A manager with pod `uid` (both hooks) synced and its container
    /// running, the container's record on disk as a start would leave it.
    fn hooked_and_running(name: &str, uid: &str) -> (Manager<Fake>, std::path::PathBuf, crate::api::Pod, Record) {
        let (mut m, _, root) = manager(name);
        let p = hooked(uid);
        m.sync(std::slice::from_ref(&p));
        let r = running(&mut m, uid);
        r.save(&root).unwrap();
        (m, root, p, r)
    }

    #[test]
    fn saved_kill_keeps_its_wall_clock_deadline() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let k = Kill { deadline: now + Duration::from_secs(30), pre_stop_running: true, signalled: false, killed: false };
        let saved = SavedKill::of(&k, now, wall);
        // The next picolet comes 10 s later: 20 s are left.
        let back = saved.restore(now, wall + Duration::from_secs(10));
        assert_eq!(back.deadline, now + Duration::from_secs(20));
        assert!(back.pre_stop_running && !back.signalled);
        // Later than the deadline: it is due now.
        assert_eq!(saved.restore(now, wall + Duration::from_secs(60)).deadline, now);
    }

    /// A deadline from a file picolet wrote (or someone edited) saturates too.
    #[test]
    fn a_saved_kill_far_in_the_future_restores() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let saved = SavedKill { deadline_ms: u64::MAX, pre_stop_running: false, signalled: true, killed: false };
        assert_eq!(saved.restore(now, wall).deadline, now + time::FAR);
        let k = Kill { deadline: now + time::FAR, pre_stop_running: false, signalled: true, killed: false };
        assert!(SavedKill::of(&k, now, wall).deadline_ms > unix_ms(wall));
    }

    /// Grace periods are API input of any int64 (the API server takes
    /// i64::MAX, and `kubectl delete --grace-period` sets the deletion's):
    /// the pod is stopped as any other, its SIGKILL deadline far ahead; a
    /// negative one is no grace (beyond the 2 s after a late signal).
    #[test]
    fn grace_periods_of_any_int64_stop_the_pod() {
        let cases = [("spec", Some(i64::MAX), None, true), ("delete", Some(30), Some(i64::MAX), true), ("negative", Some(-5), Some(i64::MIN), false)];
        for (label, spec, deletion, far) in cases {
            let uid = format!("u-grace-{label}");
            let (mut m, fake, root) = manager(&format!("grace-{label}"));
            let mut p = pod(&uid);
            p.spec.termination_grace_period_seconds = spec;
            m.sync(std::slice::from_ref(&p));
            let r = running(&mut m, &uid);
            r.save(&root).unwrap();
            p.metadata.deletion_timestamp = Some("2024-05-01T12:00:00Z".into());
            p.metadata.deletion_grace_period_seconds = deletion;
            let before = Instant::now();
            m.sync(std::slice::from_ref(&p));
            assert!(fake.0.borrow().contains(&format!("kill {} SIGTERM", r.id)), "{label}: {:?}", fake.0.borrow());
            let deadline = m.kills[&r.id].deadline;
            assert_eq!(deadline >= before + time::FAR, far, "{label}");
            let _ = std::fs::remove_dir_all(root);
        }
    }

    /// A liveness probe's own terminationGracePeriodSeconds, as large as
    /// the API takes it.
    #[test]
    fn a_probe_grace_period_of_i64_max_saturates() {
        let (mut m, root, _, r) = hooked_and_running("grace-probe", "u-gp");
        let probe = serde_json::json!({"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": i64::MAX});
        let st = m.pods.get_mut("u-gp").unwrap();
        let mut p = crate::api::Pod::clone(&st.pod);
        p.spec.containers[0].liveness_probe = Some(serde_json::from_value(probe).unwrap());
        st.pod = std::rc::Rc::new(p);
        let grace = m.probe_grace(&r, Kind::Liveness);
        assert_eq!(grace, time::seconds(i64::MAX));
        let now = Instant::now();
        m.begin_kill(&r, grace, now);
        assert_eq!(m.kills[&r.id].deadline, now + time::FAR);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_kill_and_a_post_start_outlive_the_manager() {
        let (mut m, root, p, r) = hooked_and_running("health-restart", "u-hr");
        let path = record::dir(&root, &r.id).join("health.json");

        // A postStart under way when picolet goes: the next one runs it again
        // and the container is not started meanwhile.
        m.after_start(&r);
        assert!(path.exists());
        drop(m);
        let (mut m, _, _) = manager_in(root.clone());
        m.sync(std::slice::from_ref(&p));
        let jobs: Vec<(String, JobKind)> = m.take_jobs().into_iter().map(|j| (j.id, j.kind)).collect();
        assert_eq!(jobs, [(r.id.clone(), JobKind::PostStart)]);
        assert_eq!(m.health_view(&r.id), (false, false, true));

        // It fails: the kill (its preStop, 30 s) and the message are kept too.
        m.report(JobReport { id: r.id.clone(), kind: JobKind::PostStart, outcome: Outcome::Failure("boom".into()), took: Duration::ZERO });
        assert!(m.kills.contains_key(&r.id));
        drop(m);
        let (mut m, fake2, _) = manager_in(root.clone());
        assert_eq!(m.kill_messages.get(&r.id).map(String::as_str), Some("PostStartHook failed: boom"));
        let left = m.kills[&r.id].deadline.saturating_duration_since(Instant::now());
        assert!(left > Duration::ZERO && left <= Duration::from_secs(30), "{left:?}");
        m.sync(std::slice::from_ref(&p));
        let jobs: Vec<(String, JobKind)> = m.take_jobs().into_iter().map(|j| (j.id, j.kind)).collect();
        assert_eq!(jobs, [(r.id.clone(), JobKind::PreStop)], "the preStop cut short runs again");
        assert!(!fake2.0.borrow().iter().any(|c| c.contains("SIGTERM")), "no signal before preStop returns");

        // preStop returns: the stop signal goes, and that is saved as well.
        m.report(JobReport { id: r.id.clone(), kind: JobKind::PreStop, outcome: Outcome::Success, took: Duration::ZERO });
        assert!(fake2.0.borrow().contains(&format!("kill {} SIGTERM", r.id)));
        drop(m);
        let (m, _, _) = manager_in(root.clone());
        assert!(m.kills[&r.id].signalled && m.rerun_hooks.is_empty());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_pre_stop_whose_time_ran_out_meanwhile_is_not_run_again() {
        let (mut m, root, p, r) = hooked_and_running("health-late", "u-hl");
        m.begin_kill(&r, Duration::from_secs(30), Instant::now());
        drop(m);
        // picolet was away longer than the grace period.
        let path = record::dir(&root, &r.id).join("health.json");
        let mut saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        saved["kill"]["deadlineMs"] = 1.into();
        std::fs::write(&path, saved.to_string()).unwrap();
        let (mut m, fake, _) = manager_in(root.clone());
        m.sync(std::slice::from_ref(&p));
        assert!(m.take_jobs().iter().all(|j| j.kind != JobKind::PreStop), "no preStop with no time left");
        assert!(fake.0.borrow().contains(&format!("kill {} SIGTERM", r.id)), "{:?}", fake.0.borrow());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn nothing_saved_once_nothing_is_pending() {
        let (mut m, root, _, r) = hooked_and_running("health-clean", "u-hc");
        m.after_start(&r);
        m.report(JobReport { id: r.id.clone(), kind: JobKind::PostStart, outcome: Outcome::Success, took: Duration::ZERO });
        assert!(!record::dir(&root, &r.id).join("health.json").exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
