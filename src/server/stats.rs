//! `/stats/summary` and `/metrics/resource`: CPU, memory and filesystem usage
//! of the node, its pods and containers, for metrics-server and `kubectl top`.
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
//! after a container starts has none.
//!
//! `/metrics/resource` renders the CPU and memory part in the Prometheus text
//! format, upstream's names, labels and millisecond timestamps, which is what
//! metrics-server reads. `/stats/summary?only_cpu_and_memory=true` skips the
//! filesystem walks as upstream does.
//!
//! Not here: network and I/O stats, PSI, swap, systemContainers, accelerators.

use super::kubelet::{Conn, Context, Request};
use crate::api;
use crate::cgroup::stats::{Memory, NodeUsage, Roots, Usage};
use crate::runtime::record::{self, Record};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Entries (files, directories) a filesystem walk looks at before it stops
/// and reports what it counted: a container writing millions of files must
/// not make every stats request walk them all.
pub const MAX_WALK: usize = 50_000;
/// Two CPU samples closer than this give no new rate (the previous one stays).
pub const MIN_RATE_INTERVAL: Duration = Duration::from_secs(1);

// ---- upstream's Summary types: only the fields picolet fills ----

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(serialize_with = "time_or_null")]
    pub start_time: Option<SystemTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimit: Option<RlimitStats>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_fs: Option<FsStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RlimitStats {
    #[serde(serialize_with = "time")]
    pub time: SystemTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxpid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curproc: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodRef,
    #[serde(serialize_with = "time_or_null")]
    pub start_time: Option<SystemTime>,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume: Vec<VolumeStats>,
    #[serde(rename = "ephemeral-storage", skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<FsStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(serialize_with = "time_or_null")]
    pub start_time: Option<SystemTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<FsStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    #[serde(serialize_with = "time")]
    pub time: SystemTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    #[serde(serialize_with = "time")]
    pub time: SystemTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    #[serde(serialize_with = "time")]
    pub time: SystemTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeStats {
    #[serde(flatten)]
    pub fs: FsStats,
    pub name: String,
}

fn time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&api::time::rfc3339(*t))
}

/// metav1.Time: a zero time is `null`.
fn time_or_null<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => time(t, s),
        None => s.serialize_none(),
    }
}

// ---- endpoints ----

/// The CPU samples of the previous requests, for `usageNanoCores`. One per
/// process, as upstream's stats provider keeps one cache; pruned to what the
/// last request saw.
static RATES: Mutex<Rates> = Mutex::new(Rates::new());

pub fn summary(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let detail = if req.flag("only_cpu_and_memory") { Detail::CpuAndMemory } else { Detail::Full };
    let summary = gather(ctx, detail).map_err(|e| e.to_string());
    match summary {
        Ok(s) => conn.json(&s),
        Err(e) => conn.text(500, &format!("Internal Error: failed to get node stats: {e}\n")),
    }
}

pub fn resource_metrics(ctx: &Context, req: &Request, conn: &mut Conn) -> io::Result<()> {
    let _ = req;
    let body = match gather(ctx, Detail::CpuAndMemory) {
        Ok(s) => render_resource_metrics(&s, false),
        Err(e) => {
            log::warn!("metrics/resource: {e}");
            render_resource_metrics(&Summary::default(), true)
        }
    };
    conn.respond(200, "text/plain; version=0.0.4; charset=utf-8", body.as_bytes())
}

/// What to gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Full,
    /// CPU and memory only (no filesystem walks).
    CpuAndMemory,
}

fn gather(ctx: &Context, detail: Detail) -> io::Result<Summary> {
    let pods = {
        let pods = ctx.pods.lock().unwrap_or_else(|p| p.into_inner());
        running_pods(&pods)
    };
    let src = Sources { roots: Roots::default(), root: ctx.root.clone(), logs_dir: ctx.logs_dir.clone() };
    let mut s = collect(&src, &ctx.node_name, &pods, detail)?;
    RATES.lock().unwrap_or_else(|p| p.into_inner()).apply(&mut s, Instant::now());
    Ok(s)
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

// ---- /metrics/resource ----

/// Prometheus text as upstream's resource metrics collector writes it:
/// families in name order, series with millisecond timestamps.
pub fn render_resource_metrics(s: &Summary, scrape_error: bool) -> String {
    const STABLE: &str = "[STABLE]";
    let mut out = String::new();
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let secs = |ns: u64| ns as f64 / 1e9;
    let labels = |p: &PodStats, c: Option<&ContainerStats>| match c {
        Some(c) => format!("{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}", esc(&c.name), esc(&p.pod_ref.namespace), esc(&p.pod_ref.name)),
        None => format!("{{namespace=\"{}\",pod=\"{}\"}}", esc(&p.pod_ref.namespace), esc(&p.pod_ref.name)),
    };
    let containers = || s.pods.iter().flat_map(|p| p.containers.iter().map(move |c| (p, c)));

    let mut family = |name: &str, help: &str, kind: &str, series: Vec<String>| {
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for line in series {
            let _ = writeln!(out, "{name}{line}");
        }
    };
    family(
        "container_cpu_usage_seconds_total",
        &format!("{STABLE} Cumulative cpu time consumed by the container in core-seconds"),
        "counter",
        containers()
            .filter_map(|(p, c)| {
                let cpu = c.cpu.as_ref()?;
                Some(format!("{} {} {}", labels(p, Some(c)), float(secs(cpu.usage_core_nano_seconds?)), ms(cpu.time)))
            })
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        &format!("{STABLE} Current working set of the container in bytes"),
        "gauge",
        containers()
            .filter_map(|(p, c)| {
                let m = c.memory.as_ref()?;
                Some(format!("{} {} {}", labels(p, Some(c)), float(m.working_set_bytes? as f64), ms(m.time)))
            })
            .collect(),
    );
    family(
        "container_start_time_seconds",
        &format!("{STABLE} Start time of the container since unix epoch in seconds"),
        "gauge",
        containers()
            .filter_map(|(p, c)| {
                let d = c.start_time?.duration_since(UNIX_EPOCH).ok().filter(|d| d.as_secs() > 0)?;
                Some(format!("{} {}", labels(p, Some(c)), float(d.as_nanos() as f64 / 1e9)))
            })
            .collect(),
    );
    let node_cpu = s.node.cpu.as_ref().and_then(|c| Some(format!(" {} {}", float(secs(c.usage_core_nano_seconds?)), ms(c.time))));
    family("node_cpu_usage_seconds_total", &format!("{STABLE} Cumulative cpu time consumed by the node in core-seconds"), "counter", node_cpu.into_iter().collect());
    let node_mem = s.node.memory.as_ref().and_then(|m| Some(format!(" {} {}", float(m.working_set_bytes? as f64), ms(m.time))));
    family("node_memory_working_set_bytes", &format!("{STABLE} Current working set of the node in bytes"), "gauge", node_mem.into_iter().collect());
    family(
        "pod_cpu_usage_seconds_total",
        &format!("{STABLE} Cumulative cpu time consumed by the pod in core-seconds"),
        "counter",
        s.pods
            .iter()
            .filter_map(|p| {
                let cpu = p.cpu.as_ref()?;
                Some(format!("{} {} {}", labels(p, None), float(secs(cpu.usage_core_nano_seconds?)), ms(cpu.time)))
            })
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        &format!("{STABLE} Current working set of the pod in bytes"),
        "gauge",
        s.pods
            .iter()
            .filter_map(|p| {
                let m = p.memory.as_ref()?;
                Some(format!("{} {} {}", labels(p, None), float(m.working_set_bytes? as f64), ms(m.time)))
            })
            .collect(),
    );
    let err = if scrape_error { "1" } else { "0" };
    let help = "1 if there was an error while getting container metrics, 0 otherwise";
    family("resource_scrape_error", &format!("{STABLE} {help}"), "gauge", vec![format!(" {err}")]);
    family("scrape_error", &format!("[ALPHA] (Deprecated since 1.29.0) {help}"), "gauge", vec![format!(" {err}")]);
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which Prometheus'
/// text encoder uses: the shortest digits, exponent form from 1e+06 and
/// below 1e-04.
fn float(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return if v.is_nan() { "NaN".into() } else if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
