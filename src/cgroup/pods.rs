//! What the pod worker asks of the cgroup tree: a pod's cgroup with its
//! limits before its first container starts, the containers' cgroup paths,
//! the burstable tier's weight as pods come and go, and removal.

use super::resources::{self, PodSettings};
use super::{CgroupError, Tree};
use crate::api::Pod;
use crate::api::qos::qos_class;
use std::cell::Cell;
use std::collections::HashSet;

/// The node-wide figures kubepods is given (node allocatable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeLimits {
    pub cpu_milli: i64,
    pub memory: i64,
}

#[derive(Debug, Clone)]
pub struct PodCgroups {
    tree: Tree,
    /// podPidsLimit (-1: unlimited).
    pids_limit: i64,
    /// The burstable tier's cpu.weight as last written.
    burstable: Cell<Option<u64>>,
}

impl PodCgroups {
    /// Creates the tree (see [`Tree::setup`]) and writes kubepods' and the
    /// QoS tiers' settings.
    pub fn setup(tree: Tree, evacuate: bool, node: NodeLimits, pids_limit: i64) -> Result<PodCgroups, CgroupError> {
        tree.setup(evacuate)?;
        let kubepods = [
            ("cpu.weight", resources::weight(resources::shares(node.cpu_milli.into())).to_string()),
            ("memory.max", node.memory.max(0).to_string()),
        ];
        tree.write_all(&tree.kubepods(), &kubepods)?;
        tree.write_all(&tree.qos_path("BestEffort"), &[("cpu.weight", resources::besteffort_weight().to_string())])?;
        let c = PodCgroups { tree, pids_limit, burstable: Cell::new(None) };
        c.update_tiers(std::iter::empty())?;
        Ok(c)
    }

    #[cfg(test)]
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The container's `linux.cgroupsPath`.
    pub fn container_path(&self, pod: &Pod, container_id: &str) -> String {
        self.tree.container_path(qos_class(pod), &pod.metadata.uid, container_id)
    }

    /// Creates the pod's cgroup under its QoS tier and writes its limits.
    pub fn ensure_pod(&self, pod: &Pod) -> Result<(), CgroupError> {
        let qos = qos_class(pod);
        let settings = PodSettings::of(pod, qos, self.pids_limit);
        self.tree.ensure_pod(qos, &pod.metadata.uid, &settings.files())
    }

    pub fn remove_pod(&self, uid: &str) -> Result<(), CgroupError> {
        self.tree.remove_pod(uid)
    }

    /// Removes cgroups of pods other than `keep` (logged).
    pub fn remove_stale(&self, keep: &HashSet<String>) {
        for (uid, r) in self.tree.remove_stale(keep) {
            match r {
                Ok(()) => log::info!("removed the cgroup of pod {uid}, which no longer exists"),
                Err(e) => log::warn!("pod {uid} no longer exists but its cgroup stays: {e}"),
            }
        }
    }

    /// Rewrites the burstable tier's cpu.weight from the burstable pods
    /// among `pods` when it changed.
    pub fn update_tiers<'a>(&self, pods: impl Iterator<Item = &'a Pod>) -> Result<(), CgroupError> {
        let w = resources::burstable_weight(pods.filter(|p| qos_class(p) == "Burstable"));
        if self.burstable.get() == Some(w) {
            return Ok(());
        }
        // Remembered even if the write fails: said once, tried again on change.
        self.burstable.set(Some(w));
        self.tree.write_all(&self.tree.qos_path("Burstable"), &[("cpu.weight", w.to_string())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Container, ObjectMeta, PodSpec, ResourceRequirements};
    use crate::cgroup::tree::tests::FakeFs;

    fn pod(uid: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Pod {
        let mut r = ResourceRequirements::default();
        for (k, v) in requests {
            r.requests.insert(k.to_string(), v.to_string());
        }
        for (k, v) in limits {
            r.limits.insert(k.to_string(), v.to_string());
        }
        let c = Container { name: "c".into(), image: "busybox".into(), resources: Some(r), ..Default::default() };
        Pod {
            metadata: ObjectMeta { uid: uid.into(), name: uid.into(), ..Default::default() },
            spec: PodSpec { containers: vec![c], ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn node_tiers_and_pods() {
        let fs = FakeFs::new("podcg");
        for p in ["/t", "/t/kubepods", "/t/kubepods/burstable", "/t/kubepods/besteffort"] {
            fs.cgroup(p, "cpu memory pids", "");
        }
        let tree = Tree::new(&fs.0, "/t");
        let node = NodeLimits { cpu_milli: 2000, memory: 1 << 30 };
        let c = PodCgroups::setup(tree, false, node, 64).unwrap();
        assert_eq!(fs.read("/t/kubepods", "cpu.weight"), "79");
        assert_eq!(fs.read("/t/kubepods", "memory.max"), "1073741824");
        assert_eq!(fs.read("/t/kubepods/besteffort", "cpu.weight"), "1");
        assert_eq!(fs.read("/t/kubepods/burstable", "cpu.weight"), "1");

        let g = pod("g", &[], &[("cpu", "1"), ("memory", "64Mi")]);
        let b = pod("b", &[("cpu", "500m")], &[]);
        let e = pod("e", &[], &[]);
        for p in [&g, &b, &e] {
            let path = c.tree().pod_path(qos_class(p), &p.metadata.uid);
            fs.cgroup(&path, "cpu memory pids", "");
            c.ensure_pod(p).unwrap();
        }
        assert_eq!(c.container_path(&b, "b-c-0"), "/t/kubepods/burstable/podb/b-c-0");
        assert_eq!(fs.read("/t/kubepods/podg", "cpu.weight"), "39");
        assert_eq!(fs.read("/t/kubepods/podg", "cpu.max"), "100000 100000");
        assert_eq!(fs.read("/t/kubepods/podg", "memory.max"), "67108864");
        assert_eq!(fs.read("/t/kubepods/podg", "pids.max"), "64");
        assert_eq!(fs.read("/t/kubepods/burstable/podb", "cpu.weight"), "20");
        assert_eq!(fs.read("/t/kubepods/burstable/podb", "cpu.max"), "max 100000");
        assert_eq!(fs.read("/t/kubepods/besteffort/pode", "cpu.weight"), "1");

        c.update_tiers([&g, &b, &e].into_iter()).unwrap();
        assert_eq!(fs.read("/t/kubepods/burstable", "cpu.weight"), "20");
        // Unchanged weight: not rewritten (the marker survives).
        std::fs::write(fs.0.join("t/kubepods/burstable/cpu.weight"), "marker").unwrap();
        c.update_tiers([&b].into_iter()).unwrap();
        assert_eq!(fs.read("/t/kubepods/burstable", "cpu.weight"), "marker");
        c.update_tiers(std::iter::empty()).unwrap();
        assert_eq!(fs.read("/t/kubepods/burstable", "cpu.weight"), "1");
    }
}
