//! Where containers' cgroups go. picolet owns the cgroup it was started in
//! (its systemd unit's, with `Delegate=yes`) and puts every container below
//! it, at `<own>/kubepods/pod<uid>/<container id>`, so the unit accounts for
//! its pods and `systemctl` sees them. runc creates the directories; picolet
//! removes a pod's directory when the pod goes.
//!
//! Usage figures (CPU, memory) for the stats endpoints are in [`stats`].
//!
//! Not here yet (issue #6): enabling controllers, QoS tiers, limits.
//! Until then the cgroups carry no controllers, which is also why picolet
//! and its reaper may stay in `<own>` itself (cgroup v2 forbids processes in
//! a cgroup only once it enables controllers for its children).

pub mod stats;

use std::io;
use std::path::{Path, PathBuf};

/// The cgroup v2 path of this process, from `/proc/self/cgroup` text
/// (`0::/system.slice/picolet.service`). A process in the root cgroup (not
/// started by systemd) gets `/picolet`, so containers never land at the root.
pub fn own_path(proc_self_cgroup: &str) -> Option<String> {
    let path = proc_self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    Some(if path == "/" || path.is_empty() { "/picolet".to_string() } else { path.to_string() })
}

/// The pods' parent below `own`.
pub fn pods_parent(own: &str) -> String {
    format!("{}/kubepods", own.trim_end_matches('/'))
}

/// A container's `linux.cgroupsPath` (absolute, in the cgroup v2 hierarchy).
pub fn container_path(parent: &str, pod_uid: &str, container_id: &str) -> String {
    format!("{parent}/pod{pod_uid}/{container_id}")
}

/// Removes a pod's (by then empty) cgroup directory under `fs_root`
/// (normally /sys/fs/cgroup). A missing directory is fine.
pub fn remove_pod(fs_root: &Path, parent: &str, pod_uid: &str) -> io::Result<()> {
    let dir: PathBuf = fs_root.join(parent.trim_start_matches('/')).join(format!("pod{pod_uid}"));
    match std::fs::remove_dir(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(own_path("0::/system.slice/picolet.service\n").as_deref(), Some("/system.slice/picolet.service"));
        assert_eq!(own_path("0::/\n").as_deref(), Some("/picolet"));
        assert_eq!(own_path("12:pids:/\n1:name=systemd:/\n"), None, "cgroup v1 only");
        let parent = pods_parent("/system.slice/picolet.service");
        assert_eq!(parent, "/system.slice/picolet.service/kubepods");
        assert_eq!(container_path(&parent, "u1", "u1-c-0"), "/system.slice/picolet.service/kubepods/podu1/u1-c-0");
    }

    #[test]
    fn removes_pod_dir() {
        let root = std::env::temp_dir().join(format!("picolet-cg-{}", std::process::id()));
        std::fs::create_dir_all(root.join("a/kubepods/podu1")).unwrap();
        remove_pod(&root, "/a/kubepods", "u1").unwrap();
        assert!(!root.join("a/kubepods/podu1").exists());
        remove_pod(&root, "/a/kubepods", "u1").unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
