//! What to send to the API server for each pod event: client-go's event
//! correlator (tools/record/events_cache.go) without the HTTP. Given a
//! `PodEvent` and the time, `EventCorrelator::correlate` says whether to
//! create a core/v1 Event, patch one made earlier, or send nothing.
//!
//! As upstream, in this order:
//! - Aggregation: events about the same pod with the same type and reason
//!   but different messages are "similar". From the 10th distinct message
//!   within 10 minutes of the previous similar one, they become a single
//!   event whose message is `(combined from similar events): <latest>`.
//! - Deduplication: an event identical to one already sent (same pod,
//!   fieldPath, type, reason and message; or the same combined event) is
//!   a patch of that event's count, lastTimestamp and message, for as long
//!   as it stays in the cache. There is no other time window: a patch that
//!   answers 404 (the server's event TTL, 1 h by default, ran out, or the
//!   first create was dropped) is sent as a create of `event` instead, as
//!   client-go does.
//! - Spam filter: per pod, a token bucket of 25 refilled at one per 5
//!   minutes; an event (create or patch) without a token is dropped. Its
//!   occurrence still counts, so the next patch that gets through carries
//!   the true count.
//!
//! Memory is bounded: three LRU caches of at most `CACHE_SIZE` entries,
//! keyed by 128-bit digests, so long messages are not kept.
// Nothing outside the tests drives this until the cluster client is wired in.

use crate::api::time::rfc3339;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Entries per cache (client-go's maxLruCacheEntries).
pub const CACHE_SIZE: usize = 4096;
/// Events a pod may burst before the refill rate applies.
pub const SPAM_BURST: u32 = 25;
/// One more event per pod per this long once the burst is spent.
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Distinct similar messages at which aggregation starts.
pub const AGGREGATE_MAX_EVENTS: usize = 10;
/// Similar events further apart than this start a fresh count.
pub const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

const COMPONENT: &str = "kubelet";

/// One thing that happened to a pod or one of its containers.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEvent {
    pub pod_uid: String,
    pub namespace: String,
    pub pod_name: String,
    /// `spec.containers{NAME}` or `spec.initContainers{NAME}` for a
    /// container's event, None for the pod's own.
    pub field_path: Option<String>,
    /// Warning, else Normal.
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What to send for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventAction {
    /// POST /api/v1/namespaces/{ns}/events with this complete Event.
    Create(Value),
    /// PATCH /api/v1/namespaces/{namespace}/events/{name} with `body` as a
    /// merge patch (`application/merge-patch+json`; it only sets scalars,
    /// so a strategic merge patch reads the same). On 404, POST `event`,
    /// the whole event as it now stands (same name, current count).
    Patch { namespace: String, name: String, body: Value, event: Value },
}

/// The correlator's state: one per node, fed every event in order.
pub struct EventCorrelator {
    node: String,
    /// Per pod: the spam filter's token bucket.
    spam: Lru<Bucket>,
    /// Per pod, type and reason: the recent distinct messages.
    similar: Lru<Similar>,
    /// Per event (or combined event): the object it was sent as.
    seen: Lru<Seen>,
    /// The last name suffix handed out, so names stay unique within a tick.
    last_suffix: u128,
}

/// A token bucket kept in time: one token is `SPAM_REFILL` of credit, so
/// refilling is exact arithmetic on durations.
struct Bucket {
    credit: Duration,
    at: SystemTime,
}

struct Similar {
    /// Digests of the distinct messages, oldest first, fewer than the max.
    messages: VecDeque<u128>,
    last: SystemTime,
}

struct Seen {
    name: String,
    count: u64,
    first: SystemTime,
}

impl EventCorrelator {
    /// `node` is the node name: the events' source host and reporting instance.
    pub fn new(node: &str) -> EventCorrelator {
        EventCorrelator::with_capacity(node, CACHE_SIZE)
    }

    pub fn with_capacity(node: &str, cache_size: usize) -> EventCorrelator {
        EventCorrelator {
            node: node.to_string(),
            spam: Lru::new(cache_size),
            similar: Lru::new(cache_size),
            seen: Lru::new(cache_size),
            last_suffix: 0,
        }
    }

    /// Decides what to send for `e`, which happened at `now`. None: drop it
    /// (the spam filter).
    pub fn correlate(&mut self, e: &PodEvent, now: SystemTime) -> Option<EventAction> {
        let kind = if e.warning { "Warning" } else { "Normal" };
        let owner = digest(&[&e.pod_uid]) as u64;
        let object = [e.pod_uid.as_str(), &e.namespace, &e.pod_name];

        // Aggregation: is this the umpteenth message of a kind?
        let similar_key = digest(&[&object[..], &[kind, e.reason][..]].concat());
        let message_key = digest(&[&e.message]);
        let rec = self.similar.entry(similar_key, owner, || Similar { messages: VecDeque::new(), last: now });
        if now.duration_since(rec.last).unwrap_or_default() > AGGREGATE_INTERVAL {
            rec.messages.clear();
        }
        rec.last = now;
        if !rec.messages.contains(&message_key) {
            rec.messages.push_back(message_key);
        }
        let (message, seen_key) = if rec.messages.len() < AGGREGATE_MAX_EVENTS {
            let field_path = e.field_path.as_deref().unwrap_or("");
            (e.message.clone(), digest(&[&object[..], &[field_path, kind, e.reason, &e.message][..]].concat()))
        } else {
            // Do not grow past the max; the combined event is keyed by kind.
            rec.messages.pop_front();
            (format!("{COMBINED_PREFIX}{}", e.message), similar_key)
        };

        // Deduplication: sent before under some name?
        let (name, count, first) = match self.seen.get_mut(seen_key) {
            Some(s) => {
                s.count += 1;
                (s.name.clone(), s.count, s.first)
            }
            None => {
                let name = self.new_name(&e.pod_name, now);
                self.seen.insert(seen_key, owner, Seen { name: name.clone(), count: 1, first: now });
                (name, 1, now)
            }
        };

        // Spam filter, last: what it drops was still counted above.
        let full = SPAM_REFILL * SPAM_BURST;
        let bucket = self.spam.entry(digest(&object), owner, || Bucket { credit: full, at: now });
        let elapsed = now.duration_since(bucket.at).unwrap_or_default();
        bucket.credit = (bucket.credit + elapsed).min(full);
        bucket.at = bucket.at.max(now);
        if bucket.credit < SPAM_REFILL {
            return None;
        }
        bucket.credit -= SPAM_REFILL;

        let event = self.event(e, kind, &name, &message, count, first, now);
        if count == 1 {
            return Some(EventAction::Create(event));
        }
        let body = json!({"count": count, "lastTimestamp": rfc3339(now), "message": message});
        Some(EventAction::Patch { namespace: e.namespace.clone(), name, body, event })
    }

    /// Drops what is cached about a pod (it is gone for good).
    pub fn forget(&mut self, pod_uid: &str) {
        let owner = digest(&[pod_uid]) as u64;
        self.spam.remove_owner(owner);
        self.similar.remove_owner(owner);
        self.seen.remove_owner(owner);
    }

    /// `<pod name>.<hex unix nanoseconds>` as upstream names events, made
    /// unique when the clock repeats itself.
    fn new_name(&mut self, pod_name: &str, now: SystemTime) -> String {
        let nanos = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        self.last_suffix = nanos.max(self.last_suffix + 1);
        format!("{pod_name}.{:x}", self.last_suffix)
    }

    #[allow(clippy::too_many_arguments)]
    fn event(&self, e: &PodEvent, kind: &str, name: &str, message: &str, count: u64, first: SystemTime, now: SystemTime) -> Value {
        let mut involved = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": e.namespace,
            "name": e.pod_name,
            "uid": e.pod_uid,
        });
        if let Some(f) = &e.field_path {
            involved["fieldPath"] = f.as_str().into();
        }
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": e.namespace},
            "involvedObject": involved,
            "reason": e.reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT, "host": self.node},
            "firstTimestamp": rfc3339(first),
            "lastTimestamp": rfc3339(now),
            "count": count,
            "reportingComponent": COMPONENT,
            "reportingInstance": self.node,
            "eventTime": null,
        })
    }
}

/// SHA-256 of the parts (each ended by a NUL), first 128 bits.
fn digest(parts: &[&str]) -> u128 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    let d = ctx.finish();
    u128::from_be_bytes(d.as_ref()[..16].try_into().expect("32-byte digest"))
}

/// A least-recently-used map of at most `cap` entries, each tagged with the
/// pod it is about (`owner`) so a pod's entries can go at once.
struct Lru<V> {
    cap: usize,
    tick: u64,
    map: HashMap<u128, (V, u64, u64)>,
    /// tick of last use -> key, oldest first.
    order: BTreeMap<u64, u128>,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Lru<V> {
        Lru { cap: cap.max(1), tick: 0, map: HashMap::new(), order: BTreeMap::new() }
    }

    fn touch(&mut self, key: u128) {
        if let Some((_, _, t)) = self.map.get_mut(&key) {
            self.order.remove(t);
            self.tick += 1;
            *t = self.tick;
            self.order.insert(self.tick, key);
        }
    }

    fn get_mut(&mut self, key: u128) -> Option<&mut V> {
        self.touch(key);
        self.map.get_mut(&key).map(|(v, _, _)| v)
    }

    fn insert(&mut self, key: u128, owner: u64, v: V) {
        if let Some((_, _, t)) = self.map.remove(&key) {
            self.order.remove(&t);
        }
        while self.map.len() >= self.cap {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.map.remove(&oldest);
        }
        self.tick += 1;
        self.map.insert(key, (v, owner, self.tick));
        self.order.insert(self.tick, key);
    }

    fn entry(&mut self, key: u128, owner: u64, new: impl FnOnce() -> V) -> &mut V {
        if self.map.contains_key(&key) {
            self.touch(key);
        } else {
            self.insert(key, owner, new());
        }
        &mut self.map.get_mut(&key).expect("just inserted").0
    }

    fn remove_owner(&mut self, owner: u64) {
        let order = &mut self.order;
        self.map.retain(|_, (_, o, t)| {
            if *o == owner {
                order.remove(t);
            }
            *o != owner
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_714_564_800 + secs)
    }

    fn ev(uid: &str, reason: &'static str, message: &str) -> PodEvent {
        PodEvent {
            pod_uid: uid.into(),
            namespace: "default".into(),
            pod_name: format!("pod-{uid}"),
            field_path: Some("spec.containers{web}".into()),
            warning: true,
            reason,
            message: message.into(),
        }
    }

    fn create(a: Option<EventAction>) -> Value {
        match a {
            Some(EventAction::Create(v)) => v,
            other => panic!("want a create, got {other:?}"),
        }
    }

    #[test]
    fn a_new_event_is_a_complete_v1_event() {
        let mut c = EventCorrelator::new("node1");
        let mut e = ev("u1", "BackOff", "Back-off restarting failed container web in pod pod-u1_default(u1)");
        let v = create(c.correlate(&e, at(0) + Duration::from_nanos(5)));
        let want = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "pod-u1.17cb5b99f8638005", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": "default", "name": "pod-u1", "uid": "u1",
                               "fieldPath": "spec.containers{web}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container web in pod pod-u1_default(u1)",
            "type": "Warning",
            "source": {"component": "kubelet", "host": "node1"},
            "firstTimestamp": "2024-05-01T12:00:00Z",
            "lastTimestamp": "2024-05-01T12:00:00Z",
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": "node1",
            "eventTime": null,
        });
        assert_eq!(v, want);
        assert_eq!(format!("{:x}", 1_714_564_800_000_000_005u128), "17cb5b99f8638005");

        // A pod-level Normal event has no fieldPath; names stay unique at one instant.
        e.field_path = None;
        e.warning = false;
        e.reason = "Pulled";
        let v = create(c.correlate(&e, at(0)));
        assert!(v["involvedObject"].get("fieldPath").is_none());
        assert_eq!(v["type"], "Normal");
        assert_eq!(v["metadata"]["name"], "pod-u1.17cb5b99f8638006");
    }

    #[test]
    fn duplicates_patch_the_first_with_a_rising_count() {
        let mut c = EventCorrelator::new("node1");
        let e = ev("u1", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503");
        let first = create(c.correlate(&e, at(0)));
        let name = first["metadata"]["name"].as_str().unwrap().to_string();
        for n in 2..=5u64 {
            match c.correlate(&e, at(10 * n)) {
                Some(EventAction::Patch { namespace, name: pname, body, event }) => {
                    assert_eq!((namespace.as_str(), pname.as_str()), ("default", name.as_str()));
                    assert_eq!(body, json!({"count": n, "lastTimestamp": rfc3339(at(10 * n)), "message": e.message}));
                    assert_eq!(event["count"], n);
                    assert_eq!(event["metadata"]["name"], name.as_str());
                    assert_eq!(event["firstTimestamp"], "2024-05-01T12:00:00Z");
                }
                other => panic!("want a patch, got {other:?}"),
            }
        }
        // Another container, or another message, is another event.
        let mut other = e.clone();
        other.field_path = Some("spec.containers{side}".into());
        create(c.correlate(&other, at(60)));
        let mut other = e.clone();
        other.message = "Readiness probe failed: timeout".into();
        create(c.correlate(&other, at(60)));
        // ...and another pod too.
        create(c.correlate(&ev("u2", "Unhealthy", &e.message), at(60)));
    }

    #[test]
    fn similar_events_are_combined_from_the_tenth() {
        let mut c = EventCorrelator::new("node1");
        let msg = |i: u32| format!("Liveness probe failed: attempt {i}");
        for i in 1..=9 {
            let v = create(c.correlate(&ev("u1", "Unhealthy", &msg(i)), at(i as u64)));
            assert_eq!(v["message"], msg(i));
        }
        let v = create(c.correlate(&ev("u1", "Unhealthy", &msg(10)), at(10)));
        assert_eq!(v["message"], format!("(combined from similar events): {}", msg(10)));
        let combined = v["metadata"]["name"].as_str().unwrap().to_string();
        match c.correlate(&ev("u1", "Unhealthy", &msg(11)), at(11)) {
            Some(EventAction::Patch { name, body, .. }) => {
                assert_eq!(name, combined);
                assert_eq!(body["count"], 2);
                assert_eq!(body["message"], format!("(combined from similar events): {}", msg(11)));
            }
            other => panic!("want a patch of the combined event, got {other:?}"),
        }
        // Another reason of the same pod is not similar.
        let v = create(c.correlate(&ev("u1", "Killing", "Stopping container web"), at(12)));
        assert_eq!(v["message"], "Stopping container web");
        // Ten quiet minutes later, similar events start a fresh count.
        let v = create(c.correlate(&ev("u1", "Unhealthy", &msg(12)), at(11 + 601)));
        assert_eq!(v["message"], msg(12));
    }

    #[test]
    fn spam_filter_bursts_25_then_one_per_5_minutes() {
        let mut c = EventCorrelator::new("node1");
        let reasons: Vec<&'static str> = (0..30).map(|i| &*Box::leak(format!("Reason{i}").into_boxed_str())).collect();
        let passed = reasons.iter().filter(|r| c.correlate(&ev("u1", r, "m"), at(0)).is_some()).count();
        assert_eq!(passed, 25);
        // The budget is the pod's: another pod still has its own.
        assert!(c.correlate(&ev("u2", "Other", "m"), at(0)).is_some());
        assert!(c.correlate(&ev("u1", "Late", "m"), at(299)).is_none());
        assert!(c.correlate(&ev("u1", "Later", "m"), at(300)).is_some(), "one token refilled after 5 minutes");
        assert!(c.correlate(&ev("u1", "Latest", "m"), at(300)).is_none());
        // A dropped event still counts: its next copy is a patch with count 2,
        // carrying the whole event for the create its 404 calls for.
        match c.correlate(&ev("u1", "Reason29", "m"), at(600)) {
            Some(EventAction::Patch { event, body, .. }) => {
                assert_eq!(body["count"], 2);
                assert_eq!(event["reason"], "Reason29");
                assert_eq!(event["count"], 2);
            }
            other => panic!("want a patch, got {other:?}"),
        }
        // A long quiet spell refills the burst, no more; a clock that steps
        // back refills nothing.
        let passed = reasons.iter().filter(|r| c.correlate(&ev("u1", r, "n"), at(100_000)).is_some()).count();
        assert_eq!(passed, 25);
        assert!(c.correlate(&ev("u1", "Back", "m"), at(50_000)).is_none());
    }

    #[test]
    fn caches_stay_capped_and_forget_a_pod() {
        let mut c = EventCorrelator::with_capacity("node1", 8);
        for i in 0..100 {
            let uid = format!("u{i}");
            c.correlate(&ev(&uid, "Pulled", "a"), at(i));
            c.correlate(&ev(&uid, "Created", "b"), at(i));
        }
        assert!(c.spam.len() <= 8 && c.similar.len() <= 8 && c.seen.len() <= 8);
        assert_eq!(c.seen.order.len(), c.seen.len());
        // The most recent pod is still known; an evicted one starts over.
        assert!(matches!(c.correlate(&ev("u99", "Created", "b"), at(200)), Some(EventAction::Patch { .. })));
        assert!(matches!(c.correlate(&ev("u0", "Created", "b"), at(200)), Some(EventAction::Create(_))));

        c.forget("u99");
        assert!(matches!(c.correlate(&ev("u99", "Created", "b"), at(201)), Some(EventAction::Create(_))));
        c.forget("u99");
        c.forget("u0");
        assert_eq!(c.seen.order.len(), c.seen.len());
        assert!(c.seen.len() < 8);
        let mut big = EventCorrelator::new("node1");
        big.correlate(&ev("u1", "Pulled", "a"), at(0));
        assert_eq!((big.spam.len(), big.similar.len(), big.seen.len()), (1, 1, 1));
        big.forget("u1");
        assert_eq!((big.spam.len(), big.similar.len(), big.seen.len()), (0, 0, 0));
    }
}
