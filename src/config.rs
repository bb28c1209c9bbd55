//! Command line and KubeletConfiguration file → [`Config`].
//!
//! Flags use upstream kubelet names (`--pod-manifest-path`, `--read-only-port`, ...) plus a few of
//! picolet's own; `--flag=value` and `--flag value` both work, as do `-v 2`, `-v=2` and `--v=2`.
//! A `--config` file (KubeletConfiguration v1beta1 YAML) is read first and flags override it,
//! as upstream. Only the fields picolet uses are read; the many others real configs carry are
//! ignored (logged at debug). Relative paths in the file are taken relative to the file's
//! directory, as upstream.
//!
//! Not here: reading the file again on change, `--config-dir` drop-ins, feature gates.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use crate::api::quantity::parse_int;
use crate::node::allocatable::Reserved;

/// Everything picolet is told at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--pod-manifest-path`, config `staticPodPath`: directory (or file) of static pods.
    pub pod_manifest_path: Option<PathBuf>,
    /// `--root-dir`: picolet's state directory.
    pub root_dir: PathBuf,
    /// `--hostname-override`.
    pub hostname_override: Option<String>,
    /// `--pod-logs-dir`: where container logs go (upstream's is fixed at /var/log/pods).
    pub pod_logs_dir: PathBuf,
    /// `--container-log-max-size`, config `containerLogMaxSize`, in bytes.
    pub container_log_max_size: u64,
    /// `--container-log-max-files`, config `containerLogMaxFiles` (at least 2).
    pub container_log_max_files: u32,
    /// `--read-only-port`, config `readOnlyPort`; 0 disables the endpoint.
    pub read_only_port: u16,
    /// `--file-check-frequency`, config `fileCheckFrequency`.
    pub file_check_frequency: Duration,
    /// `--runtime-path`: the runc binary.
    pub runtime_path: PathBuf,
    /// `--image-import-dir`: image archives to import at start-up.
    pub image_import_dir: PathBuf,
    /// `--registry-config`: mirrors, credentials and TLS of registries (k3s `registries.yaml`).
    pub registry_config: PathBuf,
    /// `-v` / `--v`: log verbosity.
    pub verbosity: u8,
    /// `--config`: the KubeletConfiguration file read, if any.
    pub config_file: Option<PathBuf>,
    /// `--cgroups-per-qos`, config `cgroupsPerQOS`.
    pub cgroups_per_qos: bool,
    /// `--enforce-node-allocatable`, config `enforceNodeAllocatable`.
    pub enforce_node_allocatable: Vec<String>,
    /// `--kubeconfig`: the API server to join; none runs standalone.
    pub kubeconfig: Option<PathBuf>,
    /// `--node-ip`: the node's InternalIP (default: the address of the default route).
    pub node_ip: Option<String>,
    /// `--node-labels`: extra labels set when the node registers.
    pub node_labels: Vec<(String, String)>,
    /// `--max-pods`, config `maxPods`.
    pub max_pods: u32,
    /// `--port`, config `port`: the kubelet endpoint the node advertises.
    pub port: u16,
    /// Config `nodeStatusUpdateFrequency`: how often node status is computed.
    pub node_status_update_frequency: Duration,
    /// Config `nodeStatusReportFrequency`: status is written at least this often.
    pub node_status_report_frequency: Duration,
    /// Config `nodeLeaseDurationSeconds`.
    pub node_lease_duration_seconds: u32,
    /// `--address`, config `address`: where `:10250` listens.
    pub address: String,
    /// `--tls-cert-file`/`--tls-private-key-file`: the serving certificate; none: self-signed under the root dir.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// `--client-ca-file`, config `authentication.x509.clientCAFile`.
    pub client_ca_file: Option<PathBuf>,
    /// `--anonymous-auth`, config `authentication.anonymous.enabled` (default false, as v1beta1).
    pub anonymous_auth: bool,
    /// `--authentication-token-webhook`, config `authentication.webhook.enabled` (default true, as v1beta1).
    pub authentication_token_webhook: bool,
    /// `--authentication-token-webhook-cache-ttl`, config `authentication.webhook.cacheTTL` (2m).
    pub authentication_token_webhook_cache_ttl: Duration,
    /// `--authorization-mode`, config `authorization.mode`: "Webhook" (default, as v1beta1) or "AlwaysAllow".
    pub authorization_mode: String,
    /// Config `authorization.webhook.cacheAuthorizedTTL` (5m) and `cacheUnauthorizedTTL` (30s).
    pub authorization_webhook_cache_authorized_ttl: Duration,
    pub authorization_webhook_cache_unauthorized_ttl: Duration,
    /// `--healthz-port` (0 disables), `--healthz-bind-address`: plain `/healthz`.
    pub healthz_port: u16,
    pub healthz_bind_address: String,
    // issue 6: cgroup
    /// `--cgroup-root`, config `cgroupRoot`: the cgroup picolet's tree goes in
    /// (created); None: picolet's own cgroup (its systemd unit's).
    pub cgroup_root: Option<String>,
    /// `--pod-max-pids`, config `podPidsLimit`: pids.max of each pod (-1: unlimited).
    pub pod_pids_limit: i64,
    /// `--kube-reserved` / `--system-reserved`, config `kubeReserved` / `systemReserved`.
    pub kube_reserved: Reserved,
    pub system_reserved: Reserved,
    // issue 6: eviction
    /// `--eviction-hard`, config `evictionHard`: hard eviction thresholds (upstream's defaults).
    pub eviction_hard: crate::node::eviction::Thresholds,
    /// `--eviction-pressure-transition-period`, config `evictionPressureTransitionPeriod` (5m).
    pub eviction_pressure_transition_period: Duration,
    /// `--image-gc-high-threshold`, config `imageGCHighThresholdPercent` (85): image GC starts above this disk usage.
    pub image_gc_high_threshold_percent: u8,
    /// `--image-gc-low-threshold`, config `imageGCLowThresholdPercent` (80): image GC frees down to this.
    pub image_gc_low_threshold_percent: u8,
    /// `--minimum-image-ttl-duration`, config `imageMinimumGCAge` (2m): younger unused images are kept.
    pub image_minimum_gc_age: Duration,
    // issue 6: network
    /// `--cni-conf-dir`: CNI network configs (the first by name is used; picolet writes a
    /// default one here when there is none).
    pub cni_conf_dir: PathBuf,
    /// `--cni-bin-dir`: where CNI plugins are looked for, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// `--pod-cidr`, config `podCIDR`: the default CNI config's pod subnet when the Node has
    /// no spec.podCIDR (standalone: always).
    pub pod_cidr: Option<String>,
    /// `--cluster-dns`, config `clusterDNS`: the nameservers of ClusterFirst pods.
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain`, config `clusterDomain`.
    pub cluster_domain: String,
    /// `--resolv-conf`, config `resolvConf`: the host resolv.conf Default pods get; None ("") for none.
    pub resolv_conf: Option<PathBuf>,
    // --- policy: image pulls ---
    /// `--serialize-image-pulls`, config `serializeImagePulls`; None (unset): true unless
    /// maxParallelImagePulls is above 1, as upstream's defaulting.
    pub serialize_image_pulls: Option<bool>,
    /// Config `maxParallelImagePulls` (no flag, as upstream): pulls at once when not
    /// serialized; None: no limit.
    pub max_parallel_image_pulls: Option<i32>,
    // --- blobs: registry downloads ---
    /// `--image-pull-progress-timeout` (containerd's `image_pull_progress_timeout`, 5m): a blob
    /// download that receives nothing for this long fails; zero: no limit.
    pub image_pull_progress_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        let root_dir = PathBuf::from(DEFAULT_ROOT_DIR);
        Config {
            pod_manifest_path: None,
            image_import_dir: root_dir.join("images"),
            registry_config: PathBuf::from(crate::image::registry::DEFAULT_REGISTRY_CONFIG),
            root_dir,
            hostname_override: None,
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            container_log_max_size: 10 << 20,
            container_log_max_files: 5,
            read_only_port: 10255,
            file_check_frequency: Duration::from_secs(20),
            runtime_path: PathBuf::from("runc"),
            verbosity: 0,
            config_file: None,
            cgroups_per_qos: true,
            enforce_node_allocatable: vec!["pods".into()],
            kubeconfig: None,
            node_ip: None,
            node_labels: Vec::new(),
            max_pods: 110,
            port: 10250,
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(300),
            node_lease_duration_seconds: 40,
            address: "0.0.0.0".into(),
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            anonymous_auth: false,
            authentication_token_webhook: true,
            authentication_token_webhook_cache_ttl: Duration::from_secs(120),
            authorization_mode: "Webhook".into(),
            authorization_webhook_cache_authorized_ttl: Duration::from_secs(300),
            authorization_webhook_cache_unauthorized_ttl: Duration::from_secs(30),
            healthz_port: 10248,
            healthz_bind_address: "127.0.0.1".into(),
            // issue 6: cgroup
            cgroup_root: None,
            pod_pids_limit: -1,
            kube_reserved: Reserved::default(),
            system_reserved: Reserved::default(),
            // issue 6: eviction
            eviction_hard: Default::default(),
            eviction_pressure_transition_period: crate::node::eviction::PRESSURE_TRANSITION_PERIOD,
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_minimum_gc_age: Duration::from_secs(120),
            // issue 6: network
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            // Debian's containernetworking-plugins installs into /usr/lib/cni.
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            pod_cidr: None,
            cluster_dns: Vec::new(),
            cluster_domain: String::new(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            // --- policy: image pulls ---
            serialize_image_pulls: None,
            max_parallel_image_pulls: None,
            // --- blobs: registry downloads ---
            image_pull_progress_timeout: crate::image::registry::DEFAULT_PROGRESS_TIMEOUT,
        }
    }
}

const DEFAULT_ROOT_DIR: &str = "/var/lib/picolet";

impl Config {
    // --- policy: image pulls ---
    /// Image pulls running at once: 1 when serialized, else maxParallelImagePulls (None: no limit).
    pub fn image_pull_limit(&self) -> Option<usize> {
        let max = self.max_parallel_image_pulls;
        match self.serialize_image_pulls.unwrap_or(!max.is_some_and(|m| m > 1)) {
            true => Some(1),
            false => max.and_then(|m| usize::try_from(m).ok()),
        }
    }

    /// Whether resource management (cgroup v2) is asked for: upstream's two
    /// switches both turned off is the one way to run without it.
    pub fn manages_cgroups(&self) -> bool {
        self.cgroups_per_qos || !self.enforce_node_allocatable.is_empty()
    }

    /// The node's name: the hostname override, else the machine's hostname, lowercased and
    /// trimmed as upstream does.
    pub fn node_name(&self) -> String {
        if let Some(h) = self.hostname_override.as_deref().map(str::trim).filter(|h| !h.is_empty())
        {
            return h.to_lowercase();
        }
        match nix::unistd::gethostname() {
            Ok(h) => h.to_string_lossy().trim().to_lowercase(),
            Err(e) => {
                log::warn!("reading the hostname: {e}; using \"localhost\"");
                "localhost".to_string()
            }
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the kubelet.
    Run(Config),
    /// `picolet images import FILE...`
    ImagesImport(Config, Vec<PathBuf>),
    /// `picolet images list`
    ImagesList(Config),
    /// `picolet images rm REF...`
    ImagesRemove(Config, Vec<String>),
    /// `picolet images pull [--platform os/arch[/variant]] REF`
    ImagesPull { config: Config, reference: String, platform: Option<String> },
    /// `--help`: the text to print.
    Help(String),
    /// `--version`
    Version,
}

/// A bad command line or configuration file, naming the flag, file or field.
#[derive(Debug)]
pub enum ConfigError {
    UnknownFlag(String),
    MissingValue(String),
    InvalidFlag { flag: String, value: String, reason: String },
    UnknownCommand(String),
    MissingFiles,
    MissingReference,
    ReadFile { path: PathBuf, source: io::Error },
    ParseFile { path: PathBuf, message: String },
    WrongKind { path: PathBuf, api_version: String, kind: String },
    InvalidField { path: PathBuf, field: String, value: String, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag}: needs a value (see --help)"),
            ConfigError::InvalidFlag { flag, value, reason } => {
                write!(f, "{flag}: invalid value {value:?}: {reason}")
            }
            ConfigError::UnknownCommand(c) => write!(f, "unknown command {c:?} (see --help)"),
            ConfigError::MissingFiles => write!(f, "images import: no FILE given (see --help)"),
            ConfigError::MissingReference => write!(f, "images pull/rm: no image reference given (see --help)"),
            ConfigError::ReadFile { path, source } => {
                write!(f, "reading config file {}: {source}", path.display())
            }
            ConfigError::ParseFile { path, message } => {
                write!(f, "config file {}: {message}", path.display())
            }
            ConfigError::WrongKind { path, api_version, kind } => write!(
                f,
                "config file {}: apiVersion {api_version:?} kind {kind:?}: want \
                 kubelet.config.k8s.io/v1beta1 KubeletConfiguration",
                path.display()
            ),
            ConfigError::InvalidField { path, field, value, reason } => write!(
                f,
                "config file {}: {field}: invalid value {value}: {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One flag: name, value placeholder (None for switches), default, config field, meaning.
struct FlagSpec {
    name: &'static str,
    value: Option<&'static str>,
    default: &'static str,
    field: &'static str,
    help: &'static str,
}

const FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "--config",
        value: Some("FILE"),
        default: "",
        field: "",
        help: "KubeletConfiguration file (kubelet.config.k8s.io/v1beta1); flags override it",
    },
    FlagSpec {
        name: "--pod-manifest-path",
        value: Some("PATH"),
        default: "",
        field: "staticPodPath",
        help: "directory or file of static pod manifests",
    },
    FlagSpec {
        name: "--root-dir",
        value: Some("DIR"),
        default: DEFAULT_ROOT_DIR,
        field: "",
        help: "picolet's state directory",
    },
    FlagSpec {
        name: "--hostname-override",
        value: Some("NAME"),
        default: "the machine's hostname",
        field: "",
        help: "node name to use instead of the hostname (lowercased)",
    },
    FlagSpec {
        name: "--pod-logs-dir",
        value: Some("DIR"),
        default: "/var/log/pods",
        field: "",
        help: "where container logs are written (picolet only)",
    },
    FlagSpec {
        name: "--container-log-max-size",
        value: Some("QUANTITY"),
        default: "10Mi",
        field: "containerLogMaxSize",
        help: "rotate a container's log when it passes this size",
    },
    FlagSpec {
        name: "--container-log-max-files",
        value: Some("N"),
        default: "5",
        field: "containerLogMaxFiles",
        help: "log files kept per container, the live one included (>= 2)",
    },
    FlagSpec {
        name: "--read-only-port",
        value: Some("PORT"),
        default: "10255",
        field: "readOnlyPort",
        help: "port of the unauthenticated read-only endpoint (/healthz, /pods); 0 disables it",
    },
    FlagSpec {
        name: "--file-check-frequency",
        value: Some("DURATION"),
        default: "20s",
        field: "fileCheckFrequency",
        help: "how often to rescan the manifest path (e.g. 20s, 1m30s, 500ms)",
    },
    FlagSpec {
        name: "--runtime-path",
        value: Some("PATH"),
        default: "runc",
        field: "",
        help: "the OCI runtime binary",
    },
    FlagSpec {
        name: "--image-import-dir",
        value: Some("DIR"),
        default: "<root-dir>/images",
        field: "",
        help: "image archives imported at start-up and whenever they appear",
    },
    FlagSpec {
        name: "--registry-config",
        value: Some("FILE"),
        default: "/etc/picolet/registries.yaml",
        field: "",
        help: "registry mirrors, credentials and TLS (k3s registries.yaml format); a missing file means defaults",
    },
    FlagSpec {
        name: "--platform",
        value: Some("OS/ARCH[/VARIANT]"),
        default: "this machine's",
        field: "",
        help: "images pull: the platform to pick from a multi-platform image (e.g. linux/arm/v7)",
    },
    // --- blobs: registry downloads ---
    FlagSpec {
        name: "--image-pull-progress-timeout",
        value: Some("DURATION"),
        default: "5m",
        field: "",
        help: "give up a blob download that receives nothing for this long (containerd's image_pull_progress_timeout); 0: never",
    },
    FlagSpec {
        name: "--cgroups-per-qos",
        value: None,
        default: "true",
        field: "cgroupsPerQOS",
        help: "manage pods' resources with cgroup v2 (=false, with --enforce-node-allocatable=, runs without)",
    },
    FlagSpec {
        name: "--enforce-node-allocatable",
        value: Some("LIST"),
        default: "pods",
        field: "enforceNodeAllocatable",
        help: "comma-separated; empty to enforce nothing",
    },
    FlagSpec {
        name: "--kubeconfig",
        value: Some("FILE"),
        default: "",
        field: "",
        help: "kubeconfig of the API server to join as a node; without it picolet runs standalone",
    },
    FlagSpec {
        name: "--node-ip",
        value: Some("IP"),
        default: "the default route's address",
        field: "",
        help: "the node's InternalIP",
    },
    FlagSpec {
        name: "--node-labels",
        value: Some("K=V,..."),
        default: "",
        field: "",
        help: "labels added when the node registers",
    },
    FlagSpec {
        name: "--max-pods",
        value: Some("N"),
        default: "110",
        field: "maxPods",
        help: "pods this node accepts (its pods capacity)",
    },
    FlagSpec {
        name: "--port",
        value: Some("PORT"),
        default: "10250",
        field: "port",
        help: "the kubelet port advertised in the node's daemonEndpoints",
    },
    FlagSpec {
        name: "--node-status-update-frequency",
        value: Some("DURATION"),
        default: "10s",
        field: "nodeStatusUpdateFrequency",
        help: "how often node status is computed (and the lease renewed)",
    },
    FlagSpec {
        name: "--v",
        value: Some("N"),
        default: "0",
        field: "",
        help: "log verbosity (also -v N): 2 debug, 4 trace (release builds keep info and above)",
    },
    FlagSpec {
        name: "--help",
        value: None,
        default: "",
        field: "",
        help: "show this help (also -h)",
    },
    FlagSpec {
        name: "--address",
        value: Some("IP"),
        default: "0.0.0.0",
        field: "address",
        help: "where the kubelet server (--port, HTTPS) listens",
    },
    FlagSpec {
        name: "--tls-cert-file",
        value: Some("FILE"),
        default: "self-signed, under the root dir",
        field: "tlsCertFile",
        help: "the kubelet server's serving certificate (PEM, chain allowed)",
    },
    FlagSpec {
        name: "--tls-private-key-file",
        value: Some("FILE"),
        default: "",
        field: "tlsPrivateKeyFile",
        help: "the key of --tls-cert-file",
    },
    FlagSpec {
        name: "--client-ca-file",
        value: Some("FILE"),
        default: "",
        field: "authentication.x509.clientCAFile",
        help: "CA bundle that signs client certificates the kubelet server accepts",
    },
    FlagSpec {
        name: "--anonymous-auth",
        value: None,
        default: "false",
        field: "authentication.anonymous.enabled",
        help: "serve unauthenticated requests as system:anonymous (then authorized like any user)",
    },
    FlagSpec {
        name: "--authentication-token-webhook",
        value: None,
        default: "true",
        field: "authentication.webhook.enabled",
        help: "check bearer tokens with the API server's TokenReview",
    },
    FlagSpec {
        name: "--authentication-token-webhook-cache-ttl",
        value: Some("DURATION"),
        default: "2m",
        field: "authentication.webhook.cacheTTL",
        help: "how long TokenReview answers are cached",
    },
    FlagSpec {
        name: "--authorization-mode",
        value: Some("MODE"),
        default: "Webhook",
        field: "authorization.mode",
        help: "Webhook (SubjectAccessReview) or AlwaysAllow",
    },
    FlagSpec {
        name: "--healthz-port",
        value: Some("PORT"),
        default: "10248",
        field: "healthzPort",
        help: "port of the plain /healthz endpoint; 0 disables it",
    },
    FlagSpec {
        name: "--healthz-bind-address",
        value: Some("IP"),
        default: "127.0.0.1",
        field: "healthzBindAddress",
        help: "where the /healthz endpoint listens",
    },
    // issue 6: cgroup
    FlagSpec {
        name: "--cgroup-root",
        value: Some("PATH"),
        default: "picolet's own cgroup",
        field: "cgroupRoot",
        help: "cgroup (created if missing) that holds the kubepods tree; without it, picolet's own (its unit's, Delegate=yes)",
    },
    FlagSpec {
        name: "--pod-max-pids",
        value: Some("N"),
        default: "-1",
        field: "podPidsLimit",
        help: "pids.max of each pod's cgroup; -1 is unlimited",
    },
    FlagSpec {
        name: "--kube-reserved",
        value: Some("cpu=Q,memory=Q"),
        default: "none",
        field: "kubeReserved",
        help: "resources kept back from pods for picolet and the runtime (node allocatable)",
    },
    FlagSpec {
        name: "--system-reserved",
        value: Some("cpu=Q,memory=Q"),
        default: "none",
        field: "systemReserved",
        help: "resources kept back from pods for the OS (node allocatable)",
    },
    // issue 6: eviction
    FlagSpec {
        name: "--eviction-hard",
        value: Some("LIST"),
        default: "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%",
        field: "evictionHard",
        help: "hard eviction thresholds, signal<quantity or signal<percent% (a list replaces the defaults; empty: none)",
    },
    FlagSpec {
        name: "--eviction-pressure-transition-period",
        value: Some("DURATION"),
        default: "5m",
        field: "evictionPressureTransitionPeriod",
        help: "how long MemoryPressure/DiskPressure stay on after the last threshold met",
    },
    FlagSpec {
        name: "--image-gc-high-threshold",
        value: Some("PERCENT"),
        default: "85",
        field: "imageGCHighThresholdPercent",
        help: "image filesystem usage above which unused images are deleted (100 disables image GC)",
    },
    FlagSpec {
        name: "--image-gc-low-threshold",
        value: Some("PERCENT"),
        default: "80",
        field: "imageGCLowThresholdPercent",
        help: "image filesystem usage image GC frees down to",
    },
    FlagSpec {
        name: "--minimum-image-ttl-duration",
        value: Some("DURATION"),
        default: "2m",
        field: "imageMinimumGCAge",
        help: "unused images younger than this are not deleted",
    },
    FlagSpec { name: "--version", value: None, default: "", field: "", help: "show the version" },
    // issue 6: network
    FlagSpec {
        name: "--cni-conf-dir",
        value: Some("DIR"),
        default: "/etc/cni/net.d",
        field: "",
        help: "CNI network configs; the first *.conflist/*.conf/*.json by name is used, a default is written when none",
    },
    FlagSpec {
        name: "--cni-bin-dir",
        value: Some("DIRS"),
        default: "/opt/cni/bin,/usr/lib/cni",
        field: "",
        help: "comma-separated directories searched for CNI plugins, in order",
    },
    FlagSpec {
        name: "--pod-cidr",
        value: Some("CIDR"),
        default: "10.88.0.0/16",
        field: "podCIDR",
        help: "pod subnet of the default CNI config (in a cluster the Node's spec.podCIDR wins); IPv4[,IPv6]",
    },
    FlagSpec {
        name: "--cluster-dns",
        value: Some("IP,..."),
        default: "",
        field: "clusterDNS",
        help: "nameservers of ClusterFirst pods; without, they get the host's resolv.conf (as upstream)",
    },
    FlagSpec {
        name: "--cluster-domain",
        value: Some("DOMAIN"),
        default: "",
        field: "clusterDomain",
        help: "the cluster's DNS domain (e.g. cluster.local), searched by ClusterFirst pods",
    },
    FlagSpec {
        name: "--resolv-conf",
        value: Some("FILE"),
        default: "/etc/resolv.conf",
        field: "resolvConf",
        help: "the resolver config Default pods inherit; empty for none",
    },
    // --- policy: image pulls ---
    FlagSpec {
        name: "--serialize-image-pulls",
        value: None,
        default: "true",
        field: "serializeImagePulls",
        help: "pull one image at a time; =false pulls in parallel, at most the config file's maxParallelImagePulls",
    },
];

/// The usage text: every flag with its default and config-file field, and the subcommands.
pub fn help() -> String {
    let mut s = String::from(
        "picolet: a small kubelet that runs static pods through runc.\n\n\
         Usage:\n  picolet [FLAGS]                      run the kubelet\n  \
         picolet images import FILE... [FLAGS] import image archives (docker save / OCI layout tar)\n  \
         picolet images list [FLAGS]          list imported images\n  \
         picolet images rm REF... [FLAGS]     delete images no container uses\n  \
         picolet images pull REF [FLAGS]      pull an image from a registry (see --registry-config, --platform)\n\nFlags:\n",
    );
    for f in FLAGS {
        let head = match f.value {
            Some(v) => format!("{} {v}", f.name),
            None => f.name.to_string(),
        };
        s.push_str(&format!("  {head:<34} {}", f.help));
        let mut notes = Vec::new();
        if !f.default.is_empty() {
            notes.push(format!("default {}", f.default));
        }
        if !f.field.is_empty() {
            notes.push(format!("config field {}", f.field));
        }
        if !notes.is_empty() {
            s.push_str(&format!(" [{}]", notes.join("; ")));
        }
        s.push('\n');
    }
    s
}

/// Flag values as given, before they are merged over the file and the defaults.
#[derive(Default)]
struct Flags {
    values: Vec<(&'static str, String)>,
    help: bool,
    version: bool,
}

impl Flags {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, ConfigError> {
    let mut flags = Flags::default();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            positional.extend(it.by_ref().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            positional.push(arg.clone());
            continue;
        }
        let (given, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let name = match given {
            "-v" => "--v",
            "-h" => "--help",
            n if n.starts_with("--") => n,
            n => return Err(ConfigError::UnknownFlag(n.to_string())),
        };
        let spec = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ConfigError::UnknownFlag(given.to_string()))?;
        match spec.value {
            None => {
                let on = match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => return Err(bad_flag(given, v, "not true or false")),
                };
                match name {
                    "--help" => flags.help |= on,
                    "--version" => flags.version |= on,
                    _ => flags.values.push((spec.name, on.to_string())),
                }
            }
            Some(_) => {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| ConfigError::MissingValue(given.to_string()))?,
                };
                flags.values.push((spec.name, value));
            }
        }
    }
    if flags.help {
        return Ok(Command::Help(help()));
    }
    if flags.version {
        return Ok(Command::Version);
    }
    let config = build(&flags)?;
    let words: Vec<&str> = positional.iter().map(String::as_str).collect();
    let platform = flags.get("--platform").map(str::to_string);
    if let Some(p) = &platform {
        if !matches!(words.as_slice(), ["images", "pull", ..]) {
            return Err(bad_flag("--platform", p, "only used by images pull"));
        }
    }
    match words.as_slice() {
        [] => Ok(Command::Run(config)),
        ["images", "list"] => Ok(Command::ImagesList(config)),
        ["images", "rm"] => Err(ConfigError::MissingReference),
        ["images", "rm", refs @ ..] => Ok(Command::ImagesRemove(config, refs.iter().map(|r| r.to_string()).collect())),
        ["images", "import"] => Err(ConfigError::MissingFiles),
        ["images", "import", files @ ..] => {
            Ok(Command::ImagesImport(config, files.iter().map(PathBuf::from).collect()))
        }
        ["images", "pull", reference] => Ok(Command::ImagesPull { config, reference: reference.to_string(), platform }),
        ["images", "pull"] => Err(ConfigError::MissingReference),
        ["images", "pull", ..] => Err(ConfigError::UnknownCommand("images pull with more than one REF".into())),
        ["images", other, ..] => Err(ConfigError::UnknownCommand(format!("images {other}"))),
        [other, ..] => Err(ConfigError::UnknownCommand(other.to_string())),
    }
}

/// Defaults, then the config file, then the flags.
fn build(flags: &Flags) -> Result<Config, ConfigError> {
    let mut c = Config::default();
    if let Some(path) = flags.get("--config") {
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ConfigError::ReadFile { path: path.clone(), source })?;
        apply_file(&mut c, &path, &text)?;
        c.config_file = Some(path);
    }
    let bad = bad_flag;
    let mut image_dir_set = false;
    for (name, v) in &flags.values {
        match *name {
            "--config" => {}
            "--pod-manifest-path" => c.pod_manifest_path = non_empty_path(v),
            "--root-dir" => c.root_dir = PathBuf::from(v),
            "--hostname-override" => {
                c.hostname_override = Some(v.clone()).filter(|h| !h.is_empty())
            }
            "--pod-logs-dir" => c.pod_logs_dir = PathBuf::from(v),
            "--container-log-max-size" => {
                c.container_log_max_size = log_size(v).map_err(|r| bad(name, v, r))?
            }
            "--container-log-max-files" => {
                c.container_log_max_files = log_files(v).map_err(|r| bad(name, v, r))?
            }
            "--read-only-port" => {
                c.read_only_port = v.parse().map_err(|_| bad(name, v, "not a port"))?
            }
            "--file-check-frequency" => {
                c.file_check_frequency = parse_duration(v).map_err(|r| bad(name, v, &r))?
            }
            "--runtime-path" => c.runtime_path = PathBuf::from(v),
            "--image-import-dir" => {
                c.image_import_dir = PathBuf::from(v);
                image_dir_set = true;
            }
            "--registry-config" => c.registry_config = PathBuf::from(v),
            "--kubeconfig" => c.kubeconfig = non_empty_path(v),
            "--node-ip" => c.node_ip = Some(v.clone()).filter(|s| !s.is_empty()),
            "--node-labels" => c.node_labels = labels(v).map_err(|r| bad(name, v, &r))?,
            "--max-pods" => c.max_pods = v.parse().map_err(|_| bad(name, v, "not a whole number"))?,
            "--port" => c.port = v.parse().map_err(|_| bad(name, v, "not a port"))?,
            "--address" => c.address = v.clone(),
            "--tls-cert-file" => c.tls_cert_file = non_empty_path(v),
            "--tls-private-key-file" => c.tls_private_key_file = non_empty_path(v),
            "--client-ca-file" => c.client_ca_file = non_empty_path(v),
            "--anonymous-auth" => c.anonymous_auth = v == "true",
            "--authentication-token-webhook" => c.authentication_token_webhook = v == "true",
            "--authentication-token-webhook-cache-ttl" => {
                c.authentication_token_webhook_cache_ttl = parse_duration(v).map_err(|r| bad(name, v, &r))?
            }
            "--authorization-mode" => c.authorization_mode = authorization_mode(v).map_err(|r| bad(name, v, r))?,
            "--healthz-port" => c.healthz_port = v.parse().map_err(|_| bad(name, v, "not a port"))?,
            "--healthz-bind-address" => c.healthz_bind_address = v.clone(),
            "--node-status-update-frequency" => {
                c.node_status_update_frequency = positive_duration(v).map_err(|r| bad(name, v, &r))?
            }
            "--v" => c.verbosity = v.parse().map_err(|_| bad("-v", v, "not a level 0-255"))?,
            "--cgroups-per-qos" => c.cgroups_per_qos = v == "true",
            "--enforce-node-allocatable" => {
                c.enforce_node_allocatable =
                    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
            }
            // issue 6: cgroup
            "--cgroup-root" => c.cgroup_root = cgroup_root(v).map_err(|r| bad(name, v, r))?,
            "--pod-max-pids" => c.pod_pids_limit = v.parse().map_err(|_| bad(name, v, "not a whole number"))?,
            "--kube-reserved" => c.kube_reserved = Reserved::parse(v).map_err(|r| bad(name, v, &r))?,
            "--system-reserved" => c.system_reserved = Reserved::parse(v).map_err(|r| bad(name, v, &r))?,
            // issue 6: eviction
            "--eviction-hard" => {
                c.eviction_hard = crate::node::eviction::Thresholds::parse_flag(v).map_err(|r| bad(name, v, &r.to_string()))?
            }
            "--eviction-pressure-transition-period" => {
                c.eviction_pressure_transition_period = parse_duration(v).map_err(|r| bad(name, v, &r))?
            }
            "--image-gc-high-threshold" => c.image_gc_high_threshold_percent = percent(v).map_err(|r| bad(name, v, r))?,
            "--image-gc-low-threshold" => c.image_gc_low_threshold_percent = percent(v).map_err(|r| bad(name, v, r))?,
            "--minimum-image-ttl-duration" => c.image_minimum_gc_age = parse_duration(v).map_err(|r| bad(name, v, &r))?,
            // issue 6: network
            "--cni-conf-dir" => c.cni_conf_dir = PathBuf::from(v),
            "--cni-bin-dir" => {
                c.cni_bin_dirs = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect()
            }
            "--pod-cidr" => c.pod_cidr = pod_cidr(v).map_err(|r| bad(name, v, &r))?,
            "--cluster-dns" => c.cluster_dns = cluster_dns(v.split(',')).map_err(|r| bad(name, v, &r))?,
            "--cluster-domain" => c.cluster_domain = v.trim().trim_end_matches('.').to_string(),
            "--resolv-conf" => c.resolv_conf = non_empty_path(v),
            // --- policy: image pulls ---
            "--serialize-image-pulls" => c.serialize_image_pulls = Some(v == "true"),
            // --- blobs: registry downloads ---
            "--image-pull-progress-timeout" => {
                c.image_pull_progress_timeout = parse_duration(v).map_err(|r| bad(name, v, &r))?
            }
            _ => {}
        }
    }
    // --- policy: image pulls --- (upstream's KubeletConfiguration validation)
    if let (Some(true), Some(m)) = (c.serialize_image_pulls, c.max_parallel_image_pulls) {
        if m > 1 {
            return Err(ConfigError::InvalidField {
                path: c.config_file.clone().unwrap_or_default(),
                field: "maxParallelImagePulls".into(),
                value: m.to_string(),
                reason: "cannot be larger than 1 unless serializeImagePulls (--serialize-image-pulls) is set to false".into(),
            });
        }
    }
    // issue 6: eviction
    if c.image_gc_low_threshold_percent >= c.image_gc_high_threshold_percent {
        let v = format!("{} (high {})", c.image_gc_low_threshold_percent, c.image_gc_high_threshold_percent);
        return Err(bad("--image-gc-low-threshold", &v, "must be below the high threshold (imageGCHighThresholdPercent)"));
    }
    if !image_dir_set {
        c.image_import_dir = c.root_dir.join("images");
    }
    let paths = [
        ("--root-dir", &c.root_dir),
        ("--pod-logs-dir", &c.pod_logs_dir),
        ("--runtime-path", &c.runtime_path),
        ("--image-import-dir", &c.image_import_dir),
        ("--registry-config", &c.registry_config),
    ];
    if let Some((flag, _)) = paths.iter().find(|(_, p)| p.as_os_str().is_empty()) {
        return Err(bad(flag, "", "empty path"));
    }
    Ok(c)
}

/// A cgroup path: absolute, no `..`; "" means the default (None).
fn cgroup_root(v: &str) -> Result<Option<String>, &'static str> {
    match v.trim() {
        "" => Ok(None),
        p if !p.starts_with('/') => Err("must be an absolute cgroup path like /picolet"),
        p if p.split('/').any(|c| c == "..") => Err("must not contain .."),
        p => Ok(Some(p.to_string())),
    }
}

fn bad_flag(flag: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidFlag {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn non_empty_path(v: &str) -> Option<PathBuf> {
    Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty())
}

// issue 6: network
/// A `--pod-cidr`/`podCIDR` value; "" means unset.
fn pod_cidr(v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    crate::network::cni::conf::check_pod_cidr(v)?;
    Ok(Some(v.to_string()))
}

/// `--cluster-dns`/`clusterDNS`: IP addresses.
fn cluster_dns<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for ip in items.map(str::trim).filter(|s| !s.is_empty()) {
        ip.parse::<std::net::IpAddr>().map_err(|_| format!("{ip:?} is not an IP address"))?;
        out.push(ip.to_string());
    }
    Ok(out)
}

/// The authorization modes picolet has; upstream also allows a list, picolet one of these.
fn authorization_mode(v: &str) -> Result<String, &'static str> {
    match v {
        "Webhook" | "AlwaysAllow" => Ok(v.to_string()),
        _ => Err("must be Webhook or AlwaysAllow"),
    }
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    match parse_duration(v)? {
        Duration::ZERO => Err("must be positive".into()),
        d => Ok(d),
    }
}

/// `a=b,c=d` as upstream's `--node-labels`.
fn labels(v: &str) -> Result<Vec<(String, String)>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{kv:?} is not key=value")),
        })
        .collect()
}

fn log_size(v: &str) -> Result<u64, &'static str> {
    match parse_int(v) {
        Some(n) if n > 0 => Ok(n as u64),
        Some(_) => Err("must be positive"),
        None => Err("not a quantity (like 10Mi)"),
    }
}

fn log_files(v: &str) -> Result<u32, &'static str> {
    match v.trim().parse::<u32>() {
        Ok(n) if n >= 2 => Ok(n),
        Ok(_) => Err("must be at least 2"),
        Err(_) => Err("not a whole number"),
    }
}

/// Applies the fields picolet knows from KubeletConfiguration YAML `text` read from `path`.
fn apply_file(c: &mut Config, path: &Path, text: &str) -> Result<(), ConfigError> {
    let parse_err = |message: String| ConfigError::ParseFile { path: path.to_path_buf(), message };
    let docs = YamlLoader::load_from_str(text).map_err(|e| parse_err(e.to_string()))?;
    let Some(Yaml::Hash(map)) = docs.into_iter().next() else {
        return Err(parse_err("not a YAML mapping".into()));
    };
    let str_of =
        |k: &str| map.get(&Yaml::String(k.into())).and_then(Yaml::as_str).unwrap_or("").to_string();
    let (api_version, kind) = (str_of("apiVersion"), str_of("kind"));
    if kind != "KubeletConfiguration" || !api_version.starts_with("kubelet.config.k8s.io/") {
        return Err(ConfigError::WrongKind { path: path.to_path_buf(), api_version, kind });
    }
    let base = path.parent().unwrap_or(Path::new(""));
    for (k, v) in &map {
        let Some(key) = k.as_str() else { continue };
        let bad = |reason: &str| ConfigError::InvalidField {
            path: path.to_path_buf(),
            field: key.to_string(),
            value: show(v),
            reason: reason.to_string(),
        };
        match key {
            "apiVersion" | "kind" => {}
            "staticPodPath" => {
                let s = v.as_str().ok_or_else(|| bad("not a string"))?;
                c.pod_manifest_path = non_empty_path(s).map(|p| base.join(p));
            }
            "containerLogMaxSize" => {
                let s = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    _ => return Err(bad("not a quantity")),
                };
                c.container_log_max_size = log_size(&s).map_err(bad)?;
            }
            "containerLogMaxFiles" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                c.container_log_max_files = log_files(&i.to_string()).map_err(bad)?;
            }
            "readOnlyPort" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                c.read_only_port = u16::try_from(i).map_err(|_| bad("not a port"))?;
            }
            "fileCheckFrequency" => {
                let s = v.as_str().ok_or_else(|| bad("not a duration string"))?;
                c.file_check_frequency = parse_duration(s).map_err(|r| bad(&r))?;
            }
            "maxPods" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                c.max_pods = u32::try_from(i).map_err(|_| bad("not a pod count"))?;
            }
            "port" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                c.port = u16::try_from(i).map_err(|_| bad("not a port"))?;
            }
            "nodeStatusUpdateFrequency" | "nodeStatusReportFrequency" => {
                let s = v.as_str().ok_or_else(|| bad("not a duration string"))?;
                let d = positive_duration(s).map_err(|r| bad(&r))?;
                if key == "nodeStatusUpdateFrequency" {
                    c.node_status_update_frequency = d;
                } else {
                    c.node_status_report_frequency = d;
                }
            }
            "nodeLeaseDurationSeconds" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                c.node_lease_duration_seconds = u32::try_from(i).ok().filter(|n| *n > 0).ok_or_else(|| bad("must be positive"))?;
            }
            "cgroupsPerQOS" => c.cgroups_per_qos = v.as_bool().ok_or_else(|| bad("not true or false"))?,
            "enforceNodeAllocatable" => {
                let Yaml::Array(items) = v else { return Err(bad("not a list")) };
                c.enforce_node_allocatable = items
                    .iter()
                    .map(|i| i.as_str().map(String::from).ok_or_else(|| bad("not a list of strings")))
                    .collect::<Result<_, _>>()?;
            }
            "address" | "healthzBindAddress" => {
                let s = v.as_str().ok_or_else(|| bad("not a string"))?.to_string();
                if key == "address" { c.address = s } else { c.healthz_bind_address = s }
            }
            "healthzPort" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                c.healthz_port = u16::try_from(i).map_err(|_| bad("not a port"))?;
            }
            "tlsCertFile" | "tlsPrivateKeyFile" => {
                let s = v.as_str().ok_or_else(|| bad("not a string"))?;
                let p = non_empty_path(s).map(|p| base.join(p));
                if key == "tlsCertFile" { c.tls_cert_file = p } else { c.tls_private_key_file = p }
            }
            "authentication" => apply_authentication(c, v, &|f, r| nested_bad(path, "authentication", f, r))?,
            "authorization" => apply_authorization(c, v, &|f, r| nested_bad(path, "authorization", f, r))?,
            // issue 6: cgroup
            "cgroupRoot" => c.cgroup_root = cgroup_root(v.as_str().ok_or_else(|| bad("not a string"))?).map_err(bad)?,
            "podPidsLimit" => c.pod_pids_limit = v.as_i64().ok_or_else(|| bad("not an integer"))?,
            "kubeReserved" | "systemReserved" => {
                let Yaml::Hash(m) = v else { return Err(bad("not a map of resource: quantity")) };
                let pairs: Vec<(String, String)> = m
                    .iter()
                    .map(|(k, q)| match (k.as_str(), q) {
                        (Some(k), Yaml::String(q)) => Ok((k.to_string(), q.clone())),
                        (Some(k), Yaml::Integer(i)) => Ok((k.to_string(), i.to_string())),
                        _ => Err(bad("not a map of resource: quantity")),
                    })
                    .collect::<Result<_, _>>()?;
                let r = Reserved::from_pairs(&pairs).map_err(|r| bad(&r))?;
                if key == "kubeReserved" { c.kube_reserved = r } else { c.system_reserved = r }
            }
            // issue 6: eviction
            "evictionHard" => {
                let Yaml::Hash(m) = v else { return Err(bad("not a mapping of signal to quantity")) };
                let mut pairs = Vec::new();
                for (k, q) in m {
                    let (Some(k), Some(q)) = (k.as_str(), yaml_scalar(q)) else { return Err(bad("not a mapping of signal to quantity")) };
                    pairs.push((k.to_string(), q));
                }
                c.eviction_hard = crate::node::eviction::Thresholds::from_pairs(&pairs).map_err(|e| bad(&e.to_string()))?;
            }
            "evictionPressureTransitionPeriod" | "imageMinimumGCAge" => {
                let s = v.as_str().ok_or_else(|| bad("not a duration string"))?;
                let d = parse_duration(s).map_err(|r| bad(&r))?;
                if key == "imageMinimumGCAge" { c.image_minimum_gc_age = d } else { c.eviction_pressure_transition_period = d }
            }
            "imageGCHighThresholdPercent" | "imageGCLowThresholdPercent" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                let p = percent(&i.to_string()).map_err(bad)?;
                if key == "imageGCHighThresholdPercent" { c.image_gc_high_threshold_percent = p } else { c.image_gc_low_threshold_percent = p }
            }
            // issue 6: network
            "podCIDR" => c.pod_cidr = pod_cidr(v.as_str().ok_or_else(|| bad("not a string"))?).map_err(|r| bad(&r))?,
            "clusterDNS" => {
                let Yaml::Array(items) = v else { return Err(bad("not a list")) };
                let ips: Vec<&str> = items.iter().map(|i| i.as_str().ok_or_else(|| bad("not a list of strings"))).collect::<Result<_, _>>()?;
                c.cluster_dns = cluster_dns(ips.into_iter()).map_err(|r| bad(&r))?;
            }
            "clusterDomain" => c.cluster_domain = v.as_str().ok_or_else(|| bad("not a string"))?.trim().trim_end_matches('.').to_string(),
            "resolvConf" => c.resolv_conf = non_empty_path(v.as_str().ok_or_else(|| bad("not a string"))?),
            // --- policy: image pulls ---
            "serializeImagePulls" => c.serialize_image_pulls = Some(v.as_bool().ok_or_else(|| bad("not true or false"))?),
            "maxParallelImagePulls" => {
                let i = v.as_i64().ok_or_else(|| bad("not an integer"))?;
                let m = i32::try_from(i).ok().filter(|m| *m >= 1).ok_or_else(|| bad("must be a positive number"))?;
                c.max_parallel_image_pulls = Some(m);
            }
            other => log::debug!("config file {}: ignoring field {other}", path.display()),
        }
    }
    Ok(())
}

fn nested_bad(path: &Path, top: &str, field: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidField { path: path.to_path_buf(), field: format!("{top}.{field}"), value: String::new(), reason: reason.to_string() }
}

/// `field` of mapping `v` (`a.b` walks nested mappings).
fn yaml_at<'a>(v: &'a Yaml, field: &str) -> Option<&'a Yaml> {
    field.split('.').try_fold(v, |v, k| match v {
        Yaml::Hash(m) => m.get(&Yaml::String(k.into())),
        _ => None,
    })
}

type Bad<'a> = &'a dyn Fn(&str, &str) -> ConfigError;

fn yaml_bool(v: &Yaml, field: &str, bad: Bad) -> Result<Option<bool>, ConfigError> {
    yaml_at(v, field).map(|b| b.as_bool().ok_or_else(|| bad(field, "not true or false"))).transpose()
}

fn yaml_duration(v: &Yaml, field: &str, bad: Bad) -> Result<Option<Duration>, ConfigError> {
    yaml_at(v, field)
        .map(|d| d.as_str().ok_or_else(|| bad(field, "not a duration string")).and_then(|s| parse_duration(s).map_err(|r| bad(field, &r))))
        .transpose()
}

/// KubeletConfiguration `authentication`: x509.clientCAFile, webhook.{enabled,cacheTTL}, anonymous.enabled.
fn apply_authentication(c: &mut Config, v: &Yaml, bad: Bad) -> Result<(), ConfigError> {
    if let Some(f) = yaml_at(v, "x509.clientCAFile") {
        c.client_ca_file = non_empty_path(f.as_str().ok_or_else(|| bad("x509.clientCAFile", "not a string"))?);
    }
    if let Some(b) = yaml_bool(v, "webhook.enabled", bad)? {
        c.authentication_token_webhook = b;
    }
    if let Some(d) = yaml_duration(v, "webhook.cacheTTL", bad)? {
        c.authentication_token_webhook_cache_ttl = d;
    }
    if let Some(b) = yaml_bool(v, "anonymous.enabled", bad)? {
        c.anonymous_auth = b;
    }
    Ok(())
}

/// KubeletConfiguration `authorization`: mode, webhook.{cacheAuthorizedTTL,cacheUnauthorizedTTL}.
fn apply_authorization(c: &mut Config, v: &Yaml, bad: Bad) -> Result<(), ConfigError> {
    if let Some(m) = yaml_at(v, "mode") {
        let m = m.as_str().ok_or_else(|| bad("mode", "not a string"))?;
        c.authorization_mode = authorization_mode(m).map_err(|r| bad("mode", r))?;
    }
    if let Some(d) = yaml_duration(v, "webhook.cacheAuthorizedTTL", bad)? {
        c.authorization_webhook_cache_authorized_ttl = d;
    }
    if let Some(d) = yaml_duration(v, "webhook.cacheUnauthorizedTTL", bad)? {
        c.authorization_webhook_cache_unauthorized_ttl = d;
    }
    Ok(())
}

// issue 6: eviction
/// A whole percentage, 0 to 100.
fn percent(v: &str) -> Result<u8, &'static str> {
    match v.trim().parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err("not a whole percentage from 0 to 100"),
    }
}

/// A YAML scalar as text (quantities may be written as numbers).
fn yaml_scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        _ => None,
    }
}

fn show(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".into(),
        Yaml::Array(_) => "a list".into(),
        Yaml::Hash(_) => "a mapping".into(),
        _ => "?".into(),
    }
}

/// Parses a Go duration ("20s", "1m30s", "1h2m3.5s", "250ms", "0"); negative is an error.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err("negative duration".into());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = rest;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit (ns, us, ms, s, m, h)".into()),
            u => return Err(format!("unknown unit {u:?}")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err("not a duration (like 20s, 1m30s, 500ms)".into());
        }
        let int: u128 =
            if int.is_empty() { 0 } else { int.parse().map_err(|_| "number too large")? };
        let frac_digits = &frac[..frac.len().min(18)];
        let frac_val: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().map_err(|_| "bad fraction")?
        };
        let frac_ns = frac_val * scale / 10u128.pow(frac_digits.len() as u32);
        total = int
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_ns))
            .and_then(|v| v.checked_add(total))
            .ok_or("duration too large")?;
        rest = tail;
    }
    // Go's durations are int64 nanoseconds (about 292 years); so is the
    // limit here, which keeps `Instant::now() + d` from overflowing.
    if total > i64::MAX as u128 {
        return Err("duration too large".into());
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "duration too large")?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Config {
        match parse(&args(s)).unwrap() {
            Command::Run(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn err(s: &str) -> String {
        parse(&args(s)).unwrap_err().to_string()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("picolet-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn defaults() {
        let c = run("");
        assert_eq!(c, Config::default());
        assert_eq!(c.root_dir, PathBuf::from("/var/lib/picolet"));
        assert_eq!(c.image_import_dir, PathBuf::from("/var/lib/picolet/images"));
        assert_eq!(c.container_log_max_size, 10 * 1024 * 1024);
        assert_eq!((c.container_log_max_files, c.read_only_port), (5, 10255));
        assert_eq!(c.file_check_frequency, Duration::from_secs(20));
    }

    #[test]
    fn flag_syntaxes() {
        let c = run("--pod-manifest-path=/etc/k/m --root-dir /r -v 3 --read-only-port=0 \
                     --container-log-max-size 1Mi --container-log-max-files=2 \
                     --file-check-frequency 1m30s --hostname-override Pi-4 --runtime-path=/bin/runc \
                     --pod-logs-dir /l");
        assert_eq!(c.pod_manifest_path, Some(PathBuf::from("/etc/k/m")));
        assert_eq!(c.root_dir, PathBuf::from("/r"));
        assert_eq!(c.image_import_dir, PathBuf::from("/r/images"));
        assert_eq!((c.verbosity, c.read_only_port), (3, 0));
        assert_eq!((c.container_log_max_size, c.container_log_max_files), (1 << 20, 2));
        assert_eq!(c.file_check_frequency, Duration::from_secs(90));
        assert_eq!(c.node_name(), "pi-4");
        assert_eq!(c.runtime_path, PathBuf::from("/bin/runc"));
        assert_eq!(c.pod_logs_dir, PathBuf::from("/l"));
        assert_eq!(run("-v=2").verbosity, 2);
        assert_eq!(run("--v=4").verbosity, 4);
        assert_eq!(run("--v 1 --v 5").verbosity, 5, "last one wins");
        assert_eq!(
            run("--image-import-dir /i --root-dir /r").image_import_dir,
            PathBuf::from("/i")
        );
        assert!(!run("").node_name().is_empty());
    }

    #[test]
    fn commands() {
        assert!(matches!(parse(&args("--help")).unwrap(), Command::Help(_)));
        assert!(matches!(parse(&args("-h images list")).unwrap(), Command::Help(_)));
        assert_eq!(parse(&args("--version")).unwrap(), Command::Version);
        match parse(&args("images import a.tar -v 2 b.tar")).unwrap() {
            Command::ImagesImport(c, files) => {
                assert_eq!(files, vec![PathBuf::from("a.tar"), PathBuf::from("b.tar")]);
                assert_eq!(c.verbosity, 2);
            }
            other => panic!("{other:?}"),
        }
        match parse(&args("images rm a:1 b --root-dir /x")).unwrap() {
            Command::ImagesRemove(c, refs) => assert_eq!((c.root_dir, refs), (PathBuf::from("/x"), vec!["a:1".to_string(), "b".into()])),
            other => panic!("{other:?}"),
        }
        assert!(err("images rm").contains("no image reference"));
        match parse(&args("--root-dir /x images list")).unwrap() {
            Command::ImagesList(c) => assert_eq!(c.root_dir, PathBuf::from("/x")),
            other => panic!("{other:?}"),
        }
        match parse(&args("images import -- -odd.tar")).unwrap() {
            Command::ImagesImport(_, files) => assert_eq!(files, vec![PathBuf::from("-odd.tar")]),
            other => panic!("{other:?}"),
        }
        assert!(err("images import").contains("no FILE"));
        match parse(&args("images pull --platform linux/arm/v7 busybox:1 --registry-config /r.yaml")).unwrap() {
            Command::ImagesPull { config, reference, platform } => {
                assert_eq!((reference.as_str(), platform.as_deref()), ("busybox:1", Some("linux/arm/v7")));
                assert_eq!(config.registry_config, PathBuf::from("/r.yaml"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(run("").registry_config, PathBuf::from("/etc/picolet/registries.yaml"));
        assert!(err("images pull").contains("no image reference"));
        assert!(err("--platform linux/arm64 images list").contains("only used by images pull"));
        assert!(err("images prune x").contains("\"images prune\""));
        assert!(err("serve").contains("\"serve\""));
    }

    #[test]
    fn flag_errors_name_the_flag() {
        assert_eq!(err("--nope=1"), "unknown flag --nope (see --help)");
        assert_eq!(err("-x"), "unknown flag -x (see --help)");
        assert_eq!(err("--read-only-port=x"), "--read-only-port: invalid value \"x\": not a port");
        assert!(
            err("--read-only-port 70000").starts_with("--read-only-port: invalid value \"70000\"")
        );
        assert!(err("--root-dir").contains("--root-dir: needs a value"));
        assert!(err("--container-log-max-files=1").contains("at least 2"));
        assert!(err("--container-log-max-size=lots").starts_with("--container-log-max-size:"));
        assert!(err("--file-check-frequency=20").contains("missing unit"));
        assert!(err("-v x").starts_with("-v: invalid value"));
        assert!(err("--config /nonexistent/picolet.yaml").contains("/nonexistent/picolet.yaml"));
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s);
        assert_eq!(d("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(d("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(d("1h2m3.5s"), Ok(Duration::from_millis(3_723_500)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(d("3ns"), Ok(Duration::from_nanos(3)));
        assert_eq!(d(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "20", "1x", "-5s", "1..2s", "1s2", "99999999999999999999999h"] {
            assert!(d(bad).is_err(), "{bad}");
        }
        // Go's limit, int64 nanoseconds: past it no duration can be added to a clock.
        assert_eq!(d("2562047h47m16.854775807s"), Ok(Duration::new(i64::MAX as u64 / 1_000_000_000, 854_775_807)));
        assert_eq!(d("2562047h47m16.854775808s"), Err("duration too large".into()));
        assert_eq!(d("5000000000000000h"), Err("duration too large".into()));
        let flag = |v: &str| parse(&[format!("--file-check-frequency={v}")]).map(drop).map_err(|e| e.to_string());
        assert!(flag("5000000000000000h").unwrap_err().contains("duration too large"));
    }

    #[test]
    fn config_file_and_precedence() {
        let dir = tempdir("file");
        let path = dir.join("kubelet.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             staticPodPath: manifests\ncontainerLogMaxSize: 5Mi\ncontainerLogMaxFiles: 3\n\
             readOnlyPort: 0\nfileCheckFrequency: 5s\nauthentication:\n  anonymous:\n    enabled: false\n\
             cgroupDriver: systemd\n",
        )
        .unwrap();
        let c = run(&format!("--config {}", path.display()));
        assert_eq!(c.pod_manifest_path, Some(dir.join("manifests")), "relative to the file");
        assert_eq!(c.container_log_max_size, 5 << 20);
        assert_eq!((c.container_log_max_files, c.read_only_port), (3, 0));
        assert_eq!(c.file_check_frequency, Duration::from_secs(5));
        assert_eq!(c.config_file, Some(path.clone()));
        // Flags win, wherever they appear.
        let c = run(&format!(
            "--read-only-port 10255 --config={} --pod-manifest-path /m",
            path.display()
        ));
        assert_eq!(c.read_only_port, 10255);
        assert_eq!(c.pod_manifest_path, Some(PathBuf::from("/m")));
        assert_eq!(c.container_log_max_files, 3);
    }

    #[test]
    fn kubelet_server_settings() {
        let c = run("");
        assert_eq!((c.address.as_str(), c.port, c.healthz_port, c.healthz_bind_address.as_str()), ("0.0.0.0", 10250, 10248, "127.0.0.1"));
        assert!(!c.anonymous_auth && c.authentication_token_webhook && c.authorization_mode == "Webhook", "v1beta1's defaults");
        let c = run("--address 127.0.0.1 --port 11250 --tls-cert-file /c.crt --tls-private-key-file /c.key \
                     --client-ca-file /ca.crt --anonymous-auth=true --authentication-token-webhook=false \
                     --authentication-token-webhook-cache-ttl 30s --authorization-mode AlwaysAllow --healthz-port 0");
        assert_eq!((c.address.as_str(), c.port, c.healthz_port), ("127.0.0.1", 11250, 0));
        assert_eq!((c.tls_cert_file, c.tls_private_key_file), (Some("/c.crt".into()), Some("/c.key".into())));
        assert_eq!(c.client_ca_file, Some("/ca.crt".into()));
        assert!(c.anonymous_auth && !c.authentication_token_webhook);
        assert_eq!(c.authentication_token_webhook_cache_ttl, Duration::from_secs(30));
        assert_eq!(c.authorization_mode, "AlwaysAllow");
        assert_eq!(err("--authorization-mode=Node"), "--authorization-mode: invalid value \"Node\": must be Webhook or AlwaysAllow");

        let dir = tempdir("server");
        let path = dir.join("kubelet.yaml");
        let head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        std::fs::write(
            &path,
            format!(
                "{head}address: 127.0.0.2\nport: 12250\nhealthzPort: 12248\nhealthzBindAddress: 0.0.0.0\ntlsCertFile: pki/k.crt\ntlsPrivateKeyFile: pki/k.key\n\
                 authentication:\n  x509: {{clientCAFile: /etc/ca.crt}}\n  webhook: {{enabled: false, cacheTTL: 1m}}\n  anonymous: {{enabled: true}}\n\
                 authorization:\n  mode: AlwaysAllow\n  webhook: {{cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 1s}}\n"
            ),
        )
        .unwrap();
        let c = run(&format!("--config {}", path.display()));
        assert_eq!((c.address.as_str(), c.port, c.healthz_port, c.healthz_bind_address.as_str()), ("127.0.0.2", 12250, 12248, "0.0.0.0"));
        assert_eq!(c.tls_cert_file, Some(dir.join("pki/k.crt")), "relative to the file");
        assert_eq!(c.client_ca_file, Some("/etc/ca.crt".into()));
        assert!(c.anonymous_auth && !c.authentication_token_webhook);
        assert_eq!(c.authentication_token_webhook_cache_ttl, Duration::from_secs(60));
        assert_eq!(c.authorization_mode, "AlwaysAllow");
        assert_eq!(c.authorization_webhook_cache_authorized_ttl, Duration::from_secs(10));
        assert_eq!(c.authorization_webhook_cache_unauthorized_ttl, Duration::from_secs(1));
        std::fs::write(&path, format!("{head}authorization:\n  mode: Node\n")).unwrap();
        let e = err(&format!("--config {}", path.display()));
        assert!(e.contains("authorization.mode") && e.contains("must be Webhook or AlwaysAllow"), "{e}");
        std::fs::write(&path, format!("{head}authentication:\n  webhook: {{enabled: yes please}}\n")).unwrap();
        let e = err(&format!("--config {}", path.display()));
        assert!(e.contains("authentication.webhook.enabled") && e.contains("not true or false"), "{e}");
    }

    #[test]
    fn resource_management_switches() {
        assert!(run("").manages_cgroups());
        let c = run("--cgroups-per-qos=false --enforce-node-allocatable=");
        assert!(!c.cgroups_per_qos && c.enforce_node_allocatable.is_empty() && !c.manages_cgroups());
        assert!(run("--cgroups-per-qos=false").manages_cgroups(), "pods still enforced");
        let dir = tempdir("cgroups");
        let path = dir.join("kubelet.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             cgroupsPerQOS: false\nenforceNodeAllocatable: []\n",
        )
        .unwrap();
        assert!(!run(&format!("--config {}", path.display())).manages_cgroups());
    }

    #[test]
    fn cgroup_settings() {
        let c = run("");
        assert_eq!((c.cgroup_root.as_deref(), c.pod_pids_limit), (None, -1));
        let c = run("--cgroup-root=/picolet --pod-max-pids 100 --kube-reserved cpu=100m,memory=64Mi --system-reserved=memory=1Gi");
        assert_eq!(c.cgroup_root.as_deref(), Some("/picolet"));
        assert_eq!(c.pod_pids_limit, 100);
        assert_eq!(c.kube_reserved, Reserved { cpu_milli: 100, memory: 64 << 20 });
        assert_eq!(c.system_reserved, Reserved { cpu_milli: 0, memory: 1 << 30 });
        assert!(err("--cgroup-root=picolet").contains("absolute"));
        assert!(err("--kube-reserved=cpu").contains("--kube-reserved"));
        let dir = tempdir("cgroupcfg");
        let path = dir.join("kubelet.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             cgroupRoot: /k\npodPidsLimit: 50\nkubeReserved:\n  cpu: 200m\n  memory: 100Mi\nsystemReserved: {memory: 1Gi}\n",
        )
        .unwrap();
        let c = run(&format!("--config {} --pod-max-pids=-1", path.display()));
        assert_eq!(c.cgroup_root.as_deref(), Some("/k"));
        assert_eq!(c.pod_pids_limit, -1, "the flag wins");
        assert_eq!(c.kube_reserved, Reserved { cpu_milli: 200, memory: 100 << 20 });
        assert_eq!(c.system_reserved.memory, 1 << 30);
        std::fs::write(&path, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nkubeReserved: [1]\n").unwrap();
        assert!(err(&format!("--config {}", path.display())).contains("kubeReserved"));
    }

    #[test]
    fn config_file_errors() {
        let dir = tempdir("bad");
        let check = |name: &str, text: &str, want: &[&str]| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let e = err(&format!("--config {}", path.display()));
            assert!(e.contains(&path.display().to_string()), "{e}");
            for w in want {
                assert!(e.contains(w), "{e} lacks {w}");
            }
        };
        let head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        check("kind.yaml", "apiVersion: v1\nkind: Pod\n", &["kind \"Pod\""]);
        check(
            "port.yaml",
            &format!("{head}readOnlyPort: 99999\n"),
            &["readOnlyPort", "99999", "not a port"],
        );
        check(
            "files.yaml",
            &format!("{head}containerLogMaxFiles: 1\n"),
            &["containerLogMaxFiles", "at least 2"],
        );
        check(
            "size.yaml",
            &format!("{head}containerLogMaxSize: big\n"),
            &["containerLogMaxSize", "\"big\""],
        );
        check("freq.yaml", &format!("{head}fileCheckFrequency: 20\n"), &["fileCheckFrequency"]);
        check(
            "path.yaml",
            &format!("{head}staticPodPath: [a]\n"),
            &["staticPodPath", "not a string"],
        );
        check("junk.yaml", "a: [b\n", &["config file"]);
        check("list.yaml", "- a\n", &["not a YAML mapping"]);
        check("empty.yaml", "", &["not a YAML mapping"]);
    }

    // issue 6: eviction
    #[test]
    fn eviction_and_image_gc_settings() {
        use crate::node::eviction::{Signal, Thresholds, Value};
        let c = run("");
        assert_eq!(c.eviction_hard, Thresholds::default());
        assert_eq!((c.image_gc_high_threshold_percent, c.image_gc_low_threshold_percent), (85, 80));
        assert_eq!((c.image_minimum_gc_age, c.eviction_pressure_transition_period), (Duration::from_secs(120), Duration::from_secs(300)));
        let c = run("--eviction-hard=memory.available<1200Mi --eviction-pressure-transition-period=5s --image-gc-high-threshold=1 --image-gc-low-threshold=0 --minimum-image-ttl-duration=0s");
        assert_eq!(c.eviction_hard.flag_value(), "memory.available<1200Mi");
        assert_eq!(c.eviction_pressure_transition_period, Duration::from_secs(5));
        assert_eq!((c.image_gc_high_threshold_percent, c.image_gc_low_threshold_percent, c.image_minimum_gc_age), (1, 0, Duration::ZERO));
        let e = err("--eviction-hard=memory.avail<1Mi");
        assert!(e.contains("--eviction-hard") && e.contains("memory.avail"), "{e}");
        let e = err("--image-gc-high-threshold=70 --image-gc-low-threshold=75");
        assert!(e.contains("must be below the high threshold"), "{e}");
        assert!(err("--image-gc-high-threshold=101").contains("percentage"));

        let dir = tempdir("eviction");
        let path = dir.join("kubelet.yaml");
        let head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        std::fs::write(
            &path,
            format!(
                "{head}evictionHard:\n  memory.available: 200Mi\n  nodefs.inodesFree: \"3%\"\nevictionPressureTransitionPeriod: 30s\n\
                 imageGCHighThresholdPercent: 90\nimageGCLowThresholdPercent: 50\nimageMinimumGCAge: 5m\n"
            ),
        )
        .unwrap();
        let c = run(&format!("--config {}", path.display()));
        assert_eq!(c.eviction_hard.get(Signal::MemoryAvailable).unwrap().value, Value::Quantity(200 << 20));
        assert_eq!(c.eviction_hard.get(Signal::NodeFsInodesFree).unwrap().value, Value::Percentage(0.03));
        assert_eq!(c.eviction_hard.0.len(), 2);
        assert_eq!(c.eviction_pressure_transition_period, Duration::from_secs(30));
        assert_eq!((c.image_gc_high_threshold_percent, c.image_gc_low_threshold_percent), (90, 50));
        assert_eq!(c.image_minimum_gc_age, Duration::from_secs(300));
        // Flags override the file.
        let c = run(&format!("--config {} --eviction-hard=", path.display()));
        assert!(c.eviction_hard.0.is_empty());
        std::fs::write(&path, format!("{head}evictionHard:\n  disk.available: 1Gi\n")).unwrap();
        let e = err(&format!("--config {}", path.display()));
        assert!(e.contains("evictionHard") && e.contains("disk.available"), "{e}");
    }

    // --- blobs: registry downloads ---
    #[test]
    fn image_pull_progress_timeout() {
        assert_eq!(run("").image_pull_progress_timeout, Duration::from_secs(300));
        assert_eq!(run("--image-pull-progress-timeout=30s").image_pull_progress_timeout, Duration::from_secs(30));
        assert_eq!(run("--image-pull-progress-timeout 0").image_pull_progress_timeout, Duration::ZERO);
        assert!(err("--image-pull-progress-timeout=soon").contains("--image-pull-progress-timeout"));
    }

    #[test]
    fn help_documents_every_flag() {
        let h = help();
        for f in FLAGS {
            assert!(h.contains(f.name), "{}", f.name);
            if !f.field.is_empty() {
                assert!(h.contains(f.field), "{}", f.field);
            }
        }
        assert!(
            h.contains("default 10Mi")
                && h.contains("images import FILE")
                && h.contains("images list")
        );
    }

    // issue 6: network
    #[test]
    fn network_flags_and_fields() {
        let c = run("");
        assert_eq!(c.cni_conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(c.cni_bin_dirs, [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]);
        assert_eq!((c.pod_cidr.as_deref(), c.cluster_domain.as_str()), (None, ""));
        assert_eq!(c.resolv_conf.as_deref(), Some(Path::new("/etc/resolv.conf")));
        let c = run("--cni-conf-dir /c --cni-bin-dir=/a,/b --pod-cidr 10.1.0.0/16 --cluster-dns 10.96.0.10,fd00::a \
                     --cluster-domain cluster.local. --resolv-conf=");
        assert_eq!(c.cni_conf_dir, PathBuf::from("/c"));
        assert_eq!(c.cni_bin_dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.pod_cidr.as_deref(), Some("10.1.0.0/16"));
        assert_eq!(c.cluster_dns, ["10.96.0.10", "fd00::a"]);
        assert_eq!((c.cluster_domain.as_str(), c.resolv_conf.clone()), ("cluster.local", None));
        assert!(err("--pod-cidr 10.1.0.0").contains("not a CIDR"), "{}", err("--pod-cidr 10.1.0.0"));
        assert_eq!(err("--cluster-dns 10.0.0.300"), "--cluster-dns: invalid value \"10.0.0.300\": \"10.0.0.300\" is not an IP address");

        let d = tempdir("network");
        let f = d.join("k.yaml");
        std::fs::write(&f, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\npodCIDR: 10.5.0.0/24\n\
                           clusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\nresolvConf: /run/systemd/resolve/resolv.conf\n").unwrap();
        let c = run(&format!("--config {}", f.display()));
        assert_eq!(c.pod_cidr.as_deref(), Some("10.5.0.0/24"));
        assert_eq!((c.cluster_dns.clone(), c.cluster_domain.as_str()), (vec!["10.96.0.10".to_string()], "cluster.local"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/run/systemd/resolve/resolv.conf")));
        // flags win over the file
        assert_eq!(run(&format!("--config {} --cluster-dns=10.0.0.2", f.display())).cluster_dns, ["10.0.0.2"]);
        std::fs::write(&f, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: 10.96.0.10\n").unwrap();
        assert!(err(&format!("--config {}", f.display())).ends_with("clusterDNS: invalid value \"10.96.0.10\": not a list"));
    }

    // --- policy: image pulls ---
    #[test]
    fn serialize_and_max_parallel_image_pulls() {
        // Serialized by default; the flag turns it off, with no limit then.
        assert_eq!(run("").image_pull_limit(), Some(1));
        assert_eq!(run("--serialize-image-pulls=false").image_pull_limit(), None);
        assert_eq!(run("--serialize-image-pulls").image_pull_limit(), Some(1));
        let dir = tempdir("pulls");
        let f = dir.join("kubelet.yaml");
        let head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        let with = |body: &str| {
            std::fs::write(&f, format!("{head}{body}")).unwrap();
            format!("--config {}", f.display())
        };
        // maxParallelImagePulls above 1 alone turns serializing off (upstream's defaulting).
        assert_eq!(run(&with("maxParallelImagePulls: 3\n")).image_pull_limit(), Some(3));
        assert_eq!(run(&with("maxParallelImagePulls: 1\n")).image_pull_limit(), Some(1));
        assert_eq!(run(&with("serializeImagePulls: false\nmaxParallelImagePulls: 2\n")).image_pull_limit(), Some(2));
        assert_eq!(run(&with("serializeImagePulls: false\n")).image_pull_limit(), None);
        assert_eq!(run(&format!("{} --serialize-image-pulls=false", with("serializeImagePulls: true\n"))).image_pull_limit(), None);
        // Upstream's validation.
        let e = err(&with("serializeImagePulls: true\nmaxParallelImagePulls: 2\n"));
        assert!(e.ends_with("maxParallelImagePulls: invalid value 2: cannot be larger than 1 unless serializeImagePulls (--serialize-image-pulls) is set to false"), "{e}");
        let e = err(&format!("{} --serialize-image-pulls", with("maxParallelImagePulls: 4\n")));
        assert!(e.contains("cannot be larger than 1 unless serializeImagePulls"), "{e}");
        for bad in ["0", "-1"] {
            let e = err(&with(&format!("maxParallelImagePulls: {bad}\n")));
            assert!(e.ends_with(&format!("maxParallelImagePulls: invalid value {bad}: must be a positive number")), "{e}");
        }
        assert!(err(&with("serializeImagePulls: yes please\n")).contains("not true or false"));
    }
}
