//! Pod volumes: `emptyDir`, `hostPath`, and the API-backed `configMap`,
//! `secret`, `downwardAPI` and `projected` (the service-account token volume
//! `kube-api-access-*` is one of these).
//!
//! Does: create emptyDir directories under the pod dir (tmpfs-mounted for
//! `medium: Memory`), check/create hostPath targets by `type`, resolve
//! subPaths; write API-backed volumes from the local object store
//! (`api::objects`) with upstream's atomic-writer layout (`..data` swapped
//! on update, see atomic.rs), secrets and projected volumes on a tmpfs so
//! they never reach the disk, and [`refresh`] them when the store changes;
//! stage subPath mounts safely (subpath.rs); tear all of it down again. Setup is idempotent across picolet restarts.
//! Doesn't: PVC volumes, clusterTrustBundle/podCertificate projections,
//! fsGroup ownership changes, or emptyDir size accounting on disk.

pub mod atomic;
pub mod projection;
pub mod subpath;

pub use projection::Sources;

use crate::api::types::{Pod, Volume};
use crate::hostfs::{is_mount_point, mount_points};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const EMPTY_DIR: &str = "volumes/kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "volumes/kubernetes.io~configmap";
const SECRET: &str = "volumes/kubernetes.io~secret";
const DOWNWARD_API: &str = "volumes/kubernetes.io~downward-api";
const PROJECTED: &str = "volumes/kubernetes.io~projected";
/// Where picolet keeps volumes under a pod dir, one directory per plugin as upstream.
const PLUGIN_DIRS: [&str; 5] = [EMPTY_DIR, CONFIG_MAP, SECRET, DOWNWARD_API, PROJECTED];

/// The host paths of a pod's volumes, by volume name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volumes {
    paths: BTreeMap<String, PathBuf>,
    /// Volumes containers get read-only whatever the mount says (API-backed ones, as upstream).
    read_only: std::collections::BTreeSet<String>,
}

impl Volumes {
    /// Host path backing volume `name`, if the pod has such a volume.
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.paths.get(name).map(PathBuf::as_path)
    }

    /// Whether volume `name` is always mounted read-only.
    pub fn read_only(&self, name: &str) -> bool {
        self.read_only.contains(name)
    }

    /// Adds or replaces a volume (for callers that build volumes themselves, and tests).
    pub fn insert(&mut self, name: &str, path: PathBuf) {
        self.paths.insert(name.to_string(), path);
    }
}

/// Why a volume could not be set up or torn down.
#[derive(Debug)]
pub enum VolumeError {
    /// A volume type picolet does not serve (persistentVolumeClaim, ...).
    Unsupported { volume: String, kind: &'static str },
    /// An API-backed volume's data cannot be had yet: an object or key is
    /// missing from the object store, or a token was not fetched. The
    /// message is upstream's (`configmap "x" not found`).
    Source { volume: String, message: String },
    /// A spec value picolet refuses (bad name, medium, size, relative hostPath...).
    Invalid { volume: String, reason: String },
    /// A hostPath does not have the required `type`.
    HostPathType { volume: String, path: PathBuf, want: String, found: String },
    /// A subPath that is absolute or contains `..`.
    BadSubPath { volume: String, sub_path: String },
    /// A subPath that could not be created (`create`) or staged for
    /// container `container`: it leads out of the volume, a component was
    /// swapped for a symlink, or a syscall failed. Shown as upstream's
    /// message, without host paths; `reason` is for the log ([`VolumeError::detail`]).
    SubPath { volume: String, container: String, create: bool, reason: String },
    /// A volumeMount names a volume the pod doesn't have.
    NotFound { volume: String },
    /// A filesystem operation failed.
    Io { volume: String, path: PathBuf, op: &'static str, source: io::Error },
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeError::Unsupported { volume, kind } => write!(f, "volume {volume}: {kind} volumes are not supported"),
            VolumeError::Source { volume, message } => write!(f, "volume {volume}: {message}"),
            VolumeError::Invalid { volume, reason } => write!(f, "volume {volume}: {reason}"),
            VolumeError::HostPathType { volume, path, want, found } => write!(
                f,
                "volume {volume}: hostPath {} is {found}, want type {want}",
                path.display()
            ),
            VolumeError::BadSubPath { volume, sub_path } => {
                write!(f, "volume {volume}: invalid subPath {sub_path:?} (must be relative, without '..')")
            }
            VolumeError::SubPath { volume, container, create: true, .. } => {
                write!(f, "failed to create subPath directory for volumeMount {volume:?} of container {container:?}")
            }
            VolumeError::SubPath { volume, container, create: false, .. } => {
                write!(f, "failed to prepare subPath for volumeMount {volume:?} of container {container:?}")
            }
            VolumeError::NotFound { volume } => write!(f, "volume {volume}: no such volume in the pod"),
            VolumeError::Io { volume, path, op, source } => {
                write!(f, "volume {volume}: {op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for VolumeError {}

impl VolumeError {
    /// What the message leaves out for the pod's status, for the log.
    pub fn detail(&self) -> Option<&str> {
        match self {
            VolumeError::SubPath { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

fn io_err(volume: &str, path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> VolumeError {
    let (volume, path) = (volume.to_string(), path.to_path_buf());
    move |source| VolumeError::Io { volume, path, op, source }
}

fn errno_err(volume: &str, path: &Path, op: &'static str) -> impl FnOnce(nix::Error) -> VolumeError {
    let f = io_err(volume, path, op);
    move |e| f(io::Error::from_raw_os_error(e as i32))
}

/// What [`setup`] does for one volume; computed purely from the spec.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    EmptyDir { tmpfs_size: Option<Option<u64>> },
    HostPath { path: PathBuf, kind: String },
    /// A configMap, secret, downwardAPI or projected volume under `plugin`.
    Api { plugin: &'static str, tmpfs: bool },
}

fn plan(v: &Volume) -> Result<Plan, VolumeError> {
    let unsupported = |kind| Err(VolumeError::Unsupported { volume: v.name.clone(), kind });
    // Secrets and projected volumes (tokens) live in memory, as upstream's do.
    if v.config_map.is_some() {
        return Ok(Plan::Api { plugin: CONFIG_MAP, tmpfs: false });
    }
    if v.secret.is_some() {
        return Ok(Plan::Api { plugin: SECRET, tmpfs: true });
    }
    if v.downward_api.is_some() {
        return Ok(Plan::Api { plugin: DOWNWARD_API, tmpfs: false });
    }
    if let Some(p) = &v.projected {
        if p.sources.iter().any(|s| s.cluster_trust_bundle.is_some()) {
            return unsupported("clusterTrustBundle projected");
        }
        if p.sources.iter().any(|s| s.pod_certificate.is_some()) {
            return unsupported("podCertificate projected");
        }
        return Ok(Plan::Api { plugin: PROJECTED, tmpfs: true });
    }
    if v.persistent_volume_claim.is_some() {
        return unsupported("persistentVolumeClaim");
    }
    let invalid = |reason: String| VolumeError::Invalid { volume: v.name.clone(), reason };
    if let Some(hp) = &v.host_path {
        let path = PathBuf::from(&hp.path);
        if !path.is_absolute() {
            return Err(invalid(format!("hostPath {:?} must be absolute", hp.path)));
        }
        let kind = hp.type_.clone().unwrap_or_default();
        const KINDS: [&str; 8] =
            ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];
        if !KINDS.contains(&kind.as_str()) {
            return Err(invalid(format!("unknown hostPath type {kind:?}")));
        }
        return Ok(Plan::HostPath { path, kind });
    }
    // No source at all is an emptyDir, as the API server defaults it.
    let ed = v.empty_dir.clone().unwrap_or_default();
    let size = match &ed.size_limit {
        None => None,
        Some(q) => match crate::api::quantity::parse_int(q) {
            Some(n) if n > 0 => Some(n as u64),
            _ => return Err(invalid(format!("invalid emptyDir sizeLimit {q:?}"))),
        },
    };
    match ed.medium.as_str() {
        "" => Ok(Plan::EmptyDir { tmpfs_size: None }),
        "Memory" => Ok(Plan::EmptyDir { tmpfs_size: Some(size) }),
        m => Err(invalid(format!("emptyDir medium {m:?} is not supported"))),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Creates/validates the pod's volumes. emptyDirs live under
/// `pod_dir/volumes/kubernetes.io~empty-dir/<name>` (mode 0777 as upstream);
/// `medium: Memory` mounts a tmpfs there (`size=` from sizeLimit if set).
/// hostPath types: DirectoryOrCreate (mkdir -p, 0755), Directory, FileOrCreate (empty
/// file 0644; the parent must exist, as the Kubernetes docs say), File, Socket,
/// CharDevice, BlockDevice, "" (no check). configMap, secret, downwardAPI and
/// projected volumes are written from `src` under `kubernetes.io~<plugin>/<name>`
/// (secret and projected on a tmpfs, mode 1777), and are mounted read-only.
/// Idempotent: never wipes data or mounts twice; API-backed volumes are
/// rewritten only if their content changed. Every API-backed volume's data is
/// gathered before anything is created, so a missing object
/// ([`VolumeError::Source`]) leaves nothing behind and the pod waits.
/// Unsupported volume types → [`VolumeError::Unsupported`].
pub fn setup(pod: &Pod, pod_dir: &Path, src: &Sources) -> Result<Volumes, VolumeError> {
    let plans: Vec<(&Volume, Plan)> = pod
        .spec
        .volumes
        .iter()
        .map(|v| {
            if !valid_name(&v.name) {
                return Err(VolumeError::Invalid { volume: v.name.clone(), reason: "invalid volume name".into() });
            }
            plan(v).map(|p| (v, p))
        })
        .collect::<Result<_, _>>()?;
    // Stamp before reading: an object written meanwhile shows as a change later.
    let mut payloads = BTreeMap::new();
    for (v, p) in &plans {
        if matches!(p, Plan::Api { .. }) {
            let stamp = projection::stamp(pod, v, src);
            let files = projection::payload(pod, v, src)
                .map_err(|message| VolumeError::Source { volume: v.name.clone(), message })?;
            payloads.insert(v.name.clone(), (stamp, files));
        }
    }
    let mut out = Volumes::default();
    for (v, p) in plans {
        let path = match p {
            Plan::EmptyDir { tmpfs_size } => {
                let dir = pod_dir.join(EMPTY_DIR).join(&v.name);
                setup_empty_dir(&v.name, &dir, tmpfs_size)?;
                dir
            }
            Plan::HostPath { path, kind } => {
                check_host_path(&v.name, &path, &kind)?;
                path
            }
            Plan::Api { plugin, tmpfs } => {
                let dir = pod_dir.join(plugin).join(&v.name);
                let (stamp, files) = &payloads[&v.name];
                setup_api_dir(&v.name, &dir, tmpfs)?;
                write_api_volume(&v.name, &dir, files, stamp)?;
                out.read_only.insert(v.name.clone());
                dir
            }
        };
        out.insert(&v.name, path);
    }
    Ok(out)
}

/// Rewrites `pod`'s API-backed volumes whose sources changed in the store
/// (or whose downward API fields changed): cheap when nothing did, as each
/// volume's stamp comes from `stat`s and is compared with the one kept
/// beside it. Updates swap `..data`, so containers see the new files whole.
/// A volume whose data cannot be had now keeps its old content; the first
/// such error is returned after every volume was tried. True if any volume
/// got new content. Volumes that were never set up are left alone.
pub fn refresh(pod: &Pod, pod_dir: &Path, src: &Sources) -> Result<bool, VolumeError> {
    let mut changed = false;
    let mut first_err = None;
    for v in &pod.spec.volumes {
        let Ok(Plan::Api { plugin, .. }) = plan(v) else { continue };
        if !valid_name(&v.name) {
            continue;
        }
        let dir = pod_dir.join(plugin).join(&v.name);
        if !dir.join(atomic::DATA_DIR).exists() {
            continue;
        }
        let stamp = projection::stamp(pod, v, src);
        if fs::read_to_string(stamp_path(&dir)).ok().as_deref() == Some(stamp.as_str()) {
            continue;
        }
        let r = projection::payload(pod, v, src)
            .map_err(|message| VolumeError::Source { volume: v.name.clone(), message })
            .and_then(|files| write_api_volume(&v.name, &dir, &files, &stamp));
        match r {
            Ok(wrote) => changed |= wrote,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(changed),
    }
}

/// Whether `pod` has volumes [`refresh`] looks after.
pub fn has_api_volumes(pod: &Pod) -> bool {
    pod.spec.volumes.iter().any(|v| matches!(plan(v), Ok(Plan::Api { .. })))
}

/// The stamp of volume dir `.../<plugin>/<name>` is kept beside it, as
/// `.../<plugin>/.<name>.stamp`, where containers do not see it.
fn stamp_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!(".{name}.stamp"))
}

fn write_api_volume(name: &str, dir: &Path, files: &projection::Payload, stamp: &str) -> Result<bool, VolumeError> {
    let wrote = atomic::write(dir, files).map_err(io_err(name, dir, "write"))?;
    let sp = stamp_path(dir);
    crate::hostfs::write_atomic(&sp, stamp.as_bytes()).map_err(io_err(name, &sp, "write"))?;
    Ok(wrote)
}

/// The directory of an API-backed volume: 0777 on disk, or a tmpfs (1777,
/// as upstream's memory-backed wrapper leaves it) for secrets and projections.
fn setup_api_dir(name: &str, dir: &Path, tmpfs: bool) -> Result<(), VolumeError> {
    if let Ok(m) = fs::symlink_metadata(dir) {
        if !m.is_dir() {
            return Err(VolumeError::Invalid {
                volume: name.to_string(),
                reason: format!("{} exists and is not a directory", dir.display()),
            });
        }
    }
    fs::create_dir_all(dir).map_err(io_err(name, dir, "create"))?;
    if tmpfs {
        if !is_mount_point(dir).map_err(io_err(name, Path::new("/proc/self/mountinfo"), "read"))? {
            mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
                .map_err(errno_err(name, dir, "mount tmpfs on"))?;
        }
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(io_err(name, dir, "chmod"))
}

fn setup_empty_dir(name: &str, dir: &Path, tmpfs: Option<Option<u64>>) -> Result<(), VolumeError> {
    if let Ok(m) = fs::symlink_metadata(dir) {
        if !m.is_dir() {
            return Err(VolumeError::Invalid {
                volume: name.to_string(),
                reason: format!("{} exists and is not a directory", dir.display()),
            });
        }
    }
    fs::create_dir_all(dir).map_err(io_err(name, dir, "create"))?;
    if let Some(size) = tmpfs {
        if !is_mount_point(dir).map_err(io_err(name, Path::new("/proc/self/mountinfo"), "read"))? {
            let data = match size {
                Some(s) => format!("mode=0777,size={s}"),
                None => "mode=0777".to_string(),
            };
            mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data.as_str()))
                .map_err(errno_err(name, dir, "mount tmpfs on"))?;
        }
    }
    // chmod after mounting so the mode is the tmpfs root's, and umask doesn't interfere.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(io_err(name, dir, "chmod"))
}

fn describe(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a file"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a fifo"
    } else {
        "something else"
    }
}

fn check_host_path(name: &str, path: &Path, kind: &str) -> Result<(), VolumeError> {
    let mismatch = |found: &str| VolumeError::HostPathType {
        volume: name.to_string(),
        path: path.to_path_buf(),
        want: kind.to_string(),
        found: found.to_string(),
    };
    // Follows symlinks, as upstream's checks do.
    let meta = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(name, path, "stat")(e)),
    };
    let ft = meta.as_ref().map(|m| m.file_type());
    match (kind, ft) {
        ("", _) => Ok(()),
        ("DirectoryOrCreate", None) => {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o755);
            b.create(path).map_err(io_err(name, path, "create directory"))
        }
        ("FileOrCreate", None) => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(io_err(name, path, "create file")),
        (_, None) => Err(mismatch("missing")),
        ("DirectoryOrCreate" | "Directory", Some(t)) if t.is_dir() => Ok(()),
        ("FileOrCreate" | "File", Some(t)) if t.is_file() => Ok(()),
        ("Socket", Some(t)) if t.is_socket() => Ok(()),
        ("CharDevice", Some(t)) if t.is_char_device() => Ok(()),
        ("BlockDevice", Some(t)) if t.is_block_device() => Ok(()),
        (_, Some(t)) => Err(mismatch(describe(t))),
    }
}

/// Unmounts the subPath staging mounts and tmpfs volumes (emptyDir Memory,
/// secret, projected, and anything mounted below them) and removes the
/// pod's emptyDir and API-backed volume data. Stays under `pod_dir`:
/// symlinks are not followed and hostPath contents are never touched.
pub fn teardown(pod_dir: &Path) -> Result<(), VolumeError> {
    // First: they may bind what lies below the other plugins' dirs, or a hostPath.
    subpath::release(pod_dir)?;
    for plugin in PLUGIN_DIRS {
        teardown_plugin(&pod_dir.join(plugin))?;
    }
    let vols = pod_dir.join("volumes");
    // Other plugins' dirs may remain; only drop the parent if it is now empty.
    let _ = fs::remove_dir(&vols);
    Ok(())
}

fn teardown_plugin(root: &Path) -> Result<(), VolumeError> {
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("*", root, "stat")(e)),
        Ok(m) if !m.is_dir() => {
            return Err(VolumeError::Invalid { volume: "*".into(), reason: format!("{} is not a directory", root.display()) })
        }
        Ok(_) => {}
    }
    let mounts = mount_points().map_err(io_err("*", Path::new("/proc/self/mountinfo"), "read"))?;
    let real_root = fs::canonicalize(root).map_err(io_err("*", root, "resolve"))?;
    // Deepest first, so nested mounts go before their parents.
    let mut below: Vec<&PathBuf> = mounts.iter().filter(|m| m.starts_with(&real_root) && **m != real_root).collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in below {
        let name = m.strip_prefix(&real_root).ok().and_then(|r| r.iter().next()).and_then(|n| n.to_str()).unwrap_or("*");
        unmount(m).map_err(errno_err(name, m, "unmount"))?;
    }
    fs::remove_dir_all(root).map_err(io_err("*", root, "remove"))
}

fn unmount(p: &Path) -> nix::Result<()> {
    match umount2(p, MntFlags::empty()) {
        Err(nix::errno::Errno::EBUSY) => umount2(p, MntFlags::MNT_DETACH),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::downward::Allocatable;
    use crate::api::objects::ObjectStore;
    use crate::api::types::*;

    pub(crate) fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("picolet-vol-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn hp(name: &str, path: &Path, kind: &str) -> Volume {
        Volume {
            name: name.into(),
            host_path: Some(HostPathVolumeSource { path: path.to_string_lossy().into(), type_: Some(kind.into()) }),
            ..Default::default()
        }
    }

    fn pod_with(vols: Vec<Volume>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "p".into();
        p.metadata.namespace = "default".into();
        p.spec.volumes = vols;
        p
    }

    #[test]
    fn plans() {
        let mem = Volume {
            name: "m".into(),
            empty_dir: Some(EmptyDirVolumeSource { medium: "Memory".into(), size_limit: Some("1Mi".into()) }),
            ..Default::default()
        };
        assert_eq!(plan(&mem).unwrap(), Plan::EmptyDir { tmpfs_size: Some(Some(1 << 20)) });
        let none = Volume { name: "n".into(), ..Default::default() };
        assert_eq!(plan(&none).unwrap(), Plan::EmptyDir { tmpfs_size: None });
        let cm = Volume { name: "cfg".into(), config_map: Some(ConfigMapVolumeSource { name: "x".into(), ..Default::default() }), ..Default::default() };
        assert_eq!(plan(&cm).unwrap(), Plan::Api { plugin: CONFIG_MAP, tmpfs: false });
        let sec = Volume { name: "s".into(), secret: Some(Default::default()), ..Default::default() };
        assert_eq!(plan(&sec).unwrap(), Plan::Api { plugin: SECRET, tmpfs: true });
        let ctb = VolumeProjection { cluster_trust_bundle: Some(serde_json::json!({"signerName": "x"})), ..Default::default() };
        let proj = Volume {
            name: "p".into(),
            projected: Some(ProjectedVolumeSource { sources: vec![ctb], default_mode: None }),
            ..Default::default()
        };
        let e = plan(&proj).unwrap_err().to_string();
        assert_eq!(e, "volume p: clusterTrustBundle projected volumes are not supported");
        let pvc = Volume { name: "c".into(), persistent_volume_claim: Some(serde_json::json!({"claimName": "x"})), ..Default::default() };
        assert!(matches!(plan(&pvc), Err(VolumeError::Unsupported { .. })));
        let rel = hp("h", Path::new("rel/path"), "");
        assert!(matches!(plan(&rel), Err(VolumeError::Invalid { .. })));
        let bad = hp("h", Path::new("/x"), "Dir");
        assert!(matches!(plan(&bad), Err(VolumeError::Invalid { .. })));
        let huge = Volume {
            name: "m".into(),
            empty_dir: Some(EmptyDirVolumeSource { medium: "HugePages".into(), size_limit: None }),
            ..Default::default()
        };
        assert!(plan(&huge).is_err());
    }


    /// An empty object store under `d` and a node with 2 CPUs and 1 GiB.
    struct Fixture {
        objects: ObjectStore,
        node: Allocatable,
    }

    impl Fixture {
        fn new(d: &Path) -> Fixture {
            Fixture { objects: ObjectStore::new(d.join("objects")), node: Allocatable { cpu_milli: 2000, memory: 1 << 30, ephemeral_storage: 1 << 40 } }
        }
        fn src(&self) -> Sources<'_> {
            Sources { objects: &self.objects, node: &self.node }
        }
    }

    #[test]
    fn unsupported_volume_fails_setup_before_side_effects() {
        let d = tempdir("unsup");
        let f = Fixture::new(&d);
        let p = pod_with(vec![
            Volume { name: "ok".into(), ..Default::default() },
            Volume { name: "c".into(), persistent_volume_claim: Some(serde_json::json!({})), ..Default::default() },
        ]);
        assert!(matches!(setup(&p, &d, &f.src()), Err(VolumeError::Unsupported { .. })));
        assert!(!d.join(EMPTY_DIR).exists());
        // A required object missing from the store: the pod waits, nothing is created.
        let p = pod_with(vec![
            Volume { name: "ok".into(), ..Default::default() },
            cm_vol("cfg", "app", vec![], None),
        ]);
        let e = setup(&p, &d, &f.src()).unwrap_err();
        assert!(matches!(e, VolumeError::Source { .. }));
        assert_eq!(e.to_string(), "volume cfg: configmap \"app\" not found");
        assert!(!d.join(EMPTY_DIR).exists() && !d.join(CONFIG_MAP).exists());
        fs::remove_dir_all(&d).unwrap();
    }

    fn cm_vol(name: &str, cm: &str, items: Vec<KeyToPath>, optional: Option<bool>) -> Volume {
        Volume {
            name: name.into(),
            config_map: Some(ConfigMapVolumeSource { name: cm.into(), items, default_mode: Some(0o644), optional }),
            ..Default::default()
        }
    }

    fn kp(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath { key: key.into(), path: path.into(), mode }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn config_map_and_downward_api_volumes() {
        let d = tempdir("cmvol");
        let f = Fixture::new(&d);
        let b64 = crate::api::objects::base64_encode;
        f.objects
            .put_config_map("default", "app", &serde_json::json!({
                "metadata": {"resourceVersion": "1"},
                "data": {"app.conf": "port=80\n", "mode": "prod"},
                "binaryData": {"blob": b64(&[0, 159, 146, 150])}}))
            .unwrap();
        let mut p = pod_with(vec![
            cm_vol("all", "app", vec![], None),
            cm_vol("some", "app", vec![kp("app.conf", "etc/app.conf", Some(0o600)), kp("blob", "bin", None)], None),
            cm_vol("gone-ok", "missing", vec![], Some(true)),
            Volume {
                name: "info".into(),
                downward_api: Some(DownwardApiVolumeSource {
                    default_mode: Some(0o444),
                    items: vec![
                        DownwardApiVolumeFile {
                            path: "labels".into(),
                            field_ref: Some(ObjectFieldSelector { api_version: "v1".into(), field_path: "metadata.labels".into() }),
                            ..Default::default()
                        },
                        DownwardApiVolumeFile {
                            path: "cpu_limit".into(),
                            resource_field_ref: Some(ResourceFieldSelector { container_name: "c".into(), resource: "limits.cpu".into(), divisor: Some("1m".into()) }),
                            mode: Some(0o400),
                            ..Default::default()
                        },
                    ],
                }),
                ..Default::default()
            },
        ]);
        p.metadata.labels.insert("app".into(), "web".into());
        p.spec.containers.push(Container { name: "c".into(), ..Default::default() });
        let pod_dir = d.join("pod");
        let vols = setup(&p, &pod_dir, &f.src()).unwrap();
        let all = vols.path("all").unwrap();
        assert_eq!(all, pod_dir.join("volumes/kubernetes.io~configmap/all"));
        assert!(vols.read_only("all") && vols.read_only("info"));
        assert_eq!(mode_of(all), 0o777);
        assert_eq!(read(&all.join("app.conf")), "port=80\n");
        assert_eq!(read(&all.join("mode")), "prod");
        assert_eq!(fs::read(all.join("blob")).unwrap(), [0, 159, 146, 150]);
        assert_eq!(mode_of(&all.join("mode")), 0o644);
        assert_eq!(fs::read_link(all.join("mode")).unwrap(), Path::new("..data/mode"));
        let some = vols.path("some").unwrap();
        assert_eq!(read(&some.join("etc/app.conf")), "port=80\n");
        assert_eq!(mode_of(&some.join("etc/app.conf")), 0o600);
        assert!(!some.join("mode").exists(), "items: only the listed keys");
        let gone = vols.path("gone-ok").unwrap();
        assert_eq!(fs::read_dir(gone).unwrap().count(), 2, "optional and missing: empty volume (..data and its dir)");
        let info = vols.path("info").unwrap();
        assert_eq!(info, pod_dir.join("volumes/kubernetes.io~downward-api/info"));
        assert_eq!(read(&info.join("labels")), "app=\"web\"");
        assert_eq!(mode_of(&info.join("labels")), 0o444);
        assert_eq!(read(&info.join("cpu_limit")), "2000", "no limit: the node's allocatable");
        assert_eq!(mode_of(&info.join("cpu_limit")), 0o400);

        // Idempotent, as after a picolet restart: nothing rewritten.
        let data = fs::read_link(all.join("..data")).unwrap();
        setup(&p, &pod_dir, &f.src()).unwrap();
        assert_eq!(fs::read_link(all.join("..data")).unwrap(), data);

        // A key that isn't there, and upstream's wording for it.
        let bad = pod_with(vec![cm_vol("x", "app", vec![kp("nope", "n", None)], None)]);
        assert_eq!(setup(&bad, &pod_dir, &f.src()).unwrap_err().to_string(), "volume x: configmap references non-existent config key: nope");
        teardown(&pod_dir).unwrap();
        assert!(!pod_dir.join("volumes").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refresh_swaps_only_when_the_store_changed() {
        let d = tempdir("refresh");
        let f = Fixture::new(&d);
        let put = |v: &str| f.objects.put_config_map("default", "app", &serde_json::json!({"data": {"k": v}})).unwrap();
        put("one");
        let p = pod_with(vec![cm_vol("req", "app", vec![], None), cm_vol("opt", "app", vec![], Some(true))]);
        let pod_dir = d.join("pod");
        let vols = setup(&p, &pod_dir, &f.src()).unwrap();
        let req = vols.path("req").unwrap().to_path_buf();
        let first = fs::read_link(req.join("..data")).unwrap();
        assert!(!refresh(&p, &pod_dir, &f.src()).unwrap(), "nothing changed");
        put("one"); // written again, same content: stamp differs, nothing swapped
        assert!(!refresh(&p, &pod_dir, &f.src()).unwrap());
        assert_eq!(fs::read_link(req.join("..data")).unwrap(), first);
        put("two");
        assert!(refresh(&p, &pod_dir, &f.src()).unwrap());
        assert_ne!(fs::read_link(req.join("..data")).unwrap(), first);
        assert_eq!(read(&req.join("k")), "two");
        assert!(!req.join(&first).exists(), "old version removed");
        assert!(!refresh(&p, &pod_dir, &f.src()).unwrap());
        // Gone from the store: the required volume keeps its files and says why; the optional one empties.
        f.objects.remove(crate::api::objects::ObjectKind::ConfigMap, "default", "app").unwrap();
        let e = refresh(&p, &pod_dir, &f.src()).unwrap_err();
        assert_eq!(e.to_string(), "volume req: configmap \"app\" not found");
        assert_eq!(read(&req.join("k")), "two");
        assert!(!vols.path("opt").unwrap().join("k").exists());
        teardown(&pod_dir).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    /// The volume ServiceAccount admission adds to every pod, plus a secret.
    #[test]
    #[ignore = "needs root (tmpfs mounts): tests/run.sh runs it"]
    fn secret_and_kube_api_access_volumes_on_tmpfs() {
        assert!(is_root(), "needs root");
        let d = tempdir("projected");
        let f = Fixture::new(&d);
        let b64 = crate::api::objects::base64_encode;
        f.objects.put_config_map("web", "kube-root-ca.crt", &serde_json::json!({"data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}})).unwrap();
        f.objects.put_secret("web", "tls", &serde_json::json!({"data": {"tls.key": b64(b"KEY"), "tls.crt": b64(b"CRT")}})).unwrap();
        let json = r#"[
            {"name": "tls", "secret": {"secretName": "tls", "defaultMode": 256, "items": [{"key": "tls.key", "path": "key"}]}},
            {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]"#;
        let mut p = pod_with(serde_json::from_str(json).unwrap());
        p.metadata.namespace = "web".into();
        p.metadata.uid = "uid-1".into();
        let pod_dir = d.join("pod");
        let e = setup(&p, &pod_dir, &f.src()).unwrap_err().to_string();
        assert_eq!(e, "volume kube-api-access-x7k2p: failed to fetch token: no token for serviceaccount \"web/default\" in the local object store yet");
        let need = &crate::api::objects::token_needs(&p)[0];
        let exp = crate::api::time::rfc3339(std::time::SystemTime::now() + std::time::Duration::from_secs(3607));
        f.objects.put_token("web", "uid-1", need, &serde_json::json!({"status": {"token": "eyJhbGciOi.one", "expirationTimestamp": exp}})).unwrap();
        let vols = setup(&p, &pod_dir, &f.src()).unwrap();
        let (tls, api) = (vols.path("tls").unwrap().to_path_buf(), vols.path("kube-api-access-x7k2p").unwrap().to_path_buf());
        assert_eq!(api, pod_dir.join("volumes/kubernetes.io~projected/kube-api-access-x7k2p"));
        for dir in [&tls, &api] {
            assert!(is_mount_point(dir).unwrap(), "{} on a tmpfs", dir.display());
            assert_eq!(mode_of(dir), 0o1777);
        }
        assert_eq!(read(&tls.join("key")), "KEY");
        assert_eq!(mode_of(&tls.join("key")), 0o400);
        assert!(!tls.join("tls.crt").exists());
        assert_eq!(read(&api.join("token")), "eyJhbGciOi.one");
        assert_eq!(read(&api.join("ca.crt")), "-----BEGIN CERTIFICATE-----\n");
        assert_eq!(read(&api.join("namespace")), "web");
        assert_eq!(mode_of(&api.join("token")), 0o644);
        // A refreshed token reaches the volume through the ..data swap; a second setup mounts nothing twice.
        f.objects.put_token("web", "uid-1", need, &serde_json::json!({"status": {"token": "eyJhbGciOi.two", "expirationTimestamp": exp}})).unwrap();
        assert!(refresh(&p, &pod_dir, &f.src()).unwrap());
        assert_eq!(read(&api.join("token")), "eyJhbGciOi.two");
        setup(&p, &pod_dir, &f.src()).unwrap();
        let real = fs::canonicalize(&api).unwrap();
        assert_eq!(mount_points().unwrap().iter().filter(|m| **m == real).count(), 1);
        teardown(&pod_dir).unwrap();
        assert!(!mount_points().unwrap().iter().any(|m| m.starts_with(&d)));
        assert!(!pod_dir.join("volumes").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn host_path_types() {
        let d = tempdir("hostpath");
        let dir = d.join("existing-dir");
        fs::create_dir(&dir).unwrap();
        let file = d.join("file");
        fs::write(&file, "x").unwrap();
        let sock = d.join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let ok = pod_with(vec![
            hp("a", &dir, "Directory"),
            hp("b", &d.join("new/nested"), "DirectoryOrCreate"),
            hp("c", &d.join("newfile"), "FileOrCreate"),
            hp("d", &file, "File"),
            hp("e", &sock, "Socket"),
            hp("f", Path::new("/dev/null"), "CharDevice"),
            hp("g", &d.join("missing"), ""),
            hp("h", &file, "FileOrCreate"),
        ]);
        let f = Fixture::new(&d);
        let vols = setup(&ok, &d.join("pod"), &f.src()).unwrap();
        assert_eq!(vols.path("a"), Some(dir.as_path()));
        assert!(d.join("new/nested").is_dir());
        let m = fs::metadata(d.join("newfile")).unwrap();
        assert!(m.is_file() && m.len() == 0);
        assert_eq!(fs::read_to_string(&file).unwrap(), "x", "FileOrCreate must not truncate");
        // idempotent
        setup(&ok, &d.join("pod"), &f.src()).unwrap();

        let bad = [
            hp("x", &file, "Directory"),
            hp("x", &dir, "File"),
            hp("x", &d.join("missing"), "Directory"),
            hp("x", &d.join("missing"), "File"),
            hp("x", &file, "Socket"),
            hp("x", &dir, "BlockDevice"),
            hp("x", Path::new("/dev/null"), "BlockDevice"),
        ];
        for v in bad {
            let e = setup(&pod_with(vec![v.clone()]), &d.join("pod"), &f.src()).unwrap_err();
            assert!(matches!(e, VolumeError::HostPathType { .. }), "{v:?}: {e}");
            assert!(e.to_string().starts_with("volume x: hostPath "), "{e}");
        }
        // FileOrCreate doesn't create the parent directory (per the Kubernetes docs).
        let e = setup(&pod_with(vec![hp("y", &d.join("nodir/f"), "FileOrCreate")]), &d.join("pod"), &f.src()).unwrap_err();
        assert!(matches!(e, VolumeError::Io { .. }), "{e}");
        teardown(&d.join("pod")).unwrap();
        assert!(file.exists() && dir.exists(), "teardown must not touch hostPaths");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    #[ignore = "needs root (tmpfs mounts): tests/run.sh runs it"]
    fn empty_dirs_and_teardown() {
        assert!(is_root(), "needs root");
        let d = tempdir("emptydir");
        let pod_dir = d.join("pod");
        let outside = d.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "k").unwrap();
        let p = pod_with(vec![
            Volume { name: "disk".into(), empty_dir: Some(Default::default()), ..Default::default() },
            Volume {
                name: "mem".into(),
                empty_dir: Some(EmptyDirVolumeSource { medium: "Memory".into(), size_limit: Some("4Mi".into()) }),
                ..Default::default()
            },
        ]);
        let f = Fixture::new(&d);
        let vols = setup(&p, &pod_dir, &f.src()).unwrap();
        let disk = vols.path("disk").unwrap().to_path_buf();
        let mem = vols.path("mem").unwrap().to_path_buf();
        assert_eq!(disk, pod_dir.join("volumes/kubernetes.io~empty-dir/disk"));
        assert_eq!(fs::metadata(&disk).unwrap().permissions().mode() & 0o7777, 0o777);
        assert_eq!(fs::metadata(&mem).unwrap().permissions().mode() & 0o7777, 0o777);
        let st = nix::sys::statvfs::statvfs(&mem).unwrap();
        assert_eq!(st.blocks() as u64 * st.fragment_size() as u64, 4 << 20);
        fs::write(disk.join("data"), "hello").unwrap();
        fs::write(mem.join("data"), "hi").unwrap();
        std::os::unix::fs::symlink(&outside, disk.join("link")).unwrap();

        // Again, as after a picolet restart: data kept, no second tmpfs.
        setup(&p, &pod_dir, &f.src()).unwrap();
        assert_eq!(fs::read_to_string(disk.join("data")).unwrap(), "hello");
        assert_eq!(fs::read_to_string(mem.join("data")).unwrap(), "hi");
        let real = fs::canonicalize(&mem).unwrap();
        assert_eq!(mount_points().unwrap().iter().filter(|m| **m == real).count(), 1);

        // A staged subPath goes with the pod too, and the bind of the
        // emptyDir's dir is unmounted before anything is removed.
        let c = Container {
            name: "c".into(),
            volume_mounts: vec![crate::api::types::VolumeMount {
                name: "mem".into(),
                mount_path: "/x".into(),
                sub_path: "sub/dir".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let staged = subpath::prepare(&vols, &pod_dir, &c, |e| Ok(e.into())).unwrap();
        assert!(is_mount_point(staged.get(0).unwrap()).unwrap());

        teardown(&pod_dir).unwrap();
        assert!(!pod_dir.join(subpath::SUBPATHS).exists());
        assert!(!pod_dir.join(EMPTY_DIR).exists());
        assert!(!mount_points().unwrap().iter().any(|m| m.starts_with(&d)));
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "k");
        teardown(&pod_dir).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
