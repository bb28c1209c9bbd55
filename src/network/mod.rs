//! The pod sandbox without a pause process: pinned namespaces and managed etc files.
//!
//! Does: create a pod's network, IPC and UTS namespaces in a short-lived thread,
//! set the pod hostname, bring `lo` up, and pin the namespaces by bind-mounting
//! `/proc/thread-self/ns/*` onto files under `pod_dir/ns` (as `ip netns add` does),
//! so they live on with no process in them. Writes the pod's `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf`.
//! Doesn't: CNI (pods get loopback only; `pod_ip` is "" until CNI exists), port
//! mappings, cluster DNS (no clusterDNS is configured, so ClusterFirst falls back to
//! the host's resolv.conf as upstream does), PID namespace sharing.

use crate::api::types::Pod;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
    /// The node's primary IPv4 for hostNetwork pods, else "" (no CNI yet).
    pub pod_ip: String,
}

/// Why the sandbox could not be set up or torn down.
#[derive(Debug)]
pub enum NetworkError {
    /// A file operation failed.
    Io { pod: String, path: PathBuf, op: &'static str, source: io::Error },
    /// A namespace or mount syscall failed.
    Sys { pod: String, path: PathBuf, op: &'static str, errno: nix::Error },
    /// The namespace-creating thread died.
    Thread { pod: String },
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
            NetworkError::Thread { pod } => write!(f, "pod {pod}: sandbox: namespace thread panicked"),
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
pub fn setup(pod: &Pod, pod_dir: &Path, node_name: &str) -> Result<Sandbox, NetworkError> {
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
    if !missing.is_empty() {
        let name = pod_name.clone();
        let h = hostname.clone();
        std::thread::spawn(move || create_and_pin(&name, missing, &h, &to_pin))
            .join()
            .map_err(|_| NetworkError::Thread { pod: pod_name.clone() })??;
    }

    let node_hostname = if host_net { host_hostname() } else { String::new() };
    let pod_ip = if host_net { primary_ipv4().unwrap_or_default() } else { String::new() };
    let hosts = if host_net {
        let node_hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
        host_network_hosts(&node_hosts, pod)
    } else {
        hosts_file(pod, &hostname, "", "")
    };
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = resolv_conf(pod, &host_resolv);
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
    let _ = node_name; // the node name is not the node's hostname; kept for CNI/logging later
    Ok(sb)
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
    Ok(crate::node::fs::parse_mountinfo(&text).into_iter().filter(|(_, t)| t == "nsfs").map(|(p, _)| p).collect())
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

/// Unmounts and removes the pinned namespace files and the etc files.
pub fn teardown(pod_dir: &Path) -> Result<(), NetworkError> {
    let pod = pod_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ns_dir = pod_dir.join("ns");
    let pinned = pinned_namespaces().map_err(|source| NetworkError::Io {
        pod: pod.clone(),
        path: "/proc/self/mountinfo".into(),
        op: "read",
        source,
    })?;
    let real_dir = fs::canonicalize(&ns_dir).ok();
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
    Ok(())
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The Kubernetes-managed hosts file for a pod with its own network namespace.
/// `ip` "" (no CNI yet) maps the hostname to 127.0.1.1, which `lo` answers in the
/// pod's namespace (the Debian convention for a host without a fixed address).
/// With a subdomain and a cluster domain the FQDN comes first, as upstream.
pub fn hosts_file(pod: &Pod, hostname: &str, ip: &str, cluster_domain: &str) -> String {
    let mut s = String::from("# Kubernetes-managed hosts file.\n");
    s.push_str("127.0.0.1\tlocalhost\n");
    s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    s.push_str("fe00::0\tip6-localnet\n");
    s.push_str("fe00::0\tip6-mcastprefix\n");
    s.push_str("fe00::1\tip6-allnodes\n");
    s.push_str("fe00::2\tip6-allrouters\n");
    let ip = if ip.is_empty() { "127.0.1.1" } else { ip };
    if !pod.spec.subdomain.is_empty() && !cluster_domain.is_empty() {
        let ns = if pod.metadata.namespace.is_empty() { "default" } else { &pod.metadata.namespace };
        s.push_str(&format!("{ip}\t{hostname}.{}.{ns}.svc.{cluster_domain}\t{hostname}\n", pod.spec.subdomain));
    } else {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s.push_str(&host_aliases(pod));
    s
}

/// hostNetwork pods see the node's hosts file, plus their hostAliases.
pub fn host_network_hosts(node_hosts: &str, pod: &Pod) -> String {
    let mut s = node_hosts.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&host_aliases(pod));
    s
}

fn host_aliases(pod: &Pod) -> String {
    if pod.spec.host_aliases.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for a in &pod.spec.host_aliases {
        s.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
    }
    s
}

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// nameservers, searches, options of a resolv.conf text (last `search` line wins).
fn parse_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut ns, mut search, mut opts) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => ns.extend(f.next().map(str::to_string)),
            Some("search") => {
                search = f.filter(|s| *s != ".").map(|s| s.trim_end_matches('.').to_string()).collect()
            }
            Some("options") => opts.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    (ns, search, opts)
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

/// The pod's resolv.conf from the host's (`host_resolv`) and the pod's dnsPolicy and
/// dnsConfig. No clusterDNS is configured, so ClusterFirst (the default) and
/// ClusterFirstWithHostNet behave like Default: the host's file. None starts empty.
/// dnsConfig nameservers/searches/options are then merged: duplicates dropped, at
/// most 3 nameservers and 32 searches; an option given again replaces the earlier value.
pub fn resolv_conf(pod: &Pod, host_resolv: &str) -> String {
    let (mut ns, mut search, mut opts) = if pod.spec.dns_policy == "None" {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        parse_resolv(host_resolv)
    };
    if let Some(cfg) = &pod.spec.dns_config {
        push_unique(&mut ns, cfg.nameservers.iter().cloned());
        push_unique(&mut search, cfg.searches.iter().cloned());
        for o in &cfg.options {
            let text = match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            };
            let name_of = |s: &str| s.split(':').next().unwrap_or("").to_string();
            match opts.iter_mut().find(|x| name_of(x) == o.name) {
                Some(slot) => *slot = text,
                None => opts.push(text),
            }
        }
    }
    let mut dedup_opts = Vec::new();
    push_unique(&mut dedup_opts, opts);
    let mut dedup_ns = Vec::new();
    push_unique(&mut dedup_ns, ns);
    let mut ns = dedup_ns;
    let mut dedup_search = Vec::new();
    push_unique(&mut dedup_search, search);
    let mut search = dedup_search;
    ns.truncate(MAX_NAMESERVERS);
    search.truncate(MAX_SEARCHES);
    let mut s = String::new();
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    for n in &ns {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !dedup_opts.is_empty() {
        s.push_str(&format!("options {}\n", dedup_opts.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{HostAlias, PodDnsConfig, PodDnsConfigOption};

    fn pod() -> Pod {
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

    #[test]
    fn hosts_content() {
        let mut p = pod();
        let h = hosts_file(&p, "web", "", "");
        assert_eq!(
            h,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             127.0.1.1\tweb\n"
        );
        p.spec.subdomain = "sub".into();
        p.spec.host_aliases = vec![
            HostAlias { ip: "10.0.0.9".into(), hostnames: vec!["a".into(), "b".into()] },
            HostAlias { ip: "::2".into(), hostnames: vec!["c".into()] },
        ];
        let h = hosts_file(&p, "web", "10.1.0.4", "cluster.local");
        assert!(h.contains("\n10.1.0.4\tweb.sub.prod.svc.cluster.local\tweb\n"), "{h}");
        assert!(h.ends_with("\n\n# Entries added by HostAliases.\n10.0.0.9\ta\tb\n::2\tc\n"), "{h}");
        // no cluster domain configured: no FQDN
        assert!(hosts_file(&p, "web", "10.1.0.4", "").contains("\n10.1.0.4\tweb\n"));
        let hn = host_network_hosts("127.0.0.1 localhost\n10.0.0.2 node", &p);
        assert!(hn.starts_with("127.0.0.1 localhost\n10.0.0.2 node\n\n# Entries added by HostAliases.\n"), "{hn}");
    }

    const HOST: &str = "# generated\nnameserver 10.0.0.1\nnameserver 10.0.0.1\nnameserver 1.1.1.1 \
                        \ndomain lan\nsearch old.example\nsearch lan example.com. lan\noptions ndots:2 edns0\n";

    #[test]
    fn resolv_default_and_cluster_first_use_host() {
        let mut p = pod();
        let want = "search lan example.com\nnameserver 10.0.0.1\nnameserver 1.1.1.1\noptions ndots:2 edns0\n";
        for policy in ["", "ClusterFirst", "Default", "ClusterFirstWithHostNet"] {
            p.spec.dns_policy = policy.into();
            assert_eq!(resolv_conf(&p, HOST), want, "policy {policy:?}");
        }
    }

    #[test]
    fn resolv_merge_and_limits() {
        let mut p = pod();
        p.spec.dns_config = Some(PodDnsConfig {
            nameservers: vec!["1.1.1.1".into(), "9.9.9.9".into(), "8.8.8.8".into()],
            searches: vec!["lan".into(), "svc.local".into()],
            options: vec![
                PodDnsConfigOption { name: "ndots".into(), value: Some("5".into()) },
                PodDnsConfigOption { name: "single-request".into(), value: None },
            ],
        });
        assert_eq!(
            resolv_conf(&p, HOST),
            "search lan example.com svc.local\nnameserver 10.0.0.1\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n\
             options ndots:5 edns0 single-request\n"
        );
        p.spec.dns_policy = "None".into();
        assert_eq!(
            resolv_conf(&p, HOST),
            "search lan svc.local\nnameserver 1.1.1.1\nnameserver 9.9.9.9\nnameserver 8.8.8.8\noptions ndots:5 single-request\n"
        );
        p.spec.dns_config = Some(PodDnsConfig {
            searches: (0..40).map(|i| format!("s{i}")).collect(),
            ..Default::default()
        });
        let r = resolv_conf(&p, "");
        assert_eq!(r.split_whitespace().count(), 33, "{r}");
    }

    /// The ns inode a pinned file refers to.
    fn ns_id(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn pinned_namespaces_survive_and_teardown_cleans() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let d = std::env::temp_dir().join(format!("picolet-net-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let mut p = pod();
        p.spec.hostname = "box".into();
        let sb = setup(&p, &d, "node1").unwrap();
        let net = sb.netns.clone().unwrap();
        let host_net = fs::metadata("/proc/self/ns/net").unwrap();
        assert_ne!(ns_id(&net), std::os::unix::fs::MetadataExt::ino(&host_net));
        assert_eq!(fs::read_to_string(&sb.hostname).unwrap(), "box\n");
        assert!(fs::read_to_string(&sb.hosts).unwrap().contains("127.0.1.1\tbox\n"));
        assert_eq!(sb.pod_ip, "");
        // again (picolet restart): same namespaces
        let ids: Vec<u64> = [&sb.netns, &sb.ipcns, &sb.utsns].iter().map(|p| ns_id(p.as_ref().unwrap())).collect();
        let sb2 = setup(&p, &d, "node1").unwrap();
        let ids2: Vec<u64> = [&sb2.netns, &sb2.ipcns, &sb2.utsns].iter().map(|p| ns_id(p.as_ref().unwrap())).collect();
        assert_eq!(ids, ids2);
        // one pin lost: re-pinned, others kept
        umount2(sb.ipcns.as_ref().unwrap(), MntFlags::MNT_DETACH).unwrap();
        let sb3 = setup(&p, &d, "node1").unwrap();
        assert_eq!(ns_id(sb3.netns.as_ref().unwrap()), ids[0]);
        assert_ne!(ns_id(sb3.ipcns.as_ref().unwrap()), ids[1]);
        teardown(&d).unwrap();
        let real = fs::canonicalize(&d).unwrap();
        let left = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!left.contains(real.to_str().unwrap()), "mounts left: {left}");
        assert!(!d.join("ns").exists() && !d.join("etc-hosts").exists());

        p.spec.host_network = true;
        p.spec.host_ipc = true;
        let sb = setup(&p, &d, "node1").unwrap();
        assert_eq!((sb.netns, sb.ipcns, sb.utsns), (None, None, None));
        assert_eq!(fs::read_to_string(&sb.hostname).unwrap().trim(), host_hostname());
        assert_eq!(sb.pod_ip, primary_ipv4().unwrap_or_default());
        teardown(&d).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
