//! Pod networking through CNI plugins, spoken over the CNI exec protocol (spec 1.0.0).
//!
//! Does: pick the network config (first `*.conflist`/`*.conf`/`*.json` by name in the conf
//! dir, or the default one `conf.rs` writes when there is none), run each plugin of the list
//! with `CNI_COMMAND` ADD / DEL / CHECK and the config on stdin (`name`, `cniVersion`,
//! `prevResult` chaining, `runtimeConfig.portMappings` for plugins that declare the
//! capability), parse the result for the pod's IPs and the error JSON for a clear message.
//! The loopback plugin runs as its own network first, as containerd does.
//! What DEL needs (the config used, container id, ifname, the result) is kept in the pod dir
//! (`cni.json`), written before ADD, so an interrupted ADD, a reboot or a changed config never
//! leaks an address.
//! A plugin that hangs is killed at [`PLUGIN_TIMEOUT`] and one that floods its output at
//! [`OUTPUT_LIMIT`]: either is an error on the pod, retried like any other.
//! Doesn't: the `bandwidth`/`ipRanges` capabilities, GC (spec 1.1), dual-stack pod IPs in
//! status (the first IP is the pod IP).

pub mod conf;

use crate::api::types::Pod;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The interface picolet asks plugins to create in the pod's namespace.
pub const IFNAME: &str = "eth0";
/// Where DEL's inputs are kept in the pod dir.
pub const RECORD: &str = "cni.json";
/// A record whose namespace is gone (see [`retire`]), kept until its DEL succeeded.
pub const STALE_RECORD: &str = "cni.stale.json";
const LOOPBACK_NAME: &str = "cni-loopback";
/// How long one plugin run may take: upstream's default runtimeRequestTimeout, which bounds
/// the CRI sandbox call that runs CNI there.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Most a plugin may print on stdout or stderr (results and errors are a few KB).
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// What a plugin run gave back.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The side effects of CNI: finding plugin binaries and running them. Real: [`ExecPlugins`].
pub trait Exec: Send + Sync {
    /// The first `dirs` entry holding an executable `plugin`.
    fn find(&self, plugin: &str, dirs: &[PathBuf]) -> Option<PathBuf>;
    /// Runs `path` with the CNI variables `env` added to picolet's environment and `stdin`.
    fn run(&self, path: &Path, env: &[(&str, String)], stdin: &[u8]) -> io::Result<Output>;
}

/// Runs plugins as child processes, each killed if it runs past `timeout`.
pub struct ExecPlugins {
    pub timeout: Duration,
}

impl Exec for ExecPlugins {
    fn find(&self, plugin: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        // A plugin type is a file name, never a path (spec: no path separators).
        if plugin.is_empty() || plugin.contains('/') {
            return None;
        }
        dirs.iter().map(|d| d.join(plugin)).find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    }

    fn run(&self, path: &Path, env: &[(&str, String)], stdin: &[u8]) -> io::Result<Output> {
        use std::io::Write;
        let mut child = Command::new(path)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Configs are a few KB: they fit the pipe, so writing before reading cannot deadlock.
        let mut input = child.stdin.take().expect("piped stdin");
        let wrote = input.write_all(stdin);
        drop(input);
        let deadline = Instant::now() + self.timeout;
        let out = read_outputs(&mut child, deadline).and_then(|(stdout, stderr)| Ok((wait_until(&mut child, deadline)?, stdout, stderr)));
        let (status, stdout, stderr) = match out {
            Ok(out) => out,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(match e.kind() {
                    io::ErrorKind::TimedOut => io::Error::new(e.kind(), format!("did not finish within {:?}; killed it", self.timeout)),
                    io::ErrorKind::InvalidData => io::Error::new(e.kind(), format!("{e}; killed it")),
                    _ => e,
                });
            }
        };
        if let Err(e) = wrote {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(e);
            }
        }
        Ok(Output { success: status.success(), stdout, stderr })
    }
}

/// Reads the child's stdout and stderr to their ends, each up to [`OUTPUT_LIMIT`], or fails at
/// `deadline`.
fn read_outputs(child: &mut Child, deadline: Instant) -> io::Result<(Vec<u8>, Vec<u8>)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let mut buf = [0u8; 8192];
    while out_open || err_open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let never = PollFlags::empty();
        let mut fds = [
            PollFd::new(stdout.as_fd(), if out_open { PollFlags::POLLIN } else { never }),
            PollFd::new(stderr.as_fd(), if err_open { PollFlags::POLLIN } else { never }),
        ];
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let ready = fds.map(|f| f.revents().is_some_and(|r| !r.is_empty()));
        if out_open && ready[0] {
            out_open = read_some(&mut stdout, &mut out, &mut buf, "stdout")?;
        }
        if err_open && ready[1] {
            err_open = read_some(&mut stderr, &mut err, &mut buf, "stderr")?;
        }
    }
    Ok((out, err))
}

/// One read into `into`; false at the end of the stream.
fn read_some(from: &mut impl io::Read, into: &mut Vec<u8>, buf: &mut [u8], what: &str) -> io::Result<bool> {
    let n = from.read(buf)?;
    if into.len() + n > OUTPUT_LIMIT {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("wrote more than {} MiB on {what}", OUTPUT_LIMIT >> 20)));
    }
    into.extend_from_slice(&buf[..n]);
    Ok(n > 0)
}

/// The child's exit once its outputs closed: it may still be on its way out.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Which pod, network and plugin a plugin error is about.
#[derive(Debug)]
pub struct Site {
    pub pod: String,
    pub network: String,
    pub plugin: String,
}

/// Why a pod's network could not be set up or torn down.
#[derive(Debug)]
pub enum CniError {
    /// A config file in the conf dir is unreadable or not a network config.
    Config { path: PathBuf, reason: String },
    /// The default config could not be written.
    WriteConfig { path: PathBuf, source: io::Error },
    /// The default config needs the node's pod CIDR, not known yet.
    NoPodCidr { pod: String },
    /// No plugin binary of this type in the plugin dirs.
    PluginNotFound { at: Box<Site>, dirs: Vec<PathBuf> },
    /// The plugin could not be run.
    Spawn { at: Box<Site>, command: &'static str, source: io::Error },
    /// The plugin ran past its timeout or flooded its output, and was killed.
    Killed { at: Box<Site>, command: &'static str, source: io::Error },
    /// The plugin failed, with the spec's error fields (code 0 if it printed none).
    Plugin { at: Box<Site>, command: &'static str, code: i64, msg: String, details: String },
    /// The plugin succeeded but its result is not a CNI result.
    BadResult { at: Box<Site>, reason: String },
    /// The record in the pod dir could not be read or written.
    Record { pod: String, path: PathBuf, op: &'static str, reason: String },
}

impl CniError {
    /// The pod the error is about (none for config-file errors).
    fn pod(&self) -> &str {
        match self {
            CniError::Config { .. } | CniError::WriteConfig { .. } => "",
            CniError::NoPodCidr { pod } | CniError::Record { pod, .. } => pod,
            CniError::PluginNotFound { at, .. }
            | CniError::Spawn { at, .. }
            | CniError::Killed { at, .. }
            | CniError::Plugin { at, .. }
            | CniError::BadResult { at, .. } => &at.pod,
        }
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.pod().is_empty() {
            write!(f, "pod {}: ", self.pod())?;
        }
        match self {
            CniError::Config { path, reason } => write!(f, "CNI config {}: {reason}", path.display()),
            CniError::WriteConfig { path, source } => write!(f, "writing the default CNI config {}: {source}", path.display()),
            CniError::NoPodCidr { .. } => {
                write!(f, "network: waiting for the node's podCIDR to write the default CNI config (or set --pod-cidr)")
            }
            CniError::PluginNotFound { at, dirs } => {
                let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                write!(f, "network {}: CNI plugin {:?} not found in {}", at.network, at.plugin, dirs.join(", "))
            }
            CniError::Spawn { at, command, source } => {
                write!(f, "network {}: CNI {command} plugin {}: cannot run it: {source}", at.network, at.plugin)
            }
            CniError::Killed { at, command, source } => write!(f, "network {}: CNI {command} plugin {}: {source}", at.network, at.plugin),
            CniError::Plugin { at, command, code, msg, details } => {
                write!(f, "network {}: CNI {command} plugin {} failed", at.network, at.plugin)?;
                if *code != 0 {
                    write!(f, " (code {code})")?;
                }
                write!(f, ": {msg}")?;
                if !details.is_empty() {
                    write!(f, "; {details}")?;
                }
                Ok(())
            }
            CniError::BadResult { at, reason } => {
                write!(f, "network {}: CNI plugin {} returned no usable result: {reason}", at.network, at.plugin)
            }
            CniError::Record { path, op, reason, .. } => write!(f, "network: {op} {}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for CniError {}

/// A network config list as used for one pod: `name`, `cniVersion`, `plugins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkList {
    pub name: String,
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub plugins: Vec<Value>,
    /// `disableCheck`: the runtime must not send CHECK for this list.
    #[serde(default, rename = "disableCheck", skip_serializing_if = "std::ops::Not::not")]
    pub disable_check: bool,
}

impl NetworkList {
    pub(crate) fn loopback() -> NetworkList {
        NetworkList { name: LOOPBACK_NAME.into(), cni_version: "1.0.0".into(), plugins: vec![json!({"type": "loopback"})], disable_check: false }
    }
}

/// One attachment of the pod: the network, the interface and the final ADD result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub network: NetworkList,
    pub ifname: String,
    /// None until ADD succeeded (then DEL runs without prevResult).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// `<pod dir>/cni.json`: everything DEL and CHECK need, independent of the current config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub container_id: String,
    /// CNI_ARGS as given to ADD.
    pub args: String,
    /// runtimeConfig entries by capability name (portMappings).
    #[serde(default)]
    pub runtime_config: Map<String, Value>,
    /// In ADD order: loopback (when its plugin exists) then the pod network.
    pub attachments: Vec<Attachment>,
}

impl Record {
    pub fn load(pod_dir: &Path) -> io::Result<Option<Record>> {
        Self::load_file(&pod_dir.join(RECORD))
    }

    fn load_file(path: &Path) -> io::Result<Option<Record>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, pod_dir: &Path) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(self).expect("record serialises");
        crate::hostfs::write_atomic(&pod_dir.join(RECORD), &body)
    }

    /// The pod's IPs from the pod network's result (the last attachment).
    pub fn ips(&self) -> Vec<String> {
        self.attachments.last().and_then(|a| a.result.as_ref()).map(|r| result_ips(r, IFNAME)).unwrap_or_default()
    }
}

/// The IPs (without prefix length) a CNI result gives interface `ifname` inside the pod,
/// IPv4 first. Results of spec 0.3.0 and later (`ips`) and 0.1/0.2 (`ip4`/`ip6`).
pub fn result_ips(result: &Value, ifname: &str) -> Vec<String> {
    let strip = |a: &str| a.split('/').next().unwrap_or("").to_string();
    let mut ips: Vec<String> = Vec::new();
    if let Some(list) = result["ips"].as_array() {
        let ifaces = result["interfaces"].as_array().cloned().unwrap_or_default();
        // An IP names its interface by index; the pod's is the one with a sandbox.
        let ours = |ip: &Value| match ip["interface"].as_u64().and_then(|i| ifaces.get(i as usize)) {
            Some(i) => i["name"] == ifname && i["sandbox"].as_str().is_some_and(|s| !s.is_empty()),
            None => true,
        };
        let chosen: Vec<&Value> = list.iter().filter(|ip| ours(ip)).collect();
        let chosen = if chosen.is_empty() { list.iter().collect() } else { chosen };
        ips = chosen.iter().filter_map(|ip| ip["address"].as_str()).map(strip).collect();
    } else {
        for k in ["ip4", "ip6"] {
            if let Some(a) = result[k]["ip"].as_str() {
                ips.push(strip(a));
            }
        }
    }
    ips.retain(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    ips.sort_by_key(|ip| ip.contains(':'));
    ips
}

/// The pod facts CNI needs.
pub struct PodRef<'a> {
    pub name: String,
    pub namespace: &'a str,
    pub pod_name: &'a str,
    pub uid: &'a str,
}

impl<'a> PodRef<'a> {
    pub fn of(pod: &'a Pod) -> PodRef<'a> {
        PodRef {
            name: format!("{}/{}", pod.metadata.namespace, pod.metadata.name),
            namespace: &pod.metadata.namespace,
            pod_name: &pod.metadata.name,
            uid: &pod.metadata.uid,
        }
    }

    /// CNI_ARGS as containerd sets them for Kubernetes pods.
    fn args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace,
            self.pod_name,
            container_id(self.uid),
            self.uid
        )
    }
}

/// The CNI container id of a pod: its UID, which is stable, unique and made of allowed
/// characters (alphanumerics, `-`, `_`, `.`).
pub fn container_id(uid: &str) -> String {
    uid.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// runtimeConfig.portMappings for the pod's hostPorts, in the portmap plugin's format.
pub fn port_mappings(pod: &Pod) -> Vec<Value> {
    let mut out = Vec::new();
    for c in pod.spec.init_containers.iter().chain(&pod.spec.containers) {
        for p in &c.ports {
            let Some(host_port) = p.host_port.filter(|h| *h > 0) else { continue };
            let protocol = if p.protocol.is_empty() { "tcp".to_string() } else { p.protocol.to_lowercase() };
            let mut m = json!({"hostPort": host_port, "containerPort": p.container_port, "protocol": protocol});
            if !p.host_ip.is_empty() {
                m["hostIP"] = p.host_ip.clone().into();
            }
            out.push(m);
        }
    }
    out
}

/// The plugin runner: plugin dirs and the exec seam.
pub struct Plugins {
    pub dirs: Vec<PathBuf>,
    pub exec: Box<dyn Exec>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Cmd {
    Add,
    Del,
    Check,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "ADD",
            Cmd::Del => "DEL",
            Cmd::Check => "CHECK",
        }
    }
}

impl Plugins {
    /// Whether every plugin type of `list` is installed.
    pub fn have_all(&self, list: &NetworkList) -> bool {
        list.plugins.iter().all(|p| p["type"].as_str().is_some_and(|t| self.exec.find(t, &self.dirs).is_some()))
    }

    /// The stdin config of one plugin of `list` (spec: the plugin object plus the list's
    /// name and version, the previous result, and the runtimeConfig it declared).
    fn plugin_config(list: &NetworkList, plugin: &Value, prev: Option<&Value>, runtime: &Map<String, Value>) -> Value {
        let mut conf = plugin.as_object().cloned().unwrap_or_default();
        conf.insert("name".into(), list.name.clone().into());
        conf.insert("cniVersion".into(), list.cni_version.clone().into());
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let caps = plugin["capabilities"].as_object();
        let wanted: Map<String, Value> = runtime
            .iter()
            .filter(|(k, _)| caps.is_some_and(|c| c.get(*k).and_then(Value::as_bool) == Some(true)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        conf.remove("capabilities");
        if !wanted.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(wanted));
        }
        Value::Object(conf)
    }

    /// Runs one plugin; Ok(stdout) or the plugin's error.
    fn invoke(&self, pod: &str, list: &NetworkList, plugin: &Value, cmd: Cmd, env: &Env, stdin: &Value) -> Result<Vec<u8>, CniError> {
        let ty = plugin["type"].as_str().unwrap_or("").to_string();
        let at = || Box::new(Site { pod: pod.into(), network: list.name.clone(), plugin: ty.clone() });
        let path = self.exec.find(&ty, &self.dirs).ok_or_else(|| CniError::PluginNotFound { at: at(), dirs: self.dirs.clone() })?;
        let cni_path = self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":");
        let vars = [
            ("CNI_COMMAND", cmd.name().to_string()),
            ("CNI_CONTAINERID", env.container_id.clone()),
            ("CNI_NETNS", env.netns.clone()),
            ("CNI_IFNAME", env.ifname.clone()),
            ("CNI_ARGS", env.args.clone()),
            ("CNI_PATH", cni_path),
        ];
        let body = serde_json::to_vec(stdin).expect("config serialises");
        let out = self.exec.run(&path, &vars, &body).map_err(|source| match source.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::InvalidData => CniError::Killed { at: at(), command: cmd.name(), source },
            _ => CniError::Spawn { at: at(), command: cmd.name(), source },
        })?;
        if out.success {
            return Ok(out.stdout);
        }
        // Spec: the error is JSON on stdout; older plugins may only write stderr.
        let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        let msg = match err["msg"].as_str() {
            Some(m) => m.to_string(),
            None if !out.stdout.is_empty() => text(&out.stdout),
            None => text(&out.stderr),
        };
        Err(CniError::Plugin {
            at: at(),
            command: cmd.name(),
            code: err["code"].as_i64().unwrap_or(0),
            msg: if msg.is_empty() { "exited with an error and said nothing".into() } else { msg },
            details: err["details"].as_str().unwrap_or("").to_string(),
        })
    }

    /// ADD: each plugin in order, each getting the previous one's result; the last result.
    fn add(&self, pod: &str, list: &NetworkList, env: &Env, runtime: &Map<String, Value>) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let stdin = Self::plugin_config(list, plugin, prev.as_ref(), runtime);
            let out = self.invoke(pod, list, plugin, Cmd::Add, env, &stdin)?;
            let ty = plugin["type"].as_str().unwrap_or("").to_string();
            let bad = |reason: String| CniError::BadResult { at: Box::new(Site { pod: pod.into(), network: list.name.clone(), plugin: ty.clone() }), reason };
            let result: Value = serde_json::from_slice(&out).map_err(|e| bad(format!("not JSON: {e}")))?;
            if !result.is_object() {
                return Err(bad("not a JSON object".into()));
            }
            prev = Some(result);
        }
        Ok(prev.unwrap_or_else(|| json!({"cniVersion": list.cni_version})))
    }

    /// DEL: plugins in reverse order with the ADD result. Every plugin is asked even after
    /// one fails (each releases its own resources); the first error is returned.
    fn del(&self, pod: &str, list: &NetworkList, env: &Env, runtime: &Map<String, Value>, result: Option<&Value>) -> Result<(), CniError> {
        let mut first = None;
        for plugin in list.plugins.iter().rev() {
            let stdin = Self::plugin_config(list, plugin, result, runtime);
            if let Err(e) = self.invoke(pod, list, plugin, Cmd::Del, env, &stdin) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// CHECK: plugins in order with the ADD result (spec 0.4.0 and later only).
    fn check(&self, pod: &str, list: &NetworkList, env: &Env, runtime: &Map<String, Value>, result: &Value) -> Result<(), CniError> {
        if list.disable_check || !supports_check(&list.cni_version) {
            return Ok(());
        }
        for plugin in &list.plugins {
            let stdin = Self::plugin_config(list, plugin, Some(result), runtime);
            self.invoke(pod, list, plugin, Cmd::Check, env, &stdin)?;
        }
        Ok(())
    }
}

/// CHECK exists from spec 0.4.0 on.
fn supports_check(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major >= 1 || minor >= 4
}

/// The per-invocation variables shared by every plugin of a list.
struct Env {
    container_id: String,
    netns: String,
    ifname: String,
    args: String,
}

/// How a pod's attachments were obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum Attached {
    /// ADD ran now.
    Added(Vec<String>),
    /// The namespace survived a picolet restart and its record was reused (no second ADD).
    Kept(Vec<String>),
}

impl Attached {
    pub fn ips(&self) -> &[String] {
        match self {
            Attached::Added(ips) | Attached::Kept(ips) => ips,
        }
    }
}

fn record_err(pod: &str, pod_dir: &Path, op: &'static str) -> impl FnOnce(io::Error) -> CniError {
    let (pod, path) = (pod.to_string(), pod_dir.join(RECORD));
    move |e| CniError::Record { pod, path, op, reason: e.to_string() }
}

/// Attaches the pod's network namespace `netns` to `list` (and loopback) unless the record
/// in `pod_dir` says it is attached already (a picolet restart: no second ADD). A stale
/// record ([`retire`]) is DELeted first, and so is a record without result (an ADD that
/// was interrupted), so an address is never reserved twice.
pub fn attach(plugins: &Plugins, pod: &PodRef, pod_dir: &Path, netns: &Path, list: &NetworkList, port_mappings: Vec<Value>) -> Result<Attached, CniError> {
    release_stale(plugins, &pod.name, pod_dir)?;
    let old = Record::load(pod_dir).map_err(record_err(&pod.name, pod_dir, "read"))?;
    if let Some(old) = old {
        let complete = !old.attachments.is_empty() && old.attachments.iter().all(|a| a.result.is_some());
        if complete {
            return Ok(Attached::Kept(old.ips()));
        }
        detach_record(plugins, &pod.name, &old, &netns.display().to_string())?;
        remove_file(&pod_dir.join(RECORD)).map_err(record_err(&pod.name, pod_dir, "remove"))?;
    }
    let mut runtime = Map::new();
    if !port_mappings.is_empty() {
        runtime.insert("portMappings".into(), Value::Array(port_mappings));
    }
    let lo = NetworkList::loopback();
    let mut attachments = Vec::new();
    // lo is already up (network::create_and_pin); the plugin runs when installed, as upstream.
    if plugins.have_all(&lo) {
        attachments.push(Attachment { network: lo, ifname: "lo".into(), result: None });
    }
    attachments.push(Attachment { network: list.clone(), ifname: IFNAME.into(), result: None });
    let mut rec = Record { container_id: container_id(pod.uid), args: pod.args(), runtime_config: runtime, attachments };
    // Written before ADD: whatever ADD does, a later DEL knows what to undo.
    rec.save(pod_dir).map_err(record_err(&pod.name, pod_dir, "write"))?;
    let ns = netns.display().to_string();
    for i in 0..rec.attachments.len() {
        let a = &rec.attachments[i];
        let env = Env { container_id: rec.container_id.clone(), netns: ns.clone(), ifname: a.ifname.clone(), args: rec.args.clone() };
        match plugins.add(&pod.name, &a.network, &env, &rec.runtime_config) {
            Ok(result) => {
                rec.attachments[i].result = Some(result);
                rec.save(pod_dir).map_err(record_err(&pod.name, pod_dir, "write"))?;
            }
            Err(e) => {
                // Undo the partial ADD now; if that fails too the record stays for the next try.
                if detach_record(plugins, &pod.name, &rec, &ns).is_ok() {
                    let _ = remove_file(&pod_dir.join(RECORD));
                }
                return Err(e);
            }
        }
    }
    Ok(Attached::Added(rec.ips()))
}

/// Marks the pod's record as describing a network namespace that no longer exists (it is
/// about to be created again): the next [`attach`] or [`detach`] DELs it without a netns.
/// Renamed, not DELeted here, so the mark survives a failing DEL and a picolet restart.
pub fn retire(pod: &str, pod_dir: &Path) -> Result<(), CniError> {
    let (from, to) = (pod_dir.join(RECORD), pod_dir.join(STALE_RECORD));
    // A stale record is always released before a new record is written, so both never
    // exist together and the rename loses nothing.
    match std::fs::rename(&from, &to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(CniError::Record { pod: pod.to_string(), path: from, op: "retire", reason: e.to_string() })
        }
        _ => Ok(()),
    }
}

fn release_stale(plugins: &Plugins, pod: &str, pod_dir: &Path) -> Result<(), CniError> {
    let path = pod_dir.join(STALE_RECORD);
    let err = |op| {
        let (pod, path) = (pod.to_string(), path.clone());
        move |e: io::Error| CniError::Record { pod, path, op, reason: e.to_string() }
    };
    let Some(stale) = Record::load_file(&path).map_err(err("read"))? else { return Ok(()) };
    detach_record(plugins, pod, &stale, "")?;
    remove_file(&path).map_err(err("remove"))
}

/// CHECK of every attachment in the record (after a picolet restart).
pub fn check(plugins: &Plugins, pod: &str, pod_dir: &Path, netns: &Path) -> Result<(), CniError> {
    let Some(rec) = Record::load(pod_dir).map_err(record_err(pod, pod_dir, "read"))? else { return Ok(()) };
    for a in &rec.attachments {
        if let Some(result) = &a.result {
            let env = Env { container_id: rec.container_id.clone(), netns: netns.display().to_string(), ifname: a.ifname.clone(), args: rec.args.clone() };
            plugins.check(pod, &a.network, &env, &rec.runtime_config, result)?;
        }
    }
    Ok(())
}

/// DEL of whatever the record in `pod_dir` describes, then the record is removed. `netns`
/// None: the namespace is gone (plugins then release addresses and rules only).
/// No record: nothing to do. Gives the pod IP the record held.
pub fn detach(plugins: &Plugins, pod: &str, pod_dir: &Path, netns: Option<&Path>) -> Result<Option<String>, CniError> {
    release_stale(plugins, pod, pod_dir)?;
    let Some(rec) = Record::load(pod_dir).map_err(record_err(pod, pod_dir, "read"))? else { return Ok(None) };
    let ns = netns.map(|p| p.display().to_string()).unwrap_or_default();
    detach_record(plugins, pod, &rec, &ns)?;
    remove_file(&pod_dir.join(RECORD)).map_err(record_err(pod, pod_dir, "remove"))?;
    Ok(rec.ips().into_iter().next())
}

fn detach_record(plugins: &Plugins, pod: &str, rec: &Record, netns: &str) -> Result<(), CniError> {
    let mut first = None;
    for a in rec.attachments.iter().rev() {
        let env = Env { container_id: rec.container_id.clone(), netns: netns.to_string(), ifname: a.ifname.clone(), args: rec.args.clone() };
        if let Err(e) = plugins.del(pod, &a.network, &env, &rec.runtime_config, a.result.as_ref()) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn remove_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests;
