//! CPU and memory usage of a container's cgroup and of the node, read from
//! the kernel's files: a cgroup v2 hierarchy (`cpu.stat`, `memory.current`,
//! `memory.stat`) or the v1 controllers (`cpuacct.usage`,
//! `memory.usage_in_bytes`, `memory.stat`), found through the container's
//! `/proc/<pid>/cgroup`; the node's from `/proc/stat`, `/proc/meminfo` and
//! `/proc/vmstat`. Working set is usage minus inactive file pages, as
//! upstream's cAdvisor computes it.
//!
//! Roots (`/sys/fs/cgroup`, `/proc`) are parameters ([`Roots`]), so tests
//! lay out fixture files in a temporary directory. Not here: rates (the
//! caller keeps samples), pressure (PSI), I/O, swap.

use std::io;
use std::path::{Path, PathBuf};

// cgroup v2 files.
pub const CPU_STAT: &str = "cpu.stat";
pub const MEMORY_CURRENT: &str = "memory.current";
pub const MEMORY_MAX: &str = "memory.max";
pub const MEMORY_STAT: &str = "memory.stat";
// cgroup v1 files, each in its controller's hierarchy.
pub const CPUACCT_USAGE: &str = "cpuacct.usage";
pub const MEMORY_USAGE_IN_BYTES: &str = "memory.usage_in_bytes";
pub const MEMORY_LIMIT_IN_BYTES: &str = "memory.limit_in_bytes";
/// The processes of a cgroup (v1 and v2).
pub const CGROUP_PROCS: &str = "cgroup.procs";
/// Processes whose resident sets the memory fallback adds up, at most.
const MAX_PROCS: usize = 1024;

/// Kernel ticks per second in `/proc/stat`: USER_HZ, 100 on every Linux
/// architecture picolet runs on (it is ABI, independent of CONFIG_HZ).
const USER_HZ: u64 = 100;
/// A v1 memory limit at or above this means "no limit" (the kernel reports
/// PAGE_COUNTER_MAX rounded to pages, just below i64::MAX).
const V1_NO_LIMIT: u64 = 1 << 62;

/// Memory figures in bytes (page faults in counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    /// `usage` minus inactive file pages (reclaimable cache), not below 0.
    pub working_set: u64,
    /// Anonymous memory (v2 `anon`, v1 `total_rss`).
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The cgroup's memory limit, None when unlimited.
    pub limit: Option<u64>,
}

/// A cgroup's usage; each part is None when its controller is missing or
/// unreadable (a Raspberry Pi without `cgroup_enable=memory` still has CPU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time of all its tasks, in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<Memory>,
}

/// The node's usage: CPU from `/proc/stat`, memory from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub cpu_ns: u64,
    pub memory: Memory,
    /// `MemTotal`, the node's memory capacity.
    pub memory_total: u64,
    /// Boot time, in seconds since the epoch (`btime`).
    pub boot_time: u64,
}

/// Where a process's cgroup is, relative to the hierarchy root(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// cgroup v2: one path under the unified hierarchy.
    V2(String),
    /// cgroup v1: the cpuacct and memory controllers' paths (None when the
    /// controller is not mounted).
    V1 { cpuacct: Option<String>, memory: Option<String> },
}

/// Reads `/proc/<pid>/cgroup` text: the `0::` line on a v2 host, the
/// `cpuacct` and `memory` controllers' lines on a v1 host. `unified`: the
/// host's hierarchy is v2 (a hybrid host also has a `0::` line, without
/// controllers, so the caller says which applies).
pub fn locate(proc_pid_cgroup: &str, unified: bool) -> Option<Location> {
    let lines = proc_pid_cgroup.lines().filter_map(|l| {
        let mut parts = l.splitn(3, ':');
        Some((parts.next()?, parts.next()?, parts.next()?.trim()))
    });
    if unified {
        return lines.clone().find(|(h, c, _)| *h == "0" && c.is_empty()).map(|(_, _, p)| Location::V2(p.to_string()));
    }
    let find = |name: &str| lines.clone().find(|(_, c, _)| c.split(',').any(|x| x == name)).map(|(_, _, p)| p.to_string());
    let (cpuacct, memory) = (find("cpuacct"), find("memory"));
    (cpuacct.is_some() || memory.is_some()).then_some(Location::V1 { cpuacct, memory })
}

/// `key value` lines (memory.stat, cpu.stat, /proc/vmstat): the value of `key`.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// cgroup v2 CPU: `usage_usec` of cpu.stat, in nanoseconds.
pub fn parse_v2_cpu(cpu_stat: &str) -> Option<u64> {
    field(cpu_stat, "usage_usec").map(|us| us.saturating_mul(1000))
}

/// cgroup v2 memory from memory.current, memory.stat and memory.max.
pub fn parse_v2_memory(current: &str, stat: &str, max: &str) -> Option<Memory> {
    let usage = number(current)?;
    let inactive_file = field(stat, "inactive_file").unwrap_or(0);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: field(stat, "anon").unwrap_or(0),
        page_faults: field(stat, "pgfault").unwrap_or(0),
        major_page_faults: field(stat, "pgmajfault").unwrap_or(0),
        limit: number(max), // "max" does not parse: no limit
    })
}

/// cgroup v1 CPU: cpuacct.usage is already in nanoseconds.
pub fn parse_v1_cpu(cpuacct_usage: &str) -> Option<u64> {
    number(cpuacct_usage)
}

/// cgroup v1 memory from memory.usage_in_bytes, memory.stat (the `total_`
/// figures include child cgroups) and memory.limit_in_bytes.
pub fn parse_v1_memory(usage_in_bytes: &str, stat: &str, limit_in_bytes: &str) -> Option<Memory> {
    let usage = number(usage_in_bytes)?;
    let inactive_file = field(stat, "total_inactive_file").unwrap_or(0);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: field(stat, "total_rss").unwrap_or(0),
        page_faults: field(stat, "total_pgfault").unwrap_or(0),
        major_page_faults: field(stat, "total_pgmajfault").unwrap_or(0),
        limit: number(limit_in_bytes).filter(|&l| l < V1_NO_LIMIT),
    })
}

/// `/proc/stat`: (busy CPU time of all CPUs in nanoseconds, boot time).
/// Busy is everything but idle and iowait; guest time is already in user.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let cpu = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = cpu.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum();
    let btime = text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(number).unwrap_or(0);
    Some((busy.saturating_mul(1_000_000_000 / USER_HZ), btime))
}

/// `/proc/meminfo` (+ `/proc/vmstat` for page faults): the node's memory as
/// upstream's root container shows it: usage = MemTotal - MemFree, working
/// set = usage - Inactive(file). Returns (memory, MemTotal).
pub fn parse_meminfo(meminfo: &str, vmstat: &str) -> Option<(Memory, u64)> {
    let kb = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|v| v * 1024)
        })
    };
    let total = kb("MemTotal")?;
    let usage = total.saturating_sub(kb("MemFree")?);
    let memory = Memory {
        usage,
        working_set: usage.saturating_sub(kb("Inactive(file)").unwrap_or(0)),
        rss: kb("AnonPages").unwrap_or(0),
        page_faults: field(vmstat, "pgfault").unwrap_or(0),
        major_page_faults: field(vmstat, "pgmajfault").unwrap_or(0),
        limit: None,
    };
    Some((memory, total))
}

/// A process's resident set from `/proc/<pid>/status`: (VmRSS, RssAnon) in bytes.
pub fn parse_status_rss(status: &str) -> Option<(u64, u64)> {
    let kb = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((kb("VmRSS")? * 1024, kb("RssAnon").unwrap_or(0) * 1024))
}

/// The roots stats are read under.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Where cgroup hierarchies are mounted (`/sys/fs/cgroup`).
    pub cgroup: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
}

impl Default for Roots {
    fn default() -> Roots {
        Roots { cgroup: PathBuf::from("/sys/fs/cgroup"), proc: PathBuf::from("/proc") }
    }
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl Roots {
    /// A cgroup v2 (unified) hierarchy is mounted at the cgroup root.
    pub fn unified(&self) -> bool {
        self.cgroup.join("cgroup.controllers").exists()
    }

    fn dir(&self, controller: &str, path: &str) -> PathBuf {
        self.cgroup.join(controller).join(path.trim_start_matches('/'))
    }

    /// The cgroup usage of process `pid` (a container's init).
    pub fn pid_usage(&self, pid: u32) -> io::Result<Usage> {
        let text = read(&self.proc.join(pid.to_string()).join("cgroup"))?;
        let unified = self.unified();
        let loc = locate(&text, unified)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("pid {pid}: no cgroup for cpu or memory in /proc/{pid}/cgroup")))?;
        Ok(self.usage(&loc))
    }

    /// The usage of the cgroup at `loc`; parts that cannot be read are None.
    pub fn usage(&self, loc: &Location) -> Usage {
        let get = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        match loc {
            Location::V2(path) => {
                let dir = self.dir("", path);
                let memory = get(&dir, MEMORY_CURRENT).and_then(|cur| {
                    let stat = get(&dir, MEMORY_STAT).unwrap_or_default();
                    parse_v2_memory(&cur, &stat, &get(&dir, MEMORY_MAX).unwrap_or_default())
                });
                let memory = memory.or_else(|| self.procs_memory(&dir));
                Usage { cpu_ns: get(&dir, CPU_STAT).as_deref().and_then(parse_v2_cpu), memory }
            }
            Location::V1 { cpuacct, memory } => {
                let cpu_ns = cpuacct.as_ref().and_then(|p| get(&self.dir("cpuacct", p), CPUACCT_USAGE)).as_deref().and_then(parse_v1_cpu);
                let from_cgroup = memory.as_ref().and_then(|p| {
                    let dir = self.dir("memory", p);
                    let usage = get(&dir, MEMORY_USAGE_IN_BYTES)?;
                    let stat = get(&dir, MEMORY_STAT).unwrap_or_default();
                    parse_v1_memory(&usage, &stat, &get(&dir, MEMORY_LIMIT_IN_BYTES).unwrap_or_default())
                });
                let memory = from_cgroup.or_else(|| self.procs_memory(&self.dir("cpuacct", cpuacct.as_deref()?)));
                Usage { cpu_ns, memory }
            }
        }
    }

    /// Memory as the sum of the resident sets of the processes in the cgroup
    /// at `dir` (at most [`MAX_PROCS`]): all of it counts as working set.
    fn procs_memory(&self, dir: &Path) -> Option<Memory> {
        let procs = std::fs::read_to_string(dir.join(CGROUP_PROCS)).ok()?;
        let mut sum: Option<Memory> = None;
        for pid in procs.lines().take(MAX_PROCS) {
            let status = std::fs::read_to_string(self.proc.join(pid.trim()).join("status")).ok();
            let Some((rss, anon)) = status.as_deref().and_then(parse_status_rss) else { continue };
            let m = sum.get_or_insert_with(Memory::default);
            m.usage += rss;
            m.working_set += rss;
            m.rss += anon;
        }
        sum
    }

    /// The node's CPU and memory.
    pub fn node_usage(&self) -> io::Result<NodeUsage> {
        let stat = read(&self.proc.join("stat"))?;
        let (cpu_ns, boot_time) =
            parse_proc_stat(&stat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat: no cpu line"))?;
        let meminfo = read(&self.proc.join("meminfo"))?;
        let vmstat = std::fs::read_to_string(self.proc.join("vmstat")).unwrap_or_default();
        let (memory, memory_total) =
            parse_meminfo(&meminfo, &vmstat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/meminfo: no MemTotal/MemFree"))?;
        Ok(NodeUsage { cpu_ns, memory, memory_total, boot_time })
    }

    /// (pid_max, number of threads) for the Summary's rlimit.
    pub fn pids(&self) -> (Option<u64>, Option<u64>) {
        let max = std::fs::read_to_string(self.proc.join("sys/kernel/pid_max")).ok().as_deref().and_then(number);
        // loadavg's fourth field is running/total scheduling entities.
        let cur = std::fs::read_to_string(self.proc.join("loadavg"))
            .ok()
            .and_then(|l| l.split_whitespace().nth(3).and_then(|f| f.split_once('/')).and_then(|(_, t)| t.parse().ok()));
        (max, cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_v2_and_v1_cgroups() {
        let v2 = "0::/system.slice/picolet.service/kubepods/podu1/c1\n";
        assert_eq!(locate(v2, true), Some(Location::V2("/system.slice/picolet.service/kubepods/podu1/c1".into())));
        // A hybrid host: v1 controllers plus an empty unified line.
        let v1 = "12:pids:/c1\n4:memory:/process_api/x/c1\n2:cpu,cpuacct:/c1\n1:name=systemd:/c1\n0::/\n";
        assert_eq!(
            locate(v1, false),
            Some(Location::V1 { cpuacct: Some("/c1".into()), memory: Some("/process_api/x/c1".into()) })
        );
        assert_eq!(locate("3:cpuacct:/a\n", false), Some(Location::V1 { cpuacct: Some("/a".into()), memory: None }));
        assert_eq!(locate("1:name=systemd:/\n", false), None);
        assert_eq!(locate("1:name=systemd:/\n", true), None);
    }

    #[test]
    fn parses_v2_files() {
        assert_eq!(parse_v2_cpu("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n"), Some(2_500_000));
        let stat = "anon 1000\nfile 9000\ninactive_file 4000\nactive_file 5000\npgfault 77\npgmajfault 3\n";
        let m = parse_v2_memory("12000\n", stat, "max\n").unwrap();
        assert_eq!(m, Memory { usage: 12000, working_set: 8000, rss: 1000, page_faults: 77, major_page_faults: 3, limit: None });
        assert_eq!(parse_v2_memory("100", "inactive_file 400\n", "1048576").unwrap().working_set, 0, "never below zero");
        assert_eq!(parse_v2_memory("100", "", "1048576").unwrap().limit, Some(1048576));
        assert_eq!(parse_v2_memory("", "", ""), None);
    }

    #[test]
    fn parses_v1_files() {
        assert_eq!(parse_v1_cpu("123456789\n"), Some(123456789));
        let stat = "cache 5\nrss 1\ninactive_file 1\ntotal_cache 9000\ntotal_rss 2000\ntotal_inactive_file 3000\ntotal_pgfault 10\ntotal_pgmajfault 1\n";
        let m = parse_v1_memory("11000\n", stat, "9223372036854771712\n").unwrap();
        assert_eq!(m, Memory { usage: 11000, working_set: 8000, rss: 2000, page_faults: 10, major_page_faults: 1, limit: None });
        assert_eq!(parse_v1_memory("1", "", "536870912").unwrap().limit, Some(536870912));
    }

    #[test]
    fn parses_node_files() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 9 0\ncpu0 100 20 30 4000 50 6 7 8 9 0\nintr 1\nbtime 1700000000\n";
        // user+nice+system+irq+softirq+steal = 171 ticks = 1.71 s
        assert_eq!(parse_proc_stat(stat), Some((1_710_000_000, 1700000000)));
        let meminfo = "MemTotal:        1000 kB\nMemFree:          400 kB\nMemAvailable:     700 kB\nInactive(file):   100 kB\nAnonPages:        250 kB\n";
        let (m, total) = parse_meminfo(meminfo, "pgfault 5\npgmajfault 2\n").unwrap();
        assert_eq!(total, 1000 * 1024);
        assert_eq!(m, Memory { usage: 600 * 1024, working_set: 500 * 1024, rss: 250 * 1024, page_faults: 5, major_page_faults: 2, limit: None });
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_a_pids_cgroup_under_given_roots() {
        let base = std::env::temp_dir().join(format!("picolet-cgstats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // v1: separate cpuacct and memory hierarchies.
        let v1 = Roots { cgroup: base.join("v1/cg"), proc: base.join("v1/proc") };
        write(&v1.proc, "42/cgroup", "4:memory:/m/c1\n2:cpu,cpuacct:/c1\n");
        write(&v1.cgroup, "cpuacct/c1/cpuacct.usage", "5000000000\n");
        write(&v1.cgroup, "memory/m/c1/memory.usage_in_bytes", "4096000\n");
        write(&v1.cgroup, "memory/m/c1/memory.stat", "total_inactive_file 96000\ntotal_rss 1000000\n");
        assert!(!v1.unified());
        let u = v1.pid_usage(42).unwrap();
        assert_eq!(u.cpu_ns, Some(5_000_000_000));
        assert_eq!(u.memory.unwrap().working_set, 4_000_000);
        assert!(v1.pid_usage(43).unwrap_err().to_string().contains("43/cgroup"));
        // No memory controller (a Pi without cgroup_enable=memory): the
        // processes of the cpuacct group.
        write(&v1.proc, "44/cgroup", "2:cpu,cpuacct:/c1\n");
        write(&v1.cgroup, "cpuacct/c1/cgroup.procs", "44\n");
        write(&v1.proc, "44/status", "VmRSS:\t 2048 kB\nRssAnon:\t 1024 kB\n");
        let m = v1.pid_usage(44).unwrap().memory.unwrap();
        assert_eq!((m.working_set, m.rss), (2048 * 1024, 1024 * 1024));

        // v2, memory controller not enabled for the group: CPU from the
        // cgroup, memory from its processes' resident sets.
        let v2 = Roots { cgroup: base.join("v2/cg"), proc: base.join("v2/proc") };
        write(&v2.cgroup, "cgroup.controllers", "cpu pids\n");
        write(&v2.proc, "7/cgroup", "0::/kubepods/podu/c\n");
        write(&v2.cgroup, "kubepods/podu/c/cpu.stat", "usage_usec 1500\n");
        write(&v2.cgroup, "kubepods/podu/c/cgroup.procs", "7\n8\n9\n");
        write(&v2.proc, "7/status", "Name:\tsh\nVmRSS:\t    1000 kB\nRssAnon:\t     200 kB\nRssFile:\t     800 kB\n");
        write(&v2.proc, "8/status", "Name:\tsleep\nVmRSS:\t     500 kB\nRssAnon:\t     100 kB\n");
        let u = v2.pid_usage(7).unwrap();
        assert_eq!(u.cpu_ns, Some(1_500_000));
        let m = Memory { usage: 1500 * 1024, working_set: 1500 * 1024, rss: 300 * 1024, ..Default::default() };
        assert_eq!(u.memory, Some(m), "pid 9 exited meanwhile: skipped");
        // Nothing to go by: no memory at all.
        std::fs::remove_file(v2.cgroup.join("kubepods/podu/c/cgroup.procs")).unwrap();
        assert_eq!(v2.pid_usage(7).unwrap(), Usage { cpu_ns: Some(1_500_000), memory: None });

        write(&v2.proc, "stat", "cpu  1 0 1 5 0 0 0 0 0 0\nbtime 10\n");
        write(&v2.proc, "meminfo", "MemTotal: 100 kB\nMemFree: 50 kB\n");
        write(&v2.proc, "loadavg", "0.00 0.01 0.05 2/345 999\n");
        write(&v2.proc, "sys/kernel/pid_max", "4194304\n");
        let n = v2.node_usage().unwrap();
        assert_eq!((n.cpu_ns, n.boot_time, n.memory_total, n.memory.usage), (20_000_000, 10, 102400, 51200));
        assert_eq!(v2.pids(), (Some(4194304), Some(345)));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
