//! `subPath` volumeMounts, safe against a container that swaps a path
//! component for a symlink (the class of CVE-2017-1002101 and
//! CVE-2021-25741), as upstream's kubelet makes them.
//!
//! Checking `<volume>/<subPath>` and handing that path to runc would leave a
//! window: runc resolves the path again when it mounts, and by then another
//! container of the pod may have turned a component into a symlink to the
//! host's `/`. Instead [`prepare`] creates what is missing (directories with
//! the volume's mode, one `mkdirat` at a time), resolves the subPath once and
//! refuses it if it leads out of the volume, then walks the resolved path
//! from an fd of the volume root, one `openat(O_PATH|O_NOFOLLOW)` per
//! component, refusing any symlink met on the way. The fd it ends on is
//! bind-mounted through `/proc/self/fd/N` onto a staging path that picolet
//! alone owns, `<pod dir>/volume-subpaths/<volume>/<container>/<index>`, and
//! that path is what config.json names. A symlink inside the volume that
//! stays inside (a configMap key's `..data/key`) is followed, as upstream does.
//!
//! Every start of a container stages its subPaths afresh (whatever an
//! earlier attempt left is unmounted first); [`release`] unmounts them all
//! once the pod's containers are gone for good (it ended, or it goes:
//! [`super::teardown`]), also after a picolet restart, since they live
//! under the pod dir. `subPathExpr` is the same once the caller expanded it.

use super::{VolumeError, Volumes};
use crate::api::types::Container;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Where staging mounts live under a pod dir (upstream's name).
pub(super) const SUBPATHS: &str = "volume-subpaths";

/// The staged host path of each subPath (or subPathExpr) volumeMount of one
/// container, by the mount's index in `volumeMounts`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubPaths(BTreeMap<usize, PathBuf>);

impl SubPaths {
    /// The staging path for `volumeMounts[index]`, if it has a subPath.
    pub fn get(&self, index: usize) -> Option<&Path> {
        self.0.get(&index).map(PathBuf::as_path)
    }

    #[cfg(test)]
    pub(crate) fn insert(&mut self, index: usize, path: PathBuf) {
        self.0.insert(index, path);
    }
}

/// Stages every subPath volumeMount of `c` under `pod_dir`; a subPathExpr
/// is expanded by `expand` first (the container's env: an error names the
/// variables without a value). A subPath that is missing is created
/// (directories, with the mode of the volume's root); one that leads out of
/// the volume, or meets a symlink while it is opened, is refused with
/// upstream's message (the reason goes to the log only, as upstream keeps
/// host paths out of the pod's status).
pub fn prepare(
    vols: &Volumes,
    pod_dir: &Path,
    c: &Container,
    expand: impl Fn(&str) -> Result<String, String>,
) -> Result<SubPaths, VolumeError> {
    let mut out = SubPaths::default();
    for (i, m) in c.volume_mounts.iter().enumerate().filter(|(_, m)| !m.sub_path.is_empty() || !m.sub_path_expr.is_empty()) {
        let base = vols.path(&m.name).ok_or_else(|| VolumeError::NotFound { volume: m.name.clone() })?;
        // Validation makes it a DNS label; it names a directory here.
        if !super::valid_name(&c.name) {
            return Err(VolumeError::Invalid { volume: m.name.clone(), reason: format!("invalid container name {:?}", c.name) });
        }
        let sub_path = match m.sub_path_expr.as_str() {
            "" => m.sub_path.clone(),
            expr => expand(expr).map_err(|e| VolumeError::Invalid { volume: m.name.clone(), reason: format!("subPathExpr {expr:?}: {e}") })?,
        };
        let sub = relative(&sub_path).ok_or_else(|| VolumeError::BadSubPath { volume: m.name.clone(), sub_path })?;
        let fail = |create: bool| {
            move |reason: String| VolumeError::SubPath { volume: m.name.clone(), container: c.name.clone(), create, reason }
        };
        // The volume's own path is the pod's (or the node's, for hostPath): trusted.
        let real_base = fs::canonicalize(base).map_err(|e| fail(false)(why("resolve volume", base, e)))?;
        make_dirs(&real_base, &sub).map_err(fail(true))?;
        let fd = resolve(&real_base, &sub).map_err(fail(false))?;
        let target = pod_dir.join(SUBPATHS).join(&m.name).join(&c.name).join(i.to_string());
        stage(&fd, &target).map_err(fail(false))?;
        out.0.insert(i, target);
    }
    Ok(out)
}

/// `sub` as a relative path of plain names; None for an absolute path or `..`.
fn relative(sub: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The log's reason for a failed step: formatted only when one fails.
fn why(op: &str, path: &Path, e: impl Into<io::Error>) -> String {
    format!("{op} {}: {}", path.display(), e.into())
}

fn outside(full: &Path, real: &Path, real_base: &Path) -> String {
    format!("{} resolves to {}, outside the volume {}", full.display(), real.display(), real_base.display())
}

/// An fd just returned by a syscall, closed when dropped.
fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just opened by this thread and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn is_symlink(fd: &OwnedFd) -> Result<bool, Errno> {
    Ok(SFlag::from_bits_truncate(fstat(fd.as_raw_fd())?.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

fn is_dir(fd: &OwnedFd) -> Result<bool, Errno> {
    Ok(SFlag::from_bits_truncate(fstat(fd.as_raw_fd())?.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Opens `rel` (plain names) below the directory `real_base` without
/// following any symlink: each component is opened relative to the fd of
/// the one before, and one that is a symlink now is refused.
fn open_beneath(real_base: &Path, rel: &Path) -> Result<OwnedFd, String> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(real_base, flags | OFlag::O_DIRECTORY, Mode::empty())
        .map(owned)
        .map_err(|e| why("open", real_base, e))?;
    let mut path = real_base.to_path_buf();
    for c in rel.components() {
        let Component::Normal(name) = c else { return Err(format!("{}: not a plain relative path", rel.display())) };
        path.push(name);
        fd = openat(Some(fd.as_raw_fd()), name, flags, Mode::empty()).map(owned).map_err(|e| why("open", &path, e))?;
        if is_symlink(&fd).map_err(|e| why("stat", &path, e))? {
            return Err(format!("unexpected symlink at {}", path.display()));
        }
    }
    Ok(fd)
}

/// `real_base/sub` with its symlinks resolved, opened through
/// [`open_beneath`]: refused if it leads out of the volume, or if a
/// component became a symlink since it was resolved.
fn resolve(real_base: &Path, sub: &Path) -> Result<OwnedFd, String> {
    let full = real_base.join(sub);
    let real = fs::canonicalize(&full).map_err(|e| why("resolve", &full, e))?;
    let rel = real.strip_prefix(real_base).map_err(|_| outside(&full, &real, real_base))?;
    open_beneath(real_base, rel)
}

/// Creates what is missing of `real_base/sub`, as upstream's SafeMakeDir:
/// nothing if the path exists (whatever it is: [`resolve`] judges it);
/// else from the longest existing prefix, which must resolve inside the
/// volume, each directory by `mkdirat` in the fd of its parent and opened
/// without following symlinks, then given the volume root's mode (setgid
/// and sticky bits too; the umask does not apply).
fn make_dirs(real_base: &Path, sub: &Path) -> Result<(), String> {
    let full = real_base.join(sub);
    match fs::metadata(&full) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(why("stat", &full, e)),
    }
    let names: Vec<&OsStr> = sub.iter().collect();
    let mut have = names.len();
    let existing = loop {
        let Some(k) = have.checked_sub(1) else { break real_base.to_path_buf() };
        have = k;
        let prefix: PathBuf = std::iter::once(real_base.as_os_str()).chain(names.iter().take(k).copied()).collect();
        match fs::canonicalize(&prefix) {
            Ok(p) => break p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(why("resolve", &prefix, e)),
        }
    };
    let rel = existing.strip_prefix(real_base).map_err(|_| outside(&full, &existing, real_base))?;
    let mode = fs::metadata(real_base).map_err(|e| why("stat", real_base, e))?.permissions().mode() & 0o7777;
    let mode = Mode::from_bits_truncate(mode);
    let mut dir = open_beneath(real_base, rel)?;
    let mut path = existing.clone();
    for name in names.iter().skip(have) {
        path.push(name);
        mkdirat(Some(dir.as_raw_fd()), *name, mode).map_err(|e| why("create", &path, e))?;
        // Not O_PATH: fchmod needs a real open. O_DIRECTORY: a fifo put there meanwhile can't block us.
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        dir = openat(Some(dir.as_raw_fd()), *name, flags, Mode::empty())
            .map(owned)
            .map_err(|e| why("open", &path, e))?;
        fchmod(dir.as_raw_fd(), mode).map_err(|e| why("chmod", &path, e))?;
    }
    Ok(())
}

/// Stacked mounts one target may carry after crashes; more is a loop.
const MAX_STACKED: usize = 64;

/// Bind-mounts what `fd` refers to onto `target` (a directory, or an empty
/// file for anything else), after unmounting what was there.
fn stage(fd: &OwnedFd, target: &Path) -> Result<(), String> {
    let parent = target.parent().unwrap_or(target);
    fs::DirBuilder::new().recursive(true).mode(0o750).create(parent).map_err(|e| why("create", parent, e))?;
    unmount_all(target)?;
    let want_dir = is_dir(fd).map_err(|e| why("stat the fd for", target, e))?;
    match fs::symlink_metadata(target) {
        Ok(m) if (m.is_dir() && want_dir) || (m.is_file() && !want_dir) => {}
        Ok(m) => {
            let r = if m.is_dir() { fs::remove_dir(target) } else { fs::remove_file(target) };
            r.map_err(|e| why("remove", target, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(why("stat", target, e)),
    }
    let made = if want_dir {
        match fs::DirBuilder::new().mode(0o750).create(target) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    } else {
        fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o640).open(target).map(drop)
    };
    made.map_err(|e| why("create", target, e))?;
    // The kernel mounts exactly what the fd refers to: no path is walked again.
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mount(Some(source.as_str()), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| why(&format!("bind-mount {source} on"), target, e))
}

/// Unmounts every mount stacked on `target`; fine if there is none.
fn unmount_all(target: &Path) -> Result<(), String> {
    for _ in 0..MAX_STACKED {
        match umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(why("unmount", target, e)),
        }
    }
    Err(format!("unmount {}: still mounted after {MAX_STACKED} unmounts", target.display()))
}

/// Unmounts and removes every staging mount of the pod (deepest first);
/// nothing is removed while anything below is still mounted, so a bind of
/// a hostPath is never walked into. Cheap when there are none.
pub fn release(pod_dir: &Path) -> Result<(), VolumeError> {
    super::teardown_plugin(&pod_dir.join(SUBPATHS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::VolumeMount;
    use crate::hostfs::is_mount_point;
    use std::os::unix::fs::symlink;

    /// A volume dir `vol` and, beside it, `host/b/sentinel`: what an escape would show.
    fn fixture(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
        let d = super::super::tests::tempdir(&format!("subpath-{tag}"));
        let (vol, host) = (d.join("vol"), d.join("host"));
        fs::create_dir_all(vol.join("a/b")).unwrap();
        fs::write(vol.join("a/b/marker"), "inside").unwrap();
        fs::create_dir_all(host.join("b")).unwrap();
        fs::write(host.join("b/sentinel"), "host secret").unwrap();
        (d, vol, host)
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn container(mounts: &[(&str, &str)]) -> Container {
        let volume_mounts = mounts
            .iter()
            .map(|(name, sub)| VolumeMount { name: name.to_string(), mount_path: "/x".into(), sub_path: sub.to_string(), ..Default::default() })
            .collect();
        Container { name: "c".into(), volume_mounts, ..Default::default() }
    }

    fn literal(expr: &str) -> Result<String, String> {
        Ok(expr.to_string())
    }

    fn needs_root() {
        assert!(nix::unistd::geteuid().is_root(), "this test mounts: run it as root (tests/run.sh does)");
    }

    #[test]
    fn relative_sub_paths_only() {
        assert_eq!(relative("a//b/./c/"), Some(PathBuf::from("a/b/c")));
        assert_eq!(relative("..data/key"), Some(PathBuf::from("..data/key")), "a name that starts with dots is a name");
        assert_eq!(relative("."), Some(PathBuf::new()));
        for bad in ["/etc", "../x", "a/../../x", "a/.."] {
            assert_eq!(relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn missing_dirs_are_made_inside_with_the_volume_mode() {
        let (d, vol, host) = fixture("mkdir");
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o2770)).unwrap();
        let a_mode = mode_of(&vol.join("a"));
        make_dirs(&vol, Path::new("a/new/deeper")).unwrap();
        for p in ["a/new", "a/new/deeper"] {
            assert_eq!(mode_of(&vol.join(p)), 0o2770, "{p}: the volume's mode, setgid included, whatever the umask");
        }
        assert_eq!(mode_of(&vol.join("a")), a_mode, "what existed is left alone");
        make_dirs(&vol, Path::new("a/new/deeper")).unwrap();

        // A symlink inside that stays inside is followed, as upstream's resolution does.
        symlink("a", vol.join("inner")).unwrap();
        make_dirs(&vol, Path::new("inner/via-link")).unwrap();
        assert!(vol.join("a/via-link").is_dir());

        // One that leads out: nothing is made there.
        symlink(&host, vol.join("out")).unwrap();
        let e = make_dirs(&vol, Path::new("out/new")).unwrap_err();
        assert!(e.contains("outside the volume"), "{e}");
        assert!(!host.join("new").exists());
        // A file in the way, and a dangling link in the way, are errors.
        fs::write(vol.join("file"), "").unwrap();
        assert!(make_dirs(&vol, Path::new("file/x")).is_err());
        symlink("nowhere", vol.join("dangling")).unwrap();
        assert!(make_dirs(&vol, Path::new("dangling/x")).is_err());
        assert!(!vol.join("nowhere").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn resolution_stays_in_the_volume_and_refuses_symlinks_met_while_opening() {
        let (d, vol, host) = fixture("resolve");
        let marker = |fd: OwnedFd| fs::read_to_string(format!("/proc/self/fd/{}/marker", fd.as_raw_fd())).unwrap();
        assert_eq!(marker(resolve(&vol, Path::new("a/b")).unwrap()), "inside");
        // A configMap's layout: key -> ..data/key, ..data -> ..v1: followed, inside.
        fs::create_dir_all(vol.join("..v1")).unwrap();
        fs::write(vol.join("..v1/key"), "value").unwrap();
        symlink("..v1", vol.join("..data")).unwrap();
        symlink("..data/key", vol.join("key")).unwrap();
        let fd = resolve(&vol, Path::new("key")).unwrap();
        assert_eq!(fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap(), "value");
        // A component that leads out, directly or through another link.
        fs::rename(vol.join("a"), vol.join("a.real")).unwrap();
        symlink(&host, vol.join("a")).unwrap();
        let e = resolve(&vol, Path::new("a/b")).unwrap_err();
        assert!(e.contains("outside the volume"), "{e}");
        symlink("a", vol.join("hop")).unwrap();
        assert!(resolve(&vol, Path::new("hop/b")).unwrap_err().contains("outside the volume"));
        // What a swap between resolving and opening leaves: a symlink where the walk
        // expects a directory. Refused, even one that points inside.
        fs::remove_file(vol.join("a")).unwrap();
        symlink("a.real", vol.join("a")).unwrap();
        let e = open_beneath(&vol, Path::new("a/b")).unwrap_err();
        assert!(e.starts_with("unexpected symlink at ") && e.ends_with("/a"), "{e}");
        let e = open_beneath(&vol, Path::new("key")).unwrap_err();
        assert!(e.starts_with("unexpected symlink at "), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    /// The fix itself: the container gets what was checked, whatever the
    /// path says by the time runc mounts it.
    #[test]
    fn a_staged_sub_path_keeps_what_was_checked_after_a_swap() {
        needs_root();
        let (d, vol, host) = fixture("stage");
        let pod_dir = d.join("pod");
        let mut vols = Volumes::default();
        vols.insert("work", vol.clone());
        fs::write(vol.join("file"), "a file").unwrap();
        let c = container(&[("work", "a/b"), ("work", ""), ("work", "file"), ("work", "new/dir")]);
        let staged = prepare(&vols, &pod_dir, &c, literal).unwrap();
        let (dir, file, new) = (staged.get(0).unwrap(), staged.get(2).unwrap(), staged.get(3).unwrap());
        assert_eq!(dir, pod_dir.join("volume-subpaths/work/c/0"));
        assert_eq!(staged.get(1), None, "no subPath, nothing staged");
        assert_eq!(fs::read_to_string(dir.join("marker")).unwrap(), "inside");
        assert_eq!(fs::read_to_string(file).unwrap(), "a file");
        assert!(is_mount_point(new).unwrap() && vol.join("new/dir").is_dir());

        // The container swaps the component for a link to the host once the check passed.
        fs::rename(vol.join("a"), vol.join("a.real")).unwrap();
        symlink(&host, vol.join("a")).unwrap();
        assert!(vol.join("a/b/sentinel").exists(), "the path the old code handed runc now leads out");
        assert_eq!(fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>(), ["marker"]);

        // The next start refuses it, with upstream's message; the reason is for the log.
        let e = prepare(&vols, &pod_dir, &c, literal).unwrap_err();
        assert_eq!(e.to_string(), "failed to prepare subPath for volumeMount \"work\" of container \"c\"");
        assert!(e.detail().unwrap().contains("outside the volume"), "{e:?}");
        let e = prepare(&vols, &pod_dir, &container(&[("work", "a/b/new")]), literal).unwrap_err();
        assert_eq!(e.to_string(), "failed to create subPath directory for volumeMount \"work\" of container \"c\"");
        assert!(!host.join("b/new").exists());

        // Restaged after a restart: one mount per target, never a stack.
        fs::remove_file(vol.join("a")).unwrap();
        fs::rename(vol.join("a.real"), vol.join("a")).unwrap();
        prepare(&vols, &pod_dir, &c, literal).unwrap();
        let real = fs::canonicalize(dir).unwrap();
        assert_eq!(crate::hostfs::mount_points().unwrap().iter().filter(|m| **m == real).count(), 1);

        release(&pod_dir).unwrap();
        assert!(!pod_dir.join(SUBPATHS).exists());
        assert!(!crate::hostfs::mount_points().unwrap().iter().any(|m| m.starts_with(&d)));
        assert_eq!(fs::read_to_string(vol.join("a/b/marker")).unwrap(), "inside", "the volume's data stays");
        assert_eq!(fs::read_to_string(vol.join("file")).unwrap(), "a file");
        release(&pod_dir).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sub_path_expressions_are_staged_once_expanded() {
        needs_root();
        let (d, vol, _) = fixture("expr");
        let mut vols = Volumes::default();
        vols.insert("work", vol.clone());
        let pod_dir = d.join("pod");
        let mut c = container(&[("work", "")]);
        c.volume_mounts[0].sub_path_expr = "logs/$(POD_NAME)".into();
        let env = |expr: &str| Ok(expr.replace("$(POD_NAME)", "web-1"));
        let staged = prepare(&vols, &pod_dir, &c, env).unwrap();
        assert!(vol.join("logs/web-1").is_dir());
        assert!(is_mount_point(staged.get(0).unwrap()).unwrap());
        let e = prepare(&vols, &pod_dir, &c, |_: &str| Err("missing value for POD_NAME".into())).unwrap_err();
        assert_eq!(e.to_string(), "volume work: subPathExpr \"logs/$(POD_NAME)\": missing value for POD_NAME");
        let e = prepare(&vols, &pod_dir, &c, |_: &str| Ok("../up".into())).unwrap_err();
        assert_eq!(e.to_string(), "volume work: invalid subPath \"../up\" (must be relative, without '..')");
        release(&pod_dir).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_sub_paths_and_unknown_volumes() {
        let (d, vol, _) = fixture("bad");
        let mut vols = Volumes::default();
        vols.insert("work", vol);
        let pod_dir = d.join("pod");
        for bad in ["/etc", "../x", "a/../.."] {
            let e = prepare(&vols, &pod_dir, &container(&[("work", bad)]), literal).unwrap_err();
            assert!(matches!(e, VolumeError::BadSubPath { .. }), "{bad}: {e}");
        }
        let e = prepare(&vols, &pod_dir, &container(&[("nope", "a")]), literal).unwrap_err();
        assert_eq!(e.to_string(), "volume nope: no such volume in the pod");
        assert!(!pod_dir.exists(), "nothing staged");
        fs::remove_dir_all(&d).unwrap();
    }
}
