//! Writes what the pod loop decided to the API server, on its own thread:
//! pod statuses, final deletions, mirror pods and events.
//!
//! Work is keyed: a newer status for a pod replaces an unsent older one, so a
//! slow or absent API server costs one pending entry per pod, not a growing
//! queue; when it answers again the latest of everything goes out at once.
//! A status equal to the last one written is not sent again.

use crate::api::client::{ApiError, Client, Quiet, Retry};
use crate::api::events::EventAction;
use crate::api::{Pod, PodStatus};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Work {
    /// Patch `pods/<name>/status` of the object with `uid`.
    Status { namespace: String, name: String, uid: String, status: PodStatus },
    /// The final delete of a pod whose containers are gone (grace 0, UID precondition).
    Delete { namespace: String, name: String, uid: String },
    /// Create the mirror pod of a static pod.
    CreateMirror(Box<Pod>),
    DeleteMirror { namespace: String, name: String, uid: String },
    /// Create or update an Event (best-effort).
    Event(crate::api::events::EventAction),
}

impl Work {
    /// Entries with the same key supersede each other.
    fn key(&self, seq: u64) -> String {
        match self {
            Work::Status { uid, .. } => format!("status/{uid}"),
            Work::Delete { uid, .. } => format!("delete/{uid}"),
            Work::CreateMirror(p) => format!("mirror/{}/{}", p.metadata.namespace, p.metadata.name),
            Work::DeleteMirror { uid, .. } => format!("unmirror/{uid}"),
            Work::Event(_) => format!("event/{seq}"),
        }
    }
}

/// Events are best-effort: beyond this many unsent, the oldest are dropped.
const MAX_PENDING_EVENTS: usize = 256;

#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    work: HashMap<String, Work>,
    seq: u64,
    events: usize,
}

#[derive(Default, Clone)]
pub struct Outbox {
    inner: Arc<(Mutex<Queue>, Condvar)>,
}

impl Outbox {
    pub fn push(&self, w: Work) {
        let (lock, cv) = &*self.inner;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        q.seq += 1;
        let key = w.key(q.seq);
        if matches!(w, Work::Event(_)) {
            q.events += 1;
            if q.events > MAX_PENDING_EVENTS {
                if let Some(pos) = q.order.iter().position(|k| k.starts_with("event/")) {
                    let old = q.order.remove(pos).expect("position is valid");
                    q.work.remove(&old);
                    q.events -= 1;
                }
            }
        }
        if q.work.insert(key.clone(), w).is_none() {
            q.order.push_back(key);
        }
        cv.notify_one();
    }

    fn take(&self) -> (String, Work) {
        let (lock, cv) = &*self.inner;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(key) = q.order.pop_front() {
                let w = q.work.remove(&key).expect("queued keys have work");
                if matches!(w, Work::Event(_)) {
                    q.events -= 1;
                }
                return (key, w);
            }
            q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    #[cfg(test)]
    pub fn try_take(&self) -> Option<(String, Work)> {
        let (lock, _) = &*self.inner;
        let has = !lock.lock().unwrap().order.is_empty();
        has.then(|| self.take())
    }

    /// Puts back work that failed, unless something newer replaced it.
    fn requeue(&self, key: String, w: Work) {
        let (lock, _) = &*self.inner;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !q.work.contains_key(&key) {
            if matches!(w, Work::Event(_)) {
                q.events += 1;
            }
            q.work.insert(key.clone(), w);
            q.order.push_front(key);
        }
    }
}

const MERGE: &str = "application/merge-patch+json";

fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

/// What happened to one piece of work.
enum Done {
    Ok,
    /// Cannot succeed (the pod is gone, forbidden...): drop it.
    Drop(ApiError),
    Retry(ApiError),
}

fn classify(r: Result<Value, ApiError>) -> Done {
    match r {
        Ok(_) => Done::Ok,
        Err(e) if e.permanent() => Done::Drop(e),
        Err(e) => Done::Retry(e),
    }
}

fn post_event(client: &Client, ev: &Value) -> Result<Value, ApiError> {
    let ns = ev["metadata"]["namespace"].as_str().unwrap_or("default");
    client.send("POST", &format!("/api/v1/namespaces/{ns}/events"), "application/json", ev)
}

/// A status merge patch; the UID in it is a precondition.
#[derive(serde::Serialize)]
struct StatusPatch<'a> {
    metadata: UidOnly<'a>,
    status: &'a PodStatus,
}

#[derive(serde::Serialize)]
struct UidOnly<'a> {
    uid: &'a str,
}

fn delete_body(uid: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
}

/// Runs forever, doing the outbox's work in order.
pub fn run(client: Arc<Client>, outbox: Outbox) {
    let mut quiet = Quiet::default();
    let mut retry = Retry::new(Duration::from_millis(500), Duration::from_secs(5));
    // Last status written per object UID; bounded by the pods on the node.
    let mut written: BTreeMap<String, PodStatus> = BTreeMap::new();
    loop {
        let (key, w) = outbox.take();
        let done = match &w {
            Work::Status { namespace, name, uid, status } => {
                if written.get(uid) == Some(status) {
                    continue;
                }
                // The UID in the patch is a precondition: a pod deleted and
                // recreated under the same name is not overwritten.
                let body = StatusPatch { metadata: UidOnly { uid }, status };
                let d = classify(client.send("PATCH", &format!("{}/status", pod_path(namespace, name)), MERGE, &body));
                if matches!(d, Done::Ok) {
                    written.insert(uid.clone(), status.clone());
                }
                d
            }
            Work::Delete { namespace, name, uid } => {
                written.remove(uid);
                match client.send("DELETE", &pod_path(namespace, name), "application/json", &delete_body(uid)) {
                    Err(e) if e.not_found() || e.conflict() => Done::Ok, // already gone, or another pod now
                    r => classify(r),
                }
            }
            Work::CreateMirror(pod) => {
                match client.send("POST", &format!("/api/v1/namespaces/{}/pods", pod.metadata.namespace), "application/json", &**pod) {
                    Err(e) if e.conflict() => Done::Ok,
                    r => classify(r),
                }
            }
            Work::DeleteMirror { namespace, name, uid } => {
                written.remove(uid);
                match client.send("DELETE", &pod_path(namespace, name), "application/json", &delete_body(uid)) {
                    Err(e) if e.not_found() || e.conflict() => Done::Ok,
                    r => classify(r),
                }
            }
            Work::Event(action) => {
                let r = match action {
                    EventAction::Create(ev) => post_event(&client, ev),
                    EventAction::Patch { namespace, name, body, event } => {
                        match client.send("PATCH", &format!("/api/v1/namespaces/{namespace}/events/{name}"), MERGE, body) {
                            // Expired from the API server: create it anew, count and all.
                            Err(e) if e.not_found() => post_event(&client, event),
                            r => r,
                        }
                    }
                };
                match r {
                    // Events are best-effort; a refused one is not retried.
                    Err(e) if e.status != 0 => Done::Drop(e),
                    r => classify(r),
                }
            }
        };
        match done {
            Done::Ok => {
                quiet.ok("writing to the API server");
                retry.reset();
            }
            Done::Drop(e) => log::warn!("{e}"),
            Done::Retry(e) => {
                quiet.failed("writing to the API server", &e);
                outbox.requeue(key, w);
                std::thread::sleep(retry.fail());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: &str, phase: &str) -> Work {
        Work::Status { namespace: "ns".into(), name: "p".into(), uid: uid.into(), status: PodStatus { phase: phase.into(), ..Default::default() } }
    }

    #[test]
    fn newer_status_replaces_unsent_one_in_place() {
        let o = Outbox::default();
        o.push(status("a", "Pending"));
        o.push(status("b", "Pending"));
        o.push(status("a", "Running"));
        let (_, w) = o.take();
        assert!(matches!(w, Work::Status { ref uid, ref status, .. } if uid == "a" && status.phase == "Running"));
        let (_, w) = o.take();
        assert!(matches!(w, Work::Status { ref uid, .. } if uid == "b"));
    }

    #[test]
    fn requeue_keeps_newer_work_and_events_are_bounded() {
        let o = Outbox::default();
        o.push(status("a", "Pending"));
        let (k, w) = o.take();
        o.push(status("a", "Running"));
        o.requeue(k, w);
        let (_, w) = o.take();
        assert!(matches!(w, Work::Status { ref status, .. } if status.phase == "Running"));
        for _ in 0..(MAX_PENDING_EVENTS + 10) {
            o.push(Work::Event(EventAction::Create(Value::Null)));
        }
        let q = o.inner.0.lock().unwrap();
        assert_eq!(q.events, MAX_PENDING_EVENTS);
        assert_eq!(q.order.len(), MAX_PENDING_EVENTS);
    }
}
