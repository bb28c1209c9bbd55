//! picolet's cgroup v2 tree, written by hand (no systemd, no library).
//!
//! picolet owns one subtree: `--cgroup-root` when given, else the cgroup it
//! was started in (its systemd unit's, with `Delegate=yes`). Below that root
//! the layout is upstream's cgroupfs driver's:
//!
//! ```text
//! <root>/supervisor                  picolet and its reaper (own-cgroup mode only)
//! <root>/kubepods                    node allocatable; Guaranteed pods directly below
//! <root>/kubepods/burstable/pod<uid>
//! <root>/kubepods/besteffort/pod<uid>
//!         .../pod<uid>/<container>   created by runc from linux.cgroupsPath
//! ```
//!
//! - [`tree`]: creating the tree, enabling controllers top-down, the
//!   supervisor leaf, pod directories, removing them (also stale ones).
//! - [`resources`]: requests and limits → the values written (pure).
//! - [`pods`]: what the pod worker calls (pod cgroups, QoS tier weights).
//! - [`oom`]: whether the kernel OOM-killed something in a container.
//! - [`stats`]: usage figures for the stats endpoints.
//!
//! Imports only api (pod specs, QoS). Not here: the start-up check
//! (node::check_cgroups), allocatable (node::allocatable), usage of pods
//! and containers as the stats endpoints report it (stats/).

pub mod oom;
pub mod pods;
pub mod resources;
pub mod stats;
pub mod tree;

pub use pods::PodCgroups;
pub use tree::Tree;

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the cgroup v2 hierarchy is mounted on a normal host.
pub const FS_ROOT: &str = "/sys/fs/cgroup";

/// The leaf picolet and its reaper move into when the tree root is their
/// own cgroup: cgroup v2 forbids processes in a cgroup that hands
/// controllers to its children.
pub const SUPERVISOR: &str = "supervisor";

/// Something failed on a cgroup file or directory.
#[derive(Debug)]
pub struct CgroupError {
    pub path: PathBuf,
    pub reason: String,
}

impl CgroupError {
    pub fn new(path: &Path, reason: impl fmt::Display) -> CgroupError {
        CgroupError { path: path.to_path_buf(), reason: reason.to_string() }
    }
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for CgroupError {}

/// The cgroup v2 path of this process, from `/proc/self/cgroup` text
/// (`0::/system.slice/picolet.service`). A picolet already moved into its
/// supervisor leaf (restarted by hand from there) gets the leaf's parent.
/// A process in the root cgroup (not started by systemd) gets `/picolet`,
/// so containers never land at the root.
pub fn own_path(proc_self_cgroup: &str) -> Option<String> {
    let path = proc_self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let path = path.strip_suffix(&format!("/{SUPERVISOR}")).unwrap_or(path);
    Some(if path == "/" || path.is_empty() { "/picolet".to_string() } else { path.to_string() })
}

/// Whether systemd started this process directly in a service's cgroup
/// (not in a `DelegateSubgroup=`). Once that cgroup hands controllers to
/// kubepods, systemd before v254 cannot put the next main process there:
/// a restart with pods still running fails with EBUSY (status 219/CGROUP).
pub fn in_service_cgroup(proc_self_cgroup: &str) -> bool {
    proc_self_cgroup.lines().find_map(|l| l.strip_prefix("0::")).is_some_and(|p| p.trim().ends_with(".service"))
}

/// `a` and `b` joined as a cgroup path ("/" + "kubepods" = "/kubepods").
pub fn join(a: &str, b: &str) -> String {
    format!("{}/{}", a.trim_end_matches('/'), b.trim_start_matches('/'))
}

/// A cgroup path's directory under the hierarchy mounted at `fs_root`.
pub fn dir(fs_root: &Path, path: &str) -> PathBuf {
    fs_root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(own_path("0::/system.slice/picolet.service\n").as_deref(), Some("/system.slice/picolet.service"));
        assert_eq!(own_path("0::/system.slice/picolet.service/supervisor\n").as_deref(), Some("/system.slice/picolet.service"));
        assert_eq!(own_path("0::/\n").as_deref(), Some("/picolet"));
        assert_eq!(own_path("12:pids:/\n1:name=systemd:/\n"), None, "cgroup v1 only");
        assert!(in_service_cgroup("0::/system.slice/picolet.service\n"));
        assert!(!in_service_cgroup("0::/system.slice/picolet.service/supervisor\n"));
        assert!(!in_service_cgroup("0::/user.slice/session-1.scope\n"));
        assert_eq!(join("/", "kubepods"), "/kubepods");
        assert_eq!(join("/a/", "kubepods"), "/a/kubepods");
        assert_eq!(dir(Path::new("/sys/fs/cgroup"), "/a/b"), PathBuf::from("/sys/fs/cgroup/a/b"));
        assert_eq!(dir(Path::new("/sys/fs/cgroup"), "/"), PathBuf::from("/sys/fs/cgroup/"));
    }
}
