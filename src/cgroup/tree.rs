//! The directories of picolet's subtree and the controllers enabled in them.
//!
//! cgroup v2 rules that shape this file:
//! - a controller is usable in a cgroup only when its parent lists it in
//!   `cgroup.subtree_control`, so controllers are enabled top-down;
//! - a cgroup other than the root that enables controllers for its children
//!   may hold no processes: when the tree root is picolet's own cgroup,
//!   picolet and its reaper first move into the `supervisor` leaf;
//! - a cgroup is removed with rmdir once it has no processes and no children.

use super::{dir, join, CgroupError, SUPERVISOR};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

/// Controllers picolet needs along its subtree.
pub const REQUIRED: [&str; 3] = ["cpu", "memory", "pids"];
/// Controllers enabled too when the kernel offers them.
pub const OPTIONAL: [&str; 2] = ["io", "cpuset"];

pub const KUBEPODS: &str = "kubepods";
pub const BURSTABLE: &str = "burstable";
pub const BESTEFFORT: &str = "besteffort";

/// picolet's subtree: the hierarchy's mount point and the tree root in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    fs_root: PathBuf,
    root: String,
}

impl Tree {
    /// `root` is a cgroup path ("/system.slice/picolet.service", "/picolet").
    pub fn new(fs_root: &Path, root: &str) -> Tree {
        let root = if root.starts_with('/') { root.to_string() } else { format!("/{root}") };
        Tree { fs_root: fs_root.to_path_buf(), root }
    }

    #[cfg(test)]
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn kubepods(&self) -> String {
        join(&self.root, KUBEPODS)
    }

    /// The parent of a pod's cgroup for its QoS class.
    pub fn qos_path(&self, qos: &str) -> String {
        match qos {
            "Guaranteed" => self.kubepods(),
            "BestEffort" => join(&self.kubepods(), BESTEFFORT),
            _ => join(&self.kubepods(), BURSTABLE),
        }
    }

    pub fn pod_path(&self, qos: &str, uid: &str) -> String {
        join(&self.qos_path(qos), &format!("pod{uid}"))
    }

    /// A container's `linux.cgroupsPath` (absolute in the v2 hierarchy).
    pub fn container_path(&self, qos: &str, uid: &str, container_id: &str) -> String {
        join(&self.pod_path(qos, uid), container_id)
    }

    pub fn dir(&self, path: &str) -> PathBuf {
        dir(&self.fs_root, path)
    }

    /// Creates the tree: the root, the supervisor leaf holding every process
    /// of the root when `evacuate` (the root is picolet's own cgroup), then
    /// kubepods and the two QoS tiers, with controllers enabled top-down.
    pub fn setup(&self, evacuate: bool) -> Result<(), CgroupError> {
        mkdir(&self.dir(&self.root))?;
        if evacuate {
            self.evacuate()?;
        }
        // From the hierarchy's root down to kubepods: each level enables in
        // its subtree_control what the next one lacks.
        let mut levels = vec!["/".to_string()];
        let mut acc = String::new();
        for part in self.root.split('/').filter(|p| !p.is_empty()) {
            acc = format!("{acc}/{part}");
            levels.push(acc.clone());
        }
        levels.push(self.kubepods());
        let owned_from = levels.len() - 2;
        for (i, pair) in levels.windows(2).enumerate() {
            mkdir(&self.dir(&pair[1]))?;
            self.delegate(&pair[0], &pair[1], i >= owned_from)?;
        }
        for tier in [BURSTABLE, BESTEFFORT] {
            let path = join(&self.kubepods(), tier);
            mkdir(&self.dir(&path))?;
            self.delegate(&self.kubepods(), &path, true)?;
        }
        Ok(())
    }

    /// Makes `parent` hand the wanted controllers to `child`, writing to the
    /// parent's subtree_control only what the child does not have yet (so a
    /// parent owned by systemd is left alone when it already delegates).
    /// Above picolet's root (`owned` false) only the required ones.
    fn delegate(&self, parent: &str, child: &str, owned: bool) -> Result<(), CgroupError> {
        let have = controllers(&self.dir(child).join("cgroup.controllers"))?;
        let offered = controllers(&self.dir(parent).join("cgroup.controllers")).or_else(|e| {
            // The hierarchy's root is the one cgroup that always has them all.
            if parent == "/" { Ok(have.clone()) } else { Err(e) }
        })?;
        let missing: Vec<&str> = wanted(&offered)
            .into_iter()
            .filter(|c| owned || REQUIRED.contains(c))
            .filter(|c| !have.iter().any(|h| h == c))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        enable(&self.dir(parent), &missing)
    }

    /// Moves every process of the root cgroup into the supervisor leaf.
    fn evacuate(&self) -> Result<(), CgroupError> {
        let leaf = self.dir(&join(&self.root, SUPERVISOR));
        mkdir(&leaf)?;
        let procs = self.dir(&self.root).join("cgroup.procs");
        // Processes forked meanwhile land in the root again: a few rounds.
        for _ in 0..10 {
            let text = std::fs::read_to_string(&procs).map_err(|e| CgroupError::new(&procs, e))?;
            let pids: Vec<&str> = text.split_whitespace().collect();
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                move_pid(&leaf, pid)?;
            }
        }
        Err(CgroupError::new(&procs, "processes keep appearing; cannot empty it for the supervisor leaf"))
    }

    /// Creates a pod's cgroup (controllers enabled for it by its QoS tier
    /// and by it for its containers) and writes `files` into it.
    pub fn ensure_pod(&self, qos: &str, uid: &str, files: &[(&str, String)]) -> Result<(), CgroupError> {
        let path = self.pod_path(qos, uid);
        mkdir(&self.dir(&path))?;
        // Without the tier's subtree_control the pod has no cpu.weight etc.
        self.delegate(&self.qos_path(qos), &path, true)?;
        self.write_all(&path, files)?;
        let offered = controllers(&self.dir(&path).join("cgroup.controllers"))?;
        let on = controllers(&self.dir(&path).join("cgroup.subtree_control"))?;
        let missing: Vec<&str> = wanted(&offered).into_iter().filter(|c| !on.iter().any(|h| h == c)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            enable(&self.dir(&path), &missing)
        }
    }

    /// Writes `files` (name, value) into the cgroup at `path`.
    pub fn write_all(&self, path: &str, files: &[(&str, String)]) -> Result<(), CgroupError> {
        for (name, value) in files {
            let f = self.dir(path).join(name);
            std::fs::write(&f, value).map_err(|e| CgroupError::new(&f, format!("writing {value:?}: {e}")))?;
        }
        Ok(())
    }

    /// Removes a pod's cgroup, whatever its QoS class was (a pod's class can
    /// be unknown after a restart), with any container cgroup runc left. A
    /// missing directory is fine.
    pub fn remove_pod(&self, uid: &str) -> Result<(), CgroupError> {
        for qos in ["Guaranteed", "Burstable", "BestEffort"] {
            remove_tree(&self.dir(&self.pod_path(qos, uid)))?;
        }
        Ok(())
    }

    /// The uids of every pod cgroup in the tree.
    pub fn pod_uids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for qos in ["Guaranteed", "Burstable", "BestEffort"] {
            let Ok(entries) = std::fs::read_dir(self.dir(&self.qos_path(qos))) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(uid) = name.strip_prefix("pod").filter(|u| !u.is_empty()) {
                    if e.path().is_dir() {
                        out.push(uid.to_string());
                    }
                }
            }
        }
        out
    }

    /// Removes the cgroups of pods not in `keep` (left by a picolet that
    /// went down before it could remove them); returns their uids.
    pub fn remove_stale(&self, keep: &HashSet<String>) -> Vec<(String, Result<(), CgroupError>)> {
        let mut out = Vec::new();
        for uid in self.pod_uids() {
            if !keep.contains(&uid) {
                let r = self.remove_pod(&uid);
                out.push((uid, r));
            }
        }
        out
    }
}

/// The controllers listed in a cgroup.controllers or subtree_control file.
pub fn controllers(file: &Path) -> Result<Vec<String>, CgroupError> {
    let text = std::fs::read_to_string(file).map_err(|e| CgroupError::new(file, e))?;
    Ok(text.split_whitespace().map(String::from).collect())
}

/// The required and optional controllers `offered` has.
fn wanted(offered: &[String]) -> Vec<&'static str> {
    REQUIRED.iter().chain(OPTIONAL.iter()).copied().filter(|c| offered.iter().any(|o| o == c)).collect()
}

/// Enables `names` in `dir`'s subtree_control, one by one so that an
/// optional controller the kernel refuses does not hide the others.
fn enable(dir: &Path, names: &[&str]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    for name in names {
        if let Err(e) = std::fs::write(&file, format!("+{name}")) {
            if REQUIRED.contains(name) {
                let why = match e.raw_os_error() {
                    Some(nix::libc::EBUSY) => format!("cannot enable {name}: the cgroup holds processes (cgroup v2 allows controllers for children only in a cgroup without processes)"),
                    _ => format!("cannot enable {name}: {e}"),
                };
                return Err(CgroupError::new(&file, why));
            }
            log::debug!("{}: not enabling optional controller {name}: {e}", file.display());
        }
    }
    Ok(())
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(CgroupError::new(dir, format!("creating the cgroup: {e}"))),
        _ => Ok(()),
    }
}

fn move_pid(leaf: &Path, pid: &str) -> Result<(), CgroupError> {
    let file = leaf.join("cgroup.procs");
    match std::fs::write(&file, pid) {
        // Exited since it was listed.
        Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => Ok(()),
        r => r.map_err(|e| CgroupError::new(&file, format!("moving pid {pid}: {e}"))),
    }
}

/// rmdir of a cgroup and the (empty) cgroups below it, deepest first.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        // A cgroup's children are its only subdirectories.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(|e| CgroupError::new(dir, format!("removing the cgroup: {e}"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A temp dir standing in for /sys/fs/cgroup. Real cgroupfs fills new
    /// directories itself; here `fake_mkdir` writes what the kernel would.
    pub struct FakeFs(pub PathBuf);

    impl FakeFs {
        pub fn new(tag: &str) -> FakeFs {
            let d = std::env::temp_dir().join(format!("picolet-cgtree-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").unwrap();
            std::fs::write(d.join("cgroup.subtree_control"), "").unwrap();
            FakeFs(d)
        }

        /// Pre-creates the cgroups at `paths` with the files the kernel would
        /// put there (controllers as offered by `offered`).
        pub fn cgroup(&self, path: &str, offered: &str, procs: &str) {
            let d = dir(&self.0, path);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.controllers"), offered).unwrap();
            std::fs::write(d.join("cgroup.subtree_control"), "").unwrap();
            std::fs::write(d.join("cgroup.procs"), procs).unwrap();
        }

        pub fn read(&self, path: &str, file: &str) -> String {
            std::fs::read_to_string(dir(&self.0, path).join(file)).unwrap_or_default()
        }
    }

    impl Drop for FakeFs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn layout_paths() {
        let t = Tree::new(Path::new("/sys/fs/cgroup"), "/system.slice/picolet.service");
        assert_eq!(t.kubepods(), "/system.slice/picolet.service/kubepods");
        assert_eq!(t.pod_path("Guaranteed", "u1"), "/system.slice/picolet.service/kubepods/podu1");
        assert_eq!(t.pod_path("Burstable", "u1"), "/system.slice/picolet.service/kubepods/burstable/podu1");
        assert_eq!(t.container_path("BestEffort", "u1", "u1-c-0"), "/system.slice/picolet.service/kubepods/besteffort/podu1/u1-c-0");
        assert_eq!(Tree::new(Path::new("/x"), "/").kubepods(), "/kubepods");
        assert_eq!(Tree::new(Path::new("/x"), "t").root(), "/t");
    }

    #[test]
    fn setup_enables_controllers_top_down() {
        let fs = FakeFs::new("setup");
        // The fake does not propagate: each level is pre-created the way the
        // kernel would show it before the parent's write.
        fs.cgroup("/a", "cpu io memory pids", "");
        fs.cgroup("/a/kubepods", "cpu memory pids", "");
        fs.cgroup("/a/kubepods/burstable", "", "");
        fs.cgroup("/a/kubepods/besteffort", "", "");
        let t = Tree::new(&fs.0, "/a");
        t.setup(false).unwrap();
        // /a already had the required ones: the hierarchy's root (not
        // picolet's) was not written, not even for the optional cpuset.
        assert_eq!(fs.read("/", "cgroup.subtree_control"), "");
        // kubepods lacked io, which /a offers: one write per controller (the
        // fake file keeps the last one).
        assert_eq!(fs.read("/a", "cgroup.subtree_control"), "+io");
        assert_eq!(fs.read("/a/kubepods", "cgroup.subtree_control"), "+pids");
        assert!(!fs.0.join("a/supervisor").exists());
    }

    #[test]
    fn setup_reports_a_refused_controller() {
        let fs = FakeFs::new("refused");
        fs.cgroup("/a", "cpu memory pids", "");
        fs.cgroup("/a/kubepods", "", "");
        // subtree_control as a directory: every write fails.
        std::fs::remove_file(fs.0.join("a/cgroup.subtree_control")).unwrap();
        std::fs::create_dir(fs.0.join("a/cgroup.subtree_control")).unwrap();
        let e = Tree::new(&fs.0, "/a").setup(false).unwrap_err();
        assert!(e.to_string().contains("a/cgroup.subtree_control: cannot enable cpu"), "{e}");
    }

    #[test]
    fn evacuates_into_the_supervisor_leaf() {
        let fs = FakeFs::new("evac");
        for p in ["/svc", "/svc/kubepods", "/svc/kubepods/burstable", "/svc/kubepods/besteffort"] {
            fs.cgroup(p, "cpu memory pids", "");
        }
        Tree::new(&fs.0, "/svc").setup(true).unwrap();
        assert!(fs.0.join("svc/supervisor").is_dir());
        // The fake's cgroup.procs never empties (the kernel's would): every
        // round moves the listed pids into the leaf, then it gives up.
        std::fs::write(fs.0.join("svc/cgroup.procs"), "101\n102\n").unwrap();
        let e = Tree::new(&fs.0, "/svc").setup(true).unwrap_err();
        assert!(e.to_string().contains("svc/cgroup.procs: processes keep appearing"), "{e}");
        assert_eq!(fs.read("/svc/supervisor", "cgroup.procs"), "102");
    }

    #[test]
    fn pods_are_created_removed_and_swept() {
        let fs = FakeFs::new("pods");
        let t = Tree::new(&fs.0, "/r");
        for p in ["/r", "/r/kubepods", "/r/kubepods/burstable", "/r/kubepods/besteffort"] {
            fs.cgroup(p, "cpu memory pids", "");
        }
        // The kernel shows a new pod's cgroup without controllers until its
        // tier enables them (the fake stays empty: the tier's write is what counts).
        fs.cgroup("/r/kubepods/burstable/podu1", "", "");
        t.ensure_pod("Burstable", "u1", &[("cpu.weight", "4".into()), ("pids.max", "max".into())]).unwrap();
        assert_eq!(fs.read("/r/kubepods/burstable", "cgroup.subtree_control"), "+pids");
        std::fs::write(fs.0.join("r/kubepods/burstable/podu1/cgroup.controllers"), "cpu memory pids").unwrap();
        t.ensure_pod("Burstable", "u1", &[("cpu.weight", "4".into()), ("pids.max", "max".into())]).unwrap();
        assert_eq!(fs.read("/r/kubepods/burstable/podu1", "cpu.weight"), "4");
        assert_eq!(fs.read("/r/kubepods/burstable/podu1", "cgroup.subtree_control"), "+pids");
        // runc's container leaf, then the pod goes: the fake's files stop
        // rmdir, so empty them as the kernel's would not exist.
        for p in ["/r/kubepods/podu2/c1", "/r/kubepods/besteffort/podu3"] {
            std::fs::create_dir_all(dir(&fs.0, p)).unwrap();
        }
        let mut uids = t.pod_uids();
        uids.sort();
        assert_eq!(uids, vec!["u1", "u2", "u3"]);
        t.remove_pod("u2").unwrap();
        assert!(!fs.0.join("r/kubepods/podu2").exists());
        t.remove_pod("u2").unwrap();
        let keep: HashSet<String> = ["u1".to_string()].into();
        let swept: Vec<String> = t.remove_stale(&keep).into_iter().filter(|(_, r)| r.is_ok()).map(|(u, _)| u).collect();
        assert_eq!(swept, vec!["u3"]);
        assert!(!fs.0.join("r/kubepods/besteffort/podu3").exists());
        // u1 is kept (and its fake files would stop rmdir anyway).
        assert!(fs.0.join("r/kubepods/burstable/podu1").exists());
    }
}
