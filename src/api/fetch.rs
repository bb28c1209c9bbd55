//! Keeps the local object store (api/objects) filled with what the node's
//! pods reference: ConfigMaps, Secrets, service-account tokens and the
//! Services that service-link variables need. Runs on its own thread.
//!
//! Only objects a bound pod names are read, one GET each, as the Node
//! authorizer allows (no lists of ConfigMaps or Secrets). New pods are served
//! at once; everything is re-read every `REFRESH` so changes reach volumes.
//! When the API server is unreachable nothing is removed: the stored copies
//! are what let pods start again after a reboot while offline.

use super::client::{ApiError, Client, Quiet};
use super::objects::{ObjectKind, ObjectStore, PodNeeds};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const REFRESH: Duration = Duration::from_secs(10);
/// How soon a failed read (a pod the API server does not know yet) is retried.
const RETRY: Duration = Duration::from_secs(1);

type Key = (ObjectKind, String, String);

struct Fetcher {
    client: Arc<Client>,
    store: ObjectStore,
    quiet: Quiet,
    /// Objects read (or found missing) since this picolet started.
    seen: BTreeSet<Key>,
    /// Namespaces whose Services were read.
    services: BTreeSet<String>,
}

impl Fetcher {
    fn report<T>(&mut self, what: &str, r: Result<T, ApiError>) -> Option<T> {
        match r {
            Ok(v) => {
                self.quiet.ok("reading pods' objects");
                Some(v)
            }
            Err(e) => {
                self.quiet.failed(what, &e);
                None
            }
        }
    }

    /// Reads one object into the store; false when it could not be read.
    fn object(&mut self, key: &Key) -> bool {
        let (kind, ns, name) = key;
        let path = match kind {
            ObjectKind::ConfigMap => format!("/api/v1/namespaces/{ns}/configmaps/{name}"),
            ObjectKind::Secret => format!("/api/v1/namespaces/{ns}/secrets/{name}"),
        };
        let stored = match self.client.get(&path) {
            Ok(v) => match kind {
                ObjectKind::ConfigMap => self.store.put_config_map(ns, name, &v),
                ObjectKind::Secret => self.store.put_secret(ns, name, &v),
            }
            .map(|_| ()),
            // Gone for real: pods that need it wait (or skip it if optional).
            // (Noted as missing: an image pull waits to know that much.)
            Err(e) if e.not_found() => self.store.mark_missing(*kind, ns, name),
            Err(e) => {
                // 403 right after a pod is bound is the authorizer catching
                // up; anything else is the link. Either way: keep, retry.
                self.quiet.failed(&format!("reading {kind} {ns}/{name}"), &e);
                return false;
            }
        };
        self.quiet.ok("reading pods' objects");
        self.seen.insert(key.clone());
        if let Err(e) = stored {
            log::warn!("storing {kind} {ns}/{name}: {e}");
        }
        true
    }

    fn services(&mut self, ns: &str) {
        let r = self.client.get(&format!("/api/v1/namespaces/{ns}/services"));
        if let Some(list) = self.report(&format!("listing services in {ns}"), r) {
            let items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
            match self.store.put_services(ns, &items) {
                Ok(_) => {
                    self.services.insert(ns.to_string());
                }
                Err(e) => log::warn!("storing services of {ns}: {e}"),
            }
        }
    }

    /// Requests the tokens that are due; false when one could not be had.
    fn tokens(&mut self, pod: &PodNeeds) -> bool {
        let mut ok = true;
        let (ns, uid) = (&pod.namespace, &pod.uid);
        for need in pod.tokens.iter().cloned() {
            if !self.store.token_due(ns, uid, &need, SystemTime::now()) {
                continue;
            }
            let mut spec = json!({
                "expirationSeconds": need.expiration_seconds,
                // Bound to the pod: the token dies with it.
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": uid},
            });
            if !need.audience.is_empty() {
                spec["audiences"] = json!([need.audience]);
            }
            let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
            let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/{}/token", need.service_account);
            let r = self.client.send("POST", &path, "application/json", &body);
            match r {
                Ok(reply) => {
                    self.quiet.ok("reading pods' objects");
                    if let Err(e) = self.store.put_token(ns, uid, &need, &reply) {
                        log::warn!("storing the token of pod {ns}/{}: {e}", pod.name);
                    }
                }
                // Right after binding the API server may not know the pod
                // yet (404): normal, retried in a second, not worth a line.
                Err(e) if e.not_found() => ok = false,
                Err(e) => {
                    self.quiet.failed(&format!("requesting a token for pod {ns}/{}", pod.name), &e);
                    ok = false;
                }
            }
        }
        ok
    }

    /// One pass: what is new always, everything when `full`. Returns
    /// whether everything could be read.
    fn pass(&mut self, pods: &[PodNeeds], full: bool) -> bool {
        let mut ok = true;
        // Services first: API pods wait for them (their env needs them).
        let mut namespaces: BTreeSet<String> = pods.iter().map(|p| p.namespace.clone()).collect();
        namespaces.insert("default".into());
        for ns in namespaces {
            if full || !self.services.contains(&ns) {
                self.services(&ns);
            }
        }
        let mut keys: BTreeMap<Key, ()> = BTreeMap::new();
        for p in pods {
            for r in &p.refs {
                keys.insert((r.kind, r.namespace.clone(), r.name.clone()), ());
            }
        }
        for key in keys.keys() {
            if full || !self.seen.contains(key) {
                ok &= self.object(key);
            }
        }
        for p in pods {
            ok &= self.tokens(p);
        }
        if full {
            self.seen.retain(|k| keys.contains_key(k));
        }
        ok
    }
}

/// What the pod loop tells the fetcher whenever the pods change: only what
/// each pod references, not the pods.
pub struct Pods {
    /// Every API pod bound to the node (after the first list).
    pub api: Vec<PodNeeds>,
    /// Static pods: never fetched for, but what they use is kept.
    pub statics: Vec<PodNeeds>,
}

/// Runs until the sender is gone. `wake` is called when the store gained
/// or changed something (pods waiting for it retry at once).
pub fn run(client: Arc<Client>, store: ObjectStore, rx: Receiver<Pods>, wake: impl Fn()) {
    let mut f = Fetcher { client, store, quiet: Quiet::default(), seen: BTreeSet::new(), services: BTreeSet::new() };
    // Nothing until the pod loop knows the node's pods: pruning against an
    // empty set would throw away what an offline restart needs.
    let Ok(first) = rx.recv() else { return };
    let (mut pods, mut statics) = (first.api, first.statics);
    let mut next_full = Instant::now();
    // After a failed read, the next try comes sooner than the refresh.
    let mut retry_at: Option<Instant> = None;
    loop {
        let due = retry_at.map_or(next_full, |r| r.min(next_full));
        let wait = due.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(p) => {
                let before: BTreeSet<(String, String)> = pods.iter().map(|p| (p.namespace.clone(), p.uid.clone())).collect();
                (pods, statics) = (p.api, p.statics);
                while let Ok(p) = rx.try_recv() {
                    (pods, statics) = (p.api, p.statics);
                }
                // Tokens of pods that went are useless (and bound to them).
                let now: BTreeSet<(String, String)> = pods.iter().map(|p| (p.namespace.clone(), p.uid.clone())).collect();
                for (ns, uid) in before.difference(&now) {
                    let _ = f.store.remove_tokens(ns, uid);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let full = Instant::now() >= next_full;
        let before = f.store.generation();
        let ok = f.pass(&pods, full);
        retry_at = (!ok).then(|| Instant::now() + RETRY);
        if f.store.generation() != before {
            // Pods waiting for these objects retry now, not at the next tick.
            wake();
        }
        if full {
            // What no pod references any more leaves the disk (secrets too).
            let all: Vec<PodNeeds> = pods.iter().chain(&statics).cloned().collect();
            if let Err(e) = f.store.prune(&all) {
                log::warn!("pruning the object store: {e}");
            }
            next_full = Instant::now() + REFRESH;
        }
    }
}
