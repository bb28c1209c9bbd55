//! Facts about this node that pods and status need: its name and address.

pub mod notify;

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
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        return Err("overlayfs is not available: load it with `modprobe overlay` (and add `overlay` to /etc/modules)".into());
    }
    Ok(())
}

/// Resolves a command name through PATH (a path with a slash is taken as is).
pub fn which(cmd: &std::path::Path) -> Option<std::path::PathBuf> {
    if cmd.components().count() > 1 {
        return cmd.is_file().then(|| cmd.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file())
}
