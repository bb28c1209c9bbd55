//! Exec in a running container without runc: enter its namespaces and become
//! its process (user, groups, capabilities, rlimits, no_new_privs, env, cwd)
//! with one fork+exec, as `runc exec` would from the bundle's config.json.
//! `runc exec` is two Go process starts (~18 ms wall, ~17 ms CPU per exec);
//! this is one fork (~1 ms wall and CPU, tests/bench/probes.sh, x86_64).
//!
//! Written from the kernel man pages (setns(2), capabilities(7), prctl(2),
//! capset(2), pid_namespaces(7)). Anything this does not reproduce
//! (seccomp, AppArmor/SELinux, user/time namespaces, a terminal, umask,
//! ambient caps) makes `prepare` fail, and the caller falls back to runc.
//!
//! cgroups: on a cgroup v2 host the child moves itself into the container's
//! cgroup before anything else (writing 0 to its `cgroup.procs`, opened by
//! the parent), so the command and all it forks count against the
//! container's limits from its first instruction. On cgroup v1 hosts that is
//! skipped: the command stays in picolet's cgroups (picolet sets no
//! container limits there).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Error, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::libc;
use serde_json::Value;

/// Capability numbers, index = number (include/uapi/linux/capability.h).
const CAPS: [&str; 41] = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
];

fn unsupported(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported, what.into())
}

/// Everything the child needs, opened and computed before fork: after fork
/// (in a multi-threaded parent) the child may only make plain syscalls.
struct Plan {
    pid_ns: File,
    /// ipc, uts, net, cgroup (when the container has one), then mnt: mnt
    /// last, since after it the host's /proc paths are gone.
    ns: Vec<(File, libc::c_int)>,
    /// The container's root, reached through /proc/<pid>/root.
    root: File,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    /// Bit masks, cap number n = bit n.
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    last_cap: u32,
    rlimits: Vec<(libc::c_int, libc::rlimit)>,
    no_new_privs: bool,
    env: Vec<(String, String)>,
    /// The container's cgroup v2 `cgroup.procs`, None on v1 hosts.
    cgroup_procs: Option<File>,
}

/// The container's init pid, from runc's state, checked against
/// /proc/<pid>/stat's start time so a reused pid is never entered.
fn init_pid(runtime_root: &Path, id: &str) -> io::Result<(i32, u64)> {
    let state = std::fs::read_to_string(runtime_root.join(id).join("state.json"))?;
    let num = |key: &str| -> io::Result<u64> {
        let at = state.find(key).ok_or_else(|| unsupported(format!("{key} not in runc state")))? + key.len();
        let digits: String = state[at..].trim_start_matches([':', ' ']).chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().map_err(|_| unsupported(format!("bad {key}")))
    };
    Ok((num("\"init_process_pid\"")? as i32, num("\"init_process_start\"")?))
}

/// Field 22 (starttime) of /proc/<pid>/stat.
fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').ok_or_else(|| unsupported("bad stat"))? + 1..];
    rest.split_whitespace().nth(19).and_then(|s| s.parse().ok()).ok_or_else(|| unsupported("bad stat"))
}

fn caps(v: &Value, set: &str) -> io::Result<u64> {
    let mut mask = 0u64;
    for name in v[set].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = name.as_str().unwrap_or_default();
        let n = CAPS.iter().position(|c| Some(*c) == name.strip_prefix("CAP_")).ok_or_else(|| unsupported(format!("capability {name}")))?;
        mask |= 1 << n;
    }
    Ok(mask)
}

fn rlimit(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        _ => return None,
    } as libc::c_int)
}

fn prepare(runtime_root: &Path, id: &str, bundle: &Path) -> io::Result<Plan> {
    let spec: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    let p = &spec["process"];
    let l = &spec["linux"];
    for (what, set) in [
        ("seccomp", !l["seccomp"].is_null()),
        ("apparmorProfile", p["apparmorProfile"].as_str().is_some_and(|s| !s.is_empty())),
        ("selinuxLabel", p["selinuxLabel"].as_str().is_some_and(|s| !s.is_empty())),
        ("terminal", p["terminal"].as_bool() == Some(true)),
        ("umask", !p["user"]["umask"].is_null()),
        ("ambient capabilities", p["capabilities"]["ambient"].as_array().is_some_and(|a| !a.is_empty())),
    ] {
        if set {
            return Err(unsupported(what));
        }
    }
    let mut has_cgroup_ns = false;
    for ns in l["namespaces"].as_array().map(Vec::as_slice).unwrap_or_default() {
        match ns["type"].as_str().unwrap_or_default() {
            "user" | "time" => return Err(unsupported(format!("{} namespace", ns["type"]))),
            "cgroup" => has_cgroup_ns = true,
            _ => {}
        }
    }
    let (pid, start) = init_pid(runtime_root, id)?;
    let proc_ = format!("/proc/{pid}");
    let open = |name: &str| File::open(format!("{proc_}/{name}"));
    let mut ns = vec![(open("ns/ipc")?, libc::CLONE_NEWIPC), (open("ns/uts")?, libc::CLONE_NEWUTS), (open("ns/net")?, libc::CLONE_NEWNET)];
    if has_cgroup_ns {
        ns.push((open("ns/cgroup")?, libc::CLONE_NEWCGROUP));
    }
    ns.push((open("ns/mnt")?, libc::CLONE_NEWNS));
    let pid_ns = open("ns/pid")?;
    let root = open("root")?;
    // Checked after opening: the files belong to the process that had this
    // start time, the container's init, not to a later owner of the pid.
    if start_time(pid)? != start {
        return Err(Error::new(ErrorKind::NotFound, "container init is gone"));
    }
    let cgroup_procs = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let cg = std::fs::read_to_string(format!("{proc_}/cgroup"))?;
        let rel = cg.lines().find_map(|l| l.strip_prefix("0::")).ok_or_else(|| unsupported("no cgroup v2 path"))?;
        let path = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')).join("cgroup.procs");
        let f = std::fs::OpenOptions::new().write(true).open(&path);
        Some(f.map_err(|e| Error::new(e.kind(), format!("opening {}: {e}", path.display())))?)
    } else {
        None
    };
    let user = &p["user"];
    let c = &p["capabilities"];
    let mut rlimits = Vec::new();
    for r in p["rlimits"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let ty = r["type"].as_str().unwrap_or_default();
        let res = rlimit(ty).ok_or_else(|| unsupported(format!("rlimit {ty}")))?;
        let lim = libc::rlimit { rlim_cur: r["soft"].as_u64().unwrap_or(0) as _, rlim_max: r["hard"].as_u64().unwrap_or(0) as _ };
        rlimits.push((res, lim));
    }
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let env = p["env"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    Ok(Plan {
        pid_ns,
        ns,
        root,
        cwd: CString::new(p["cwd"].as_str().unwrap_or("/")).map_err(|_| unsupported("cwd"))?,
        uid: user["uid"].as_u64().unwrap_or(0) as _,
        gid: user["gid"].as_u64().unwrap_or(0) as _,
        groups: user["additionalGids"].as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(|g| g.as_u64().map(|g| g as _)).collect(),
        bounding: caps(c, "bounding")?,
        effective: caps(c, "effective")?,
        permitted: caps(c, "permitted")?,
        inheritable: caps(c, "inheritable")?,
        last_cap,
        rlimits,
        no_new_privs: p["noNewPrivileges"].as_bool().unwrap_or(false),
        env,
        cgroup_procs,
    })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 { Err(Error::last_os_error()) } else { Ok(()) }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522; // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set

/// Runs in the child between fork and exec (single-threaded): only syscalls
/// on what `prepare` made, no allocation.
fn enter(p: &Plan) -> io::Result<()> {
    if let Some(f) = &p.cgroup_procs {
        // "0" is the writer itself. First, while still in picolet's cgroup
        // namespace, where both cgroups are visible (cgroups(7)).
        if unsafe { libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
            return Err(Error::last_os_error());
        }
    }
    for (f, flag) in &p.ns {
        check(unsafe { libc::setns(f.as_raw_fd(), *flag) })?;
    }
    // setns(CLONE_NEWNS) leaves us at the namespace's root, but the
    // container pivoted into its rootfs: take root and cwd from its init.
    check(unsafe { libc::fchdir(p.root.as_raw_fd()) })?;
    check(unsafe { libc::chroot(c".".as_ptr()) })?;
    // Own session: picolet's terminal signals and process group stay out.
    unsafe { libc::setsid() };
    for (res, lim) in &p.rlimits {
        check(unsafe { libc::setrlimit(*res as _, lim) })?;
    }
    // Bounding set first: dropping needs CAP_SETPCAP, which we still have.
    for cap in 0..=p.last_cap.min(63) {
        if p.bounding & (1 << cap) == 0 {
            check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
        }
    }
    // Keep the permitted set across setuid to a non-root uid; capset below
    // then sets exactly the config's sets, as runc does.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })?;
    check(unsafe { libc::setgroups(p.groups.len() as _, p.groups.as_ptr()) })?;
    check(unsafe { libc::setgid(p.gid) })?;
    check(unsafe { libc::setuid(p.uid) })?;
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) })?;
    let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
    let word = |m: u64, i: u32| (m >> (32 * i)) as u32;
    let data = [0, 1].map(|i| CapData { effective: word(p.effective, i), permitted: word(p.permitted, i), inheritable: word(p.inheritable, i) });
    check(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } as libc::c_int)?;
    // As the container's user, like runc: the cwd may be readable only by it.
    check(unsafe { libc::chdir(p.cwd.as_ptr()) })?;
    if p.no_new_privs {
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    }
    Ok(())
}

/// Starts `cmd` inside container `id`; stdout and stderr go to `out`.
/// Blocking (file reads and a fork): call it off the executor.
///
/// Returns a plain std `Child`: the spawning thread sits in the container's
/// pid namespace, where no thread can be created (clone(2): EINVAL), so
/// nothing there may lazily start a helper thread (async-process would).
pub fn spawn(runtime_root: &Path, id: &str, bundle: &Path, cmd: &[String], out: File) -> io::Result<Child> {
    let plan = prepare(runtime_root, id, bundle)?;
    let (prog, args) = cmd.split_first().ok_or_else(|| unsupported("empty command"))?;
    let err = out.try_clone()?;
    // The pid namespace applies to children only (pid_namespaces(7)), so the
    // spawn runs on a thread of its own that joins it and then ends.
    let child = std::thread::scope(|s| {
        s.spawn(move || {
            check(unsafe { libc::setns(plan.pid_ns.as_raw_fd(), libc::CLONE_NEWPID) })?;
            let mut c = Command::new(prog);
            // std execs with execvp after installing this env, so a bare
            // name is looked up in the container's PATH, inside its root.
            c.args(args).env_clear().envs(plan.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(out).stderr(err);
            unsafe { c.pre_exec(move || enter(&plan)) };
            c.spawn()
        })
        .join()
        .map_err(|_| Error::other("exec thread panicked"))?
    })?;
    Ok(child)
}
