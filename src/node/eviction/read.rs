//! The readings eviction decides on, from the kernel and picolet's dirs.
//!
//! memory.available = MemTotal − node working set. Upstream takes the
//! working set of the root cgroup (usage − inactive_file). On cgroup v2 the
//! root cgroup has no `memory.current`; runc's own fallback for it (and so
//! cAdvisor's root figures) reads /proc/meminfo: usage = MemTotal − MemFree,
//! inactive_file = `Inactive(file)`. picolet does the same on v1 and v2
//! (one code path, [`crate::cgroup::stats::Roots::node_usage`]), so
//! available = MemFree + Inactive(file). Not MemTotal − MemAvailable, which
//! counts active page cache and slab as free and would fire later.
//!
//! nodefs is the filesystem of the root dir (and of the pod logs dir when
//! that is another one: the fuller of the two counts); imagefs is the image
//! store's, the same figures when it is on the same device. Per-pod usage
//! comes from crate::stats, as `/stats/summary` serves it (cgroups, walks of
//! writable layers, logs and emptyDirs), read only when a threshold is met.

use super::rank::{ContainerUsage, PodUsage};
use super::{FsReading, Observations};
use crate::api::{self, quantity::parse_int};
use crate::cgroup::stats::Roots;
use crate::stats::{self, Detail, Sources};
use std::path::{Path, PathBuf};

/// Where the readings come from.
#[derive(Debug, Clone)]
pub struct Reader {
    pub roots: Roots,
    pub root_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub image_store: PathBuf,
}

/// statvfs of the filesystem holding `path`, with its device.
fn statvfs(path: &Path) -> Option<(FsReading, u64)> {
    use std::os::unix::fs::MetadataExt;
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = s.fragment_size() as i64;
    let dev = std::fs::metadata(path).ok()?.dev();
    let r = FsReading {
        available_bytes: (s.blocks_available() as i64).saturating_mul(frsize),
        capacity_bytes: (s.blocks() as i64).saturating_mul(frsize),
        inodes_free: s.files_free() as i64,
        inodes: s.files() as i64,
    };
    Some((r, dev))
}

/// The fuller of two filesystems (by the share of bytes available).
fn fuller(a: FsReading, b: FsReading) -> FsReading {
    let share = |f: &FsReading| if f.capacity_bytes > 0 { f.available_bytes as f64 / f.capacity_bytes as f64 } else { 1.0 };
    if share(&b) < share(&a) {
        b
    } else {
        a
    }
}

impl Reader {
    /// The node's readings now; what cannot be read stays None.
    pub fn observe(&self) -> Observations {
        let memory = match self.roots.node_usage() {
            Ok(n) => Some((n.memory_total as i64, n.memory.working_set as i64)),
            Err(e) => {
                log::debug!("eviction: node memory: {e}");
                None
            }
        };
        let root = statvfs(&self.root_dir);
        let nodefs = match (root, statvfs(&self.logs_dir)) {
            (Some((r, rdev)), Some((l, ldev))) if rdev != ldev => Some(fuller(r, l)),
            (r, _) => r.map(|(r, _)| r),
        };
        // One device is read once: two reads of a busy filesystem differ,
        // and nodefs and imagefs must agree when they are the same disk.
        let imagefs = match (root, statvfs(&self.image_store)) {
            (Some((r, rdev)), Some((_, idev))) if rdev == idev => Some(r),
            (_, i) => i.map(|(i, _)| i),
        };
        Observations { memory, nodefs, imagefs }
    }

    /// Usage of the pods in `pods` that have running containers; with
    /// `disk`, their writable layers, logs and emptyDirs are walked too.
    pub fn pod_usage(&self, pods: &[api::Pod], disk: bool) -> Vec<PodUsage> {
        let infos = stats::running_pods(pods);
        let src = Sources { roots: self.roots.clone(), root: self.root_dir.clone(), logs_dir: self.logs_dir.clone() };
        let detail = if disk { Detail::Full } else { Detail::CpuAndMemory };
        let summary = match stats::collect(&src, "", &infos, detail) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("eviction: reading pod usage: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        log::debug!("eviction: usage of {} pod(s): {:?}", summary.pods.len(), summary.pods);
        for ps in summary.pods {
            let Some(pod) = pods.iter().find(|p| p.metadata.uid == ps.pod_ref.uid) else { continue };
            let bytes = |f: &Option<stats::FsStats>| f.as_ref().and_then(|f| f.used_bytes).map(|b| b as i64);
            let containers = ps
                .containers
                .iter()
                .filter_map(|cs| {
                    let c = pod.spec.containers.iter().find(|c| c.name == cs.name)?;
                    let disk = match (bytes(&cs.rootfs), bytes(&cs.logs)) {
                        (Some(a), Some(b)) => Some(a + b),
                        _ => None,
                    };
                    Some(ContainerUsage {
                        name: cs.name.clone(),
                        memory: cs.memory.as_ref().and_then(|m| m.working_set_bytes).map(|b| b as i64),
                        disk,
                        memory_request: request(c, "memory"),
                        disk_request: request(c, "ephemeral-storage"),
                    })
                })
                .collect();
            out.push(PodUsage {
                uid: ps.pod_ref.uid.clone(),
                name: format!("{}/{}", ps.pod_ref.namespace, ps.pod_ref.name),
                priority: pod.spec.priority.unwrap_or(0),
                is_static: pod.is_static(),
                memory: ps.memory.as_ref().and_then(|m| m.working_set_bytes).map(|b| b as i64),
                disk_bytes: bytes(&ps.ephemeral_storage),
                disk_inodes: ps.ephemeral_storage.as_ref().and_then(|f| f.inodes_used).map(|n| n as i64),
                memory_request: pod_request(pod, "memory"),
                disk_request: pod_request(pod, "ephemeral-storage"),
                containers,
            });
        }
        out
    }
}

/// Upstream's pod request: the app containers' requests summed, at least
/// the largest init container's.
pub fn pod_request(pod: &api::Pod, resource: &str) -> i64 {
    let req = |c: &api::Container| request(c, resource).and_then(|q| parse_int(&q)).unwrap_or(0);
    let apps = pod.spec.containers.iter().map(req).fold(0, i64::saturating_add);
    pod.spec.init_containers.iter().map(req).fold(apps, i64::max)
}

/// A container's request for `resource` as written.
fn request(c: &api::Container, resource: &str) -> Option<String> {
    c.resources.as_ref().and_then(|r| r.requests.get(resource)).cloned()
}
