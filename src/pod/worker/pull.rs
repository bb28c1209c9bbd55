//! Image pulls for pods: one download per image reference and set of pull
//! credentials at a time, run on a thread of its own so the pod loop never
//! waits on a registry. Results come back through a channel that
//! `Manager::sync` drains; a finished pull wakes the loop.
//!
//! Credentials: the pod's imagePullSecrets (as the object fetcher stored
//! them), then the node's credentials file, then `registries.yaml`, for
//! fetches and `Always` checks alike. Pods whose pull secrets differ never
//! share a pull, so a pod without the right credentials cannot ride on
//! another pod's pull of a private image; once the image is in the store
//! any pod may use it (IfNotPresent, as upstream).
//!
//! At most `PullConfig::limit` pulls run at once (1 with
//! serializeImagePulls, maxParallelImagePulls otherwise); the others wait
//! their turn in order of arrival. As upstream, `Pulling` is sent when a
//! pull is asked for, and `Pulled` says how long the pull itself took and
//! how long since `Pulling`, waiting included.
//!
//! `imagePullPolicy: Always` with an image that came from a registry asks
//! the registry at every container start whether the tag moved
//! (`Store::refresh`); when no registry can be reached the local image is
//! used, with a warning (upstream fails the pull instead).

use super::Manager;
use crate::api::objects::ObjectKind;
use crate::api::Container;
use crate::image::credentials::{self, Keyring};
use crate::image::resolve::Refreshed;
use crate::image::{self, ImageError, Platform, Registries, Store};
use crate::pod::events as ev;
use crate::runtime::runc::Runtime;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Upstream's image pull back-off: 10 s, doubling, at most 300 s.
const FIRST_DELAY: Duration = Duration::from_secs(10);
const MAX_DELAY: Duration = Duration::from_secs(300);

/// How long an API pod's pull waits for the fetcher to read its
/// imagePullSecrets (upstream reads them before pulling) before it goes on
/// without those it could not read.
const SECRET_WAIT: Duration = Duration::from_secs(10);

/// The upstream reason for pull secrets that could not be read.
const FAILED_TO_RETRIEVE_PULL_SECRET: &str = "FailedToRetrieveImagePullSecret";

/// The delay after a failed pull, given the delay after the previous one.
pub(super) fn next_delay(prev: Option<Duration>) -> Duration {
    prev.map_or(FIRST_DELAY, |d| (d * 2).min(MAX_DELAY))
}

/// What the pod loop needs to pull: where from, for which platform, how
/// many at once.
#[derive(Clone)]
pub struct PullConfig {
    pub registries: Arc<Registries>,
    pub platform: Platform,
    /// Pulls running at once; None: no limit (`Config::image_pull_limit`).
    pub limit: Option<usize>,
}

/// Jobs beyond a limit wait in arrival order.
pub(super) struct Slots<T> {
    running: usize,
    waiting: VecDeque<T>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { running: 0, waiting: VecDeque::new() }
    }
}

impl<T> Slots<T> {
    /// `job` is to start now (returned) or waits for a slot.
    pub(super) fn submit(&mut self, job: T, limit: Option<usize>) -> Option<T> {
        if limit.is_some_and(|l| self.running >= l) {
            self.waiting.push_back(job);
            return None;
        }
        self.running += 1;
        Some(job)
    }

    /// A job ended: the next one to start, if any waits.
    pub(super) fn finish(&mut self, limit: Option<usize>) -> Option<T> {
        self.running = self.running.saturating_sub(1);
        if limit.is_some_and(|l| self.running >= l) {
            return None;
        }
        let next = self.waiting.pop_front()?;
        self.running += 1;
        Some(next)
    }

    pub(super) fn running(&self) -> usize {
        self.running
    }
}

/// A pull to run: the reference as the first container wrote it, whether
/// it is an `Always` check of a present image, and the credentials of the
/// pod's pull secrets (the node's file is read when the pull runs).
struct Job {
    /// In-flight key: the normalized reference, plus `#` and the keyring's
    /// fingerprint when the pod has pull credentials.
    key: String,
    /// The normalized reference alone, for logs.
    shown: String,
    reference: String,
    refresh: bool,
    keyring: Keyring,
}

/// A container waiting for a pull, since its `Pulling` Event.
pub(super) struct Waiter {
    uid: String,
    name: String,
    image: String,
    since: Instant,
}

/// How a pull ended.
enum Outcome {
    /// The image is in the store: fetched, or found unchanged at the
    /// registry. `size` is the image's (as upstream's Event says it).
    Ready { changed: bool, fetched: u64, size: u64, manifest: String },
    Failed { message: String, unreachable: bool },
}

struct Done {
    key: String,
    shown: String,
    refresh: bool,
    /// The pull itself, queueing not included.
    took: Duration,
    outcome: Outcome,
}

pub(super) struct Failure {
    message: String,
    delay: Duration,
    until: Instant,
}

pub(super) struct Pulls {
    /// Pulls asked for (running or queued), by normalized reference, with
    /// the containers waiting for each.
    pub(super) in_flight: HashMap<String, Vec<Waiter>>,
    pub(super) failed: HashMap<String, Failure>,
    /// Containers whose image a pull just settled: their `Pulled` (or the
    /// fall-back warning) was sent by the pull, and their start goes on
    /// with the image in the store.
    announced: std::collections::HashSet<String>,
    slots: Slots<Job>,
    /// Since when a pod's pull waits for its imagePullSecrets to be read.
    secret_wait: HashMap<String, Instant>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
}

impl Default for Pulls {
    fn default() -> Pulls {
        let (tx, rx) = mpsc::channel();
        Pulls {
            in_flight: HashMap::new(),
            failed: HashMap::new(),
            announced: Default::default(),
            slots: Slots::default(),
            secret_wait: HashMap::new(),
            tx,
            rx,
        }
    }
}

/// `Pulled` as upstream words it after a pull: the pull's own time, the
/// time since `Pulling` (queueing included), and the image's size.
pub fn pulled_message(image: &str, took: Duration, total: Duration, size: u64) -> String {
    let ms = |d: Duration| Duration::from_millis(d.as_millis() as u64);
    format!("Successfully pulled image {image:?} in {:?} ({:?} including waiting). Image size: {size} bytes.", ms(took), ms(total))
}

/// The warning when `Always` could not reach a registry and the image in
/// the store is used.
pub fn fallback_message(image: &str, error: &str) -> String {
    format!("Failed to pull image {image:?}: {error}; starting the image already present on machine")
}

impl<R: Runtime> Manager<R> {
    /// Container `c` needs a pull: its image is not in the store, or
    /// (`refresh`) its policy is `Always` and the registry must say whether
    /// the tag moved. Joins a pull of the same reference with the same pull
    /// credentials already asked for, or reports the back-off of the last
    /// failed one. Waits while the pod's pull secrets are unread.
    pub(super) fn need_pull(&mut self, uid: &str, c: &Container, refresh: bool) {
        let Some(pc) = self.cfg.pull.clone() else {
            let msg = format!(
                "image \"{}\" is not in the local store and no registry is configured: put an archive of it in {}",
                c.image,
                self.cfg.root.join("images").display()
            );
            return self.set_waiting(uid, &c.name, "ErrImagePull", msg);
        };
        let (keyring, missing) = match self.pull_secrets(uid) {
            Ok(Some(found)) => found,
            Ok(None) => return, // the fetcher is still reading them
            Err(e) => return self.set_waiting(uid, &c.name, "ErrImagePull", e),
        };
        let shown = image::reference::normalize(&c.image).unwrap_or_else(|_| c.image.clone());
        let key = match keyring.is_empty() {
            true => shown.clone(),
            false => format!("{shown}#{}", keyring.fingerprint()),
        };
        let waiter = Waiter { uid: uid.to_string(), name: c.name.clone(), image: c.image.clone(), since: Instant::now() };
        if let Some(w) = self.pulls.in_flight.get_mut(&key) {
            if !w.iter().any(|x| x.uid == uid && x.name == c.name) {
                w.push(waiter);
                self.startup_pull_started(uid);
                self.missing_pull_secrets(uid, &missing);
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
        self.startup_pull_started(uid);
        self.missing_pull_secrets(uid, &missing);
        self.event(uid, Some(&c.name), false, ev::PULLING, ev::pulling(&c.image));
        self.pulls.in_flight.insert(key.clone(), vec![waiter]);
        let job = Job { key, shown, reference: c.image.clone(), refresh, keyring };
        let running = self.pulls.slots.running();
        match self.pulls.slots.submit(job, pc.limit) {
            Some(job) => self.run_pull(job, pc),
            None => log::info!(
                "pull of image {} queued: {running} running, at most {} at once (serializeImagePulls, maxParallelImagePulls)",
                self.pulls.slots.waiting.back().map_or("", |j| j.shown.as_str()),
                pc.limit.unwrap_or(0)
            ),
        }
    }

    /// The credentials of pod `uid`'s imagePullSecrets and the names of
    /// those that could not be read; None while an API pod should wait for
    /// the fetcher. A secret that exists but is malformed is an error, as
    /// upstream fails the pull for it.
    fn pull_secrets(&mut self, uid: &str) -> Result<Option<(Keyring, Vec<String>)>, String> {
        let pod = self.pods[uid].pod.clone();
        let ns = &pod.metadata.namespace;
        let (mut ring, mut missing, mut unread) = (Keyring::default(), Vec::new(), false);
        for r in pod.spec.image_pull_secrets.iter().filter(|r| !r.name.is_empty()) {
            match self.objects.get_secret(ns, &r.name) {
                Ok(Some(sec)) => {
                    if let Some((format, k)) = credentials::secret_format(&sec.secret_type, &sec.data) {
                        ring.add(&sec.data[k], format, &format!("secret {ns}/{}", r.name)).map_err(|e| e.to_string())?;
                    }
                }
                Ok(None) => {
                    // Static pods never get API objects: no point waiting.
                    let fetched = pod.is_static() || self.objects.known_missing(ObjectKind::Secret, ns, &r.name);
                    unread |= !fetched;
                    missing.push(r.name.clone());
                }
                Err(e) => return Err(format!("pull secret {ns}/{}: {e}", r.name)),
            }
        }
        if unread {
            let since = *self.pulls.secret_wait.entry(uid.to_string()).or_insert_with(Instant::now);
            if since.elapsed() < SECRET_WAIT {
                return Ok(None);
            }
        }
        self.pulls.secret_wait.remove(uid);
        Ok(Some((ring, missing)))
    }

    /// Upstream's warning for pull secrets that could not be read, with
    /// each pull the pod starts or joins.
    fn missing_pull_secrets(&mut self, uid: &str, missing: &[String]) {
        if !missing.is_empty() {
            let msg = format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            );
            self.event(uid, None, true, FAILED_TO_RETRIEVE_PULL_SECRET, msg);
        }
    }

    /// Starts `job` on a thread of its own.
    fn run_pull(&mut self, job: Job, pc: PullConfig) {
        match job.refresh {
            true => log::info!("checking image {} at its registry (imagePullPolicy Always)", job.shown),
            false => log::info!("pulling image {}", job.shown),
        }
        let (tx, store_root, root): (_, PathBuf, PathBuf) = (self.pulls.tx.clone(), self.images.root.clone(), self.cfg.root.clone());
        let waker = self.cfg.wake.clone();
        let (key, shown) = (job.key.clone(), job.shown.clone());
        let spawned = std::thread::Builder::new().name("pull".into()).spawn(move || {
            let t = Instant::now();
            // The node's file is read at each pull: an edit counts without a restart.
            let result = credentials::load_node(&root).and_then(|node| Store::open(&store_root).and_then(|s| pull_or_refresh(&s, &pc, &job, &node)));
            let outcome = match result {
                Ok(o) => o,
                Err(e) => Outcome::Failed { unreachable: matches!(e, ImageError::Unreachable { .. }), message: e.to_string() },
            };
            let _ = tx.send(Done { key: job.key, shown: job.shown, refresh: job.refresh, took: t.elapsed(), outcome });
            super::wake(&waker);
        });
        if let Err(e) = spawned {
            // Counted as a failed pull, so the slot is freed and waiters told.
            log::error!("cannot start a pull thread: {e}");
            let message = format!("cannot start a pull thread: {e}");
            let _ = self.pulls.tx.send(Done { key, shown, refresh: false, took: Duration::ZERO, outcome: Outcome::Failed { message, unreachable: false } });
        }
    }

    /// Takes the results of finished pulls (each `sync`) and starts the
    /// pulls that waited for their slots.
    pub(super) fn drain_pulls(&mut self) {
        let pods = &self.pods;
        self.pulls.secret_wait.retain(|uid, _| pods.contains_key(uid));
        while let Ok(done) = self.pulls.rx.try_recv() {
            let waiters = self.pulls.in_flight.remove(&done.key).unwrap_or_default();
            let took = done.took;
            match done.outcome {
                Outcome::Ready { changed, fetched, size, manifest } => {
                    match changed {
                        true => log::info!("pulled image {} ({fetched} bytes) in {took:?}", done.shown),
                        false => log::info!("image {} unchanged at its registry ({manifest}), checked in {took:?}", done.shown),
                    }
                    self.pulls.failed.remove(&done.key);
                    for w in waiters {
                        self.startup_pull_ended(&w.uid);
                        self.event(&w.uid, Some(&w.name), false, ev::PULLED, pulled_message(&w.image, took, w.since.elapsed(), size));
                        self.pulls.announced.insert(format!("{}/{}", w.uid, w.name));
                    }
                }
                // Always with an image in the store and no registry to ask:
                // an edge node offline keeps running what it has.
                Outcome::Failed { message, unreachable: true } if done.refresh => {
                    log::warn!("image {}: no registry reachable, using the local image: {message}", done.shown);
                    for w in waiters {
                        self.startup_pull_ended(&w.uid);
                        self.event(&w.uid, Some(&w.name), true, ev::FAILED, fallback_message(&w.image, &message));
                        self.pulls.announced.insert(format!("{}/{}", w.uid, w.name));
                    }
                }
                Outcome::Failed { message, .. } => {
                    let delay = next_delay(self.pulls.failed.get(&done.key).map(|f| f.delay));
                    self.pulls.failed.insert(done.key.clone(), Failure { message: message.clone(), delay, until: Instant::now() + delay });
                    for w in waiters {
                        self.startup_pull_ended(&w.uid);
                        if self.pods.contains_key(&w.uid) {
                            self.set_waiting(&w.uid, &w.name, "ErrImagePull", message.clone());
                        }
                    }
                }
            }
            self.changed = true;
            if let Some(pc) = self.cfg.pull.clone() {
                if let Some(next) = self.pulls.slots.finish(pc.limit) {
                    self.run_pull(next, pc);
                }
            }
        }
    }

    /// True once if the container's image was settled by a pull (its
    /// `Pulled` Event, or the fall-back warning, already sent).
    pub(super) fn take_announced(&mut self, uid: &str, name: &str) -> bool {
        self.pulls.announced.remove(&format!("{uid}/{name}"))
    }

    /// Whether a start of container `name` waits on a pull (asked for, or
    /// ended and not yet taken): a restart then goes on without waiting
    /// out the crash-loop back-off a second time.
    pub(super) fn pull_pending(&self, uid: &str, name: &str) -> bool {
        self.pulls.announced.contains(&format!("{uid}/{name}"))
            || self.pulls.in_flight.values().flatten().any(|w| w.uid == uid && w.name == name)
    }

    /// Whether `Always` asks a registry for `image`: pulls are configured
    /// and the local image came from a registry. Images imported from
    /// archives have no registry to compare with and are used as they are.
    pub(super) fn refreshes(&self, image: &str) -> bool {
        self.cfg.pull.is_some() && self.images.pulled_manifest(image).ok().flatten().is_some()
    }
}

/// The pull of `job`, in the pull thread: the pod's credentials first, then
/// the node's (`node`).
fn pull_or_refresh(s: &Store, pc: &PullConfig, job: &Job, node: &Keyring) -> Result<Outcome, ImageError> {
    let keyrings = [&job.keyring, node];
    let (changed, fetched, manifest) = match job.refresh {
        true => match s.refresh(&pc.registries, &keyrings, &job.reference, &pc.platform)? {
            Refreshed::Unchanged { manifest } => (false, 0, manifest),
            Refreshed::Pulled(p) => (true, p.bytes, p.manifest),
        },
        false => {
            let p = s.pull_with(&pc.registries, &keyrings, &job.reference, &pc.platform)?;
            (true, p.bytes, p.manifest)
        }
    };
    let size = s.image_size(&job.reference)?.unwrap_or(0);
    Ok(Outcome::Ready { changed, fetched, size, manifest })
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

    /// Pods share a pull only with pods holding the same credentials; a
    /// pull waits for pull secrets the fetcher has not read yet.
    #[test]
    fn pulls_are_shared_only_between_equal_credentials() {
        use crate::pod::worker::events::tests::{manager, pod};
        let (mut m, _, root) = manager("pull-creds");
        // No slot: every pull stays asked for, none runs (and none ends
        // while the test looks at who shares which).
        m.cfg.pull = Some(PullConfig { registries: Default::default(), platform: Platform::host(), limit: Some(0) });
        let objects = crate::api::objects::ObjectStore::under_root(&root);
        for (name, password) in [("a", "pa"), ("b", "pb")] {
            let doc = format!(r#"{{"auths": {{"127.0.0.1:9": {{"username": "u", "password": "{password}"}}}}}}"#);
            let secret = serde_json::json!({"type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": crate::api::objects::base64_encode(doc.as_bytes())}});
            objects.put_secret("default", name, &secret).unwrap();
        }
        let make = |uid: &str, secrets: &[&str], policy: &str| {
            let mut p = pod(uid);
            p.metadata.name = format!("{uid}-pod");
            p.spec.containers[0].image = "127.0.0.1:9/x:1".into();
            p.spec.containers[0].image_pull_policy = policy.into();
            p.spec.image_pull_secrets = secrets.iter().map(|s| crate::api::LocalObjectReference { name: s.to_string() }).collect();
            p
        };
        let pods = vec![
            make("u-a", &["a"], "IfNotPresent"),
            make("u-a2", &["a"], "Always"),
            make("u-b", &["b"], "IfNotPresent"),
            make("u-none", &[], "IfNotPresent"),
            make("u-later", &["later"], "IfNotPresent"),
        ];
        m.sync(&pods);
        let mut sharing: Vec<Vec<&str>> = m.pulls.in_flight.values().map(|w| w.iter().map(|w| w.uid.as_str()).collect()).collect();
        sharing.iter_mut().for_each(|w| w.sort());
        sharing.sort();
        assert_eq!(sharing, [vec!["u-a", "u-a2"], vec!["u-b"], vec!["u-none"]], "u-later waits for its secret");
        // The queued jobs carry their pod's credentials.
        assert_eq!(m.pulls.slots.waiting.iter().filter(|j| !j.keyring.is_empty()).count(), 2);
        for j in &m.pulls.slots.waiting {
            assert_eq!(j.shown, "127.0.0.1:9/x:1", "logs name the reference alone");
            let want = match j.keyring.is_empty() {
                true => j.shown.clone(),
                false => format!("{}#{}", j.shown, j.keyring.fingerprint()),
            };
            assert_eq!(j.key, want);
        }
        // Read and found missing: it pulls, with upstream's warning.
        objects.mark_missing(ObjectKind::Secret, "default", "later").unwrap();
        m.sync(&pods);
        assert!(m.pulls.in_flight.values().any(|w| w.iter().any(|w| w.uid == "u-later")));
        let warned: Vec<_> = m.take_events().into_iter().filter(|e| e.reason == FAILED_TO_RETRIEVE_PULL_SECRET).collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].pod_uid, "u-later");
        assert_eq!(warned[0].message, "Unable to retrieve some image pull secrets (later); attempting to pull the image may not succeed.");
        // A malformed Secret fails the pull, naming it and the reason.
        let bad = crate::api::objects::base64_encode(br#"{"auths": {"127.0.0.1:9": {"auth": "%%"}}}"#);
        objects.put_secret("default", "broken", &serde_json::json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": bad}})).unwrap();
        let broken = make("u-broken", &["broken"], "IfNotPresent");
        m.sync(std::slice::from_ref(&broken));
        let (reason, msg) = &m.pods["u-broken"].waiting["web"];
        assert_eq!(reason, "ErrImagePull");
        assert_eq!(msg, r#"registry credentials in secret default/broken: auths."127.0.0.1:9".auth: not base64"#);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn pulled_wording() {
        let m = pulled_message("busybox", Duration::from_micros(1_500_400), Duration::from_millis(2250), 42);
        assert_eq!(m, "Successfully pulled image \"busybox\" in 1.5s (2.25s including waiting). Image size: 42 bytes.");
        let m = fallback_message("busybox", "http://r/v2/: connection refused");
        assert_eq!(m, "Failed to pull image \"busybox\": http://r/v2/: connection refused; starting the image already present on machine");
    }

    #[test]
    fn one_slot_runs_jobs_one_after_the_other_in_order() {
        let mut s = Slots::default();
        assert_eq!(s.submit("a", Some(1)), Some("a"));
        assert_eq!(s.submit("b", Some(1)), None);
        assert_eq!(s.submit("c", Some(1)), None);
        assert_eq!(s.running(), 1);
        assert_eq!(s.finish(Some(1)), Some("b"));
        assert_eq!(s.finish(Some(1)), Some("c"));
        assert_eq!(s.finish(Some(1)), None);
        assert_eq!(s.running(), 0);
        assert_eq!(s.submit("d", Some(1)), Some("d"));
    }

    #[test]
    fn two_slots_and_no_limit() {
        let mut s = Slots::default();
        assert_eq!(s.submit(1, Some(2)), Some(1));
        assert_eq!(s.submit(2, Some(2)), Some(2));
        assert_eq!(s.submit(3, Some(2)), None);
        assert_eq!(s.submit(4, Some(2)), None);
        // One ends: the first that waited starts; the other still waits.
        assert_eq!(s.finish(Some(2)), Some(3));
        assert_eq!(s.running(), 2);
        assert_eq!(s.finish(Some(2)), Some(4));
        assert_eq!(s.finish(Some(2)), None);
        assert_eq!(s.finish(Some(2)), None);
        assert_eq!(s.running(), 0);
        let mut u = Slots::default();
        for i in 0..50 {
            assert_eq!(u.submit(i, None), Some(i));
        }
        assert_eq!(u.running(), 50);
        assert_eq!(u.finish(None), None);
    }

    /// Always with an image pulled earlier and no registry answering now:
    /// `Pulling`, a warning naming the error, then the local image starts.
    /// Mounts the image's layers, so it needs root (as events.rs's start test).
    #[test]
    #[ignore = "needs root (mounts the image's layers): tests/run.sh runs it"]
    fn always_without_a_registry_starts_the_local_image_with_a_warning() {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        use super::super::events::tests::{manager_in, pod};
        let (mut m, fake, root) = manager_in(crate::image::testutil::scratch("always-offline"));
        m.images.import_archive(&crate::image::testutil::images().join("busybox.tar")).unwrap();
        // As if pulled from a registry on port 9, where nothing listens.
        let image = "127.0.0.1:9/tools/busybox";
        {
            let _g = m.images.lock_index();
            let mut recs = m.images.records().unwrap();
            let mut rec = recs[&image::normalize("busybox").unwrap()].clone();
            rec.pulled = true;
            rec.manifest.get_or_insert_with(|| format!("sha256:{}", "0".repeat(64)));
            recs.insert(image::normalize(image).unwrap(), rec);
            m.images.write_records(&recs).unwrap();
        }
        let regs = Registries::parse("mirrors:\n  \"127.0.0.1:9\":\n    endpoint: [\"http://127.0.0.1:9\"]\n").unwrap();
        m.cfg.pull = Some(PullConfig { registries: Arc::new(regs), platform: Platform::host(), limit: Some(1) });
        let mut p = pod("u-always");
        p.spec.containers[0].image = image.into();
        p.spec.containers[0].image_pull_policy = "Always".into();
        let pods = [p];
        m.sync(&pods);
        assert_eq!(m.pulls.in_flight.len(), 1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while fake.0.borrow().len() < 2 {
            assert!(Instant::now() < deadline, "the container did not start");
            std::thread::sleep(Duration::from_millis(20));
            m.sync(&pods);
        }
        let got: Vec<_> = m.take_events().into_iter().map(|e| (e.warning, e.reason, e.message)).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!((got[0].0, got[0].1), (false, "Pulling"));
        assert_eq!(got[0].2, format!("Pulling image {image:?}"));
        assert_eq!((got[1].0, got[1].1), (true, "Failed"));
        let want = format!("Failed to pull image {image:?}: http://127.0.0.1:9/v2/tools/busybox/manifests/latest: ");
        assert!(got[1].2.starts_with(&want) && got[1].2.ends_with("; starting the image already present on machine"), "{}", got[1].2);
        assert_eq!([got[2].1, got[3].1], ["Created", "Started"]);
        // No back-off was recorded: the next start asks the registry again.
        assert!(m.pulls.failed.is_empty());
        crate::image::unmount_rootfs(&crate::runtime::record::dir(&root, "u-always-web-0")).unwrap();
        let _ = std::fs::remove_dir_all(root);
    }
}
