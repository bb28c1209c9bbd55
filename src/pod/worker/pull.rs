//! Image pulls for pods: one download per image reference at a time, run on
//! a thread of its own so the pod loop never waits on a registry. Results
//! come back through a channel that `Manager::sync` drains; a finished pull
//! wakes the loop.

use super::Manager;
use crate::api::Container;
use crate::image::{self, Platform, Registries, Store};
use crate::pod::events as ev;
use crate::runtime::runc::Runtime;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Upstream's image pull back-off: 10 s, doubling, at most 300 s.
const FIRST_DELAY: Duration = Duration::from_secs(10);
const MAX_DELAY: Duration = Duration::from_secs(300);

/// The delay after a failed pull, given the delay after the previous one.
pub(super) fn next_delay(prev: Option<Duration>) -> Duration {
    prev.map_or(FIRST_DELAY, |d| (d * 2).min(MAX_DELAY))
}

/// What the pod loop needs to pull: where from, for which platform, and how
/// to wake the loop when a pull ends.
#[derive(Clone)]
pub struct PullConfig {
    pub registries: Arc<Registries>,
    pub platform: Platform,
    pub wake: Option<smol::channel::Sender<()>>,
}

struct Done {
    key: String,
    result: Result<(image::pull::Pulled, Duration), String>,
}

pub(super) struct Failure {
    message: String,
    delay: Duration,
    until: Instant,
}

pub(super) struct Pulls {
    /// Pulls under way, by normalized reference, with the containers
    /// (`uid`, name, image as written) waiting for each.
    pub(super) in_flight: HashMap<String, Vec<(String, String, String)>>,
    pub(super) failed: HashMap<String, Failure>,
    /// Containers whose image a pull just brought: their `Pulled` Event was
    /// sent with the pull's figures, not "already present".
    announced: std::collections::HashSet<String>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
}

impl Default for Pulls {
    fn default() -> Pulls {
        let (tx, rx) = mpsc::channel();
        Pulls { in_flight: HashMap::new(), failed: HashMap::new(), announced: Default::default(), tx, rx }
    }
}

/// `Pulled` as upstream words it after a pull.
pub fn pulled_message(image: &str, took: Duration, bytes: u64) -> String {
    format!("Successfully pulled image {image:?} in {took:?} ({took:?} including waiting). Image size: {bytes} bytes.")
}

impl<R: Runtime> Manager<R> {
    /// Container `c` needs an image the store does not have: start a pull
    /// (unless one for the same reference is under way) or report the
    /// back-off of the last failed one.
    pub(super) fn need_pull(&mut self, uid: &str, c: &Container) {
        let Some(pc) = self.cfg.pull.clone() else {
            let msg = format!(
                "image \"{}\" is not in the local store and no registry is configured: put an archive of it in {}",
                c.image,
                self.cfg.root.join("images").display()
            );
            return self.set_waiting(uid, &c.name, "ErrImagePull", msg);
        };
        self.startup_pull_started(uid);
        let key = image::reference::normalize(&c.image).unwrap_or_else(|_| c.image.clone());
        let waiter = (uid.to_string(), c.name.clone(), c.image.clone());
        if let Some(w) = self.pulls.in_flight.get_mut(&key) {
            if !w.contains(&waiter) {
                w.push(waiter);
                self.event(uid, Some(&c.name), false, ev::PULLING, ev::pulling(&c.image));
            }
            return;
        }
        if let Some(f) = self.pulls.failed.get(&key) {
            if Instant::now() < f.until {
                let msg = format!("Back-off pulling image {:?}: ErrImagePull: {}", c.image, f.message);
                return self.set_waiting(uid, &c.name, "ImagePullBackOff", msg);
            }
        }
        self.event(uid, Some(&c.name), false, ev::PULLING, ev::pulling(&c.image));
        log::info!("pulling image {key}");
        self.pulls.in_flight.insert(key.clone(), vec![waiter]);
        let (tx, store_root, reference): (_, PathBuf, _) = (self.pulls.tx.clone(), self.images.root.clone(), c.image.clone());
        let spawned = std::thread::Builder::new().name("pull".into()).spawn(move || {
            let t = Instant::now();
            let result = Store::open(&store_root)
                .and_then(|s| s.pull(&pc.registries, &reference, &pc.platform))
                .map(|p| (p, t.elapsed()))
                .map_err(|e| e.to_string());
            let _ = tx.send(Done { key, result });
            if let Some(w) = pc.wake {
                let _ = w.try_send(());
            }
        });
        if let Err(e) = spawned {
            log::error!("cannot start a pull thread: {e}");
        }
    }

    /// Takes the results of finished pulls (each `sync`).
    pub(super) fn drain_pulls(&mut self) {
        while let Ok(done) = self.pulls.rx.try_recv() {
            let waiters = self.pulls.in_flight.remove(&done.key).unwrap_or_default();
            match done.result {
                Ok((p, took)) => {
                    log::info!("pulled image {} ({} bytes) in {took:?}", p.reference, p.bytes);
                    self.pulls.failed.remove(&done.key);
                    for (uid, name, img) in waiters {
                        self.startup_pull_ended(&uid);
                        self.event(&uid, Some(&name), false, ev::PULLED, pulled_message(&img, took, p.bytes));
                        self.pulls.announced.insert(format!("{uid}/{name}"));
                    }
                }
                Err(e) => {
                    let delay = next_delay(self.pulls.failed.get(&done.key).map(|f| f.delay));
                    self.pulls.failed.insert(done.key.clone(), Failure { message: e.clone(), delay, until: Instant::now() + delay });
                    for (uid, name, _) in waiters {
                        self.startup_pull_ended(&uid);
                        if self.pods.contains_key(&uid) {
                            self.set_waiting(&uid, &name, "ErrImagePull", e.clone());
                        }
                    }
                }
            }
            self.changed = true;
        }
    }

    /// True once if the container's `Pulled` Event was sent by its pull.
    pub(super) fn take_announced(&mut self, uid: &str, name: &str) -> bool {
        self.pulls.announced.remove(&format!("{uid}/{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let mut d = None;
        let mut seen = Vec::new();
        for _ in 0..7 {
            let n = next_delay(d);
            seen.push(n.as_secs());
            d = Some(n);
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn pulled_wording() {
        let m = pulled_message("busybox", Duration::from_millis(1500), 42);
        assert_eq!(m, "Successfully pulled image \"busybox\" in 1.5s (1.5s including waiting). Image size: 42 bytes.");
    }
}
