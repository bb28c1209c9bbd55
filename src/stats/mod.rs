//! Resource usage of the node, its pods and containers: CPU, memory and
//! filesystems, in upstream's Summary API types (summary.rs). What
//! `/stats/summary` and `/metrics/resource` serve (server::stats) and what
//! eviction ranks pods by (node::eviction).
//!
//! The Summary is upstream's (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`) with
//! the fields picolet can fill: node CPU and memory from /proc, containers'
//! from their cgroups (found through the init pid in the container record,
//! v2 or v1, see [`crate::cgroup::stats`]), a pod's as the sum of its running
//! containers'. Filesystems: statvfs of the root dir (node, image and
//! container filesystems) and of the logs dir; the used bytes of a
//! container's writable layer (`<root>/containers/<id>/upper`), its log dir
//! and the pod's emptyDirs by walking them, at most [`MAX_WALK`] entries each.
//! `usageNanoCores` is the rate between this request's cumulative CPU time
//! and the previous request's (at least [`MIN_RATE_INTERVAL`] apart), as
//! upstream's CRI stats provider keeps its last samples; the first request
//! after a container starts has none. [`Detail::CpuAndMemory`] skips the
//! filesystem walks.
//!
//! Not here: serving or rendering the figures (server::stats); network and
//! I/O stats, PSI, swap, systemContainers, accelerators.

mod summary;

pub use summary::*;

use crate::api;
use crate::cgroup::stats::{Memory, NodeUsage, Roots, Usage};
use crate::runtime::record::{self, Record};
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Entries (files, directories) a filesystem walk looks at before it stops
/// and reports what it counted: a container writing millions of files must
/// not make every stats request walk them all.
pub const MAX_WALK: usize = 50_000;
/// Two CPU samples closer than this give no new rate (the previous one stays).
pub const MIN_RATE_INTERVAL: Duration = Duration::from_secs(1);

/// What to gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Full,
    /// CPU and memory only (no filesystem walks).
    CpuAndMemory,
}

// ---- collection ----

/// What a pod contributes to the stats, taken from the pod list under its lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    pub pod_ref: PodRef,
    pub start_time: Option<SystemTime>,
    pub containers: Vec<ContainerInfo>,
    /// Names of the pod's volumes that may be emptyDirs.
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    pub name: String,
    /// The runc id (from the status' containerID).
    pub id: String,
    pub started: Option<SystemTime>,
}

/// The pods with running containers, and those containers (init and
/// sidecars included), from the pods `/pods` shows.
pub fn running_pods(pods: &[api::Pod]) -> Vec<PodInfo> {
    let mut out = Vec::new();
    for p in pods {
        let Some(status) = &p.status else { continue };
        let containers: Vec<ContainerInfo> = status
            .init_container_statuses
            .iter()
            .chain(&status.container_statuses)
            .filter_map(|c| {
                let running = c.state.running.as_ref()?;
                let id = c.container_id.rsplit("://").next().unwrap_or("");
                (!id.is_empty()).then(|| ContainerInfo {
                    name: c.name.clone(),
                    id: id.to_string(),
                    started: running.started_at.as_deref().and_then(api::time::parse_rfc3339),
                })
            })
            .collect();
        if containers.is_empty() {
            continue;
        }
        out.push(PodInfo {
            pod_ref: PodRef { name: p.metadata.name.clone(), namespace: p.metadata.namespace.clone(), uid: p.metadata.uid.clone() },
            start_time: status.start_time.as_deref().and_then(api::time::parse_rfc3339),
            containers,
            volumes: p.spec.volumes.iter().map(|v| v.name.clone()).collect(),
        });
    }
    out
}

/// Where the figures come from: the kernel's files and picolet's directories.
#[derive(Debug, Clone)]
pub struct Sources {
    pub roots: Roots,
    /// picolet's root dir (container records and writable layers, pod dirs, images).
    pub root: PathBuf,
    pub logs_dir: PathBuf,
}

impl Sources {
    /// The cgroup usage of container `id`, through its record's init pid.
    /// None when it cannot be had (exited meanwhile, no record yet).
    fn container_usage(&self, id: &str) -> Option<Usage> {
        let dir = record::dir(&self.root, id);
        let rec: Record = serde_json::from_slice(&std::fs::read(dir.join("record.json")).ok()?).ok()?;
        // The reaper's exit file: the pid is gone (and may be reused).
        if rec.pid == 0 || dir.join("exit.json").exists() {
            return None;
        }
        match self.roots.pid_usage(rec.pid) {
            Ok(u) => Some(u),
            Err(e) => {
                log::debug!("stats of container {id}: {e}");
                None
            }
        }
    }
}

/// Reads everything for `pods` (cumulative figures; rates come from [`Rates::apply`]).
pub fn collect(src: &Sources, node_name: &str, pods: &[PodInfo], detail: Detail) -> io::Result<Summary> {
    let now = SystemTime::now();
    let node = src.roots.node_usage()?;
    let full = detail == Detail::Full;
    let root_fs = if full { fs_stats(&src.root, now) } else { None };
    let logs_fs = if full { fs_stats(&src.logs_dir, now) } else { None };
    let mut out = Summary { node: node_stats(node_name, &node, now), pods: Vec::new() };
    if full {
        out.node.fs = root_fs.clone();
        let store = src.root.join("images-store");
        // Images live on the root dir's filesystem unless the store is a mount of its own.
        let image_fs = fs_stats(&store, now).or_else(|| root_fs.clone());
        let (bytes, inodes) = walk(&store);
        out.node.runtime = Some(RuntimeStats { image_fs: image_fs.map(|f| with_usage(f, bytes, Some(inodes))) });
        let (maxpid, curproc) = src.roots.pids();
        out.node.rlimit = Some(RlimitStats { time: now, maxpid, curproc });
    }
    for pod in pods {
        let mut ps = PodStats { pod_ref: pod.pod_ref.clone(), start_time: pod.start_time, ..Default::default() };
        let mut usages = Vec::new();
        for c in &pod.containers {
            let usage = src.container_usage(&c.id);
            let at = SystemTime::now();
            let mut cs = ContainerStats { name: c.name.clone(), start_time: c.started, ..Default::default() };
            if let Some(u) = usage {
                cs.cpu = u.cpu_ns.map(|ns| CpuStats { time: at, usage_nano_cores: None, usage_core_nano_seconds: Some(ns) });
                cs.memory = u.memory.map(|m| memory_stats(&m, m.limit, at));
                usages.push((at, u));
            }
            if full {
                let (bytes, inodes) = walk(&record::dir(&src.root, &c.id).join("upper"));
                cs.rootfs = root_fs.clone().map(|f| with_usage(f, bytes, Some(inodes)));
                let log_dir = src.logs_dir.join(format!("{}_{}_{}", pod.pod_ref.namespace, pod.pod_ref.name, pod.pod_ref.uid)).join(&c.name);
                let (bytes, inodes) = walk(&log_dir);
                cs.logs = logs_fs.clone().map(|f| with_usage(f, bytes, Some(inodes)));
            }
            ps.containers.push(cs);
        }
        let (cpu, memory) = pod_usage(&usages);
        ps.cpu = cpu;
        ps.memory = memory;
        if full {
            let dir = src.root.join("pods").join(&pod.pod_ref.uid).join("volumes/kubernetes.io~empty-dir");
            for name in &pod.volumes {
                let path = dir.join(name);
                if !path.is_dir() {
                    continue;
                }
                let (bytes, inodes) = walk(&path);
                if let Some(f) = fs_stats(&path, now) {
                    ps.volume.push(VolumeStats { fs: with_usage(f, bytes, Some(inodes)), name: name.clone() });
                }
            }
            ps.ephemeral_storage = root_fs.clone().map(|f| ephemeral(f, &ps));
        }
        out.pods.push(ps);
    }
    Ok(out)
}

fn node_stats(node_name: &str, n: &NodeUsage, now: SystemTime) -> NodeStats {
    NodeStats {
        node_name: node_name.to_string(),
        start_time: (n.boot_time > 0).then(|| UNIX_EPOCH + Duration::from_secs(n.boot_time)),
        cpu: Some(CpuStats { time: now, usage_nano_cores: None, usage_core_nano_seconds: Some(n.cpu_ns) }),
        memory: Some(memory_stats(&n.memory, Some(n.memory_total), now)),
        ..Default::default()
    }
}

/// Upstream's MemoryStats: available = limit - working set, when limited.
fn memory_stats(m: &Memory, limit: Option<u64>, at: SystemTime) -> MemoryStats {
    MemoryStats {
        time: at,
        available_bytes: limit.map(|l| l.saturating_sub(m.working_set)),
        usage_bytes: Some(m.usage),
        working_set_bytes: Some(m.working_set),
        rss_bytes: Some(m.rss),
        page_faults: Some(m.page_faults),
        major_page_faults: Some(m.major_page_faults),
    }
}

/// A pod's CPU and memory: the sums over its containers (sampled at `.0`).
fn pod_usage(usages: &[(SystemTime, Usage)]) -> (Option<CpuStats>, Option<MemoryStats>) {
    let latest = usages.iter().map(|(t, _)| *t).max();
    let cpus: Vec<u64> = usages.iter().filter_map(|(_, u)| u.cpu_ns).collect();
    let mems: Vec<Memory> = usages.iter().filter_map(|(_, u)| u.memory).collect();
    let cpu = (!cpus.is_empty()).then(|| CpuStats {
        time: latest.unwrap_or(UNIX_EPOCH),
        usage_nano_cores: None,
        usage_core_nano_seconds: Some(cpus.iter().sum()),
    });
    let memory = (!mems.is_empty()).then(|| {
        let sum = mems.iter().fold(Memory::default(), |a, m| Memory {
            usage: a.usage + m.usage,
            working_set: a.working_set + m.working_set,
            rss: a.rss + m.rss,
            page_faults: a.page_faults + m.page_faults,
            major_page_faults: a.major_page_faults + m.major_page_faults,
            limit: None,
        });
        memory_stats(&sum, None, latest.unwrap_or(UNIX_EPOCH))
    });
    (cpu, memory)
}

/// Capacity, availability and inodes of the filesystem holding `path`.
fn fs_stats(path: &Path, now: SystemTime) -> Option<FsStats> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = s.fragment_size() as u64;
    let (blocks, free, avail) = (s.blocks() as u64, s.blocks_free() as u64, s.blocks_available() as u64);
    let (files, ffree) = (s.files() as u64, s.files_free() as u64);
    Some(FsStats {
        time: now,
        available_bytes: Some(avail.saturating_mul(frsize)),
        capacity_bytes: Some(blocks.saturating_mul(frsize)),
        used_bytes: Some(blocks.saturating_sub(free).saturating_mul(frsize)),
        inodes_free: Some(ffree),
        inodes: Some(files),
        inodes_used: Some(files.saturating_sub(ffree)),
    })
}

/// The filesystem's figures with the used bytes (and inodes) of one tree on it.
fn with_usage(mut f: FsStats, bytes: u64, inodes: Option<u64>) -> FsStats {
    f.used_bytes = Some(bytes);
    f.inodes_used = inodes;
    f
}

/// A pod's ephemeral storage: its containers' writable layers and logs and
/// its emptyDirs, on the root filesystem `f`.
fn ephemeral(mut f: FsStats, ps: &PodStats) -> FsStats {
    let trees = ps.containers.iter().flat_map(|c| [&c.rootfs, &c.logs]).flatten().chain(ps.volume.iter().map(|v| &v.fs));
    let (mut bytes, mut inodes) = (0, 0);
    for t in trees {
        bytes += t.used_bytes.unwrap_or(0);
        inodes += t.inodes_used.unwrap_or(0);
    }
    f.used_bytes = Some(bytes);
    f.inodes_used = Some(inodes);
    f
}

/// Disk usage of the tree at `path` as `du` counts it (allocated blocks, hard
/// links once, not crossing into other filesystems, symlinks not followed):
/// (bytes, inodes). At most [`MAX_WALK`] entries; a missing path is (0, 0).
pub fn walk(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(path) else { return (0, 0) };
    let dev = top.dev();
    let (mut bytes, mut inodes, mut budget) = (0u64, 0u64, MAX_WALK);
    let mut seen = HashSet::new();
    let mut dirs = vec![path.to_path_buf()];
    bytes += top.blocks() * 512;
    inodes += 1;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if budget == 0 {
                return (bytes, inodes);
            }
            budget -= 1;
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.nlink() > 1 && !md.is_dir() && !seen.insert(md.ino()) {
                continue;
            }
            bytes += md.blocks() * 512;
            inodes += 1;
            if md.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

// ---- rates ----

/// The last CPU sample of each pod, container and the node.
#[derive(Debug, Default)]
pub struct Rates {
    samples: BTreeMap<String, Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_ns: u64,
    nano_cores: Option<u64>,
}

impl Rates {
    #[cfg(test)]
    pub const fn new() -> Rates {
        Rates { samples: BTreeMap::new() }
    }

    /// The rate of `key`'s cumulative `cpu_ns` since its previous sample. A
    /// sample too close to the previous one keeps the previous rate; a
    /// counter that went back (a restarted container) starts over.
    fn rate(&mut self, key: String, at: Instant, cpu_ns: u64) -> Option<u64> {
        let fresh = Sample { at, cpu_ns, nano_cores: None };
        match self.samples.get(&key).copied() {
            Some(prev) if cpu_ns < prev.cpu_ns => {
                self.samples.insert(key, fresh);
                None
            }
            Some(prev) => {
                let elapsed = at.saturating_duration_since(prev.at);
                if elapsed < MIN_RATE_INTERVAL {
                    return prev.nano_cores;
                }
                let rate = ((cpu_ns - prev.cpu_ns) as u128 * 1_000_000_000 / elapsed.as_nanos()) as u64;
                self.samples.insert(key, Sample { nano_cores: Some(rate), ..fresh });
                Some(rate)
            }
            None => {
                self.samples.insert(key, fresh);
                None
            }
        }
    }

    /// Fills `usageNanoCores` everywhere in `s` sampled at `at`, and forgets
    /// what `s` no longer has.
    pub fn apply(&mut self, s: &mut Summary, at: Instant) {
        let mut seen = HashSet::new();
        let mut fill = |key: String, cpu: &mut Option<CpuStats>| {
            if let Some(c) = cpu {
                if let Some(ns) = c.usage_core_nano_seconds {
                    c.usage_nano_cores = self.rate(key.clone(), at, ns);
                    seen.insert(key);
                }
            }
        };
        fill("node".into(), &mut s.node.cpu);
        for p in &mut s.pods {
            fill(format!("pod/{}", p.pod_ref.uid), &mut p.cpu);
            for c in &mut p.containers {
                fill(format!("container/{}/{}", p.pod_ref.uid, c.name), &mut c.cpu);
            }
        }
        self.samples.retain(|k, _| seen.contains(k));
    }
}

#[cfg(test)]
mod tests;
