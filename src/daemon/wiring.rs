//! Everything `picolet run` builds once, in one place: the start-up checks,
//! the cgroup tree, the image store, the reaper, the metrics registry, the
//! pod worker's settings, the cluster threads (node agent, pod watch, object
//! fetcher, API writer), the read-only port, the kubelet server and healthz;
//! then the main thread goes to the sync loop (sync.rs).
//!
//! Not here: the loop itself; the parts' own logic (each in its module).

use super::sync;
use crate::config::Config;
use crate::pod::source::{DirWatch, FileSource};
use crate::pod::worker::Settings;
use crate::{api, cgroup, image, metrics, network, node, pod, runtime, server};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// `picolet run`: builds everything, starts the threads and servers, and
/// hands the main thread to the sync loop.
pub fn run(cfg: Config) -> Result<(), String> {
    // Before any thread or child exists: runc must not inherit NOTIFY_SOCKET.
    node::notify::init();
    node::preflight(&cfg.runtime_path)?;
    let node_allocatable = node::allocatable::of_node(cfg.kube_reserved, cfg.system_reserved, &cfg.eviction_hard, node::cpu_capacity(), node::memory_capacity());
    // kubepods' limit leaves the hard eviction threshold out, as upstream
    // enforces it: pods may dip into that margin, so eviction acts before the
    // kernel's OOM killer does (with it in, the limit would be hit first).
    let kubepods_limit = node::allocatable::enforced(cfg.kube_reserved, cfg.system_reserved, node::cpu_capacity(), node::memory_capacity());
    let cgroups = if cfg.manages_cgroups() {
        Some(setup_cgroups(&cfg, kubepods_limit)?)
    } else {
        log::warn!("cgroupsPerQOS=false and enforceNodeAllocatable=[]: running without resource management");
        None
    };
    let root = cfg.root_dir.clone();
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let node_name = cfg.node_name();
    let store = image::Store::open(&root.join("images-store")).map_err(|e| e.to_string())?;
    let reaper = runtime::reaper::ReaperClient::connect_or_spawn(&root).map_err(|e| e.to_string())?;
    // One set of metrics, fed by the pod loop and the runtime, served on /metrics.
    let metrics: Arc<metrics::Metrics> = Arc::default();
    let runc = runtime::runc::Runc::new(cfg.runtime_path.clone(), root.join("runc"), reaper, metrics.clone());
    let mut registries = image::Registries::load(&cfg.registry_config).map_err(|e| e.to_string())?;
    registries.progress_timeout = Some(cfg.image_pull_progress_timeout);
    // A finished image pull or pod network job wakes the pod loop.
    let (job_wake, job_woke) = smol::channel::bounded::<()>(1);
    // In a cluster the node agent publishes the Node's podCIDR here.
    let node_pod_cidr: Arc<Mutex<Option<String>>> = Arc::default();
    let network = network_settings(&cfg, cfg.kubeconfig.is_some().then(|| node_pod_cidr.clone()));
    let settings = Settings {
        root: root.clone(),
        logs_dir: cfg.pod_logs_dir.clone(),
        host_ip: node::host_ip(),
        memory_capacity: node::memory_capacity(),
        node_allocatable,
        cgroups,
        pull: Some(pod::worker::PullConfig {
            registries: Arc::new(registries),
            platform: image::Platform::host(),
            limit: cfg.image_pull_limit(),
        }),
        metrics: metrics.clone(),
        network: Arc::new(network),
        wake: Some(job_wake),
    };
    let runtime_version = runtime::runc::Runtime::version(&runc);
    log::info!(
        "picolet {} starting: node {node_name}, root {}, runtime {runtime_version}",
        env!("CARGO_PKG_VERSION"),
        root.display(),
    );
    // Set by eviction (the pod loop), reported in the node status.
    let pressure: Arc<Mutex<node::eviction::Pressure>> = Arc::default();
    let api = match &cfg.kubeconfig {
        Some(path) => Some(join_cluster(&cfg, path, &node_name, &settings.host_ip, runtime_version, pressure.clone(), node_pod_cidr)?),
        None => None,
    };

    let published: Arc<Mutex<Vec<api::Pod>>> = Arc::default();
    if cfg.read_only_port != 0 {
        let addr = format!("127.0.0.1:{}", cfg.read_only_port);
        let listener = TcpListener::bind(&addr).map_err(|e| format!("read-only port {addr}: {e}"))?;
        let pods = published.clone();
        let handler = Arc::new(move |_method: &str, path: &str| match server::route(path) {
            server::Route::Healthz => server::Response::text(200, "ok"),
            server::Route::Pods => {
                let items = pods.lock().unwrap_or_else(|p| p.into_inner()).clone();
                server::Response::json(&server::info::pod_list(items))
            }
            server::Route::NotFound => server::Response::not_found(),
        });
        std::thread::spawn(move || server::serve(listener, handler));
        log::info!("read-only API on http://{addr} (/pods, /healthz)");
    }

    start_kubelet_server(&cfg, &node_name, api.as_ref().map(|l| l.client.clone()), published.clone(), metrics)?;
    start_healthz(&cfg);

    let mut source = cfg.pod_manifest_path.as_ref().map(|dir| FileSource::new(dir, &node_name));
    let watch = cfg.pod_manifest_path.as_ref().and_then(|dir| match DirWatch::new(dir) {
        Ok(w) => smol::Async::new(w).ok(),
        Err(e) => {
            log::warn!("cannot watch {} ({e}); rescanning every {:?}", dir.display(), cfg.file_check_frequency);
            None
        }
    });
    if source.is_none() {
        log::info!("no --pod-manifest-path or staticPodPath: running no static pods");
    }

    let mut housekeeping = pod::worker::Housekeeping::new(
        cfg.eviction_hard.clone(),
        cfg.eviction_pressure_transition_period,
        node::eviction::read::Reader {
            roots: Default::default(),
            root_dir: root.clone(),
            logs_dir: cfg.pod_logs_dir.clone(),
            image_store: root.join("images-store"),
        },
        image::gc::Policy {
            high_percent: cfg.image_gc_high_threshold_percent,
            low_percent: cfg.image_gc_low_threshold_percent,
            min_age: cfg.image_minimum_gc_age,
        },
        pressure,
    );
    sync::run(sync::Parts {
        settings,
        runc,
        store,
        api,
        node_name: &node_name,
        source: &mut source,
        watch: &watch,
        file_check_frequency: cfg.file_check_frequency,
        import_dir: &cfg.image_import_dir,
        log_max_size: cfg.container_log_max_size,
        log_max_files: cfg.container_log_max_files,
        housekeeping: &mut housekeeping,
        job_woke: &job_woke,
        published: &published,
    })
}

/// Checks and creates picolet's cgroup tree (see cgroup/): `--cgroup-root`
/// when given, else picolet's own cgroup, which picolet (and later its
/// reaper, started from here) then leaves for the supervisor leaf.
fn setup_cgroups(cfg: &Config, alloc: node::allocatable::Allocatable) -> Result<cgroup::PodCgroups, String> {
    let fs = std::path::Path::new(cgroup::FS_ROOT);
    let (root, evacuate) = match &cfg.cgroup_root {
        Some(r) => (r.clone(), false),
        None => {
            let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            let own = cgroup::own_path(&text)
                .ok_or_else(|| "no cgroup v2 path in /proc/self/cgroup: boot with systemd.unified_cgroup_hierarchy=1, or run without resource management: --cgroups-per-qos=false --enforce-node-allocatable=".to_string())?;
            // In the hierarchy's root picolet gets /picolet and stays put.
            let evacuate = text.lines().any(|l| l.strip_prefix("0::").is_some_and(|p| p.trim() != "/"));
            if cgroup::in_service_cgroup(&text) {
                log::warn!(
                    "picolet's pods go below its unit's cgroup {own}: with systemd before v254 the unit cannot restart while pods run (EBUSY); set DelegateSubgroup={} (systemd >= 254) or cgroupRoot to a cgroup outside the unit",
                    cgroup::SUPERVISOR
                );
            }
            (own, evacuate)
        }
    };
    node::check_cgroups(fs, &root)?;
    let limits = cgroup::pods::NodeLimits { cpu_milli: alloc.cpu_milli, memory: alloc.memory };
    let tree = cgroup::Tree::new(fs, &root);
    let cg = cgroup::PodCgroups::setup(tree, evacuate, limits, cfg.pod_pids_limit).map_err(|e| format!("cgroup tree {root}: {e}"))?;
    log::info!(
        "cgroup tree at {root}{}: kubepods memory.max {} (allocatable), pod pids.max {}",
        if evacuate { " (picolet in its supervisor leaf)" } else { "" },
        alloc.memory,
        if cfg.pod_pids_limit > 0 { cfg.pod_pids_limit.to_string() } else { "max".into() }
    );
    Ok(cg)
}

/// CNI and DNS for pod sandboxes, from the config.
fn network_settings(cfg: &Config, node_pod_cidr: Option<Arc<Mutex<Option<String>>>>) -> network::Network {
    let plugins = network::cni::Plugins { dirs: cfg.cni_bin_dirs.clone(), exec: Box::new(network::cni::ExecPlugins { timeout: network::cni::PLUGIN_TIMEOUT }) };
    let pod_cidr = network::PodCidr { configured: cfg.pod_cidr.clone(), node: node_pod_cidr };
    network::Network {
        cni: Some(network::CniSettings::new(cfg.cni_conf_dir.clone(), plugins, pod_cidr)),
        dns: network::DnsSettings {
            cluster_dns: cfg.cluster_dns.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
            resolv_conf: cfg.resolv_conf.clone(),
        },
    }
}

/// Starts the threads that make picolet a node of the cluster in `kubeconfig`:
/// node registration/status/lease, the pod watch and the API writer.
fn join_cluster(
    cfg: &Config,
    kubeconfig: &std::path::Path,
    node_name: &str,
    host_ip: &str,
    runtime_version: String,
    pressure: Arc<Mutex<node::eviction::Pressure>>,
    pod_cidr: Arc<Mutex<Option<String>>>,
) -> Result<sync::ClusterLinks, String> {
    let kc = api::kubeconfig::Kubeconfig::load(kubeconfig).map_err(|e| e.to_string())?;
    let client = Arc::new(api::client::Client::new(&kc).map_err(|e| format!("kubeconfig {}: {e}", kubeconfig.display()))?);
    log::info!("joining the cluster at {} as node {node_name}", kc.server);
    let ip = cfg.node_ip.clone().unwrap_or_else(|| host_ip.to_string());
    let node_config = node::status::NodeConfig {
        root_dir: &cfg.root_dir,
        node_labels: &cfg.node_labels,
        kube_reserved: cfg.kube_reserved,
        system_reserved: cfg.system_reserved,
        eviction_hard: &cfg.eviction_hard,
        max_pods: cfg.max_pods,
        port: cfg.port,
    };
    let facts = node::status::facts(node_name, node_config, &ip, runtime_version);
    let timing = node::agent::Timing {
        update: cfg.node_status_update_frequency,
        report: cfg.node_status_report_frequency,
        lease_seconds: cfg.node_lease_duration_seconds,
    };
    let node_uid: Arc<std::sync::OnceLock<String>> = Arc::default();
    let uid = node_uid.clone();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.into()).stack_size(256 << 10).spawn(f).map_err(|e| format!("starting the {name} thread: {e}"))
    };
    let c = client.clone();
    spawn("node", Box::new(move || node::agent::run(c, facts, timing, pressure, uid, pod_cidr)))?;
    let (tx, rx) = smol::channel::unbounded();
    let (c, node, wake) = (client.clone(), node_name.to_string(), tx.clone());
    spawn("pod-watch", Box::new(move || pod::apisource::run(c, node, tx)))?;
    let (fetch_tx, fetch_rx) = std::sync::mpsc::channel();
    let (c, store) = (client.clone(), api::objects::ObjectStore::under_root(&cfg.root_dir));
    let wake = move || {
        let _ = wake.try_send(pod::apisource::Update::Objects);
    };
    spawn("objects", Box::new(move || api::fetch::run(c, store, fetch_rx, wake)))?;
    let outbox = pod::apiwriter::Outbox::default();
    let o = outbox.clone();
    let c = client.clone();
    spawn("api-writer", Box::new(move || pod::apiwriter::run(c, o)))?;
    Ok(sync::ClusterLinks { updates: rx, outbox, node_uid, fetch: fetch_tx, client })
}

/// The authenticated HTTPS server on `--port` (logs, exec, stats...). It
/// needs the API server for webhook authentication and authorization, so a
/// standalone picolet runs it only when configured without webhooks.
fn start_kubelet_server(
    cfg: &Config,
    node_name: &str,
    client: Option<Arc<api::client::Client>>,
    pods: Arc<Mutex<Vec<api::Pod>>>,
    metrics: Arc<metrics::Metrics>,
) -> Result<(), String> {
    let settings = server::auth::AuthSettings {
        node_name: node_name.to_string(),
        anonymous: cfg.anonymous_auth,
        token_webhook: cfg.authentication_token_webhook,
        token_cache_ttl: cfg.authentication_token_webhook_cache_ttl,
        authorization_mode: cfg.authorization_mode.clone(),
        authorized_ttl: cfg.authorization_webhook_cache_authorized_ttl,
        unauthorized_ttl: cfg.authorization_webhook_cache_unauthorized_ttl,
    };
    let standalone = client.is_none();
    let auth = match server::auth::Auth::new(settings, client) {
        Ok(a) => a,
        Err(e) if standalone => {
            log::info!("kubelet server on port {} off: {e}", cfg.port);
            return Ok(());
        }
        Err(e) => return Err(format!("kubelet server: {e}")),
    };
    let tls = server::tls::server_config(&server::tls::TlsSettings {
        cert_file: cfg.tls_cert_file.as_deref(),
        key_file: cfg.tls_private_key_file.as_deref(),
        client_ca_file: cfg.client_ca_file.as_deref(),
        root_dir: &cfg.root_dir,
        node_name,
        node_ip: cfg.node_ip.as_deref(),
    })
    .map_err(|e| e.to_string())?;
    let ctx = server::kubelet::Context {
        node_name: node_name.to_string(),
        root: cfg.root_dir.clone(),
        logs_dir: cfg.pod_logs_dir.clone(),
        runtime_path: cfg.runtime_path.clone(),
        runtime_root: cfg.root_dir.join("runc"),
        pods,
        configz: server::info::configz_json(cfg),
        metrics,
        cpu_rates: Default::default(),
    };
    let addr = std::net::SocketAddr::new(cfg.address.parse().map_err(|_| format!("--address {:?}: not an IP address", cfg.address))?, cfg.port);
    let listener = TcpListener::bind(addr).map_err(|e| format!("kubelet server on {addr}: {e}"))?;
    server::kubelet::serve(listener, server::kubelet::Server { tls, auth, ctx }).map_err(|e| format!("kubelet server: {e}"))?;
    log::info!("kubelet server on https://{addr}");
    Ok(())
}

/// Plain `/healthz` on `healthzBindAddress:healthzPort`. Not fatal when the
/// port is taken, as upstream (the pods matter more than the endpoint).
fn start_healthz(cfg: &Config) {
    if cfg.healthz_port == 0 {
        return;
    }
    let addr = format!("{}:{}", cfg.healthz_bind_address, cfg.healthz_port);
    match TcpListener::bind(&addr) {
        Ok(l) => {
            let handler = Arc::new(|_m: &str, path: &str| match server::route(path) {
                server::Route::Healthz => server::Response::text(200, "ok"),
                _ => server::Response::not_found(),
            });
            if let Err(e) = server::serve(l, handler) {
                log::warn!("healthz on {addr}: {e}");
            }
        }
        Err(e) => log::warn!("healthz on {addr}: {e}; serving without it"),
    }
}
