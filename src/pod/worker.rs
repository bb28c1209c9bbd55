//! Pod workers: for each pod, compare what should run with what runs and act.
//!
//! One `Manager` owns every pod's state and is driven by ticks (about once a
//! second, and at once when a source changes). Each tick it observes the
//! containers (records, exit files written by the reaper, /proc), decides per
//! pod what to start, restart, signal or clean up, does it through the
//! `Runtime` seam, and recomputes the pod's status. Nothing here blocks for
//! long: graceful termination is a deadline checked on later ticks; probes
//! and hooks are jobs run elsewhere (health.rs), and so are image pulls
//! (pull.rs) and CNI plugin runs (sandbox.rs). A pod that has ended is wound
//! down (ended.rs); eviction and GC are in evict.rs.

use super::backoff::{Backoff, Decision};
use super::plan::{ended, plan, Step};
use super::status::{self, Attempt, ContainerView, Observed, PodView};
use crate::api::downward::Allocatable;
use crate::api::objects::ObjectStore;
use crate::api::qos::oom_score_adj;
use crate::api::time::{self, now as now_str, parse_rfc3339};
use crate::api::{Container, Pod, PodStatus};
use crate::cgroup;
use crate::image::{self, Store};
use crate::network::{self, Sandbox};
use crate::runtime::env::{command_line, container_env, FieldContext};
use crate::runtime::reaper::ExitInfo;
use crate::hostfs::write_atomic;
use crate::runtime::record::{self, Record};
use crate::runtime::runc::Runtime;
use crate::runtime::spec::{self, SpecInput};
use crate::volume::{self, Volumes};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

mod events;
mod pull;
mod ended;
mod sandbox;
pub use pull::PullConfig;
mod health;
pub use health::{Job, JobReport};
mod metrics;
mod evict;
pub use evict::Housekeeping;

/// How often a running pod's configMap, secret, downwardAPI and projected
/// volumes are checked against the object store (a few `stat`s per volume).
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// How long a pod's volumes may fail to set up before it is logged and sent
/// as a FailedMount Event (upstream waits up to 2 minutes before its event).
const SANDBOX_GRACE: Duration = Duration::from_secs(5);

/// Where things live and the limits that apply to every pod.
#[derive(Clone)]
pub struct Settings {
    pub root: PathBuf,
    pub logs_dir: PathBuf,
    pub host_ip: String,
    /// The node's memory, for Burstable containers' oom_score_adj.
    pub memory_capacity: i64,
    /// What pods may use (node::allocatable), for the downward API.
    pub node_allocatable: crate::node::allocatable::Allocatable,
    /// picolet's cgroup tree; None when picolet runs without resource
    /// management (cgroupsPerQOS=false, enforceNodeAllocatable=[]).
    pub cgroups: Option<cgroup::PodCgroups>,
    /// Registries and platform for pulling images pods need; None: no pulls.
    pub pull: Option<PullConfig>,
    /// What `/metrics` shows, fed by every pass (metrics.rs).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// CNI and DNS settings for pod sandboxes.
    pub network: Arc<network::Network>,
    /// Wakes the pod loop when work done off it (a pull, a pod's network)
    /// has finished; None in tests that call `sync` themselves.
    pub wake: Option<smol::channel::Sender<()>>,
}

/// What `<root>/pods/<uid>/pod.json` keeps: the pod as last desired, so a
/// restarted picolet can stop a pod whose manifest vanished meanwhile.
/// Read back through `api::decode`, the one Pod decoder: each other way of
/// deserializing a Pod would put another copy of the decoding code of every
/// API type into the binary.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checkpoint {
    pod: Pod,
    start_time: String,
    /// The eviction message of an evicted pod: it stays Failed across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evicted: Option<String>,
    /// Set once an ended pod's network is torn down: the IP it had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    released_ip: Option<String>,
}

impl Checkpoint {
    fn from_value(mut v: serde_json::Value) -> Option<Checkpoint> {
        let start_time = v.get("startTime")?.as_str()?.to_string();
        let evicted = v.get("evicted").and_then(|e| e.as_str()).map(str::to_string);
        let released_ip = v.get("releasedIp").and_then(|e| e.as_str()).map(str::to_string);
        let pod = crate::api::decode::pod_from_json(v.get_mut("pod")?.take()).ok()?;
        Some(Checkpoint { pod, start_time, evicted, released_ip })
    }
}

/// The pod is being stopped (its containers are in `Manager::kills`, in the
/// order of `stop_in_order`): all must be gone by `deadline`, the end of its
/// grace period.
struct Stop {
    deadline: Instant,
}

struct PodState {
    pod: Rc<Pod>,
    desired: bool,
    start_time: String,
    /// Attempts per container name, oldest first (at most the last two kept).
    attempts: BTreeMap<String, Vec<Record>>,
    /// Why a container is not running now (CrashLoopBackOff, ErrImageNeverPull…).
    waiting: HashMap<String, (String, String)>,
    sandbox: Option<(Sandbox, Volumes)>,
    sandbox_error: Option<String>,
    /// Since when the sandbox (volumes, namespaces) fails to set up, and the
    /// error last logged and sent as an Event.
    sandbox_failing: Option<(Instant, Option<String>)>,
    /// The pod's network being set up or torn down off the loop.
    net_job: Option<sandbox::NetJob>,
    /// Set once the pod ended and its network was torn down: the IP it had.
    released_ip: Option<String>,
    /// When an ended pod's containers still running (sidecars) must be gone.
    ending: Option<Instant>,
    /// When the API-backed volumes were last checked for updates, and the
    /// last refresh error (logged once).
    volumes_checked: Option<Instant>,
    refresh_error: Option<String>,
    stop: Option<Stop>,
    /// Set when the pod ended for good (an init container failed under
    /// Never, or it was evicted: then `eviction` is set too).
    failed: Option<String>,
    eviction: Option<evict::Eviction>,
    status: Option<PodStatus>,
    /// Startup latency bookkeeping until recorded; None for adopted pods.
    startup: Option<metrics::Startup>,
    /// What the next sync counts as: "create", "update" or "sync".
    sync_kind: &'static str,
}

/// A container whose log pipes need a reader (new, or found after a restart).
pub struct PumpRequest {
    pub dir: PathBuf,
    pub log_dir: PathBuf,
    pub attempt: u32,
}

pub struct Manager<R: Runtime> {
    cfg: Settings,
    runtime: R,
    images: Store,
    /// ConfigMaps, Secrets, tokens and Services as the API fetcher stored them.
    objects: ObjectStore,
    /// What unset container limits stand for in the downward API.
    allocatable: Allocatable,
    pods: BTreeMap<String, PodState>,
    backoff: Backoff,
    /// Terminal observations never change: cache them instead of re-reading.
    exited: HashMap<String, Observed>,
    /// Containers whose process vanished without an exit record, and since when.
    missing: HashMap<String, Instant>,
    pumps: Vec<PumpRequest>,
    changed: bool,
    /// Probe state per running container id.
    probes: HashMap<String, crate::probe::state::ContainerProbes>,
    /// Probes and hooks for main to run.
    jobs: Vec<Job>,
    /// Containers whose postStart hook has not returned yet.
    post_start: HashSet<String>,
    /// Containers being stopped, by id.
    kills: HashMap<String, health::Kill>,
    /// Why picolet killed an attempt, for its terminated message.
    kill_messages: HashMap<String, String>,
    /// Hooks a previous picolet left unfinished, to run again (health.rs).
    rerun_hooks: Vec<(String, health::JobKind)>,
    /// Pods with a probe or hook result since their status was computed.
    health_changed: HashSet<String>,
    /// The last failure message per `<container id>/<probe kind>`: a probe
    /// that keeps failing the same way is logged once, not every period.
    probe_failures: HashMap<String, String>,
    /// Pods stopped and cleaned up since the last `take_removed`.
    removed: Vec<Rc<Pod>>,
    /// SANDBOX_GRACE (tests shorten it).
    sandbox_grace: Duration,
    /// Events for a cluster client to take (events.rs).
    events: super::events::Queue,
    /// Image pulls under way and recently failed (pull.rs).
    pulls: pull::Pulls,
}

impl<R: Runtime> Manager<R> {
    /// Loads what a previous picolet left: pod checkpoints and container
    /// records. Pods are adopted as not desired until the sources say
    /// otherwise, so the first `sync` must come after the first source scan.
    pub fn new(cfg: Settings, runtime: R, images: Store) -> Manager<R> {
        let objects = ObjectStore::under_root(&cfg.root);
        let node = cfg.node_allocatable;
        let allocatable = Allocatable::of_node(node.cpu_milli, node.memory, crate::node::fs_capacity(&cfg.root));
        let mut m = Manager {
            cfg,
            runtime,
            images,
            objects,
            allocatable,
            pods: BTreeMap::new(),
            backoff: Backoff::default(),
            exited: HashMap::new(),
            missing: HashMap::new(),
            pumps: Vec::new(),
            changed: true,
            probes: HashMap::new(),
            jobs: Vec::new(),
            post_start: HashSet::new(),
            kills: HashMap::new(),
            kill_messages: HashMap::new(),
            rerun_hooks: Vec::new(),
            health_changed: HashSet::new(),
            probe_failures: HashMap::new(),
            removed: Vec::new(),
            sandbox_grace: SANDBOX_GRACE,
            events: Default::default(),
            pulls: Default::default(),
        };
        m.recover();
        m
    }

    fn recover(&mut self) {
        let records = Record::load_all(&self.cfg.root);
        let pods_dir = self.cfg.root.join("pods");
        for entry in std::fs::read_dir(&pods_dir).into_iter().flatten().flatten() {
            let path = entry.path().join("pod.json");
            let cp = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).and_then(Checkpoint::from_value);
            match cp {
                Some(cp) => {
                    let uid = cp.pod.metadata.uid.clone();
                    let mut st = PodState::new(cp.pod, cp.start_time, false);
                    if let Some(message) = cp.evicted {
                        evict::restore(&mut st, message);
                    }
                    st.released_ip = cp.released_ip;
                    self.pods.insert(uid, st);
                }
                None => log::warn!("ignoring unreadable pod checkpoint {}", path.display()),
            }
        }
        for r in records {
            let dir = record::dir(&self.cfg.root, &r.id);
            if r.pid != 0 && !dir.join("logs.done").exists() {
                self.pumps.push(self.pump_request(&r));
            }
            match self.pods.get_mut(&r.pod_uid) {
                Some(p) => {
                    p.attempts.entry(r.container.clone()).or_default().push(r.clone());
                    self.restore_health(&r);
                }
                None => {
                    log::warn!("container {} belongs to no known pod; removing it", r.id);
                    self.release_attempt(&r, true);
                }
            }
        }
        if !self.pods.is_empty() {
            log::info!("recovered {} pod(s) from {}", self.pods.len(), pods_dir.display());
        }
        // Pods picolet no longer knows at all (no checkpoint) leave no cgroup;
        // recovered ones are removed when they stop.
        if let Some(cg) = &self.cfg.cgroups {
            cg.remove_stale(&self.pods.keys().cloned().collect());
        }
    }

    pub fn images(&self) -> &Store {
        &self.images
    }

    /// Takes the containers that need log readers started.
    pub fn take_pumps(&mut self) -> Vec<PumpRequest> {
        std::mem::take(&mut self.pumps)
    }

    /// Pods whose containers, sandbox and volumes are gone since the last
    /// call (for the final delete of a pod being deleted).
    pub fn take_removed(&mut self) -> Vec<Rc<Pod>> {
        std::mem::take(&mut self.removed)
    }

    /// True once after any status changed.
    pub fn take_changed(&mut self) -> bool {
        std::mem::replace(&mut self.changed, false)
    }

    /// Every pod picolet knows (desired or still stopping) with its status.
    pub fn pods(&self) -> Vec<Pod> {
        self.pods
            .values()
            .map(|p| {
                let mut pod = Pod::clone(&p.pod);
                pod.status = p.status.clone();
                pod
            })
            .collect()
    }

    /// One reconciliation pass against the full desired set.
    pub fn sync<'a>(&mut self, desired: impl IntoIterator<Item = &'a Pod>) {
        self.drain_pulls();
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for pod in desired {
            let uid = pod.metadata.uid.clone();
            // A pod being deleted (deletionTimestamp set) is stopped within
            // its deletion grace period, then reported in `take_removed`.
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if !terminating {
                seen.insert(uid.clone());
            }
            match self.pods.get_mut(&uid) {
                Some(st) => {
                    // Metadata may change under a running pod (labels for the
                    // downward API, the deletion timestamp and grace period).
                    let m = &st.pod.metadata;
                    let pm = &pod.metadata;
                    if m.deletion_timestamp != pm.deletion_timestamp
                        || m.deletion_grace_period_seconds != pm.deletion_grace_period_seconds
                        || m.labels != pm.labels
                        || m.annotations != pm.annotations
                    {
                        let mut updated = Pod::clone(&st.pod);
                        updated.metadata = pod.metadata.clone();
                        st.pod = Rc::new(updated);
                        if st.sync_kind != "create" {
                            st.sync_kind = "update";
                        }
                        self.changed = true;
                        self.checkpoint(&self.pods[&uid]);
                    }
                    let st = self.pods.get_mut(&uid).unwrap();
                    if terminating && st.desired {
                        log::info!("pod {} is being deleted; stopping it", full_name(pod));
                        st.desired = false;
                    } else if !terminating && !st.desired && st.stop.is_none() {
                        st.desired = true;
                    }
                }
                None if terminating => self.removed.push(Rc::new(pod.clone())),
                None => {
                    log::info!("pod {} added", full_name(pod));
                    let mut st = PodState::new(pod.clone(), now_str(), true);
                    let started_before = pod.status.as_ref().is_some_and(|s| s.start_time.is_some());
                    st.startup = Some(metrics::Startup::new(started_before));
                    self.checkpoint(&st);
                    self.pods.insert(uid, st);
                }
            }
        }
        for (uid, st) in self.pods.iter_mut() {
            if st.desired && !seen.contains(uid) {
                log::info!("pod {} removed; stopping it", full_name(&st.pod));
                st.desired = false;
            }
        }
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.observe_pod(&uid);
            let desired = self.pods[&uid].desired;
            if desired {
                self.refresh_volumes(&uid, now);
            }
            if desired && self.steady(&uid) {
                // Nothing to plan; probes still come due, and their results
                // (or a hook's) may change the status.
                if self.needs_health_pass(&uid) {
                    self.probe_pod(&uid, now);
                }
                if self.health_changed.remove(&uid) {
                    self.update_status(&uid);
                }
                continue;
            }
            let began = Instant::now();
            if desired {
                self.sync_pod(&uid);
            } else if self.stop_pod(&uid, now) {
                if let Some(st) = self.pods.remove(&uid) {
                    for r in st.attempts.values().flatten() {
                        self.exited.remove(&r.id);
                    }
                    self.removed.push(st.pod);
                }
                self.health_changed.remove(&uid);
                self.cfg.metrics.forget_pod(&uid);
                self.changed = true;
                continue;
            }
            self.update_status(&uid);
            if desired {
                self.observe_sync(&uid, began);
            }
        }
        self.update_gauges();
        if let Some(cg) = &self.cfg.cgroups {
            if let Err(e) = cg.update_tiers(self.pods.values().map(|p| &*p.pod)) {
                log::warn!("{e}");
            }
        }
    }

    // ---- observation ----

    fn observe(&mut self, r: &Record) -> Observed {
        if let Some(o) = self.exited.get(&r.id) {
            return o.clone();
        }
        let dir = record::dir(&self.cfg.root, &r.id);
        let o = if let Some(err) = &r.start_error {
            Observed::Exited {
                exit_code: 128,
                reason: "StartError".into(),
                message: err.clone(),
                started_at: None,
                finished_at: r.created_at.clone(),
            }
        } else if let Some(exit) = ExitInfo::read(&dir) {
            Observed::Exited {
                exit_code: exit.exit_code,
                reason: match (exit.oom_killed, exit.exit_code) {
                    (true, _) => "OOMKilled",
                    (false, 0) => "Completed",
                    _ => "Error",
                }
                .into(),
                message: String::new(),
                started_at: r.started_at.clone(),
                finished_at: exit.finished_at,
            }
        } else if r.started_at.is_none() {
            return Observed::Created;
        } else if r.pid != 0 && Path::new(&format!("/proc/{}", r.pid)).exists() {
            self.missing.remove(&r.id);
            return Observed::Running { started_at: r.started_at.clone().unwrap_or_default() };
        } else {
            // Gone without an exit record: give the reaper a moment, then
            // report it the way upstream reports a container it lost.
            let since = *self.missing.entry(r.id.clone()).or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_secs(2) {
                return Observed::Running { started_at: r.started_at.clone().unwrap_or_default() };
            }
            Observed::Exited {
                exit_code: 137,
                reason: "ContainerStatusUnknown".into(),
                message: "The container could not be located when the pod was terminated".into(),
                started_at: r.started_at.clone(),
                finished_at: now_str(),
            }
        };
        self.missing.remove(&r.id);
        self.exited.insert(r.id.clone(), o.clone());
        o
    }

    fn observe_pod(&mut self, uid: &str) {
        // Observation results are read when needed; here only make sure every
        // latest attempt's exit is noticed (and logged) once.
        for r in self.pods[uid].latest_records() {
            let before = self.exited.contains_key(&r.id);
            let o = self.observe(&r);
            if !before {
                if let Observed::Exited { exit_code, reason, .. } = &o {
                    self.forget_health(&r.id);
                    log::info!("container {} of pod {} exited: {exit_code} ({reason})", r.container, self.pods[uid].pod.metadata.name);
                    self.changed = true;
                }
            }
        }
    }

    /// A pod whose every container is where it should stay (app containers
    /// running, init containers done, sidecars running) and that has nothing
    /// pending needs neither a plan nor a new status. Only exits change that,
    /// and `observe_pod` has just looked for them (they land in `exited`).
    fn steady(&self, uid: &str) -> bool {
        let st = &self.pods[uid];
        if st.status.is_none() || st.sandbox.is_none() || st.stop.is_some() || st.failed.is_some() || !st.waiting.is_empty() {
            return false;
        }
        let running = |r: &Record| r.started_at.is_some() && !self.exited.contains_key(&r.id) && !self.missing.contains_key(&r.id);
        let spec = &st.pod.spec;
        let init_ok = spec.init_containers.iter().all(|c| {
            let Some(r) = st.attempts.get(&c.name).and_then(|v| v.last()) else { return false };
            if c.is_sidecar() {
                running(r)
            } else {
                self.exited.get(&r.id).is_some_and(Observed::exited_ok)
            }
        });
        init_ok && spec.containers.iter().all(|c| st.attempts.get(&c.name).and_then(|v| v.last()).is_some_and(running))
    }

    fn latest(&mut self, uid: &str, name: &str) -> Option<(Record, Observed)> {
        let r = self.pods[uid].attempts.get(name)?.last()?.clone();
        let o = self.observe(&r);
        Some((r, o))
    }

    // ---- the running pod ----

    fn sync_pod(&mut self, uid: &str) {
        let pod = self.pods[uid].pod.clone();
        let mut latest = HashMap::new();
        for c in pod.spec.init_containers.iter().chain(&pod.spec.containers) {
            if let Some((_, o)) = self.latest(uid, &c.name) {
                latest.insert(c.name.clone(), o);
            }
        }
        // Failed for good, evicted, or done under its restartPolicy.
        if self.pods[uid].failed.is_some() || ended(&pod.spec, &latest) {
            self.wind_down(uid, Instant::now());
            return;
        }
        // A replaced static pod starts once its previous instance is gone.
        let name = full_name(&pod);
        if self.pods.iter().any(|(u, p)| u != uid && !p.desired && full_name(&p.pod) == name) {
            return;
        }
        if !self.ensure_sandbox(uid) {
            return;
        }
        let container = |n: &str| pod.spec.init_containers.iter().chain(&pod.spec.containers).find(|c| c.name == n);
        for step in plan(&pod.spec, &latest) {
            match step {
                Step::Start { name, init } => {
                    if let Some(c) = container(&name) {
                        self.start(uid, c, init, 0);
                    }
                }
                Step::FinishStart { name } => {
                    if let Some((r, _)) = self.latest(uid, &name) {
                        self.start_created(uid, &r);
                    }
                }
                Step::Restart { name, init } => {
                    if let (Some(c), Some((r, o))) = (container(&name), self.latest(uid, &name)) {
                        self.restart_after_backoff(uid, c, init, &r, &o);
                    }
                }
                Step::Fail { message } => {
                    log::warn!("pod {name}: {message}; restartPolicy is Never, the pod has failed");
                    self.pods.get_mut(uid).unwrap().failed = Some(message);
                    self.changed = true;
                }
            }
        }
        self.probe_pod(uid, Instant::now());
    }

    fn ensure_sandbox(&mut self, uid: &str) -> bool {
        if self.pods[uid].sandbox.is_some() {
            return true;
        }
        // Cgroup and volumes first, then the network, which may finish on a
        // later pass (its job keeps the volumes meanwhile).
        let done = match self.network_setup_in_flight(uid) {
            Some(sandbox::Progress::Pending) => return false,
            Some(sandbox::Progress::Done(done)) => Ok(done),
            None => match self.cgroup_and_volumes(uid) {
                Ok(v) => match self.start_network_setup(uid, v) {
                    sandbox::Progress::Pending => return false,
                    sandbox::Progress::Done(done) => Ok(done),
                },
                Err(e) => Err(e),
            },
        };
        let result = done.and_then(|(setup, v)| setup.map(|s| (s, v)).map_err(|e| (super::events::FAILED_CREATE_POD_SANDBOX, e.to_string())));
        let result = result.map(|(setup, v)| {
            if setup.missing_cluster_dns {
                self.missing_cluster_dns(uid);
            }
            (setup.sandbox, v)
        });
        let st = self.pods.get_mut(uid).unwrap();
        match result {
            Ok(sv) => {
                st.sandbox = Some(sv);
                st.sandbox_error = None;
                st.sandbox_failing = None;
                true
            }
            Err((reason, e)) => {
                if st.sandbox_error.as_deref() != Some(&e) {
                    st.sandbox_error = Some(e.clone());
                    self.changed = true;
                }
                // A ConfigMap or token the fetcher is still reading is the
                // normal start of a cluster pod: say it only if it lasts.
                let (since, reported) = st.sandbox_failing.get_or_insert((Instant::now(), None));
                if since.elapsed() >= self.sandbox_grace && reported.as_deref() != Some(&e) {
                    *reported = Some(e.clone());
                    log::warn!("pod {}: {e}", full_name(&st.pod));
                    self.sandbox_event(uid, reason, &e);
                }
                false
            }
        }
    }

    /// The pod's cgroup and limits (before any of its containers) and its
    /// volumes; the failure's event reason and message.
    fn cgroup_and_volumes(&self, uid: &str) -> Result<Volumes, (&'static str, String)> {
        let pod = &self.pods[uid].pod;
        if let Some(cg) = &self.cfg.cgroups {
            cg.ensure_pod(pod).map_err(|e| (super::events::FAILED_CREATE_POD_SANDBOX, e.to_string()))?;
        }
        let src = volume::Sources { objects: &self.objects, node: &self.allocatable };
        volume::setup(pod, &self.pod_dir(uid), &src).map_err(|e| (super::events::FAILED_MOUNT, e.to_string()))
    }

    /// Rewrites a running pod's configMap, secret, downwardAPI and projected
    /// volumes when their objects changed in the store (at most every
    /// VOLUME_REFRESH). A refresh that fails keeps the old files and is
    /// logged once.
    fn refresh_volumes(&mut self, uid: &str, now: Instant) {
        let st = self.pods.get_mut(uid).unwrap();
        let recent = st.volumes_checked.is_some_and(|t| now.duration_since(t) < VOLUME_REFRESH);
        if recent || st.sandbox.is_none() || st.stop.is_some() {
            return;
        }
        st.volumes_checked = Some(now);
        if !volume::has_api_volumes(&st.pod) {
            return;
        }
        let pod = st.pod.clone();
        let src = volume::Sources { objects: &self.objects, node: &self.allocatable };
        let result = volume::refresh(&pod, &self.pod_dir(uid), &src);
        let st = self.pods.get_mut(uid).unwrap();
        match result {
            Ok(changed) => {
                if changed {
                    log::info!("pod {}: volume contents updated from the object store", full_name(&pod));
                }
                st.refresh_error = None;
            }
            Err(e) => {
                let e = e.to_string();
                if st.refresh_error.as_deref() != Some(&e) {
                    log::warn!("pod {}: {e}", full_name(&pod));
                    st.refresh_error = Some(e);
                }
            }
        }
    }

    fn restart_after_backoff(&mut self, uid: &str, c: &Container, init: bool, r: &Record, o: &Observed) {
        let Observed::Exited { started_at, finished_at, .. } = o else { return };
        let finished = parse_rfc3339(finished_at).unwrap_or_else(SystemTime::now);
        let started = started_at.as_deref().and_then(parse_rfc3339).unwrap_or(finished);
        let since_exit = SystemTime::now().duration_since(finished).unwrap_or_default();
        let ran = finished.duration_since(started).unwrap_or_default();
        let key = format!("{uid}/{}", c.name);
        // A restart the back-off let through waits on an Always pull: not again.
        if self.pull_pending(uid, &c.name) {
            return self.start(uid, c, init, r.attempt + 1);
        }
        match self.backoff.check(&key, since_exit, ran) {
            Decision::Restart => self.start(uid, c, init, r.attempt + 1),
            Decision::Wait { delay, .. } => {
                let pod = &self.pods[uid].pod;
                let msg = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({uid})",
                    delay.as_secs(),
                    c.name,
                    pod.metadata.name,
                    pod.metadata.namespace
                );
                self.set_waiting(uid, &c.name, "CrashLoopBackOff", msg);
            }
        }
    }

    fn set_waiting(&mut self, uid: &str, name: &str, reason: &str, message: String) {
        let st = self.pods.get_mut(uid).unwrap();
        let new = (reason.to_string(), message);
        if st.waiting.get(name) != Some(&new) {
            if reason != "CrashLoopBackOff" {
                log::warn!("pod {} container {name}: {reason}: {}", full_name(&st.pod), new.1);
            }
            st.waiting.insert(name.to_string(), new);
            self.changed = true;
            self.waiting_events(uid, name);
        }
    }

    /// Creates and starts attempt `attempt` of container `c`.
    fn start(&mut self, uid: &str, c: &Container, init: bool, attempt: u32) {
        self.startup_container(uid, init, c.is_sidecar());
        let pod = self.pods[uid].pod.clone();
        let img = match self.images.resolve(&c.image) {
            Ok(Some(img)) => img,
            Ok(None) if c.image_pull_policy == "Never" => {
                let msg = format!("Container image \"{}\" is not present with pull policy of Never", c.image);
                return self.set_waiting(uid, &c.name, "ErrImageNeverPull", msg);
            }
            Ok(None) => return self.need_pull(uid, c, false),
            Err(e) => return self.set_waiting(uid, &c.name, "InvalidImageName", e.to_string()),
        };
        if !self.take_announced(uid, &c.name) {
            // Always: every start asks the registry whether the tag moved.
            if c.image_pull_policy == "Always" && self.refreshes(&c.image) {
                return self.need_pull(uid, c, true);
            }
            self.pulled_event(uid, c);
        }
        let (sandbox, volumes) = self.pods[uid].sandbox.clone().expect("sandbox ensured");
        let ctx = FieldContext {
            pod: &pod,
            host_ip: &self.cfg.host_ip,
            pod_ip: &sandbox.pod_ip,
            node: &self.allocatable,
            objects: &self.objects,
        };
        let prepared = container_env(&ctx, c, &img.config.env)
            .map_err(|e| e.to_string())
            .and_then(|env| command_line(c, &img.config, &env.own).map(|args| (env, args)).map_err(|e| e.to_string()));
        let (env, own, args) = match prepared {
            Ok((env, args)) => {
                for w in &env.warnings {
                    log::warn!("pod {} container {}: {w}", full_name(&pod), c.name);
                }
                (env.env, env.own, args)
            }
            Err(e) => return self.set_waiting(uid, &c.name, "CreateContainerConfigError", e),
        };
        let expand = |expr: &str| crate::runtime::env::expand_sub_path(expr, &own);
        let sub_paths = match volume::subpath::prepare(&volumes, &self.pod_dir(uid), c, expand) {
            Ok(s) => s,
            Err(e) => {
                let message = e.to_string();
                // The status keeps host paths out, as upstream's; the log says why, once.
                if let Some(why) = e.detail().filter(|_| self.pods[uid].waiting.get(&c.name).map(|(_, m)| m) != Some(&message)) {
                    log::warn!("pod {} container {}: {message}: {why}", full_name(&pod), c.name);
                }
                return self.set_waiting(uid, &c.name, "CreateContainerConfigError", message);
            }
        };

        let id = format!("{uid}-{}-{attempt}", c.name);
        let dir = record::dir(&self.cfg.root, &id);
        let mut rec = Record {
            id: id.clone(),
            pod_uid: uid.to_string(),
            pod_namespace: pod.metadata.namespace.clone(),
            pod_name: pod.metadata.name.clone(),
            container: c.name.clone(),
            init,
            attempt,
            image: img.reference.clone(),
            image_id: img.id.clone(),
            stop_signal: img.config.stop_signal.clone(),
            created_at: now_str(),
            ..Default::default()
        };
        let bundle = (|| -> Result<(), String> {
            let _ = std::fs::remove_dir_all(&dir); // a leftover from a failed attempt with this id
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let rootfs = image::mount_rootfs(&img.layers, &dir).map_err(|e| e.to_string())?;
            let input = SpecInput {
                pod: &pod,
                container: c,
                image: &img.config,
                rootfs: &rootfs,
                args,
                env,
                volumes: &volumes,
                sub_paths: &sub_paths,
                sandbox: &sandbox,
            };
            let mut config = spec::generate(&input, &rootfs).map_err(|e| e.to_string())?;
            config["process"]["oomScoreAdj"] = oom_score_adj(&pod, c, self.cfg.memory_capacity).into();
            if let Some(cg) = &self.cfg.cgroups {
                config["linux"]["cgroupsPath"] = cg.container_path(&pod, &id).into();
                let (cpu, memory) = cgroup::resources::container_resources(c);
                config["linux"]["resources"]["cpu"] = cpu;
                if let Some(m) = memory {
                    config["linux"]["resources"]["memory"] = m;
                }
            }
            let body = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
            write_atomic(&dir.join("config.json"), &body).map_err(|e| e.to_string())?;
            crate::runtime::logs::make_fifos(&dir).map_err(|e| e.to_string())?;
            Ok(())
        })();
        if let Err(e) = bundle {
            let _ = image::unmount_rootfs(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            return self.set_waiting(uid, &c.name, "CreateContainerConfigError", e);
        }
        self.pods.get_mut(uid).unwrap().waiting.remove(&c.name);
        self.changed = true;
        if let Err(e) = rec.save(&self.cfg.root) {
            return self.set_waiting(uid, &c.name, "CreateContainerError", format!("{}: {e}", dir.display()));
        }
        // The previous attempt is superseded: free its runtime state and disk.
        let older: Vec<Record> = self.pods[uid].attempts.get(&c.name).cloned().unwrap_or_default();
        for old in &older {
            let dropped = old.attempt + 1 < attempt;
            self.release_attempt(old, dropped);
            if dropped {
                self.exited.remove(&old.id);
            }
        }
        let st = self.pods.get_mut(uid).unwrap();
        let list = st.attempts.entry(c.name.clone()).or_default();
        list.retain(|o| o.attempt + 1 >= attempt);
        match self.runtime.create(&id, &dir, &dir.join("stdout"), &dir.join("stderr")) {
            Ok(pid) => {
                self.event(uid, Some(&c.name), false, super::events::CREATED, super::events::created(&c.name));
                rec.pid = pid;
                self.pumps.push(self.pump_request(&rec));
                self.start_and_record(&mut rec);
                if rec.start_error.is_none() {
                    self.after_start(&rec);
                }
            }
            Err(e) => {
                log::warn!("pod {} container {}: {e}", full_name(&pod), c.name);
                self.event(uid, Some(&c.name), true, super::events::FAILED, format!("Error: {e}"));
                rec.start_error = Some(e.to_string());
                let _ = rec.save(&self.cfg.root);
            }
        }
        log::info!("started container {} of pod {} (attempt {attempt})", c.name, full_name(&pod));
        self.pods.get_mut(uid).unwrap().attempts.entry(c.name.clone()).or_default().push(rec);
    }

    fn start_and_record(&mut self, rec: &mut Record) {
        match self.runtime.start(&rec.id) {
            Ok(()) => {
                rec.started_at = Some(now_str());
                let message = super::events::started(&rec.container);
                self.event(&rec.pod_uid, Some(&rec.container), false, super::events::STARTED, message);
            }
            Err(e) => {
                log::warn!("container {}: {e}", rec.id);
                self.event(&rec.pod_uid, Some(&rec.container), true, super::events::FAILED, format!("Error: {e}"));
                rec.start_error = Some(e.to_string());
                let _ = self.runtime.kill(&rec.id, "KILL");
            }
        }
        if let Err(e) = rec.save(&self.cfg.root) {
            log::error!("container {}: cannot save its record: {e}", rec.id);
        }
    }

    /// picolet died between create and start: finish the start.
    fn start_created(&mut self, uid: &str, r: &Record) {
        let mut rec = r.clone();
        self.start_and_record(&mut rec);
        if rec.start_error.is_none() {
            self.after_start(&rec);
        }
        if let Some(list) = self.pods.get_mut(uid).and_then(|p| p.attempts.get_mut(&r.container)) {
            if let Some(last) = list.last_mut() {
                *last = rec;
            }
        }
        self.changed = true;
    }

    fn pump_request(&self, r: &Record) -> PumpRequest {
        PumpRequest {
            dir: record::dir(&self.cfg.root, &r.id),
            log_dir: self.log_dir(&r.pod_namespace, &r.pod_name, &r.pod_uid).join(&r.container),
            attempt: r.attempt,
        }
    }

    /// Frees a finished attempt's runtime state; `remove` also deletes its
    /// directory (records beyond the previous attempt are not kept).
    fn release_attempt(&mut self, r: &Record, remove: bool) {
        self.forget_health(&r.id);
        if remove {
            self.kill_messages.remove(&r.id);
        }
        if let Err(e) = self.runtime.delete(&r.id) {
            log::warn!("container {}: {e}", r.id);
        }
        self.runtime.release(&r.id);
        let dir = record::dir(&self.cfg.root, &r.id);
        if let Err(e) = image::unmount_rootfs(&dir) {
            log::warn!("container {}: {e}", r.id);
        }
        if remove {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            // Keep record.json and exit.json for lastState; drop the writable layer.
            for sub in ["upper", "work"] {
                let _ = std::fs::remove_dir_all(dir.join(sub));
            }
        }
    }


    // ---- stopping ----

    /// Drives a pod towards gone: signal, wait out the grace period, kill,
    /// then remove containers, sandbox, volumes and logs. True when done.
    fn stop_pod(&mut self, uid: &str, now: Instant) -> bool {
        let running = self.unexited_attempts(uid);
        let st = self.pods.get_mut(uid).unwrap();
        let name = full_name(&st.pod);
        if st.stop.is_none() {
            // A deletion's grace period (kubectl delete --grace-period) wins.
            let grace = st.pod.metadata.deletion_grace_period_seconds.or(st.pod.spec.termination_grace_period_seconds).unwrap_or(30).max(0);
            st.stop = Some(Stop { deadline: time::deadline(now, time::seconds(grace)) });
            self.changed = true;
            if !running.is_empty() {
                log::info!("pod {name}: stopping {} container(s), grace period {grace}s", running.len());
            }
        }
        if !running.is_empty() {
            let deadline = self.pods[uid].stop.as_ref().map_or(now, |s| s.deadline);
            self.stop_in_order(uid, &running, deadline, now);
            self.drive_kills(uid, now);
            return false;
        }
        let all: Vec<Record> = self.pods[uid].attempts.values().flatten().cloned().collect();
        for r in &all {
            // Once each: a later pass (a teardown still running) finds it
            // released, and its exit still cached.
            if record::dir(&self.cfg.root, &r.id).exists() {
                self.release_attempt(r, true);
            }
        }
        let pod_dir = self.pod_dir(uid);
        if let Some(cg) = &self.cfg.cgroups {
            if let Err(e) = cg.remove_pod(uid) {
                log::warn!("pod {name}: {e}");
            }
        }
        // An ended pod's network went when it ended (ended.rs).
        if self.pods[uid].released_ip.is_none() {
            match self.network_teardown(uid) {
                sandbox::Progress::Pending => return false,
                sandbox::Progress::Done(Err(e)) => {
                    log::warn!("{e}");
                    return false;
                }
                sandbox::Progress::Done(Ok(_)) => {}
            }
        }
        if let Err(e) = volume::teardown(&pod_dir) {
            log::warn!("pod {name}: {e}");
            return false;
        }
        let _ = std::fs::remove_dir_all(&pod_dir);
        let pod = &self.pods[uid].pod;
        let _ = std::fs::remove_dir_all(self.log_dir(&pod.metadata.namespace, &pod.metadata.name, uid));
        self.backoff.forget_pod(uid);
        log::info!("pod {name} stopped and removed");
        true
    }

    // ---- status ----

    fn update_status(&mut self, uid: &str) {
        self.health_changed.remove(uid);
        let pod = self.pods[uid].pod.clone();
        let mut views = |containers: &[Container]| -> Vec<ContainerView> {
            containers
                .iter()
                .map(|c| {
                    let list = self.pods[uid].attempts.get(&c.name).cloned().unwrap_or_default();
                    let mut atts: Vec<Attempt> = list
                        .iter()
                        .map(|r| {
                            let mut observed = self.observe(r);
                            if let (Observed::Exited { message, .. }, Some(m)) = (&mut observed, self.kill_messages.get(&r.id)) {
                                if message.is_empty() {
                                    *message = m.clone();
                                }
                            }
                            Attempt { attempt: r.attempt, id: r.id.clone(), image: r.image.clone(), image_id: r.image_id.clone(), observed }
                        })
                        .collect();
                    let latest = atts.pop();
                    let previous = atts.pop();
                    let mut waiting = self.pods[uid].waiting.get(&c.name).cloned();
                    if waiting.is_none() {
                        if let Some(e) = &self.pods[uid].sandbox_error {
                            waiting = Some(("ContainerCreating".into(), e.clone()));
                        }
                    }
                    // A waiting reason only describes a container that is not running.
                    if matches!(latest.as_ref().map(|a| &a.observed), Some(Observed::Running { .. })) {
                        waiting = None;
                    }
                    let (started, ready, post_start_pending) =
                        latest.as_ref().map(|a| self.health_view(&a.id)).unwrap_or((false, false, false));
                    ContainerView { latest, previous, waiting, started, ready, post_start_pending }
                })
                .collect()
        };
        let init = views(&pod.spec.init_containers);
        let app = views(&pod.spec.containers);
        let st = &self.pods[uid];
        let pod_ip = if pod.spec.host_network {
            self.cfg.host_ip.clone()
        } else {
            // An ended pod keeps reporting the IP it had, as upstream does.
            st.sandbox.as_ref().map(|(s, _)| s.pod_ip.clone()).or_else(|| st.released_ip.clone()).unwrap_or_default()
        };
        let view = PodView {
            pod: &pod,
            init,
            app,
            sandbox_ready: st.sandbox.is_some(),
            host_ip: &self.cfg.host_ip,
            pod_ip: &pod_ip,
            start_time: &st.start_time,
            failed_message: st.failed.clone(),
            failed_reason: if st.eviction.is_some() { crate::node::eviction::REASON } else { "" },
        };
        let status = status::compute(&view, st.status.as_ref(), &now_str());
        let st = self.pods.get_mut(uid).unwrap();
        if st.status.as_ref() != Some(&status) {
            st.status = Some(status);
            self.changed = true;
            self.track_startup(uid);
        }
    }

    // ---- paths ----

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.root.join("pods").join(uid)
    }

    fn log_dir(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        self.cfg.logs_dir.join(format!("{ns}_{name}_{uid}"))
    }

    fn checkpoint(&self, st: &PodState) {
        let evicted = st.eviction.as_ref().and(st.failed.clone());
        let cp = Checkpoint { pod: Pod::clone(&st.pod), start_time: st.start_time.clone(), evicted, released_ip: st.released_ip.clone() };
        let path = self.pod_dir(&st.pod.metadata.uid).join("pod.json");
        let body = serde_json::to_vec(&cp).expect("pod serialises");
        if let Err(e) = write_atomic(&path, &body) {
            log::error!("pod {}: cannot checkpoint to {}: {e}", full_name(&st.pod), path.display());
        }
    }
}

impl PodState {
    /// The latest attempt of each container.
    fn latest_records(&self) -> Vec<Record> {
        self.attempts.values().filter_map(|v| v.last().cloned()).collect()
    }

    fn new(pod: Pod, start_time: String, desired: bool) -> PodState {
        PodState {
            pod: Rc::new(pod),
            desired,
            start_time,
            attempts: BTreeMap::new(),
            waiting: HashMap::new(),
            sandbox: None,
            sandbox_error: None,
            sandbox_failing: None,
            net_job: None,
            released_ip: None,
            ending: None,
            volumes_checked: None,
            refresh_error: None,
            stop: None,
            failed: None,
            eviction: None,
            status: None,
            startup: None,
            sync_kind: "create",
        }
    }
}

/// Tells the pod loop that work done off it has finished.
fn wake(waker: &Option<smol::channel::Sender<()>>) {
    if let Some(w) = waker {
        let _ = w.try_send(());
    }
}

pub fn full_name(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace, pod.metadata.name)
}
