//! The pod manager's side of node-pressure eviction and garbage collection
//! (upstream's eviction manager loop and image/container GC), driven by
//! [`Manager::housekeep`] from the pod loop:
//!
//! - every 5 minutes (first after one monitoring interval), image GC by the
//!   usage thresholds and a sweep of orphaned blobs;
//! - every 10 s, the eviction readings: thresholds met, MemoryPressure /
//!   DiskPressure published for the node status; for a starved disk signal
//!   first dead containers' writable layers and every unused image, then a
//!   fresh reading; if still starved, one pod evicted: the ranked first
//!   that is not critical ends Failed, reason Evicted, upstream's message,
//!   an `Evicted` event, its containers stopped with no grace period (the
//!   runtime's 2 s minimum), then its writable layers and volumes removed.
//!
//! The decisions are node::eviction's (pure); here they meet the pods.

use super::health::Kill;
use super::status::Observed;
use super::{full_name, Manager};
use crate::api::Pod;
use crate::image::gc::{self, ImageGc, Statvfs};
use crate::node::eviction::{self, rank, read::Reader, Conditions, Observations, Threshold, Thresholds};
use crate::node::eviction::Pressure;
use crate::pod::events as ev;
use crate::runtime::record::{self, Record};
use crate::runtime::runc::Runtime;
use crate::volume;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An evicted pod's clean-up state.
pub(super) struct Eviction {
    /// Writable layers and volumes removed (once its containers are gone).
    cleaned: bool,
}

/// Eviction and GC state, owned by the pod loop.
pub struct Housekeeping {
    thresholds: Thresholds,
    conditions: Conditions,
    reader: Reader,
    image_gc: ImageGc,
    /// What the node status reports (node::agent reads it).
    pressure: Arc<Mutex<Pressure>>,
    next_monitor: Instant,
    next_image_gc: Instant,
}

impl Housekeeping {
    pub fn new(thresholds: Thresholds, transition: Duration, reader: Reader, policy: gc::Policy, pressure: Arc<Mutex<Pressure>>) -> Housekeeping {
        let now = Instant::now();
        if thresholds.0.is_empty() {
            log::info!("no hard eviction thresholds: pods are never evicted");
        } else {
            log::info!("hard eviction thresholds: {}", thresholds.flag_value());
        }
        Housekeeping {
            thresholds,
            conditions: Conditions::new(transition),
            reader,
            image_gc: ImageGc::new(policy),
            pressure,
            next_monitor: now,
            // Pods recovered or starting have their containers by then.
            next_image_gc: now + eviction::MONITOR_INTERVAL,
        }
    }

    /// Publishes the conditions; logs when one changes.
    fn publish(&self, p: Pressure, met: &[Threshold], obs: &Observations) {
        let mut cur = self.pressure.lock().unwrap_or_else(|e| e.into_inner());
        let why = |memory: bool| {
            met.iter()
                .filter(|t| t.signal.is_memory() == memory)
                .filter_map(|t| obs.get(t.signal).map(|r| format!("{} {} < {}", t.signal, show(t, r.available), show(t, t.quantity(r.capacity)))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, was, now, memory) in [("MemoryPressure", cur.memory, p.memory, true), ("DiskPressure", cur.disk, p.disk, false)] {
            match (was, now) {
                (false, true) => log::warn!("node condition {name} is now True: {}", why(memory)),
                (true, false) => log::info!("node condition {name} is now False"),
                _ => {}
            }
        }
        *cur = p;
    }
}

fn show(t: &Threshold, v: i64) -> String {
    if t.signal.is_inodes() {
        eviction::format_decimal(v)
    } else {
        eviction::format_binary(v)
    }
}

/// Marks a pod state evicted with `message` (also when recovered from its
/// checkpoint: a restart does not bring an evicted pod back).
pub(super) fn restore(st: &mut super::PodState, message: String) {
    st.failed = Some(message);
    st.eviction = Some(Eviction { cleaned: false });
    // Nothing starts again: no container is waiting any more.
    st.waiting.clear();
}

impl<R: Runtime> Manager<R> {
    /// One housekeeping step at `now` (cheap when nothing is due).
    pub fn housekeep(&mut self, hk: &mut Housekeeping, now: Instant) {
        if now >= hk.next_image_gc {
            hk.next_image_gc = now + gc::PERIOD;
            let in_use = self.images_in_use();
            let fs = Statvfs(self.images.root.clone());
            if let Err(e) = hk.image_gc.collect(&self.images, &fs, &in_use, now) {
                log::warn!("image GC failed: {e}");
            }
            if let Err(e) = self.images.sweep(gc::ORPHAN_AGE) {
                log::warn!("image store sweep failed: {e}");
            }
        }
        if now < hk.next_monitor {
            return;
        }
        hk.next_monitor = now + eviction::MONITOR_INTERVAL;
        let obs = hk.reader.observe();
        let met = eviction::thresholds_met(&hk.thresholds, &obs);
        let pressure = hk.conditions.update(&met, now);
        hk.publish(pressure, &met, &obs);
        let Some(starved) = eviction::starved(&met) else { return };
        let (obs, met) = if starved.signal.is_memory() {
            (obs, met)
        } else {
            // Node-level resources first, as upstream: dead containers, unused images.
            let layers = self.remove_dead_containers();
            let in_use = self.images_in_use();
            match hk.image_gc.delete_unused(&self.images, &in_use, now) {
                Ok(r) if !r.deleted.is_empty() || layers > 0 => {
                    log::info!("{}: removed {layers} dead container layer(s) and {} unused image(s)", starved.signal, r.deleted.len())
                }
                Ok(_) => {}
                Err(e) => log::warn!("image GC under disk pressure failed: {e}"),
            }
            let obs = hk.reader.observe();
            let met = eviction::thresholds_met(&hk.thresholds, &obs);
            if !met.iter().any(|t| t.signal == starved.signal) {
                log::info!("{}: node-level resources reclaimed; no pod evicted", starved.signal);
                return;
            }
            (obs, met)
        };
        self.evict_one(hk, starved, &met, &obs);
    }

    /// Evicts the first pod in upstream's order that may be evicted.
    fn evict_one(&mut self, hk: &Housekeeping, starved: Threshold, met: &[Threshold], obs: &Observations) {
        let pods = self.eviction_candidates();
        let mut usage = hk.reader.pod_usage(&pods, !starved.signal.is_memory());
        rank::rank(&mut usage, starved.signal);
        for p in &usage {
            if !rank::evictable(p) {
                log::info!("{}: pod {} is critical (priority {}); not evicting it", starved.signal, p.name, p.priority);
                continue;
            }
            let message = rank::message(starved.signal, met, obs, p);
            if self.evict(&p.uid, message) {
                self.cfg.metrics.eviction(starved.signal.name());
                return;
            }
        }
        log::warn!("{}: threshold met and no pod to evict", starved.signal);
    }

    /// Pods an eviction may pick: desired, not stopping, not ended.
    fn eviction_candidates(&self) -> Vec<Pod> {
        let ended = |p: &super::PodState| p.status.as_ref().is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed");
        self.pods
            .values()
            .filter(|p| p.desired && p.stop.is_none() && p.failed.is_none() && !ended(p))
            .map(|p| {
                let mut pod = Pod::clone(&p.pod);
                pod.status = p.status.clone();
                pod
            })
            .collect()
    }

    /// Ends pod `uid` as evicted: phase Failed, reason Evicted, `message`;
    /// its containers killed with no grace period. False if it cannot be
    /// (gone, already ended or stopping).
    pub(super) fn evict(&mut self, uid: &str, message: String) -> bool {
        let Some(st) = self.pods.get_mut(uid) else { return false };
        if st.failed.is_some() || !st.desired || st.stop.is_some() {
            return false;
        }
        log::warn!("evicting pod {}: {message}", full_name(&st.pod));
        restore(st, message.clone());
        self.changed = true;
        self.checkpoint(&self.pods[uid]);
        self.event(uid, None, true, ev::EVICTED, message);
        let now = Instant::now();
        for r in self.unexited_attempts(uid) {
            if self.kills.contains_key(&r.id) {
                continue;
            }
            self.event(uid, Some(&r.container), false, ev::KILLING, ev::stopping(&r.container));
            self.probes.remove(&r.id);
            self.post_start.remove(&r.id);
            // Grace period 0: no preStop hook, the stop signal now and
            // SIGKILL after the runtime's minimum (drive_kills).
            self.kills.insert(r.id.clone(), Kill { deadline: now, pre_stop_running: false, signalled: false, killed: false });
            self.save_health(&r.id);
        }
        self.drive_kills(uid, now);
        self.update_status(uid);
        true
    }

    /// Once an evicted pod's containers are all gone (ended.rs waits for
    /// that): frees its disk (writable layers, emptyDirs and the other
    /// volumes), as upstream tears down a terminated pod's volumes.
    pub(super) fn free_evicted_disk(&mut self, uid: &str) {
        if self.pods[uid].eviction.as_ref().map_or(true, |e| e.cleaned) {
            return;
        }
        self.release_layers(uid);
        let name = full_name(&self.pods[uid].pod);
        match volume::teardown(&self.pod_dir(uid)) {
            Ok(()) => {
                log::info!("evicted pod {name}: containers stopped, writable layers and volumes removed");
                if let Some(e) = self.pods.get_mut(uid).and_then(|p| p.eviction.as_mut()) {
                    e.cleaned = true;
                }
            }
            Err(e) => log::warn!("evicted pod {name}: {e}"),
        }
    }

    /// Drops the writable layers of a pod's exited attempts (their records
    /// and exit files stay for the status). Returns how many.
    fn release_layers(&mut self, uid: &str) -> usize {
        let all: Vec<Record> = self.pods[uid].attempts.values().flatten().cloned().collect();
        let mut n = 0;
        for r in all {
            let dir = record::dir(&self.cfg.root, &r.id);
            if dir.join("upper").exists() && matches!(self.observe(&r), Observed::Exited { .. }) {
                self.release_attempt(&r, false);
                n += 1;
            }
        }
        n
    }

    /// Dead-container GC under disk pressure: the writable layers of the
    /// containers of pods that have ended (Succeeded or Failed). A running
    /// pod's last exited attempt keeps its layer, as upstream keeps one
    /// dead container per container.
    pub(super) fn remove_dead_containers(&mut self) -> usize {
        let ended: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.status.as_ref().is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed"))
            .map(|(uid, _)| uid.clone())
            .collect();
        ended.iter().map(|uid| self.release_layers(uid)).sum()
    }

    /// Image ids a container record names (running or kept exited): image
    /// GC never deletes these.
    pub(super) fn images_in_use(&self) -> HashSet<String> {
        self.pods.values().flat_map(|p| p.attempts.values().flatten()).map(|r| r.image_id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::tests::{manager, pod, running};
    use crate::runtime::record;

    #[test]
    fn an_evicted_pod_fails_with_the_message_and_its_containers_stop_and_free_their_disk() {
        let (mut m, fake, root) = manager("evict");
        let p = pod("u-ev");
        m.sync(std::slice::from_ref(&p));
        let r = running(&mut m, "u-ev");
        assert_eq!(m.eviction_candidates().len(), 1);
        assert_eq!(m.images_in_use().len(), 1);
        m.take_events();
        let msg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi. ".to_string();
        assert!(m.evict("u-ev", msg.clone()));
        let st = m.pods()[0].status.clone().unwrap();
        assert_eq!((st.phase.as_str(), st.reason.as_str(), st.message.as_str()), ("Failed", "Evicted", msg.as_str()));
        let events: Vec<_> = m.take_events().into_iter().map(|e| (e.field_path, e.warning, e.reason, e.message)).collect();
        assert_eq!(events[0], (None, true, "Evicted", msg.clone()));
        assert_eq!(events[1], (Some("spec.containers{web}".into()), false, "Killing", "Stopping container web".into()));
        // No grace period and no preStop: the stop signal at once.
        assert!(fake.0.borrow().contains(&format!("kill {} SIGTERM", r.id)), "{:?}", fake.0.borrow());
        assert!(!m.evict("u-ev", msg.clone()), "once");
        assert!(m.eviction_candidates().is_empty());

        // The container exits; the next pass drops its writable layer and the
        // pod's volumes, keeps the record for the status, starts nothing.
        let dir = record::dir(&root, &r.id);
        std::fs::create_dir_all(dir.join("upper")).unwrap();
        std::fs::write(dir.join("upper/fill"), b"data").unwrap();
        std::fs::write(dir.join("exit.json"), br#"{"exitCode":137,"finishedAt":"2024-05-01T12:01:00Z"}"#).unwrap();
        let volumes = root.join("pods/u-ev/volumes/kubernetes.io~empty-dir/scratch");
        std::fs::create_dir_all(&volumes).unwrap();
        m.sync(std::slice::from_ref(&p));
        assert!(!dir.join("upper").exists() && dir.join("exit.json").exists());
        assert!(!volumes.exists());
        assert!(m.pods["u-ev"].eviction.as_ref().unwrap().cleaned);
        let st = m.pods()[0].status.clone().unwrap();
        assert_eq!((st.phase.as_str(), st.reason.as_str()), ("Failed", "Evicted"));
        assert_eq!(st.container_statuses[0].state.terminated.as_ref().unwrap().exit_code, 137);
        assert!(!fake.0.borrow().iter().any(|c| c.starts_with("create")));
        // An ended pod's containers are what dead-container GC may take; this one is done.
        assert_eq!(m.remove_dead_containers(), 0);
        // A restarted picolet keeps it evicted.
        drop(m);
        let (mut m, fake, root) = super::super::events::tests::manager_in(root);
        m.sync(std::slice::from_ref(&p));
        let st = m.pods()[0].status.clone().unwrap();
        assert_eq!((st.phase.as_str(), st.reason.as_str(), st.message.as_str()), ("Failed", "Evicted", msg.as_str()));
        assert!(!fake.0.borrow().iter().any(|c| c.starts_with("create")));
        let _ = std::fs::remove_dir_all(root);
    }
}
