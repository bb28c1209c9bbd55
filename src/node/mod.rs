//! This node: its facts (address, CPUs, memory, the start-up checks),
//! allocatable, node-pressure eviction (the pure part, readings and
//! ranking), the Node object and its status, the thread that registers the
//! Node and renews its Lease (agent), and systemd's notify protocol.
//!
//! Above runtime and stats (eviction reads pods' usage), below pod (the pod
//! worker evicts, the wiring starts the agent). Not here: the configuration
//! (config.rs hands node the values it needs), the eviction driver
//! (pod::worker::evict), the cgroup tree (cgroup/).

pub mod agent;
pub mod allocatable;
pub mod eviction;
pub mod notify;
pub mod status;

use std::net::IpAddr;

/// The node's primary IPv4 address: the first address of an interface that
/// is up and not loopback; 127.0.0.1 on a machine with none.
pub fn host_ip() -> String {
    use nix::net::if_::InterfaceFlags;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return "127.0.0.1".into() };
    for a in addrs {
        if !a.flags.contains(InterfaceFlags::IFF_UP) || a.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return IpAddr::V4(sin.ip()).to_string();
        }
    }
    "127.0.0.1".into()
}

/// MemTotal from /proc/meminfo, in bytes (0 if unreadable).
pub fn memory_capacity() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Online CPUs (from /sys/devices/system/cpu/online, e.g. "0-3"), at least 1.
pub fn cpu_capacity() -> i64 {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    match count_cpu_list(&online) {
        0 => std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1),
        n => n,
    }
}

/// Number of CPUs in a kernel CPU list ("0-3,5,7-8" → 7); 0 if unreadable.
fn count_cpu_list(list: &str) -> i64 {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(a), Ok(b)) if b >= a => n += b - a + 1,
            _ => return 0,
        }
    }
    n
}

/// Size in bytes of the filesystem holding `path` (0 if it cannot be read).
pub fn fs_capacity(path: &std::path::Path) -> i64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| (s.blocks() as i64).saturating_mul(s.fragment_size() as i64))
        .unwrap_or(0)
}

/// Start-up checks: each failure is one line that says how to fix it.
pub fn preflight(runtime: &std::path::Path) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("picolet must run as root (it mounts overlayfs and runs runc): start it with sudo or from its systemd unit".into());
    }
    if which(runtime).is_none() {
        return Err(format!(
            "container runtime {:?} not found: install runc (apt-get install runc) or point --runtime-path at runc/crun",
            runtime.display().to_string()
        ));
    }
    if !overlay_listed(&std::fs::read_to_string("/proc/filesystems").unwrap_or_default()) {
        return Err("overlayfs is not available: load it with `modprobe overlay` (and add `overlay` to /etc/modules)".into());
    }
    Ok(())
}

/// The controllers picolet needs in its subtree.
pub const CONTROLLERS: [&str; 3] = crate::cgroup::tree::REQUIRED;

/// Checks that `fs_root` (normally /sys/fs/cgroup) is a cgroup v2 hierarchy
/// whose kernel offers cpu, memory and pids, and that the subtree picolet
/// will own at cgroup path `tree_root` can have them: the deepest existing
/// cgroup on that path must list them in its cgroup.controllers (what its
/// parent hands down). The error is one line with the fix.
pub fn check_cgroups(fs_root: &std::path::Path, tree_root: &str) -> Result<(), String> {
    const WITHOUT: &str = "or run without resource management: --cgroups-per-qos=false --enforce-node-allocatable=";
    let read = |p: &std::path::Path| std::fs::read_to_string(p.join("cgroup.controllers")).ok();
    let Some(kernel) = read(fs_root) else {
        return Err(format!(
            "no cgroup v2 hierarchy at {}: boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line, {WITHOUT}",
            fs_root.display()
        ));
    };
    let lacking = |text: &str| -> Vec<&str> {
        let have: Vec<&str> = text.split_whitespace().collect();
        CONTROLLERS.iter().copied().filter(|c| !have.contains(c)).collect()
    };
    match lacking(&kernel).as_slice() {
        [] => {}
        m if m.contains(&"memory") => {
            return Err(format!(
                "the cgroup v2 memory controller is off (Raspberry Pi OS ships it off): add cgroup_enable=memory to /boot/firmware/cmdline.txt and reboot, {WITHOUT}"
            ))
        }
        m => {
            return Err(format!(
                "cgroup v2 controller(s) {} missing from {}: enable them in the kernel, {WITHOUT}",
                m.join(", "),
                fs_root.join("cgroup.controllers").display()
            ))
        }
    }
    // The deepest cgroup of the path that exists already: below it picolet
    // creates the levels itself and can enable what that one has.
    let mut path = tree_root.trim_end_matches('/').to_string();
    while !path.is_empty() {
        let dir = crate::cgroup::dir(fs_root, &path);
        if let Some(text) = read(&dir) {
            let missing = lacking(&text);
            if missing.is_empty() {
                return Ok(());
            }
            let parent = path.rsplit_once('/').map(|(p, _)| if p.is_empty() { "/" } else { p }).unwrap_or("/");
            return Err(format!(
                "cgroup v2 controller(s) {} not available in {path} (its cgroup.controllers: {:?}): enable them in {}/cgroup.subtree_control (picolet's systemd unit needs Delegate=yes) or choose another --cgroup-root, {WITHOUT}",
                missing.join(", "),
                text.trim(),
                crate::cgroup::dir(fs_root, parent).display().to_string().trim_end_matches('/'),
            ));
        }
        path = path.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
    }
    Ok(())
}

/// Whether /proc/filesystems text lists overlayfs.
fn overlay_listed(filesystems: &str) -> bool {
    filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay"))
}

/// Resolves a command name through PATH (a path with a slash is taken as is).
pub fn which(cmd: &std::path::Path) -> Option<std::path::PathBuf> {
    if cmd.components().count() > 1 {
        return cmd.is_file().then(|| cmd.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3\n"), 4);
        assert_eq!(count_cpu_list("0-3,5,7-8"), 7);
        assert_eq!(count_cpu_list("0"), 1);
        assert_eq!(count_cpu_list(""), 0);
        assert_eq!(count_cpu_list("x"), 0);
        assert!(cpu_capacity() >= 1);
        assert!(fs_capacity(std::path::Path::new("/")) > 0);
    }

    #[test]
    fn overlay_is_found_in_proc_filesystems() {
        assert!(overlay_listed("nodev\tsysfs\nnodev\toverlay\n\text4\n"));
        assert!(!overlay_listed("nodev\tsysfs\n\text4\nnodev\toverlayfs_like\n"));
    }

    #[test]
    fn cgroup_checks_name_the_fix() {
        let dir = std::env::temp_dir().join(format!("picolet-cgcheck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = check_cgroups(&dir, "/picolet").unwrap_err();
        assert!(e.contains("no cgroup v2") && e.contains("--cgroups-per-qos=false"), "{e}");
        std::fs::write(dir.join("cgroup.controllers"), "cpuset cpu io pids\n").unwrap();
        let e = check_cgroups(&dir, "/picolet").unwrap_err();
        assert!(e.contains("cgroup_enable=memory"), "{e}");
        std::fs::write(dir.join("cgroup.controllers"), "cpuset cpu io memory\n").unwrap();
        let e = check_cgroups(&dir, "/picolet").unwrap_err();
        assert!(e.contains("pids") && !e.contains("cpu,"), "{e}");
        std::fs::write(dir.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").unwrap();
        // A root that does not exist yet: picolet creates it below the hierarchy's root.
        assert_eq!(check_cgroups(&dir, "/picolet/a"), Ok(()));
        assert_eq!(check_cgroups(&dir, "/"), Ok(()));
        // A subtree whose parent hands down no memory (a unit without Delegate=yes).
        std::fs::create_dir_all(dir.join("system.slice/picolet.service")).unwrap();
        std::fs::write(dir.join("system.slice/picolet.service/cgroup.controllers"), "cpu pids\n").unwrap();
        let e = check_cgroups(&dir, "/system.slice/picolet.service").unwrap_err();
        assert!(e.contains("memory not available in /system.slice/picolet.service"), "{e}");
        assert!(e.contains("system.slice/cgroup.subtree_control") && e.contains("Delegate=yes") && e.contains("--cgroups-per-qos=false"), "{e}");
        assert!(!e.contains('\n'));
        // Below it, the deepest existing level decides.
        assert!(check_cgroups(&dir, "/system.slice/picolet.service/x").is_err());
        std::fs::write(dir.join("system.slice/picolet.service/cgroup.controllers"), "cpu io memory pids\n").unwrap();
        assert_eq!(check_cgroups(&dir, "/system.slice/picolet.service/x"), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
