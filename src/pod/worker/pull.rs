//! Image pulls for pods: one download per image reference and set of pull
//! credentials at a time, run on a thread of its own so the pod loop never
//! waits on a registry. Results come back through a channel that
//! `Manager::sync` drains; a finished pull wakes the loop.
//!
//! Credentials: the pod's imagePullSecrets (as the object fetcher stored
//! them), then the node's credentials file, then `registries.yaml`. Pods
//! whose pull secrets differ never share a download, so a pod without the
//! right credentials cannot ride on another pod's pull of a private image;
//! once the image is in the store any pod may use it (IfNotPresent, as
//! upstream).

use super::Manager;
use crate::api::Container;
use crate::api::objects::ObjectKind;
use crate::image::credentials::{self, Keyring};
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
    /// Since when a pod's pull waits for its imagePullSecrets to be read.
    secret_wait: HashMap<String, Instant>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
}

impl Default for Pulls {
    fn default() -> Pulls {
        let (tx, rx) = mpsc::channel();
        Pulls { in_flight: HashMap::new(), failed: HashMap::new(), announced: Default::default(), secret_wait: HashMap::new(), tx, rx }
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
        let (keyring, missing) = match self.pull_secrets(uid) {
            Ok(Some(found)) => found,
            Ok(None) => return, // the fetcher is still reading them
            Err(e) => return self.set_waiting(uid, &c.name, "ErrImagePull", e),
        };
        let mut key = image::reference::normalize(&c.image).unwrap_or_else(|_| c.image.clone());
        let shown = key.clone();
        if !keyring.is_empty() {
            key = format!("{key}#{}", keyring.fingerprint());
        }
        let waiter = (uid.to_string(), c.name.clone(), c.image.clone());
        if let Some(w) = self.pulls.in_flight.get_mut(&key) {
            if !w.contains(&waiter) {
                w.push(waiter);
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
        self.missing_pull_secrets(uid, &missing);
        self.event(uid, Some(&c.name), false, ev::PULLING, ev::pulling(&c.image));
        log::info!("pulling image {shown}");
        self.pulls.in_flight.insert(key.clone(), vec![waiter]);
        let (tx, store_root, reference): (_, PathBuf, _) = (self.pulls.tx.clone(), self.images.root.clone(), c.image.clone());
        let root = self.cfg.root.clone();
        let spawned = std::thread::Builder::new().name("pull".into()).spawn(move || {
            let t = Instant::now();
            // Read at each pull: an edited file counts without a restart.
            let result = credentials::load_node(&root)
                .and_then(|node| Store::open(&store_root).map(|s| (s, node)))
                .and_then(|(s, node)| s.pull_with(&pc.registries, &[&keyring, &node], &reference, &pc.platform))
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
                    let fetched = crate::pod::cluster::is_static(&pod) || self.objects.known_missing(ObjectKind::Secret, ns, &r.name);
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

    /// Takes the results of finished pulls (each `sync`).
    pub(super) fn drain_pulls(&mut self) {
        let pods = &self.pods;
        self.pulls.secret_wait.retain(|uid, _| pods.contains_key(uid));
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

    /// Pods share a download only with pods holding the same credentials;
    /// a pull waits for pull secrets the fetcher has not read yet.
    #[test]
    fn pulls_are_shared_only_between_equal_credentials() {
        use crate::pod::worker::events::tests::{manager, pod};
        let (mut m, _, root) = manager("pull-creds");
        m.cfg.pull = Some(PullConfig { registries: Default::default(), platform: Platform::host(), wake: None });
        let objects = crate::api::objects::ObjectStore::under_root(&root);
        for (name, password) in [("a", "pa"), ("b", "pb")] {
            let doc = format!(r#"{{"auths": {{"127.0.0.1:9": {{"username": "u", "password": "{password}"}}}}}}"#);
            let secret = serde_json::json!({"type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": crate::api::objects::base64_encode(doc.as_bytes())}});
            objects.put_secret("default", name, &secret).unwrap();
        }
        let make = |uid: &str, secrets: &[&str]| {
            let mut p = pod(uid);
            p.metadata.name = format!("{uid}-pod");
            p.spec.containers[0].image = "127.0.0.1:9/x:1".into();
            p.spec.containers[0].image_pull_policy = "IfNotPresent".into();
            p.spec.image_pull_secrets = secrets.iter().map(|s| crate::api::LocalObjectReference { name: s.to_string() }).collect();
            p
        };
        let pods = vec![make("u-a", &["a"]), make("u-a2", &["a"]), make("u-b", &["b"]), make("u-none", &[]), make("u-later", &["later"])];
        m.sync(&pods);
        let mut sharing: Vec<Vec<&str>> = m.pulls.in_flight.values().map(|w| w.iter().map(|(uid, _, _)| uid.as_str()).collect()).collect();
        sharing.iter_mut().for_each(|w| w.sort());
        sharing.sort();
        assert_eq!(sharing, [vec!["u-a", "u-a2"], vec!["u-b"], vec!["u-none"]], "u-later waits for its secret");
        // Read and found missing: it pulls, with upstream's warning.
        objects.mark_missing(ObjectKind::Secret, "default", "later").unwrap();
        m.sync(&pods);
        assert!(m.pulls.in_flight.values().any(|w| w.iter().any(|(uid, _, _)| uid == "u-later")));
        let warned: Vec<_> = m.take_events().into_iter().filter(|e| e.reason == FAILED_TO_RETRIEVE_PULL_SECRET).collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].pod_uid, "u-later");
        assert_eq!(warned[0].message, "Unable to retrieve some image pull secrets (later); attempting to pull the image may not succeed.");
        // A malformed Secret fails the pull, naming it and the reason.
        let bad = crate::api::objects::base64_encode(br#"{"auths": {"127.0.0.1:9": {"auth": "%%"}}}"#);
        objects.put_secret("default", "broken", &serde_json::json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": bad}})).unwrap();
        let broken = make("u-broken", &["broken"]);
        m.sync(std::slice::from_ref(&broken));
        let (reason, msg) = &m.pods["u-broken"].waiting["web"];
        assert_eq!(reason, "ErrImagePull");
        assert_eq!(msg, r#"registry credentials in secret default/broken: auths."127.0.0.1:9".auth: not base64"#);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn pulled_wording() {
        let m = pulled_message("busybox", Duration::from_millis(1500), 42);
        assert_eq!(m, "Successfully pulled image \"busybox\" in 1.5s (1.5s including waiting). Image size: 42 bytes.");
    }
}
