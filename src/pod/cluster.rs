//! The pod loop's view of the cluster: which API pods are bound to this node,
//! which mirror pods exist, and what must be written back (statuses, final
//! deletions, mirror pods). No HTTP here: updates come in from the watch
//! thread (pod/apisource) and work goes out to the writer (pod/apiwriter).

use super::apisource::{ApiPod, Update};
use super::apiwriter::{Outbox, Work};
use crate::api::{OwnerReference, Pod, PodCondition, PodStatus};
use std::sync::{Arc, OnceLock};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

const MIRROR: &str = "kubernetes.io/config.mirror";
const HASH: &str = "kubernetes.io/config.hash";

fn is_mirror(p: &crate::api::ObjectMeta) -> bool {
    p.annotations.contains_key(MIRROR)
}

struct Mirror {
    uid: String,
    hash: String,
}

/// An API pod as kept here: the pod for the manager (without its status) and
/// the API's conditions that picolet does not own (PodScheduled, readiness
/// gates, DisruptionTarget...), kept when the status is written back.
struct Bound {
    pod: ApiPod,
    foreign: Vec<PodCondition>,
}

pub struct Cluster {
    outbox: Outbox,
    node: String,
    /// Set once the Node is registered; mirror pods are owned by it.
    node_uid: Arc<OnceLock<String>>,
    /// Until the first list, pods from the local checkpoint stand in.
    synced: bool,
    pods: BTreeMap<String, Bound>,
    /// Mirror pods by `namespace/name`.
    mirrors: BTreeMap<String, Mirror>,
    /// Mirror creations asked for, by `namespace/name` → hash, until seen.
    mirror_requested: BTreeMap<String, String>,
    /// Rejected pods already reported.
    reported: HashSet<String>,
    correlator: crate::api::events::EventCorrelator,
}

/// Conditions the kubelet computes; every other type is the API's.
const OWN: [&str; 4] = ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"];

impl Cluster {
    /// `checkpointed`: the pods a previous run was running for the API (from
    /// the manager's checkpoints), desired until the API says otherwise, so
    /// a node that reboots while the API server is away brings them back.
    pub fn new(outbox: Outbox, node: &str, node_uid: Arc<OnceLock<String>>, checkpointed: Vec<Pod>) -> Cluster {
        let mut c = Cluster {
            outbox,
            node: node.to_string(),
            node_uid,
            synced: false,
            pods: BTreeMap::new(),
            mirrors: BTreeMap::new(),
            mirror_requested: BTreeMap::new(),
            reported: HashSet::new(),
            correlator: crate::api::events::EventCorrelator::new(node),
        };
        for p in checkpointed.into_iter().filter(|p| !p.is_static()) {
            c.insert(ApiPod::Ok(Box::new(p)));
        }
        c
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    fn insert(&mut self, mut p: ApiPod) {
        let meta = p.meta().clone();
        if is_mirror(&meta) {
            let key = format!("{}/{}", meta.namespace, meta.name);
            if meta.deletion_timestamp.is_some() {
                // Someone deleted the mirror: finish that (the kubelet owns
                // the final delete) and make a new one; the static pod runs on.
                self.mirrors.remove(&key);
                self.mirror_requested.remove(&key);
                self.outbox.push(Work::DeleteMirror { namespace: meta.namespace, name: meta.name, uid: meta.uid });
                return;
            }
            let hash = meta.annotations.get(MIRROR).cloned().unwrap_or_default();
            self.mirrors.insert(key, Mirror { uid: meta.uid, hash });
            return;
        }
        let foreign = match &mut p {
            ApiPod::Ok(pod) => pod.status.take().map(|s| s.conditions).unwrap_or_default().into_iter().filter(|c| !OWN.contains(&c.type_.as_str())).collect(),
            ApiPod::Rejected { .. } => Vec::new(),
        };
        self.pods.insert(meta.uid.clone(), Bound { pod: p, foreign });
    }

    /// Applies one update from the watch thread.
    pub fn apply(&mut self, u: Update) {
        match u {
            Update::Synced(items) => {
                self.synced = true;
                self.pods.clear();
                self.mirrors.clear();
                self.mirror_requested.clear();
                for p in items {
                    self.insert(p);
                }
            }
            Update::Upsert(p) => self.insert(p),
            Update::Objects => {} // only wakes the loop: pods waiting for them retry
            Update::Deleted { uid } => {
                self.pods.remove(&uid);
                self.reported.remove(&uid);
                self.mirrors.retain(|key, m| {
                    let gone = m.uid == uid;
                    if gone {
                        log::info!("mirror pod {key} deleted");
                    }
                    !gone
                });
                self.mirror_requested.retain(|k, _| self.mirrors.contains_key(k));
            }
        }
    }

    /// The API pods picolet should run (or finish stopping).
    pub fn desired(&self) -> impl Iterator<Item = &Pod> {
        self.pods.values().filter_map(|b| match &b.pod {
            ApiPod::Ok(p) => Some(&**p),
            ApiPod::Rejected { .. } => None,
        })
    }

    /// After a pass of the pod loop: statuses of every pod the manager knows,
    /// rejected pods reported, mirror pods for `statics` kept in line.
    pub fn publish(&mut self, pods: &[Pod], statics: &[Pod]) {
        if !self.synced {
            return; // the UIDs known offline may be stale; wait for a list
        }
        for p in pods {
            let Some(status) = &p.status else { continue };
            if p.is_static() {
                let key = format!("{}/{}", p.metadata.namespace, p.metadata.name);
                if let Some(m) = self.mirrors.get(&key) {
                    let work = Work::Status { namespace: p.metadata.namespace.clone(), name: p.metadata.name.clone(), uid: m.uid.clone(), status: status.clone() };
                    self.outbox.push(work);
                }
                continue;
            }
            let Some(b) = self.pods.get(&p.metadata.uid) else { continue };
            let mut status = status.clone();
            merge_conditions(&mut status, &b.foreign);
            self.outbox.push(Work::Status { namespace: p.metadata.namespace.clone(), name: p.metadata.name.clone(), uid: p.metadata.uid.clone(), status });
        }
        for (uid, b) in &self.pods {
            if let ApiPod::Rejected { meta, reason } = &b.pod {
                if meta.deletion_timestamp.is_some() {
                    self.outbox.push(Work::Delete { namespace: meta.namespace.clone(), name: meta.name.clone(), uid: uid.clone() });
                } else if self.reported.insert(uid.clone()) {
                    log::warn!("pod {}/{}: cannot run it: {reason}", meta.namespace, meta.name);
                    let event = crate::api::events::PodEvent {
                        pod_uid: uid.clone(),
                        namespace: meta.namespace.clone(),
                        pod_name: meta.name.clone(),
                        field_path: None,
                        warning: true,
                        reason: "UnsupportedPodSpec",
                        message: reason.clone(),
                    };
                    if let Some(a) = self.correlator.correlate(&event, std::time::SystemTime::now()) {
                        self.outbox.push(Work::Event(a));
                    }
                    let status = PodStatus { phase: "Failed".into(), reason: "UnsupportedPodSpec".into(), message: format!("picolet cannot run this pod: {reason}"), ..Default::default() };
                    self.outbox.push(Work::Status { namespace: meta.namespace.clone(), name: meta.name.clone(), uid: uid.clone(), status });
                }
            }
        }
        self.sync_mirrors(statics);
    }

    fn sync_mirrors(&mut self, statics: &[Pod]) {
        let Some(node_uid) = self.node_uid.get() else { return };
        let mut wanted = HashSet::new();
        for p in statics {
            let key = format!("{}/{}", p.metadata.namespace, p.metadata.name);
            let hash = p.metadata.annotations.get(HASH).cloned().unwrap_or_default();
            wanted.insert(key.clone());
            match self.mirrors.get(&key) {
                Some(m) if m.hash == hash => {}
                Some(m) => {
                    // The manifest changed: replace the mirror once the old one is gone.
                    self.outbox.push(Work::DeleteMirror { namespace: p.metadata.namespace.clone(), name: p.metadata.name.clone(), uid: m.uid.clone() });
                }
                None if self.mirror_requested.get(&key) == Some(&hash) => {}
                None => {
                    self.mirror_requested.insert(key, hash);
                    self.outbox.push(Work::CreateMirror(Box::new(mirror_of(p, &self.node, node_uid))));
                }
            }
        }
        for (key, m) in &self.mirrors {
            if !wanted.contains(key) {
                let (ns, name) = key.split_once('/').unwrap_or(("", key));
                self.outbox.push(Work::DeleteMirror { namespace: ns.into(), name: name.into(), uid: m.uid.clone() });
            }
        }
    }

    /// Events from the manager, correlated (deduplicated, aggregated, rate
    /// limited) before they are sent.
    pub fn events(&mut self, events: Vec<crate::api::events::PodEvent>) {
        let now = std::time::SystemTime::now();
        for e in &events {
            if let Some(action) = self.correlator.correlate(e, now) {
                self.outbox.push(Work::Event(action));
            }
        }
    }

    /// Pods the manager finished removing: a pod being deleted gets its final
    /// delete now that nothing of it runs.
    pub fn removed(&mut self, pods: Vec<Rc<Pod>>) {
        for p in pods {
            self.correlator.forget(&p.metadata.uid);
            if p.metadata.deletion_timestamp.is_some() && !p.is_static() {
                self.outbox.push(Work::Delete { namespace: p.metadata.namespace.clone(), name: p.metadata.name.clone(), uid: p.metadata.uid.clone() });
            }
        }
    }
}

/// Ours replace the API's own types; the API's others (PodScheduled from the
/// scheduler, readiness gates...) are kept. A pod bound without the
/// scheduler has no PodScheduled, so ours stands in, as upstream's does.
fn merge_conditions(status: &mut PodStatus, foreign: &[PodCondition]) {
    status.conditions.retain(|c| OWN.contains(&c.type_.as_str()) || !foreign.iter().any(|f| f.type_ == c.type_));
    status.conditions.splice(0..0, foreign.iter().cloned());
}

/// The mirror pod of a static pod: the same spec and labels, bound to this
/// node, with the config.mirror annotation NodeRestriction requires.
fn mirror_of(p: &Pod, node: &str, node_uid: &str) -> Pod {
    let mut m = p.clone();
    m.status = None;
    m.api_version = "v1".into();
    m.kind = "Pod".into();
    m.metadata.uid.clear();
    m.metadata.resource_version.clear();
    m.metadata.creation_timestamp = None;
    let hash = p.metadata.annotations.get(HASH).cloned().unwrap_or_default();
    m.metadata.annotations.insert(MIRROR.into(), hash);
    m.spec.node_name = node.to_string();
    // NodeRestriction: a node may only create pods it owns (and the garbage
    // collector removes them with the Node).
    m.metadata.owner_references = vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid.to_string(),
        controller: Some(true),
    }];
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_pod(uid: &str, name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.uid = uid.into();
        p.metadata.name = name.into();
        p.metadata.namespace = "default".into();
        p
    }

    fn static_pod(name: &str, hash: &str) -> Pod {
        let mut p = api_pod(&format!("s-{name}"), name);
        p.metadata.annotations.insert("kubernetes.io/config.source".into(), "file".into());
        p.metadata.annotations.insert(HASH.into(), hash.into());
        p
    }

    fn uid() -> Arc<OnceLock<String>> {
        Arc::new(OnceLock::from("nu".to_string()))
    }

    fn drain(o: &Outbox) -> Vec<Work> {
        let mut out = Vec::new();
        while let Some((_, w)) = o.try_take() {
            out.push(w);
        }
        out
    }

    #[test]
    fn checkpointed_pods_stand_in_until_the_first_list() {
        let o = Outbox::default();
        let mut c = Cluster::new(o.clone(), "n", uid(), vec![api_pod("a", "web"), static_pod("s", "h")]);
        assert_eq!(c.desired().count(), 1);
        c.publish(&[], &[]);
        assert!(drain(&o).is_empty(), "nothing is written before the first list");
        c.apply(Update::Synced(vec![ApiPod::Ok(Box::new(api_pod("b", "db")))]));
        let names: Vec<_> = c.desired().map(|p| p.metadata.name.clone()).collect();
        assert_eq!(names, ["db"]);
    }

    #[test]
    fn statuses_keep_the_api_s_conditions() {
        let o = Outbox::default();
        let mut c = Cluster::new(o.clone(), "n", uid(), vec![]);
        let mut p = api_pod("a", "web");
        let cond = |t: &str| PodCondition { type_: t.into(), status: "True".into(), ..Default::default() };
        p.status = Some(PodStatus { conditions: vec![cond("PodScheduled"), cond("Ready")], ..Default::default() });
        c.apply(Update::Synced(vec![ApiPod::Ok(Box::new(p))]));
        assert!(c.desired().next().unwrap().status.is_none(), "the manager gets no API status");
        let mut mine = api_pod("a", "web");
        mine.status = Some(PodStatus { phase: "Running".into(), conditions: vec![cond("PodScheduled"), cond("Ready")], ..Default::default() });
        c.publish(&[mine], &[]);
        let w = drain(&o);
        let Work::Status { status, uid, .. } = &w[0] else { panic!() };
        assert_eq!(uid, "a");
        let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["PodScheduled", "Ready"]);
    }

    #[test]
    fn mirror_pods_created_once_recreated_after_deletion_replaced_on_change() {
        let o = Outbox::default();
        let mut c = Cluster::new(o.clone(), "n", uid(), vec![]);
        c.apply(Update::Synced(vec![]));
        let s = static_pod("etcd-n", "h1");
        c.publish(&[], &[s.clone()]);
        c.publish(&[], &[s.clone()]);
        let w = drain(&o);
        assert_eq!(w.len(), 1);
        let Work::CreateMirror(m) = &w[0] else { panic!() };
        assert_eq!(m.metadata.annotations[MIRROR], "h1");
        assert_eq!(m.spec.node_name, "n");
        assert_eq!(m.metadata.owner_references[0].uid, "nu");
        assert!(m.metadata.uid.is_empty());
        // The mirror appears, then someone deletes it.
        let mut seen = (**m).clone();
        seen.metadata.uid = "m1".into();
        c.apply(Update::Upsert(ApiPod::Ok(Box::new(seen))));
        assert_eq!(c.desired().count(), 0, "a mirror pod is never run");
        c.publish(&[], &[s.clone()]);
        assert!(drain(&o).is_empty());
        c.apply(Update::Deleted { uid: "m1".into() });
        c.publish(&[], &[s.clone()]);
        assert!(matches!(drain(&o)[..], [Work::CreateMirror(_)]));
        // A changed manifest replaces the mirror.
        let mut seen = mirror_of(&s, "n", "nu");
        seen.metadata.uid = "m2".into();
        c.apply(Update::Upsert(ApiPod::Ok(Box::new(seen))));
        c.publish(&[], &[static_pod("etcd-n", "h2")]);
        assert!(matches!(&drain(&o)[..], [Work::DeleteMirror { uid, .. }] if uid == "m2"));
    }

    #[test]
    fn rejected_pods_fail_once_and_deleted_pods_get_their_final_delete() {
        let o = Outbox::default();
        let mut c = Cluster::new(o.clone(), "n", uid(), vec![]);
        let meta = api_pod("r", "bad").metadata;
        c.apply(Update::Synced(vec![ApiPod::Rejected { meta, reason: "spec.restartPolicy: Unsupported value".into() }]));
        c.publish(&[], &[]);
        c.publish(&[], &[]);
        let w = drain(&o);
        assert_eq!(w.len(), 2, "one event, one status");
        let Work::Event(crate::api::events::EventAction::Create(ev)) = &w[0] else { panic!() };
        assert_eq!(ev["reason"], "UnsupportedPodSpec");
        let Work::Status { status, .. } = &w[1] else { panic!() };
        assert_eq!((status.phase.as_str(), status.reason.as_str()), ("Failed", "UnsupportedPodSpec"));
        let mut gone = api_pod("a", "web");
        gone.metadata.deletion_timestamp = Some("t".into());
        c.removed(vec![Rc::new(gone), Rc::new(api_pod("b", "unbound"))]);
        assert!(matches!(&drain(&o)[..], [Work::Delete { uid, .. }] if uid == "a"));
    }
}
