//! The sync loop, on the main thread: sources (manifest files, the API
//! server's pods) → the pod manager's pass → statuses to the API server and
//! `/pods`. A pass runs once a tick, and at once when a manifest changes, the
//! API server sends news, a probe or hook finishes, or a pull or network job
//! does. The loop also spawns the tasks a pass asks for: log pumps, probes
//! and hooks.
//!
//! Not here: what a pass does (pod::worker), building what the loop runs on
//! (wiring.rs).

use crate::pod::source::{DirWatch, FileSource};
use crate::pod::worker::{Housekeeping, Job, JobReport, Manager, PumpRequest, Settings};
use crate::runtime::logs::{self, LogWriter, Stream};
use crate::runtime::runc::Runc;
use crate::{api, image, node, pod, probe};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often containers are re-observed (upstream's PLEG relist period).
const TICK: Duration = Duration::from_secs(1);

/// How the pod loop talks to the cluster threads.
pub struct ClusterLinks {
    pub updates: smol::channel::Receiver<pod::apisource::Update>,
    pub outbox: pod::apiwriter::Outbox,
    pub node_uid: Arc<std::sync::OnceLock<String>>,
    pub fetch: std::sync::mpsc::Sender<api::fetch::Pods>,
    pub client: Arc<api::client::Client>,
}

/// What the loop runs on, built by the wiring: the pod manager's parts (moved
/// in) and what the loop only uses (borrowed).
pub struct Parts<'a> {
    pub settings: Settings,
    pub runc: Runc,
    pub store: image::Store,
    /// The cluster threads, when picolet is a node of a cluster.
    pub api: Option<ClusterLinks>,
    pub node_name: &'a str,
    /// Static pods: the manifest directory and its watch.
    pub source: &'a mut Option<FileSource>,
    pub watch: &'a Option<smol::Async<DirWatch>>,
    pub file_check_frequency: Duration,
    pub import_dir: &'a Path,
    /// containerLogMaxSize and containerLogMaxFiles.
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub housekeeping: &'a mut Housekeeping,
    /// A finished image pull or pod network job.
    pub job_woke: &'a smol::channel::Receiver<()>,
    /// The pods `/pods` and the kubelet server show.
    pub published: &'a Mutex<Vec<api::Pod>>,
}

/// Runs the loop; it does not return.
pub fn run(parts: Parts) -> Result<(), String> {
    let Parts {
        settings,
        runc,
        store,
        api,
        node_name,
        source,
        watch,
        file_check_frequency,
        import_dir,
        log_max_size: max_size,
        log_max_files: max_files,
        housekeeping,
        job_woke,
        published,
    } = parts;
    let ex = smol::LocalExecutor::new();
    // Probes and hooks run as tasks; their results come back here.
    let (report_tx, report_rx) = smol::channel::unbounded::<JobReport>();
    smol::block_on(ex.run(async {
        let mut manager = Manager::new(settings, runc, store);
        let (api_rx, fetch, mut cluster) = match api {
            Some(l) => (Some(l.updates), Some(l.fetch), Some(pod::cluster::Cluster::new(l.outbox, node_name, l.node_uid, manager.pods()))),
            None => (None, None, None),
        };
        let mut desired = Vec::new();
        let mut next_scan = Instant::now();
        let mut next_import = Instant::now();
        let mut woken = true;
        // An update from the API server arrived while the loop slept.
        let api_woke = std::cell::Cell::new(false);
        let watchdog = node::notify::watchdog_interval();
        let mut next_ping = Instant::now();
        let mut ready = false;
        loop {
            // Readers first: a recovered container's pipe must have a reader
            // before this pass may release the reaper's hold on it.
            for p in manager.take_pumps() {
                ex.spawn(pump_logs(p, max_size, max_files)).detach();
            }
            smol::future::yield_now().await;
            if let Some(every) = watchdog {
                if Instant::now() >= next_ping {
                    node::notify::watchdog();
                    next_ping = Instant::now() + every;
                }
            }
            // Once a tick, not on every probe result that wakes the loop.
            if Instant::now() >= next_import {
                for (file, result) in manager.images().import_dir(import_dir) {
                    match result {
                        Ok(refs) => log::info!("imported {} from {}", refs.join(", "), file.display()),
                        Err(e) => log::warn!("cannot import {}: {e}", file.display()),
                    }
                }
                next_import = Instant::now() + TICK;
            }
            if let Some(src) = source.as_mut() {
                if woken || Instant::now() >= next_scan {
                    if let Some(w) = watch {
                        w.get_ref().drain();
                    }
                    desired = src.scan();
                    next_scan = Instant::now() + file_check_frequency;
                }
            }
            while let Ok(r) = report_rx.try_recv() {
                manager.report(r);
            }
            let mut api_news = api_woke.replace(false);
            if let (Some(rx), Some(c)) = (&api_rx, cluster.as_mut()) {
                while let Ok(u) = rx.try_recv() {
                    c.apply(u);
                    api_news = true;
                }
            }
            if let (Some(c), Some(tx), true) = (&cluster, &fetch, api_news) {
                if c.synced() {
                    let needs = |pods: &mut dyn Iterator<Item = &api::Pod>| pods.map(api::objects::PodNeeds::of).collect();
                    let _ = tx.send(api::fetch::Pods { api: needs(&mut c.desired()), statics: needs(&mut desired.iter()) });
                }
            }
            match &cluster {
                Some(c) => manager.sync(desired.iter().chain(c.desired())),
                None => manager.sync(&desired),
            }
            // Eviction and image GC (each only when due).
            manager.housekeep(housekeeping, Instant::now());
            let removed = manager.take_removed();
            let events = manager.take_events();
            if let Some(c) = cluster.as_mut() {
                c.removed(removed);
                c.events(events); // standalone: nobody to tell
            }
            for p in manager.take_pumps() {
                ex.spawn(pump_logs(p, max_size, max_files)).detach();
            }
            for j in manager.take_jobs() {
                ex.spawn(run_job(j, report_tx.clone())).detach();
            }
            let changed = manager.take_changed();
            if changed || (api_news && cluster.is_some()) {
                let pods = manager.pods();
                if let Some(c) = cluster.as_mut() {
                    c.publish(&pods, &desired);
                }
                if changed {
                    let running = pods.iter().filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running")).count();
                    node::notify::status(&format!("{} pods, {running} running", pods.len()));
                    *published.lock().unwrap_or_else(|p| p.into_inner()) = pods;
                }
            }
            if !ready {
                // The read-only port is bound and the first sync has run.
                node::notify::ready();
                ready = true;
            }
            let timer = async {
                smol::Timer::after(TICK).await;
                false
            };
            // A finished probe or hook wakes the loop at once (no rescan).
            let report = async {
                if let Ok(r) = report_rx.recv().await {
                    manager.report(r);
                }
                false
            };
            let timer = smol::future::or(timer, report);
            // So does news from the API server (a pod bound, deleted...).
            let api_wake = async {
                match &api_rx {
                    Some(rx) => {
                        if let Ok(u) = rx.recv().await {
                            if let Some(c) = cluster.as_mut() {
                                c.apply(u);
                                api_woke.set(true);
                            }
                        }
                    }
                    None => smol::future::pending::<()>().await,
                }
                false
            };
            let timer = smol::future::or(timer, api_wake);
            let job_done = async {
                let _ = job_woke.recv().await;
                false
            };
            let timer = smol::future::or(timer, job_done);
            woken = match watch {
                Some(w) => smol::future::or(timer, async { w.readable().await.is_ok() }).await,
                None => timer.await,
            };
        }
    }))
}

/// Runs one probe or hook and hands its outcome back to the manager.
async fn run_job(j: Job, tx: smol::channel::Sender<JobReport>) {
    let began = Instant::now();
    let outcome = probe::run::run(&j.action, &j.target, j.timeout).await;
    let _ = tx.send(JobReport { id: j.id, kind: j.kind, outcome, took: began.elapsed() }).await;
}

/// Copies one container's stdout and stderr into its CRI log file until both
/// pipes close, then marks the container's logs complete.
async fn pump_logs(p: PumpRequest, max_size: u64, max_files: u32) {
    let writer = match LogWriter::open(&p.log_dir, p.attempt, max_size, max_files) {
        Ok(w) => Rc::new(RefCell::new(w)),
        Err(e) => return log::error!("logs of {}: {e}", p.dir.display()),
    };
    let out = logs::pump(p.dir.join("stdout"), Stream::Stdout, writer.clone());
    let err = logs::pump(p.dir.join("stderr"), Stream::Stderr, writer.clone());
    let (a, b) = smol::future::zip(out, err).await;
    for r in [a, b] {
        if let Err(e) = r {
            log::warn!("logs of {}: {e}", p.dir.display());
        }
    }
    let _ = std::fs::write(p.dir.join("logs.done"), b"");
}
