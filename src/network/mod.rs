//! The pod sandbox without a pause process: pinned namespaces and managed etc files.
//!
//! Does: create a pod's network, IPC and UTS namespaces in a short-lived thread,
//! set the pod hostname, bring `lo` up, and pin the namespaces by bind-mounting
//! `/proc/thread-self/ns/*` onto files under `pod_dir/ns` (as `ip netns add` does),
//! so they live on with no process in them. Writes the pod's `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf` (dns.rs), and has CNI plugins wire the network
//! namespace (cni.rs): ADD when the sandbox is set up, DEL when it is torn down.
//! When no CNI config exists and the default one's plugins are not installed, pods get
//! loopback only (`pod_ip` ""), said once in the log.
//! Doesn't: PID namespace sharing, dual-stack pod IPs.
//! Imports only api and hostfs.

pub mod cni;
pub mod dns;

pub use dns::{host_network_hosts, hosts_file, resolv_conf, DnsSettings};

use crate::api::types::Pod;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The node's network settings: CNI (None: loopback only, as in unit tests) and DNS.
pub struct Network {
    pub cni: Option<CniSettings>,
    pub dns: DnsSettings,
}

impl Network {
    /// No CNI, no cluster DNS, the host's /etc/resolv.conf.
    #[cfg(test)]
    pub fn loopback_only() -> Network {
        Network { cni: None, dns: DnsSettings { resolv_conf: Some("/etc/resolv.conf".into()), ..Default::default() } }
    }
}

/// Where CNI configs and plugins are, and where the default config's pod CIDR comes from.
pub struct CniSettings {
    pub conf_dir: PathBuf,
    pub plugins: cni::Plugins,
    pub pod_cidr: PodCidr,
    /// The "no CNI config, no plugins" notice was logged.
    warned: AtomicBool,
}

impl CniSettings {
    pub fn new(conf_dir: PathBuf, plugins: cni::Plugins, pod_cidr: PodCidr) -> CniSettings {
        CniSettings { conf_dir, plugins, pod_cidr, warned: AtomicBool::new(false) }
    }

    /// The network pods join: the conf dir's first config, else the default one written
    /// now from the pod CIDR. None when there is no config and the default's plugins are
    /// not installed.
    pub fn network_list(&self, pod: &str) -> Result<Option<cni::NetworkList>, cni::CniError> {
        if let Some((_, list)) = cni::conf::load_dir(&self.conf_dir)? {
            return Ok(Some(list));
        }
        let probe = cni::conf::default_list(cni::conf::DEFAULT_POD_CIDR).expect("the default CIDR is valid");
        if !self.plugins.have_all(&probe) || !self.plugins.have_all(&cni::NetworkList::loopback()) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                let dirs: Vec<String> = self.plugins.dirs.iter().map(|d| d.display().to_string()).collect();
                log::warn!(
                    "no CNI config in {} and no bridge/host-local/portmap/loopback plugins in {}: pods get loopback only \
                     (install containernetworking-plugins, or put a config in the conf dir)",
                    self.conf_dir.display(),
                    dirs.join(", ")
                );
            }
            return Ok(None);
        }
        let cidr = self.pod_cidr.current().ok_or_else(|| cni::CniError::NoPodCidr { pod: pod.to_string() })?;
        let path = self.conf_dir.join(cni::conf::DEFAULT_FILE);
        let list = cni::conf::default_list(&cidr).map_err(|reason| cni::CniError::Config { path, reason })?;
        let path = cni::conf::write_default(&self.conf_dir, &list)?;
        log::info!("wrote the default CNI config {} (bridge {}, pod CIDR {cidr})", path.display(), cni::conf::BRIDGE);
        Ok(Some(list))
    }
}

/// The pod CIDR the default CNI config uses: in a cluster the Node's spec.podCIDR (the
/// node agent fills `node`: None until the Node was read, "" if it has none), else (or
/// when the Node has none) the configured one, else [`cni::conf::DEFAULT_POD_CIDR`].
pub struct PodCidr {
    pub configured: Option<String>,
    pub node: Option<Arc<Mutex<Option<String>>>>,
}

impl PodCidr {
    /// None: wait (the Node has not been read yet).
    pub fn current(&self) -> Option<String> {
        let fallback = || self.configured.clone().unwrap_or_else(|| cni::conf::DEFAULT_POD_CIDR.to_string());
        match &self.node {
            Some(cell) => match cell.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                None => None,
                Some(c) if !c.is_empty() => Some(c),
                Some(_) => Some(fallback()),
            },
            None => Some(fallback()),
        }
    }
}

/// What setting up a sandbox gave.
#[derive(Debug)]
pub struct Setup {
    pub sandbox: Sandbox,
    /// ClusterFirst fell back to Default for lack of clusterDNS (upstream warns with
    /// MissingClusterDNS).
    pub missing_cluster_dns: bool,
}

/// Where a pod's containers find their shared namespaces and etc files.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    /// Pinned network namespace; None for hostNetwork.
    pub netns: Option<PathBuf>,
    /// Pinned IPC namespace; None for hostIPC.
    pub ipcns: Option<PathBuf>,
    /// Pinned UTS namespace; None for hostNetwork (those pods share the node's hostname).
    pub utsns: Option<PathBuf>,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
    /// The node's primary IPv4 for hostNetwork pods, else the first IP CNI gave ("" when
    /// pods get loopback only).
    pub pod_ip: String,
}

/// Why the sandbox could not be set up or torn down.
#[derive(Debug)]
pub enum NetworkError {
    /// A file operation failed.
    Io { pod: String, path: PathBuf, op: &'static str, source: io::Error },
    /// A namespace or mount syscall failed.
    Sys { pod: String, path: PathBuf, op: &'static str, errno: nix::Error },
    /// A thread setting up or tearing down the pod's network died.
    Thread { pod: String },
    /// No thread could be started for the pod's network.
    Spawn { pod: String, source: io::Error },
    /// CNI ADD or DEL failed (the error names pod, network and plugin).
    Cni(cni::CniError),
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::Io { pod, path, op, source } => {
                write!(f, "pod {pod}: sandbox: {op} {}: {source}", path.display())
            }
            NetworkError::Sys { pod, path, op, errno } => {
                write!(f, "pod {pod}: sandbox: {op} {}: {errno}", path.display())
            }
            NetworkError::Thread { pod } => write!(f, "pod {pod}: sandbox: the network thread died"),
            NetworkError::Spawn { pod, source } => write!(f, "pod {pod}: sandbox: cannot start a network thread: {source}"),
            NetworkError::Cni(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NetworkError {}

/// The pod's hostname: `spec.hostname` or the pod name, cut to 63 characters
/// (trailing `-`/`.` removed), as upstream does for long pod names.
pub fn pod_hostname(pod: &Pod) -> String {
    let h = if pod.spec.hostname.is_empty() { &pod.metadata.name } else { &pod.spec.hostname };
    if h.len() <= 63 {
        return h.clone();
    }
    let cut: String = h.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

const KINDS: [(&str, CloneFlags); 3] =
    [("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)];

/// Sets up the sandbox. Idempotent: pinned namespaces that already exist (after a
/// picolet restart) are reused, missing ones are created and pinned; etc files are
/// rewritten in place only when their content changed (running containers bind-mount
/// them). hostNetwork → `netns`/`utsns` None; hostIPC → `ipcns` None.
/// A pod with its own network namespace is attached by CNI once per namespace: after a
/// picolet restart the record in the pod dir is reused (no second ADD); a namespace that
/// had to be created again (a reboot) first has the old attachment DELeted.
pub fn setup(pod: &Pod, pod_dir: &Path, net: &Network) -> Result<Setup, NetworkError> {
    let pod_name = format!("{}/{}", pod.metadata.namespace, pod.metadata.name);
    let io_err = |path: &Path, op: &'static str| {
        let (pod, path) = (pod_name.clone(), path.to_path_buf());
        move |source| NetworkError::Io { pod, path, op, source }
    };
    let host_net = pod.spec.host_network;
    let hostname = pod_hostname(pod);
    let ns_dir = pod_dir.join("ns");
    fs::create_dir_all(&ns_dir).map_err(io_err(&ns_dir, "create"))?;

    let wanted = |kind: &str| match kind {
        "net" | "uts" => !host_net,
        _ => !pod.spec.host_ipc,
    };
    let mut missing = CloneFlags::empty();
    let mut to_pin = Vec::new();
    let pinned = pinned_namespaces().map_err(io_err(Path::new("/proc/self/mountinfo"), "read"))?;
    for (kind, flag) in KINDS {
        if !wanted(kind) {
            continue;
        }
        let file = ns_dir.join(kind);
        let real = fs::canonicalize(&ns_dir).map_err(io_err(&ns_dir, "resolve"))?.join(kind);
        if !pinned.contains(&real) {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&file)
                .map_err(io_err(&file, "create"))?;
            missing |= flag;
            to_pin.push((kind, file));
        }
    }
    if missing.contains(CloneFlags::CLONE_NEWNET) {
        // Whatever the record describes lived in a namespace that is gone.
        cni::retire(&pod_name, pod_dir).map_err(NetworkError::Cni)?;
    }
    if !missing.is_empty() {
        let name = pod_name.clone();
        let h = hostname.clone();
        std::thread::spawn(move || create_and_pin(&name, missing, &h, &to_pin))
            .join()
            .map_err(|_| NetworkError::Thread { pod: pod_name.clone() })??;
    }

    let node_hostname = if host_net { host_hostname() } else { String::new() };
    let pod_ip = match (&net.cni, host_net) {
        (_, true) => primary_ipv4().unwrap_or_default(),
        (Some(c), false) => attach(pod, pod_dir, &ns_dir.join("net"), c).map_err(NetworkError::Cni)?,
        (None, false) => String::new(),
    };
    let hosts = if host_net {
        let node_hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
        host_network_hosts(&node_hosts, pod)
    } else {
        hosts_file(pod, &hostname, &pod_ip, &net.dns.cluster_domain)
    };
    let host_resolv = net.dns.resolv_conf.as_ref().and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default();
    let (resolv, missing_cluster_dns) = resolv_conf(pod, &host_resolv, &net.dns);
    let name_file = if host_net { node_hostname.clone() } else { hostname.clone() };
    let sb = Sandbox {
        netns: wanted("net").then(|| ns_dir.join("net")),
        ipcns: wanted("ipc").then(|| ns_dir.join("ipc")),
        utsns: wanted("uts").then(|| ns_dir.join("uts")),
        hosts: pod_dir.join("etc-hosts"),
        hostname: pod_dir.join("etc-hostname"),
        resolv_conf: pod_dir.join("etc-resolv.conf"),
        pod_ip,
    };
    for (path, text) in [(&sb.hosts, hosts), (&sb.hostname, format!("{name_file}\n")), (&sb.resolv_conf, resolv)] {
        write_in_place(path, &text).map_err(io_err(path, "write"))?;
    }
    Ok(Setup { sandbox: sb, missing_cluster_dns })
}

/// CNI ADD for the pod's namespace `netns` unless already attached; the pod IP ("" when
/// there is no network to join).
fn attach(pod: &Pod, pod_dir: &Path, netns: &Path, c: &CniSettings) -> Result<String, cni::CniError> {
    let who = cni::PodRef::of(pod);
    let Some(list) = c.network_list(&who.name)? else { return Ok(String::new()) };
    let attached = cni::attach(&c.plugins, &who, pod_dir, netns, &list, cni::port_mappings(pod))?;
    match &attached {
        cni::Attached::Added(ips) => log::info!("pod {}: network {} attached, IPs {ips:?}", who.name, list.name),
        cni::Attached::Kept(ips) => {
            // Adopted after a restart: ask the plugins whether it is still as they left it.
            if let Err(e) = cni::check(&c.plugins, &who.name, pod_dir, netns) {
                log::warn!("{e}");
            }
            log::info!("pod {}: network attachment kept from before the restart, IPs {ips:?}", who.name);
        }
    }
    Ok(attached.ips().first().cloned().unwrap_or_default())
}

/// Runs in its own thread: unshare applies to the calling thread only, and the
/// thread ends right after, so the rest of picolet stays in the host namespaces.
fn create_and_pin(pod: &str, flags: CloneFlags, hostname: &str, files: &[(&str, PathBuf)]) -> Result<(), NetworkError> {
    let sys = |path: &Path, op: &'static str| {
        let (pod, path) = (pod.to_string(), path.to_path_buf());
        move |errno| NetworkError::Sys { pod, path, op, errno }
    };
    unshare(flags).map_err(sys(Path::new("/proc/thread-self"), "unshare"))?;
    if flags.contains(CloneFlags::CLONE_NEWUTS) {
        nix::unistd::sethostname(hostname).map_err(sys(Path::new("/proc/sys/kernel/hostname"), "sethostname"))?;
    }
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        loopback_up().map_err(sys(Path::new("lo"), "bring up"))?;
    }
    for (kind, file) in files {
        let src = PathBuf::from(format!("/proc/thread-self/ns/{kind}"));
        mount(Some(&src), file, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys(file, "pin namespace on"))?;
    }
    Ok(())
}

/// Sets IFF_UP on `lo` of the current thread's network namespace.
fn loopback_up() -> nix::Result<()> {
    use nix::libc;
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq; the fd is closed on all paths.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(nix::Error::last());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req);
        }
        let err = nix::Error::last();
        libc::close(fd);
        if r < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Mount points whose filesystem is nsfs (pinned namespaces).
fn pinned_namespaces() -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(crate::hostfs::parse_mountinfo(&text).into_iter().filter(|(_, t)| t == "nsfs").map(|(p, _)| p).collect())
}

fn host_hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// The node's first non-loopback IPv4 address, if any.
fn primary_ipv4() -> Option<String> {
    use nix::libc;
    let mut found = None;
    // SAFETY: getifaddrs' list is only read while alive and freed once.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return None;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null()
                && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET
                && ifa.ifa_flags & libc::IFF_LOOPBACK as u32 == 0
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string());
                break;
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    found
}

/// Writes `text` into `path` keeping its inode (truncate + write), only if it differs.
fn write_in_place(path: &Path, text: &str) -> io::Result<()> {
    if fs::read_to_string(path).map(|old| old == text).unwrap_or(false) {
        return Ok(());
    }
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    f.write_all(text.as_bytes())
}

/// CNI DEL of the pod's attachments (from the record in the pod dir, so a changed config
/// does not matter), then unmounts and removes the pinned namespace files and the etc
/// files. `pod` names the pod in errors. Gives the pod IP that was released, if CNI had
/// given one.
pub fn teardown(pod_dir: &Path, pod: &str, net: &Network) -> Result<Option<String>, NetworkError> {
    let pod = pod.to_string();
    let ns_dir = pod_dir.join("ns");
    let pinned = pinned_namespaces().map_err(|source| NetworkError::Io {
        pod: pod.clone(),
        path: "/proc/self/mountinfo".into(),
        op: "read",
        source,
    })?;
    let real_dir = fs::canonicalize(&ns_dir).ok();
    let mut released = None;
    if let Some(c) = &net.cni {
        // DEL inside the namespace while it still exists; a lost one (reboot) gets "".
        let netns = real_dir.as_ref().map(|d| d.join("net")).filter(|n| pinned.contains(n)).map(|_| ns_dir.join("net"));
        released = cni::detach(&c.plugins, &pod, pod_dir, netns.as_deref()).map_err(NetworkError::Cni)?;
    }
    for (kind, _) in KINDS {
        let file = ns_dir.join(kind);
        if let Some(real) = real_dir.as_ref().map(|d| d.join(kind)) {
            // A namespace file may be stacked more than once after crashes; unmount all.
            for _ in pinned.iter().filter(|p| **p == real) {
                umount2(&file, MntFlags::MNT_DETACH).map_err(|errno| NetworkError::Sys {
                    pod: pod.clone(),
                    path: file.clone(),
                    op: "unmount",
                    errno,
                })?;
            }
        }
        remove_if_exists(&file).map_err(|source| NetworkError::Io { pod: pod.clone(), path: file.clone(), op: "remove", source })?;
    }
    let _ = fs::remove_dir(&ns_dir);
    for name in ["etc-hosts", "etc-hostname", "etc-resolv.conf"] {
        let p = pod_dir.join(name);
        remove_if_exists(&p).map_err(|source| NetworkError::Io { pod: pod.clone(), path: p.clone(), op: "remove", source })?;
    }
    Ok(released)
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare pod prod/web; also the DNS tests' (dns.rs).
    pub(super) fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.metadata.namespace = "prod".into();
        p
    }

    #[test]
    fn hostnames() {
        let mut p = pod();
        assert_eq!(pod_hostname(&p), "web");
        p.spec.hostname = "h".into();
        assert_eq!(pod_hostname(&p), "h");
        p.spec.hostname.clear();
        p.metadata.name = format!("{}-.x", "a".repeat(61));
        assert_eq!(pod_hostname(&p), "a".repeat(61));
    }

    /// The ns inode a pinned file refers to.
    fn ns_id(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(p).unwrap().ino()
    }

    #[test]
    #[ignore = "needs root (network namespaces): tests/run.sh runs it"]
    fn pinned_namespaces_survive_and_teardown_cleans() {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let d = std::env::temp_dir().join(format!("picolet-net-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let net = Network::loopback_only();
        let mut p = pod();
        p.spec.hostname = "box".into();
        let sb = setup(&p, &d, &net).unwrap().sandbox;
        let netns = sb.netns.clone().unwrap();
        let host_net = fs::metadata("/proc/self/ns/net").unwrap();
        assert_ne!(ns_id(&netns), std::os::unix::fs::MetadataExt::ino(&host_net));
        assert_eq!(fs::read_to_string(&sb.hostname).unwrap(), "box\n");
        assert!(fs::read_to_string(&sb.hosts).unwrap().contains("127.0.1.1\tbox\n"));
        assert_eq!(sb.pod_ip, "");
        // again (picolet restart): same namespaces
        let ids: Vec<u64> = [&sb.netns, &sb.ipcns, &sb.utsns].iter().map(|p| ns_id(p.as_ref().unwrap())).collect();
        let sb2 = setup(&p, &d, &net).unwrap().sandbox;
        let ids2: Vec<u64> = [&sb2.netns, &sb2.ipcns, &sb2.utsns].iter().map(|p| ns_id(p.as_ref().unwrap())).collect();
        assert_eq!(ids, ids2);
        // one pin lost: re-pinned, others kept. The lost namespace is held
        // open meanwhile: freed, its inode number could go to the new one.
        let lost = fs::File::open(sb.ipcns.as_ref().unwrap()).unwrap();
        umount2(sb.ipcns.as_ref().unwrap(), MntFlags::MNT_DETACH).unwrap();
        let sb3 = setup(&p, &d, &net).unwrap().sandbox;
        assert_eq!(ns_id(sb3.netns.as_ref().unwrap()), ids[0]);
        assert_ne!(ns_id(sb3.ipcns.as_ref().unwrap()), ids[1]);
        drop(lost);
        teardown(&d, "prod/web", &net).unwrap();
        let real = fs::canonicalize(&d).unwrap();
        let left = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!left.contains(real.to_str().unwrap()), "mounts left: {left}");
        assert!(!d.join("ns").exists() && !d.join("etc-hosts").exists());

        p.spec.host_network = true;
        p.spec.host_ipc = true;
        let sb = setup(&p, &d, &net).unwrap().sandbox;
        assert_eq!((sb.netns, sb.ipcns, sb.utsns), (None, None, None));
        assert_eq!(fs::read_to_string(&sb.hostname).unwrap().trim(), host_hostname());
        assert_eq!(sb.pod_ip, primary_ipv4().unwrap_or_default());
        teardown(&d, "prod/web", &net).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
