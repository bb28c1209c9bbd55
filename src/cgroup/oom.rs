//! Whether the kernel's OOM killer killed a process in a container's cgroup.
//! The reaper reads this when a container's init exits, before anyone runs
//! `runc delete` (which removes the cgroup and its counters), and keeps the
//! answer in exit.json, so it survives picolet restarts.

use std::path::{Path, PathBuf};

/// The cgroup v2 directory of a process, from its `/proc/<pid>/cgroup` text.
pub fn cgroup_dir(fs_root: &Path, proc_pid_cgroup: &str) -> Option<PathBuf> {
    let path = proc_pid_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    Some(super::dir(fs_root, path))
}

/// `oom_kill` from memory.events text (counts kills in the cgroup and below).
pub fn oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// True when `dir`'s memory.events counts an OOM kill; false when it does
/// not or cannot be read (cgroup v1, no memory controller).
pub fn killed(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("memory.events")).is_ok_and(|t| oom_kills(&t) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kill_counts() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(events), 1);
        assert_eq!(oom_kills("low 0\noom 0\noom_kill 0\n"), 0);
        assert_eq!(oom_kills(""), 0);
        let root = std::env::temp_dir().join(format!("picolet-oom-{}", std::process::id()));
        let dir = cgroup_dir(&root, "0::/k/podu/c1\n").unwrap();
        assert_eq!(dir, root.join("k/podu/c1"));
        assert_eq!(cgroup_dir(&root, "4:memory:/x\n"), None);
        assert!(!killed(&dir));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.events"), events).unwrap();
        assert!(killed(&dir));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
