//! Pod volumes picolet can serve without a cluster: `emptyDir` and `hostPath`.
//!
//! Does: create emptyDir directories under the pod dir (tmpfs-mounted for
//! `medium: Memory`), check/create hostPath targets by `type`, resolve subPaths,
//! and tear emptyDirs down again. Setup is idempotent across picolet restarts.
//! Doesn't: configMap, secret, projected, downwardAPI, PVC volumes (they need a
//! cluster), fsGroup ownership changes, or emptyDir size accounting on disk.

use crate::api::types::{Container, Pod, Volume};
use crate::node::fs::{is_mount_point, mount_points};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const EMPTY_DIR: &str = "volumes/kubernetes.io~empty-dir";

/// The host paths of a pod's volumes, by volume name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volumes {
    paths: BTreeMap<String, PathBuf>,
}

impl Volumes {
    /// Host path backing volume `name`, if the pod has such a volume.
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.paths.get(name).map(PathBuf::as_path)
    }

    /// Adds or replaces a volume (for callers that build volumes themselves, and tests).
    pub fn insert(&mut self, name: &str, path: PathBuf) {
        self.paths.insert(name.to_string(), path);
    }

    /// Host path for `subPath` inside volume `name`: refuses absolute paths and `..`.
    /// Pure: doesn't look at the filesystem (see [`ensure_subpaths`]).
    pub fn sub_path(&self, name: &str, sub: &str) -> Result<PathBuf, VolumeError> {
        let base = self.path(name).ok_or_else(|| VolumeError::NotFound { volume: name.to_string() })?;
        if sub.is_empty() {
            return Ok(base.to_path_buf());
        }
        let bad = Path::new(sub)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if bad {
            return Err(VolumeError::BadSubPath { volume: name.to_string(), sub_path: sub.to_string() });
        }
        Ok(base.join(sub))
    }
}

/// Why a volume could not be set up or torn down.
#[derive(Debug)]
pub enum VolumeError {
    /// A volume type that needs a cluster (configMap, secret, ...).
    Unsupported { volume: String, kind: &'static str },
    /// A spec value picolet refuses (bad name, medium, size, relative hostPath...).
    Invalid { volume: String, reason: String },
    /// A hostPath does not have the required `type`.
    HostPathType { volume: String, path: PathBuf, want: String, found: String },
    /// A subPath that is absolute, contains `..`, or escapes the volume through a symlink.
    BadSubPath { volume: String, sub_path: String },
    /// A volumeMount names a volume the pod doesn't have.
    NotFound { volume: String },
    /// A filesystem operation failed.
    Io { volume: String, path: PathBuf, op: &'static str, source: io::Error },
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeError::Unsupported { volume, kind } => write!(
                f,
                "volume {volume}: {kind} volumes need a cluster (not supported standalone)"
            ),
            VolumeError::Invalid { volume, reason } => write!(f, "volume {volume}: {reason}"),
            VolumeError::HostPathType { volume, path, want, found } => write!(
                f,
                "volume {volume}: hostPath {} is {found}, want type {want}",
                path.display()
            ),
            VolumeError::BadSubPath { volume, sub_path } => {
                write!(f, "volume {volume}: invalid subPath {sub_path:?} (must be relative, without '..', inside the volume)")
            }
            VolumeError::NotFound { volume } => write!(f, "volume {volume}: no such volume in the pod"),
            VolumeError::Io { volume, path, op, source } => {
                write!(f, "volume {volume}: {op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for VolumeError {}

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
}

fn plan(v: &Volume) -> Result<Plan, VolumeError> {
    let unsupported = |kind| Err(VolumeError::Unsupported { volume: v.name.clone(), kind });
    if v.config_map.is_some() {
        return unsupported("configMap");
    }
    if v.secret.is_some() {
        return unsupported("secret");
    }
    if v.projected.is_some() {
        return unsupported("projected");
    }
    if v.downward_api.is_some() {
        return unsupported("downwardAPI");
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
/// CharDevice, BlockDevice, "" (no check). Idempotent: never wipes data or mounts twice.
/// Unsupported volume types → [`VolumeError::Unsupported`].
pub fn setup(pod: &Pod, pod_dir: &Path) -> Result<Volumes, VolumeError> {
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
        };
        out.insert(&v.name, path);
    }
    Ok(out)
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

/// Creates missing subPath directories of `c`'s volumeMounts (0755) and refuses
/// subPaths that leave their volume, also through symlinks inside the volume.
pub fn ensure_subpaths(vols: &Volumes, c: &Container) -> Result<(), VolumeError> {
    for m in c.volume_mounts.iter().filter(|m| !m.sub_path.is_empty()) {
        let target = vols.sub_path(&m.name, &m.sub_path)?;
        let base = vols.path(&m.name).unwrap_or(Path::new("/"));
        if fs::symlink_metadata(&target).is_err() {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o755);
            b.create(&target).map_err(io_err(&m.name, &target, "create subPath"))?;
        }
        let real = fs::canonicalize(&target).map_err(io_err(&m.name, &target, "resolve subPath"))?;
        let real_base = fs::canonicalize(base).map_err(io_err(&m.name, base, "resolve volume"))?;
        if !real.starts_with(&real_base) {
            return Err(VolumeError::BadSubPath { volume: m.name.clone(), sub_path: m.sub_path.clone() });
        }
    }
    Ok(())
}

/// Unmounts tmpfs emptyDirs (and anything mounted below them) and removes the
/// pod's emptyDir data. Stays under `pod_dir`: symlinks are not followed and
/// hostPath contents are never touched.
pub fn teardown(pod_dir: &Path) -> Result<(), VolumeError> {
    let root = pod_dir.join(EMPTY_DIR);
    match fs::symlink_metadata(&root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("*", &root, "stat")(e)),
        Ok(m) if !m.is_dir() => {
            return Err(VolumeError::Invalid { volume: "*".into(), reason: format!("{} is not a directory", root.display()) })
        }
        Ok(_) => {}
    }
    let mounts = mount_points().map_err(io_err("*", Path::new("/proc/self/mountinfo"), "read"))?;
    let real_root = fs::canonicalize(&root).map_err(io_err("*", &root, "resolve"))?;
    // Deepest first, so nested mounts go before their parents.
    let mut below: Vec<&PathBuf> = mounts.iter().filter(|m| m.starts_with(&real_root) && **m != real_root).collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in below {
        let name = m.strip_prefix(&real_root).ok().and_then(|r| r.iter().next()).and_then(|n| n.to_str()).unwrap_or("*");
        unmount(m).map_err(errno_err(name, m, "unmount"))?;
    }
    fs::remove_dir_all(&root).map_err(io_err("*", &root, "remove"))?;
    let vols = pod_dir.join("volumes");
    // Other plugins' dirs may remain; only drop the parent if it is now empty.
    let _ = fs::remove_dir(&vols);
    Ok(())
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
    use crate::api::types::{EmptyDirVolumeSource, HostPathVolumeSource};

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
        let cm = Volume { name: "cfg".into(), config_map: Some(crate::api::types::ConfigMapVolumeSource { name: "x".into(), ..Default::default() }), ..Default::default() };
        let e = plan(&cm).unwrap_err().to_string();
        assert!(e.contains("volume cfg") && e.contains("configMap") && e.contains("need a cluster"), "{e}");
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

    #[test]
    fn sub_paths() {
        let mut v = Volumes::default();
        v.insert("data", PathBuf::from("/pod/vol/data"));
        assert_eq!(v.sub_path("data", "").unwrap(), PathBuf::from("/pod/vol/data"));
        assert_eq!(v.sub_path("data", "a/b").unwrap(), PathBuf::from("/pod/vol/data/a/b"));
        assert!(v.sub_path("data", "../x").is_err());
        assert!(v.sub_path("data", "a/../../x").is_err());
        assert!(v.sub_path("data", "/etc").is_err());
        assert!(matches!(v.sub_path("nope", "a"), Err(VolumeError::NotFound { .. })));
    }


    #[test]
    fn unsupported_volume_fails_setup_before_side_effects() {
        let d = tempdir("unsup");
        let p = pod_with(vec![
            Volume { name: "ok".into(), ..Default::default() },
            Volume { name: "s".into(), secret: Some(Default::default()), ..Default::default() },
        ]);
        assert!(matches!(setup(&p, &d), Err(VolumeError::Unsupported { .. })));
        assert!(!d.join(EMPTY_DIR).exists());
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
        let vols = setup(&ok, &d.join("pod")).unwrap();
        assert_eq!(vols.path("a"), Some(dir.as_path()));
        assert!(d.join("new/nested").is_dir());
        let m = fs::metadata(d.join("newfile")).unwrap();
        assert!(m.is_file() && m.len() == 0);
        assert_eq!(fs::read_to_string(&file).unwrap(), "x", "FileOrCreate must not truncate");
        // idempotent
        setup(&ok, &d.join("pod")).unwrap();

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
            let e = setup(&pod_with(vec![v.clone()]), &d.join("pod")).unwrap_err();
            assert!(matches!(e, VolumeError::HostPathType { .. }), "{v:?}: {e}");
            assert!(e.to_string().starts_with("volume x: hostPath "), "{e}");
        }
        // FileOrCreate doesn't create the parent directory (per the Kubernetes docs).
        let e = setup(&pod_with(vec![hp("y", &d.join("nodir/f"), "FileOrCreate")]), &d.join("pod")).unwrap_err();
        assert!(matches!(e, VolumeError::Io { .. }), "{e}");
        teardown(&d.join("pod")).unwrap();
        assert!(file.exists() && dir.exists(), "teardown must not touch hostPaths");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_dirs_and_teardown() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
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
        let vols = setup(&p, &pod_dir).unwrap();
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
        setup(&p, &pod_dir).unwrap();
        assert_eq!(fs::read_to_string(disk.join("data")).unwrap(), "hello");
        assert_eq!(fs::read_to_string(mem.join("data")).unwrap(), "hi");
        let real = fs::canonicalize(&mem).unwrap();
        assert_eq!(mount_points().unwrap().iter().filter(|m| **m == real).count(), 1);

        // subPath: created on demand, escapes refused.
        let c = Container {
            name: "c".into(),
            volume_mounts: vec![crate::api::types::VolumeMount {
                name: "disk".into(),
                mount_path: "/x".into(),
                sub_path: "sub/dir".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        ensure_subpaths(&vols, &c).unwrap();
        assert!(disk.join("sub/dir").is_dir());
        let mut c2 = c.clone();
        c2.volume_mounts[0].sub_path = "link".into();
        assert!(matches!(ensure_subpaths(&vols, &c2), Err(VolumeError::BadSubPath { .. })));

        teardown(&pod_dir).unwrap();
        assert!(!pod_dir.join(EMPTY_DIR).exists());
        assert!(!mount_points().unwrap().iter().any(|m| m.starts_with(&d)));
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "k");
        teardown(&pod_dir).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
