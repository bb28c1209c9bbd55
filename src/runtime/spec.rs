//! OCI runtime `config.json` for one container of a pod (runc 1.1 dialect).
//!
//! Does: process (args, env, cwd, user, capabilities, no_new_privs, rlimits),
//! root, hostname, standard and volume mounts, namespaces (joining the pod's pinned
//! sandbox namespaces), masked/readonly paths, device rules, sysctls.
//! Doesn't: seccomp (runc runs without a profile for now), AppArmor/SELinux,
//! cgroupsPath, cpu/memory resources and oomScoreAdj (the pod worker adds them from
//! cgroup::resources and api::qos), hooks.
//! Only reads files: the image's `/etc/passwd` and `/etc/group` to resolve a named user.

use crate::api::types::{Container, Pod};
use crate::image::config::ImageConfig;
use serde_json::{json, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything [`generate`] needs for one container.
pub struct SpecInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageConfig,
    /// Overlay mount point (absolute).
    pub rootfs: &'a Path,
    /// From [`super::env::command_line`].
    pub args: Vec<String>,
    /// From [`super::env::container_env`].
    pub env: Vec<(String, String)>,
    pub volumes: &'a crate::volume::Volumes,
    /// The container's subPath mounts, staged by [`crate::volume::subpath::prepare`].
    pub sub_paths: &'a crate::volume::subpath::SubPaths,
    pub sandbox: &'a crate::network::Sandbox,
}

/// Why no runtime spec could be made for a container.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecError {
    /// runAsNonRoot is set and the container would (or might) run as root.
    RunAsNonRoot { pod: String, container: String, message: String },
    /// A named user or group that the image's /etc/passwd or /etc/group doesn't have.
    UnknownUser { container: String, user: String, path: PathBuf },
    /// A capability name picolet doesn't know.
    UnknownCapability { container: String, name: String },
    /// A volumeMount naming a volume the pod doesn't have, or a subPath not staged.
    Volume { container: String, volume: String, reason: String },
    /// Some other field picolet can't honour (relative paths, unsupported options).
    Invalid { container: String, field: &'static str, reason: String },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::RunAsNonRoot { message, .. } => f.write_str(message),
            SpecError::UnknownUser { container, user, path } => {
                write!(f, "container {container}: user {user:?} not found in {}", path.display())
            }
            SpecError::UnknownCapability { container, name } => {
                write!(f, "container {container}: unknown capability {name:?}")
            }
            SpecError::Volume { container, volume, reason } => {
                write!(f, "container {container}: volume {volume}: {reason}")
            }
            SpecError::Invalid { container, field, reason } => write!(f, "container {container}: {field}: {reason}"),
        }
    }
}

impl std::error::Error for SpecError {}

/// containerd's default set, which Kubernetes containers get.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/// Every capability up to CAP_CHECKPOINT_RESTORE (41 caps, Linux 5.9), index = capability
/// number; runc 1.1.5 knows all of them (it ignores unknown names with a warning).
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// runc's default masked paths.
const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
];
const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Builds the runtime spec. `passwd_root` (normally the rootfs) is where a named image
/// User ("app", "app:app", "1000:1000", "1000") is looked up in etc/passwd and etc/group.
pub fn generate(input: &SpecInput, passwd_root: &Path) -> Result<Value, SpecError> {
    let pod = input.pod;
    let c = input.container;
    let cname = c.name.as_str();
    let invalid = |field, reason: String| SpecError::Invalid { container: cname.to_string(), field, reason };
    let psc = pod.spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let read_only_root = sc.read_only_root_filesystem.unwrap_or(false);
    if pod.spec.share_process_namespace == Some(true) {
        return Err(invalid("shareProcessNamespace", "not supported yet".into()));
    }

    let user = resolve_user(input, passwd_root)?;

    let caps = capabilities(c, privileged)?;
    let sys_admin = caps.iter().any(|c| c == "CAP_SYS_ADMIN");
    // Upstream: escalation stays allowed unless explicitly disallowed; the API rejects
    // false together with privileged/CAP_SYS_ADMIN, so those win here.
    let no_new_privs = sc.allow_privilege_escalation == Some(false) && !privileged && !sys_admin;

    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(invalid("workingDir", format!("{cwd:?} must be absolute")));
    }

    let own_uts = input.sandbox.utsns.is_some();
    let hostname = if own_uts {
        crate::network::pod_hostname(pod)
    } else {
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
    };
    let env = process_env(&hostname, &input.env);
    let nofile = nofile_limit();

    let mut process = json!({
        "terminal": false,
        "user": { "uid": user.uid, "gid": user.gid },
        "args": input.args,
        "env": env,
        "cwd": cwd,
        "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
        "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile }],
        "noNewPrivileges": no_new_privs,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }

    let mounts = mounts(input, privileged, read_only_root)?;

    let mut namespaces = vec![json!({"type": "mount"})];
    if !pod.spec.host_pid {
        namespaces.push(json!({"type": "pid"}));
    }
    let sb = input.sandbox;
    for (kind, path) in [("network", &sb.netns), ("ipc", &sb.ipcns), ("uts", &sb.utsns)] {
        if let Some(p) = path {
            namespaces.push(json!({"type": kind, "path": p}));
        }
    }

    let mut sysctl = serde_json::Map::new();
    for s in &psc.sysctls {
        if pod.spec.host_network && s.name.starts_with("net.") {
            return Err(invalid("securityContext.sysctls", format!("{} is not allowed with hostNetwork", s.name)));
        }
        if pod.spec.host_ipc && (s.name.starts_with("kernel.shm") || s.name.starts_with("kernel.msg") || s.name.starts_with("kernel.sem") || s.name.starts_with("fs.mqueue.")) {
            return Err(invalid("securityContext.sysctls", format!("{} is not allowed with hostIPC", s.name)));
        }
        sysctl.insert(s.name.clone(), json!(s.value));
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": { "devices": [{ "allow": privileged, "access": "rwm" }] },
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if !sysctl.is_empty() {
        linux["sysctl"] = Value::Object(sysctl);
    }

    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": { "path": input.rootfs, "readonly": read_only_root },
        "mounts": mounts,
        "linux": linux,
    });
    if own_uts {
        spec["hostname"] = json!(hostname);
    }
    Ok(spec)
}

const NOFILE: u64 = 1048576;

/// RLIMIT_NOFILE for containers: 1048576, unless picolet itself may not raise its hard
/// limit that far (no CAP_SYS_RESOURCE, e.g. inside another sandbox): then runc would
/// fail with EPERM, so the current hard limit is used.
fn nofile_limit() -> u64 {
    use nix::libc;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return NOFILE;
    }
    let hard = lim.rlim_max as u64;
    if hard >= NOFILE || has_cap(24 /* CAP_SYS_RESOURCE */) {
        NOFILE
    } else {
        hard
    }
}

/// picolet's own effective capability mask, if /proc tells.
fn own_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let v = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(v.trim(), 16).ok()
}

fn has_cap(bit: u32) -> bool {
    own_caps().is_some_and(|caps| caps & (1 << bit) != 0)
}

/// "All capabilities" for privileged and `add: [ALL]`: those of [`ALL_CAPS`] that
/// picolet holds itself (as containerd uses its current set); runc can't grant more.
fn available_caps() -> Vec<String> {
    let mask = own_caps().unwrap_or(u64::MAX);
    ALL_CAPS.iter().enumerate().filter(|(bit, _)| mask & (1u64 << bit) != 0).map(|(_, c)| c.to_string()).collect()
}

fn process_env(hostname: &str, env: &[(String, String)]) -> Vec<String> {
    // HOSTNAME first so the image or the pod can override it, as containerd does.
    let mut list: Vec<(String, String)> = vec![("HOSTNAME".into(), hostname.into())];
    for (k, v) in env {
        match list.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v.clone(),
            None => list.push((k.clone(), v.clone())),
        }
    }
    if !list.iter().any(|(k, _)| k == "PATH") {
        list.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    list.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn cap_name(container: &str, name: &str) -> Result<String, SpecError> {
    let up = name.trim().to_ascii_uppercase();
    let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::UnknownCapability { container: container.to_string(), name: name.to_string() })
    }
}

/// containerd's order: add ALL, then drop ALL, then single adds, then single drops,
/// so `add: [ALL], drop: [CHOWN]` is everything but CHOWN and `drop: [ALL], add: [X]` is X.
fn capabilities(c: &Container, privileged: bool) -> Result<Vec<String>, SpecError> {
    let all = available_caps();
    if privileged {
        return Ok(all);
    }
    let cc = c.security_context.as_ref().and_then(|s| s.capabilities.clone()).unwrap_or_default();
    let is_all = |s: &String| s.trim().eq_ignore_ascii_case("ALL") || s.trim().eq_ignore_ascii_case("CAP_ALL");
    let mut set: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    if cc.add.iter().any(is_all) {
        set = all;
    }
    if cc.drop.iter().any(is_all) {
        set.clear();
    }
    for a in cc.add.iter().filter(|a| !is_all(a)) {
        let n = cap_name(&c.name, a)?;
        if !set.contains(&n) {
            set.push(n);
        }
    }
    for d in cc.drop.iter().filter(|d| !is_all(d)) {
        let n = cap_name(&c.name, d)?;
        set.retain(|x| *x != n);
    }
    // Kernel order makes the spec stable and easy to compare.
    set.sort_by_key(|n| ALL_CAPS.iter().position(|a| a == n));
    Ok(set)
}

/// The process identity runc will use.
#[derive(Debug, Clone, PartialEq)]
struct User {
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// Reads a file of the image without following a symlink out of it.
fn read_image_file(root: &Path, rel: &str) -> Option<String> {
    let p = root.join(rel);
    let m = std::fs::symlink_metadata(&p).ok()?;
    if !m.is_file() {
        return None;
    }
    std::fs::read_to_string(p).ok()
}

fn passwd(root: &Path) -> Vec<PasswdEntry> {
    read_image_file(root, "etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry { name: f.first()?.to_string(), uid: f.get(2)?.parse().ok()?, gid: f.get(3)?.parse().ok()? })
        })
        .collect()
}

/// (group name, gid, members) of etc/group.
fn groups(root: &Path) -> Vec<(String, u32, Vec<String>)> {
    read_image_file(root, "etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).map(String::from).collect());
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members.unwrap_or_default()))
        })
        .collect()
}

fn to_id(container: &str, field: &'static str, v: i64) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| SpecError::Invalid { container: container.into(), field, reason: format!("{v} is not a valid id") })
}

/// runAsUser/runAsGroup (container over pod) > image User; a uid without a group takes
/// the passwd entry's gid (else 0). Extra gids: the user's groups in etc/group, then
/// the pod's supplementalGroups and fsGroup.
fn resolve_user(input: &SpecInput, root: &Path) -> Result<User, SpecError> {
    let pod = input.pod;
    let c = input.container;
    let psc = pod.spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_group = sc.run_as_group.or(psc.run_as_group);
    let non_root = sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false);
    let (img_user, img_group) = match input.image.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (input.image.user.as_str(), None),
    };

    if non_root {
        let pod_ref = format!("{}/{}({})", pod.metadata.namespace, pod.metadata.name, pod.metadata.uid);
        let fail = |message: String| SpecError::RunAsNonRoot { pod: pod_ref.clone(), container: c.name.clone(), message };
        match run_as_user {
            Some(0) => {
                return Err(fail(format!(
                    "container's runAsUser breaks non-root policy (pod: {pod_ref:?}, container: {})",
                    c.name
                )))
            }
            Some(_) => {}
            None if img_user.is_empty() || img_user.parse::<u32>() == Ok(0) => {
                return Err(fail(format!(
                    "container has runAsNonRoot and image will run as root (pod: {pod_ref:?}, container: {})",
                    c.name
                )))
            }
            None if img_user.parse::<u32>().is_err() => {
                return Err(fail(format!(
                    "container has runAsNonRoot and image has non-numeric user ({img_user}), cannot verify user is non-root (pod: {pod_ref:?}, container: {})",
                    c.name
                )))
            }
            None => {}
        }
    }

    let pw = passwd(root);
    let unknown = |user: &str, file: &str| SpecError::UnknownUser {
        container: c.name.clone(),
        user: user.to_string(),
        path: root.join(file),
    };
    let entry: Option<&PasswdEntry>;
    let uid = match run_as_user {
        Some(u) => {
            let u = to_id(&c.name, "runAsUser", u)?;
            entry = pw.iter().find(|e| e.uid == u);
            u
        }
        None if img_user.is_empty() => {
            entry = pw.iter().find(|e| e.uid == 0);
            0
        }
        None => match img_user.parse::<u32>() {
            Ok(u) => {
                entry = pw.iter().find(|e| e.uid == u);
                u
            }
            Err(_) => {
                entry = pw.iter().find(|e| e.name == img_user);
                entry.ok_or_else(|| unknown(img_user, "etc/passwd"))?.uid
            }
        },
    };
    let grp = groups(root);
    let gid = match (run_as_group, img_group.filter(|_| run_as_user.is_none())) {
        (Some(g), _) => to_id(&c.name, "runAsGroup", g)?,
        (None, Some(g)) => match g.parse::<u32>() {
            Ok(g) => g,
            Err(_) => grp.iter().find(|(n, _, _)| n == g).ok_or_else(|| unknown(g, "etc/group"))?.1,
        },
        (None, None) => entry.map(|e| e.gid).unwrap_or(0),
    };
    let mut extra: Vec<u32> = Vec::new();
    let mut add = |g: u32| {
        if g != gid && !extra.contains(&g) {
            extra.push(g);
        }
    };
    if let Some(e) = entry {
        for (_, g, members) in &grp {
            if members.contains(&e.name) {
                add(*g);
            }
        }
    }
    for g in psc.supplemental_groups.iter().chain(psc.fs_group.iter()) {
        add(to_id(&c.name, "supplementalGroups", *g)?);
    }
    Ok(User { uid, gid, additional_gids: extra })
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": dest, "type": kind, "source": source, "options": options })
}

fn bind(dest: &str, source: &Path, read_only: bool) -> Value {
    let mut opts = vec!["rbind", "rprivate"];
    if read_only {
        opts.push("ro");
    }
    json!({ "destination": dest, "type": "bind", "source": source, "options": opts })
}

/// Standard mounts, then the pod's etc files, then volumeMounts (parents first).
/// A volumeMount on a standard destination replaces the standard mount.
fn mounts(input: &SpecInput, privileged: bool, read_only_root: bool) -> Result<Vec<Value>, SpecError> {
    let c = input.container;
    let vol_err = |volume: &str, reason: String| SpecError::Volume { container: c.name.clone(), volume: volume.into(), reason };
    let mut user: Vec<(String, Value)> = Vec::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let dest = clean_dest(&m.mount_path).ok_or_else(|| vol_err(&m.name, format!("mountPath {:?} must be absolute", m.mount_path)))?;
        if m.mount_propagation.as_deref().is_some_and(|p| p != "None") {
            return Err(vol_err(&m.name, "mountPropagation is not supported yet".into()));
        }
        let volume = input.volumes.path(&m.name).ok_or_else(|| vol_err(&m.name, "no such volume in the pod".into()))?;
        // Never `<volume>/<subPath>`: runc would resolve it again, after a container could swap a component.
        let src = match m.sub_path.is_empty() && m.sub_path_expr.is_empty() {
            true => volume,
            false => input.sub_paths.get(i).ok_or_else(|| vol_err(&m.name, "subPath was not staged".into()))?,
        };
        // API-backed volumes are read-only whatever the mount says, as upstream.
        let read_only = m.read_only || input.volumes.read_only(&m.name);
        user.push((dest.clone(), bind(&dest, src, read_only)));
    }
    user.sort_by_key(|(d, _)| Path::new(d).components().count());

    let sysfs_opts: &[&str] = if privileged { &["nosuid", "noexec", "nodev", "rw"] } else { &["nosuid", "noexec", "nodev", "ro"] };
    let sb = input.sandbox;
    let std_mounts = [
        ("/proc", mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])),
        ("/dev", mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])),
        ("/dev/pts", mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])),
        ("/dev/shm", mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])),
        ("/dev/mqueue", mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])),
        // sysfs shows the devices of the mounting netns: the node's for hostNetwork pods.
        ("/sys", mount("/sys", "sysfs", "sysfs", sysfs_opts)),
        ("/sys/fs/cgroup", mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"])),
        ("/etc/hosts", bind("/etc/hosts", &sb.hosts, read_only_root)),
        ("/etc/hostname", bind("/etc/hostname", &sb.hostname, read_only_root)),
        ("/etc/resolv.conf", bind("/etc/resolv.conf", &sb.resolv_conf, read_only_root)),
    ];
    let mut out: Vec<Value> = std_mounts
        .into_iter()
        .filter(|(d, _)| !user.iter().any(|(u, _)| u == d))
        .map(|(_, m)| m)
        .collect();
    out.extend(user.into_iter().map(|(_, m)| m));
    Ok(out)
}

/// An absolute mount destination without `.`/`..` surprises, or None.
fn clean_dest(p: &str) -> Option<String> {
    use std::path::Component;
    let path = Path::new(p);
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Capabilities, PodSecurityContext, SecurityContext, Sysctl, VolumeMount};
    use crate::network::Sandbox;
    use crate::volume::subpath::SubPaths;
    use crate::volume::Volumes;

    pub(super) fn sandbox(dir: &Path, host_net: bool) -> Sandbox {
        Sandbox {
            netns: (!host_net).then(|| dir.join("ns/net")),
            ipcns: Some(dir.join("ns/ipc")),
            utsns: (!host_net).then(|| dir.join("ns/uts")),
            hosts: dir.join("etc-hosts"),
            hostname: dir.join("etc-hostname"),
            resolv_conf: dir.join("etc-resolv.conf"),
            pod_ip: String::new(),
        }
    }

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.metadata.namespace = "default".into();
        p.metadata.uid = "1234".into();
        p
    }

    struct Fixture {
        pod: Pod,
        c: Container,
        image: ImageConfig,
        vols: Volumes,
        subs: SubPaths,
        sb: Sandbox,
        root: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                pod: pod(),
                c: Container { name: "app".into(), ..Default::default() },
                image: ImageConfig::default(),
                vols: Volumes::default(),
                subs: SubPaths::default(),
                sb: sandbox(Path::new("/pods/p1"), false),
                root: PathBuf::from("/nonexistent-rootfs"),
            }
        }
        fn gen(&self) -> Result<Value, SpecError> {
            let input = SpecInput {
                pod: &self.pod,
                container: &self.c,
                image: &self.image,
                rootfs: Path::new("/pods/p1/rootfs"),
                args: vec!["/bin/true".into()],
                env: vec![("A".into(), "1".into())],
                volumes: &self.vols,
                sub_paths: &self.subs,
                sandbox: &self.sb,
            };
            generate(&input, &self.root)
        }
        fn sc(&mut self) -> &mut SecurityContext {
            self.c.security_context.get_or_insert_with(Default::default)
        }
        fn psc(&mut self) -> &mut PodSecurityContext {
            self.pod.spec.security_context.get_or_insert_with(Default::default)
        }
    }

    fn caps_of(v: &Value) -> Vec<String> {
        serde_json::from_value(v["process"]["capabilities"]["bounding"].clone()).unwrap()
    }

    fn fake_root(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("picolet-spec-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(
            d.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nweird\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(d.join("etc/group"), "root:x:0:\napp:x:1001:\nstaff:x:50:app,other\nvideo:x:44:other\n").unwrap();
        d
    }

    #[test]
    fn basics() {
        let f = Fixture::new();
        let s = f.gen().unwrap();
        assert_eq!(s["ociVersion"], "1.0.2");
        assert_eq!(s["hostname"], "web");
        assert_eq!(s["root"], json!({"path": "/pods/p1/rootfs", "readonly": false}));
        assert_eq!(s["process"]["cwd"], "/");
        assert_eq!(s["process"]["terminal"], false);
        assert_eq!(s["process"]["noNewPrivileges"], false);
        assert_eq!(s["process"]["user"], json!({"uid": 0, "gid": 0}));
        assert_eq!(s["process"]["env"], json!(["HOSTNAME=web", "A=1", format!("PATH={DEFAULT_PATH}")]));
        assert_eq!(s["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(caps_of(&s).len(), 14);
        assert_eq!(s["linux"]["maskedPaths"].as_array().unwrap().len(), 10);
        assert_eq!(s["linux"]["resources"]["devices"], json!([{"allow": false, "access": "rwm"}]));
        assert!(s.get("seccomp").is_none() && s["linux"].get("seccomp").is_none());
        let dests: Vec<&str> = s["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(
            dests,
            ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
        );
        assert_eq!(s["mounts"][7]["source"], "/pods/p1/etc-hosts");
    }

    #[test]
    fn namespaces_own_and_host() {
        let mut f = Fixture::new();
        let s = f.gen().unwrap();
        assert_eq!(
            s["linux"]["namespaces"],
            json!([{"type": "mount"}, {"type": "pid"},
                   {"type": "network", "path": "/pods/p1/ns/net"},
                   {"type": "ipc", "path": "/pods/p1/ns/ipc"},
                   {"type": "uts", "path": "/pods/p1/ns/uts"}])
        );
        f.pod.spec.host_network = true;
        f.pod.spec.host_pid = true;
        f.sb = sandbox(Path::new("/pods/p1"), true);
        let s = f.gen().unwrap();
        assert_eq!(s["linux"]["namespaces"], json!([{"type": "mount"}, {"type": "ipc", "path": "/pods/p1/ns/ipc"}]));
        assert!(s.get("hostname").is_none());
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert_eq!(s["process"]["env"][0], format!("HOSTNAME={host}"));
        f.psc().sysctls = vec![Sysctl { name: "net.ipv4.ip_forward".into(), value: "1".into() }];
        assert!(matches!(f.gen(), Err(SpecError::Invalid { .. })));
        f.pod.spec.host_network = false;
        f.sb = sandbox(Path::new("/pods/p1"), false);
        assert_eq!(f.gen().unwrap()["linux"]["sysctl"], json!({"net.ipv4.ip_forward": "1"}));
    }

    #[test]
    fn users() {
        let root = fake_root("users");
        let mut f = Fixture::new();
        f.root = root.clone();
        let user = |f: &Fixture| f.gen().map(|s| s["process"]["user"].clone());
        f.image.user = "app".into();
        assert_eq!(user(&f).unwrap(), json!({"uid": 1000, "gid": 1001, "additionalGids": [50]}));
        f.image.user = "app:staff".into();
        assert_eq!(user(&f).unwrap(), json!({"uid": 1000, "gid": 50}));
        f.image.user = "1000:1000".into();
        assert_eq!(user(&f).unwrap(), json!({"uid": 1000, "gid": 1000, "additionalGids": [50]}));
        f.image.user = "1000".into();
        assert_eq!(user(&f).unwrap(), json!({"uid": 1000, "gid": 1001, "additionalGids": [50]}));
        f.image.user = "4242".into();
        assert_eq!(user(&f).unwrap(), json!({"uid": 4242, "gid": 0}));
        f.image.user = "ghost".into();
        assert!(matches!(user(&f), Err(SpecError::UnknownUser { .. })));
        f.image.user = "app:nogroup".into();
        assert!(matches!(user(&f), Err(SpecError::UnknownUser { .. })));
        // securityContext wins over the image; container over pod
        f.image.user = "app".into();
        f.psc().run_as_user = Some(65534);
        f.psc().supplemental_groups = vec![7, 50];
        f.psc().fs_group = Some(2000);
        assert_eq!(user(&f).unwrap(), json!({"uid": 65534, "gid": 65534, "additionalGids": [7, 50, 2000]}));
        f.sc().run_as_user = Some(1234);
        f.sc().run_as_group = Some(99);
        assert_eq!(user(&f).unwrap(), json!({"uid": 1234, "gid": 99, "additionalGids": [7, 50, 2000]}));
        f.sc().run_as_user = Some(-1);
        assert!(matches!(user(&f), Err(SpecError::Invalid { .. })));
        // a symlinked passwd is not followed
        let root2 = std::env::temp_dir().join(format!("picolet-spec-link-{}", std::process::id()));
        std::fs::create_dir_all(root2.join("etc")).unwrap();
        let _ = std::os::unix::fs::symlink(root.join("etc/passwd"), root2.join("etc/passwd"));
        let mut g = Fixture::new();
        g.root = root2.clone();
        g.image.user = "app".into();
        assert!(matches!(g.gen(), Err(SpecError::UnknownUser { .. })));
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(root2).unwrap();
    }

    #[test]
    fn run_as_non_root() {
        let mut f = Fixture::new();
        f.psc().run_as_non_root = Some(true);
        let e = f.gen().unwrap_err();
        assert_eq!(
            e.to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"default/web(1234)\", container: app)"
        );
        f.image.user = "app".into();
        assert_eq!(
            f.gen().unwrap_err().to_string(),
            "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"default/web(1234)\", container: app)"
        );
        f.image.user = "0:5".into();
        assert!(matches!(f.gen(), Err(SpecError::RunAsNonRoot { .. })));
        f.image.user = "1000".into();
        assert!(f.gen().is_ok());
        f.sc().run_as_user = Some(0);
        assert!(f.gen().unwrap_err().to_string().starts_with("container's runAsUser breaks non-root policy"));
        f.sc().run_as_user = Some(5);
        f.image.user = String::new();
        assert!(f.gen().is_ok());
        // container false overrides pod true
        f.sc().run_as_user = None;
        f.sc().run_as_non_root = Some(false);
        assert!(f.gen().is_ok());
    }

    #[test]
    fn capabilities_add_drop_all() {
        let mut f = Fixture::new();
        let set = |f: &mut Fixture, add: &[&str], drop: &[&str]| {
            f.sc().capabilities = Some(Capabilities {
                add: add.iter().map(|s| s.to_string()).collect(),
                drop: drop.iter().map(|s| s.to_string()).collect(),
            });
        };
        set(&mut f, &["NET_ADMIN", "CAP_SYS_TIME"], &["chown", "CAP_NET_RAW"]);
        let c = caps_of(&f.gen().unwrap());
        assert!(c.contains(&"CAP_NET_ADMIN".into()) && c.contains(&"CAP_SYS_TIME".into()));
        assert!(!c.contains(&"CAP_CHOWN".into()) && !c.contains(&"CAP_NET_RAW".into()));
        assert_eq!(c.len(), 14);
        set(&mut f, &[], &["ALL"]);
        assert!(caps_of(&f.gen().unwrap()).is_empty());
        set(&mut f, &["NET_BIND_SERVICE"], &["ALL"]);
        assert_eq!(caps_of(&f.gen().unwrap()), ["CAP_NET_BIND_SERVICE"]);
        set(&mut f, &["ALL"], &["CHOWN"]);
        let c = caps_of(&f.gen().unwrap());
        assert_eq!(c.len(), available_caps().len() - 1);
        assert!(!c.contains(&"CAP_CHOWN".into()));
        set(&mut f, &["SYS_ADMIN"], &[]);
        f.sc().allow_privilege_escalation = Some(false);
        assert_eq!(f.gen().unwrap()["process"]["noNewPrivileges"], false);
        set(&mut f, &["CAP_BOGUS"], &[]);
        assert!(matches!(f.gen(), Err(SpecError::UnknownCapability { .. })));
        set(&mut f, &[], &[]);
        assert_eq!(f.gen().unwrap()["process"]["noNewPrivileges"], true);
    }

    #[test]
    fn privileged_and_read_only_root() {
        let mut f = Fixture::new();
        f.sc().privileged = Some(true);
        f.sc().capabilities = Some(Capabilities { add: vec![], drop: vec!["ALL".into()] });
        let s = f.gen().unwrap();
        assert_eq!(caps_of(&s), available_caps());
        assert!(available_caps().len() >= 40, "picolet tests expect (nearly) all caps");
        assert!(s["linux"].get("maskedPaths").is_none() && s["linux"].get("readonlyPaths").is_none());
        assert_eq!(s["linux"]["resources"]["devices"], json!([{"allow": true, "access": "rwm"}]));
        let sys = s["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys").unwrap();
        assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));

        let mut f = Fixture::new();
        f.sc().read_only_root_filesystem = Some(true);
        let s = f.gen().unwrap();
        assert_eq!(s["root"]["readonly"], true);
        let hosts = s["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/etc/hosts").unwrap();
        assert_eq!(hosts["options"], json!(["rbind", "rprivate", "ro"]));
    }

    #[test]
    fn volume_mounts() {
        let mut f = Fixture::new();
        f.vols.insert("data", PathBuf::from("/pods/p1/volumes/kubernetes.io~empty-dir/data"));
        f.vols.insert("host", PathBuf::from("/srv/host"));
        let vm = |name: &str, path: &str, ro: bool, sub: &str| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only: ro,
            sub_path: sub.into(),
            ..Default::default()
        };
        f.c.volume_mounts = vec![
            vm("data", "/data/deep/er", false, "a/b"),
            vm("host", "/data", true, ""),
            vm("data", "/etc/hosts", false, "hosts"),
        ];
        // subPaths come from their staging mounts, never `<volume>/<subPath>`.
        f.subs.insert(0, PathBuf::from("/pods/p1/volume-subpaths/data/app/0"));
        f.subs.insert(2, PathBuf::from("/pods/p1/volume-subpaths/data/app/2"));
        let s = f.gen().unwrap();
        let ms = s["mounts"].as_array().unwrap();
        let hosts: Vec<&Value> = ms.iter().filter(|m| m["destination"] == "/etc/hosts").collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0]["source"], "/pods/p1/volume-subpaths/data/app/2");
        let tail: Vec<&Value> = ms.iter().rev().take(3).collect();
        assert_eq!(*tail[0], json!({"destination": "/data/deep/er", "type": "bind",
            "source": "/pods/p1/volume-subpaths/data/app/0", "options": ["rbind", "rprivate"]}));
        assert_eq!(*tail[1], json!({"destination": "/etc/hosts", "type": "bind",
            "source": "/pods/p1/volume-subpaths/data/app/2", "options": ["rbind", "rprivate"]}));
        assert_eq!(*tail[2], json!({"destination": "/data", "type": "bind",
            "source": "/srv/host", "options": ["rbind", "rprivate", "ro"]}));

        // A subPath that was not staged is an error, not a path.
        f.subs = SubPaths::default();
        for bad in [vm("data", "/x", false, "a/b"), vm("nope", "/x", false, ""), vm("data", "rel", false, "")] {
            f.c.volume_mounts = vec![bad.clone()];
            let e = f.gen().unwrap_err();
            assert!(matches!(e, SpecError::Volume { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn cwd_and_env() {
        let mut f = Fixture::new();
        f.image.working_dir = "/srv".into();
        assert_eq!(f.gen().unwrap()["process"]["cwd"], "/srv");
        f.c.working_dir = "/work".into();
        assert_eq!(f.gen().unwrap()["process"]["cwd"], "/work");
        f.c.working_dir = "rel".into();
        assert!(matches!(f.gen(), Err(SpecError::Invalid { .. })));
        assert_eq!(
            process_env("h", &[("PATH".into(), "/x".into()), ("HOSTNAME".into(), "mine".into())]),
            ["HOSTNAME=mine", "PATH=/x"]
        );
    }
}

/// Runs generated bundles with the real runc (root only; skipped otherwise).
#[cfg(test)]
mod runc_tests {
    use super::*;
    use crate::api::types::{EmptyDirVolumeSource, HostPathVolumeSource, PodSecurityContext, SecurityContext, Volume, VolumeMount};
    use crate::runtime::env::{command_line, container_env, FieldContext};
    use std::fs;
    use std::process::Command;

    struct Env {
        base: PathBuf,
        rootfs: PathBuf,
        pod: Pod,
        vols: crate::volume::Volumes,
        sb: crate::network::Sandbox,
        image: ImageConfig,
    }

    fn usable() -> bool {
        nix::unistd::geteuid().is_root()
            && Path::new("/bin/busybox").exists()
            && Command::new("runc").arg("--version").output().is_ok()
    }

    fn rootfs(base: &Path) -> PathBuf {
        let r = base.join("rootfs");
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
        for app in ["sh", "mkdir", "cat", "hostname", "id", "ls", "echo", "readlink", "touch", "stat", "grep"] {
            std::os::unix::fs::symlink("busybox", r.join("bin").join(app)).unwrap();
        }
        fs::write(r.join("etc/passwd"), "root:x:0:0::/:/bin/sh\nworker:x:1000:1000::/:/bin/sh\n").unwrap();
        r
    }

    fn vm(name: &str, path: &str, ro: bool, sub: &str) -> VolumeMount {
        VolumeMount { name: name.into(), mount_path: path.into(), read_only: ro, sub_path: sub.into(), ..Default::default() }
    }

    impl Env {
        fn new(tag: &str, host_network: bool) -> Env {
            let base = std::env::temp_dir().join(format!("picolet-runc-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&base);
            fs::create_dir_all(&base).unwrap();
            let rootfs = rootfs(&base);
            let mut pod = Pod::default();
            pod.metadata.name = "box-pod".into();
            pod.metadata.namespace = "test".into();
            pod.metadata.uid = "uid-1".into();
            pod.spec.hostname = "box".into();
            pod.spec.host_network = host_network;
            let host_dir = base.join("host-ro");
            pod.spec.volumes = vec![
                Volume { name: "shared".into(), empty_dir: Some(Default::default()), ..Default::default() },
                Volume {
                    name: "mem".into(),
                    empty_dir: Some(EmptyDirVolumeSource { medium: "Memory".into(), size_limit: Some("8Mi".into()) }),
                    ..Default::default()
                },
                Volume {
                    name: "ro".into(),
                    host_path: Some(HostPathVolumeSource {
                        path: host_dir.to_string_lossy().into(),
                        type_: Some("DirectoryOrCreate".into()),
                    }),
                    ..Default::default()
                },
            ];
            let pod_dir = base.join("pod");
            let objects = crate::api::objects::ObjectStore::new(base.join("objects"));
            let node = crate::api::downward::Allocatable::default();
            let src = crate::volume::Sources { objects: &objects, node: &node };
            let vols = crate::volume::setup(&pod, &pod_dir, &src).unwrap();
            let sb = crate::network::setup(&pod, &pod_dir, &crate::network::Network::loopback_only()).unwrap().sandbox;
            Env { base, rootfs, pod, vols, sb, image: ImageConfig::default() }
        }

        /// Runs `script` in a container of the pod; returns (exit ok, stdout, stderr).
        fn run(&self, id: &str, c: Container, script: &str) -> (bool, String, String) {
            self.run_after(id, c, script, || {})
        }

        /// `run`, with `between` run once the bundle is written and before runc is.
        fn run_after(&self, id: &str, mut c: Container, script: &str, between: impl FnOnce()) -> (bool, String, String) {
            c.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
            let subs = crate::volume::subpath::prepare(&self.vols, &self.base.join("pod"), &c, |e| Ok(e.into())).unwrap();
            let objects = crate::api::objects::ObjectStore::new(self.base.join("objects"));
            let node = crate::api::downward::Allocatable::default();
            let ctx = FieldContext { pod: &self.pod, host_ip: "", pod_ip: &self.sb.pod_ip, node: &node, objects: &objects };
            let env = container_env(&ctx, &c, &self.image.env).unwrap();
            let args = command_line(&c, &self.image, &env.own).unwrap();
            let env = env.env;
            let input = SpecInput {
                pod: &self.pod,
                container: &c,
                image: &self.image,
                rootfs: &self.rootfs,
                args,
                env,
                volumes: &self.vols,
                sub_paths: &subs,
                sandbox: &self.sb,
            };
            let spec = generate(&input, &self.rootfs).unwrap();
            let bundle = self.base.join(format!("bundle-{id}"));
            fs::create_dir_all(&bundle).unwrap();
            fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
            between();
            let out = Command::new("runc")
                .arg("--root")
                .arg(self.base.join("runc"))
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(format!("picolet-test-{}-{id}", std::process::id()))
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }

        /// Tears the pod down and checks that no mount is left.
        fn finish(self) {
            let pod_dir = self.base.join("pod");
            crate::volume::teardown(&pod_dir).unwrap();
            crate::network::teardown(&pod_dir, "t/t", &crate::network::Network::loopback_only()).unwrap();
            let real = fs::canonicalize(&self.base).unwrap();
            let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let left: Vec<&str> = mi.lines().filter(|l| l.contains(real.to_str().unwrap())).collect();
            assert!(left.is_empty(), "mounts left after teardown: {left:?}");
        }
    }

    impl Drop for Env {
        // Also runs when a test panics, so failed runs don't leak mounts.
        fn drop(&mut self) {
            let pod_dir = self.base.join("pod");
            let _ = crate::volume::teardown(&pod_dir);
            let _ = crate::network::teardown(&pod_dir, "t/t", &crate::network::Network::loopback_only());
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    fn ns_inode(p: &Path) -> String {
        use std::os::unix::fs::MetadataExt;
        format!("net:[{}]", fs::metadata(p).unwrap().ino())
    }

    #[test]
    #[ignore = "needs root, /bin/busybox and runc: tests/run.sh runs it"]
    fn pod_containers_share_sandbox_and_volumes() {
        assert!(usable(), "needs root, /bin/busybox and runc");
        let e = Env::new("pod", false);
        let writer = Container {
            name: "writer".into(),
            volume_mounts: vec![vm("shared", "/shared", false, ""), vm("mem", "/mem", false, "")],
            security_context: Some(SecurityContext { run_as_user: Some(1000), run_as_group: Some(3000), ..Default::default() }),
            env: vec![crate::api::types::EnvVar { name: "GREETING".into(), value: Some("hello".into()), value_from: None }],
            ..Default::default()
        };
        let (ok, out, err) = e.run(
            "a",
            writer,
            "hostname; readlink /proc/self/ns/net; cat /sys/class/net/lo/flags; id -u; id -g; \
             echo $GREETING > /shared/msg && mkdir /shared/sub && echo $GREETING > /shared/sub/msg2; stat -f -c '%b %S' /mem; \
             grep box /etc/hosts; cat /etc/hostname",
        );
        assert!(ok, "writer failed: {out} {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "box", "{out}");
        let netns = ns_inode(e.sb.netns.as_ref().unwrap());
        assert_eq!(lines[1], netns);
        let flags = u32::from_str_radix(lines[2].trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 0x9, 0x9, "lo is not up: {}", lines[2]);
        assert_eq!(&lines[3..5], ["1000", "3000"]);
        let (blocks, bsize): (u64, u64) = {
            let mut it = lines[5].split(' ').map(|x| x.parse::<u64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        };
        assert_eq!(blocks * bsize, 8 << 20, "mem emptyDir size");
        assert_eq!(lines[6], "127.0.1.1\tbox");
        assert_eq!(lines[7], "box");

        let reader = Container {
            name: "reader".into(),
            volume_mounts: vec![vm("shared", "/data", false, ""), vm("shared", "/sub", false, "sub"), vm("ro", "/ro", true, "")],
            ..Default::default()
        };
        let (ok, out, err) = e.run(
            "b",
            reader,
            "hostname; readlink /proc/self/ns/net; cat /data/msg /sub/msg2; id -u; \
             if touch /ro/x 2>/dev/null; then echo ro-writable; else echo ro-denied; fi; \
             if touch /rootfile 2>/dev/null; then echo root-writable; fi",
        );
        assert!(ok, "reader failed: {out} {err}");
        assert_eq!(out.lines().collect::<Vec<_>>(), ["box", netns.as_str(), "hello", "hello", "0", "ro-denied", "root-writable"]);
        assert!(!e.base.join("host-ro/x").exists());

        let locked = Container {
            name: "locked".into(),
            security_context: Some(SecurityContext { read_only_root_filesystem: Some(true), ..Default::default() }),
            ..Default::default()
        };
        let (ok, out, err) = e.run(
            "c",
            locked,
            "if touch /newfile 2>/dev/null; then echo writable; else echo read-only; fi; echo x > /etc/hosts 2>/dev/null || echo hosts-ro",
        );
        assert!(ok, "{out} {err}");
        assert_eq!(out, "read-only\nhosts-ro\n");
        assert!(!e.rootfs.join("newfile").exists());

        // runAsNonRoot with a root image is refused before runc is involved.
        let mut p = e.pod.clone();
        p.spec.security_context = Some(PodSecurityContext { run_as_non_root: Some(true), ..Default::default() });
        let c = Container { name: "nr".into(), command: vec!["/bin/true".into()], ..Default::default() };
        let input = SpecInput {
            pod: &p,
            container: &c,
            image: &e.image,
            rootfs: &e.rootfs,
            args: vec!["/bin/true".into()],
            env: vec![],
            volumes: &e.vols,
            sub_paths: &Default::default(),
            sandbox: &e.sb,
        };
        assert!(matches!(generate(&input, &e.rootfs), Err(SpecError::RunAsNonRoot { .. })));
        e.finish();
    }

    /// subPath's TOCTOU (CVE-2017-1002101): another container of the pod
    /// swaps a component of the subPath for a symlink to the host after it
    /// was checked and before runc mounts it. runc is given the staging
    /// mount, so the container sees what was checked, not the host.
    #[test]
    fn a_sub_path_swapped_before_runc_mounts_it_does_not_reach_the_host() {
        if !usable() {
            eprintln!("skipping: needs root, /bin/busybox and runc");
            return;
        }
        let e = Env::new("swap", true);
        let shared = e.vols.path("shared").unwrap().to_path_buf();
        fs::create_dir_all(shared.join("a/b")).unwrap();
        fs::write(shared.join("a/b/marker"), "inside\n").unwrap();
        let host = e.base.join("host-secret");
        fs::create_dir_all(host.join("b")).unwrap();
        fs::write(host.join("b/sentinel"), "host secret\n").unwrap();
        let victim = Container { name: "victim".into(), volume_mounts: vec![vm("shared", "/data", false, "a/b")], ..Default::default() };
        let swap = || {
            fs::rename(shared.join("a"), shared.join("a.real")).unwrap();
            std::os::unix::fs::symlink(&host, shared.join("a")).unwrap();
        };
        let (ok, out, err) = e.run_after("swap", victim, "ls /data; cat /data/*", swap);
        assert!(ok, "{out} {err}");
        assert_eq!(out, "marker\ninside\n", "the container saw the host's directory");
        assert_eq!(fs::read_dir(host.join("b")).unwrap().count(), 1);
        e.finish();
    }

    #[test]
    #[ignore = "needs root, /bin/busybox and runc: tests/run.sh runs it"]
    fn host_network_pod_and_privileged() {
        assert!(usable(), "needs root, /bin/busybox and runc");
        let e = Env::new("hostnet", true);
        let c = Container { name: "h".into(), ..Default::default() };
        let (ok, out, err) = e.run("h", c, "hostname; readlink /proc/self/ns/net; cat /etc/hostname");
        assert!(ok, "{out} {err}");
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        let host_net = fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(out, format!("{host}\n{}\n{host}\n", host_net.display()));

        let p = Container {
            name: "p".into(),
            security_context: Some(SecurityContext { privileged: Some(true), ..Default::default() }),
            ..Default::default()
        };
        let (ok, out, err) = e.run("p", p, "grep CapEff /proc/self/status; grep ' /sys sysfs' /proc/self/mounts");
        assert!(ok, "{out} {err}");
        let mut lines = out.lines();
        let eff = lines.next().unwrap().split_whitespace().nth(1).unwrap();
        let eff = u64::from_str_radix(eff, 16).unwrap();
        assert_eq!(eff, own_caps().unwrap() & ((1u64 << ALL_CAPS.len()) - 1), "privileged caps: {eff:x}");
        assert!(lines.next().unwrap().contains(" rw,"), "/sys must be rw for privileged: {out}");
        e.finish();
    }
}
