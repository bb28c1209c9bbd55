//! The layer directory being filled, and the only way unpacking touches the
//! filesystem. Every operation names a parent directory by its cleaned path
//! from the layer root (`name.rs`) and a name in it. The parent is opened
//! without following symlinks: by openat2 with RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS (Linux 5.6+), else, or when that fails, by a walk
//! that opens one component at a time with O_NOFOLLOW, making missing
//! directories as it goes. The entry is then made with *at() calls on the
//! parent's descriptor, never by path, and replaces whatever was there, a
//! symlink included, instead of writing through it.
//!
//! A parent that is a symlink is refused even when it points inside the
//! layer (containerd would follow it within the root): tar writers never put
//! entries below a symlink, so only a crafted layer does, and refusing needs
//! no symlink resolution to get right.
//!
//! The last parent opened stays open: layers list a directory's entries
//! together, so most entries cost no path lookup at all.

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::libc;
use nix::sys::stat::{fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Owner, permission bits (with setuid, setgid, sticky) and mtime of an entry.
pub(super) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: libc::time_t,
}

pub(super) struct LayerDir {
    root: OwnedFd,
    /// Cleared once the kernel says it has no openat2 (before 5.6, or a
    /// seccomp filter that does not know it); the walk does it all then.
    openat2: Cell<bool>,
    /// The directory last opened as a parent, with its path from the root.
    last: Option<(PathBuf, OwnedFd)>,
}

impl LayerDir {
    /// `dir` (just made by the caller, so its own path is trusted) as the root.
    pub fn open(dir: &Path) -> io::Result<LayerDir> {
        let fd = openat(None, dir, dir_flags(), Mode::empty())?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(LayerDir { root, openat2: Cell::new(true), last: None })
    }

    /// Resolves every path with the O_NOFOLLOW walk, as on kernels before 5.6.
    #[cfg(test)]
    pub fn without_openat2(self) -> LayerDir {
        self.openat2.set(false);
        self
    }

    #[cfg(test)]
    pub fn uses_openat2(&self) -> bool {
        self.openat2.get()
    }

    /// The directory `rel` inside the layer, opened without following
    /// symlinks; a missing part is made (0755) only if `create`.
    pub fn open_dir(&self, rel: &Path, create: bool) -> Result<OwnedFd, String> {
        if rel.as_os_str().is_empty() {
            return self.root.try_clone().map_err(|e| format!("open the layer root: {e}"));
        }
        if self.openat2.get() {
            match self.beneath(rel) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ENOSYS | Errno::EPERM) => self.openat2.set(false),
                // Missing, a symlink, not a directory, or EAGAIN: the walk
                // makes what is missing and says which part is wrong.
                Err(_) => {}
            }
        }
        self.walk(rel, create)
    }

    /// openat2: `rel` below the root, no symlink anywhere on the way.
    pub(super) fn beneath(&self, rel: &Path) -> nix::Result<OwnedFd> {
        let how = OpenHow::new().flags(dir_flags()).resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let fd = openat2(self.root.as_raw_fd(), rel, how)?;
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn walk(&self, rel: &Path, create: bool) -> Result<OwnedFd, String> {
        let mut cur: Option<OwnedFd> = None;
        let mut done = PathBuf::new();
        for name in rel.iter() {
            done.push(name);
            let at = cur.as_ref().unwrap_or(&self.root).as_fd();
            let mut r = open_subdir(at, name);
            if create && matches!(r, Err(Errno::ENOENT)) {
                match mkdirat(Some(at.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => r = open_subdir(at, name),
                    Err(e) => return Err(format!("create directory {:?}: {}", done.to_string_lossy(), io::Error::from(e))),
                }
            }
            cur = Some(r.map_err(|e| why_not_a_dir(at, name, &done, e))?);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => self.root.try_clone().map_err(|e| format!("open the layer root: {e}")),
        }
    }

    /// The parent directory `rel`, made if missing, kept open for the next entry.
    fn parent(&mut self, rel: &Path) -> Result<BorrowedFd<'_>, String> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.as_fd());
        }
        let last = match self.last.take() {
            Some((p, fd)) if p == rel => (p, fd),
            _ => (rel.to_path_buf(), self.open_dir(rel, true)?),
        };
        Ok(self.last.insert(last).1.as_fd())
    }

    /// Something was removed: the kept parent may have been below it.
    fn forget(&mut self, removed: bool) {
        if removed {
            self.last = None;
        }
    }

    /// Makes directory `name` in `parent`, or keeps the directory already
    /// there (a layer may list one twice), and gives it `meta`'s owner and mode.
    pub fn mkdir(&mut self, parent: &Path, name: &OsStr, meta: &Meta) -> Result<(), String> {
        let fd = {
            let at = self.parent(parent)?;
            let mode = Mode::from_bits_truncate(0o700);
            match mkdirat(Some(at.as_raw_fd()), name, mode) {
                Err(Errno::EEXIST) if !is_dir(at, name) => {
                    remove_all(at, name)?;
                    mkdirat(Some(at.as_raw_fd()), name, mode).map_err(failed("create directory"))?;
                }
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(failed("create directory")(e)),
            }
            open_subdir(at, name).map_err(failed("open directory"))?
        };
        set_owner_and_mode(fd.as_fd(), meta)?;
        // Its entries usually come next. (Only a non-directory was replaced,
        // so no kept parent was below it.)
        self.last = Some((parent.join(name), fd));
        Ok(())
    }

    /// Writes the `size` bytes of `data` into a new file `name` in `parent`.
    pub fn create_file(&mut self, parent: &Path, name: &OsStr, data: &mut dyn Read, size: u64, meta: &Meta) -> Result<(), String> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let (fd, removed) = {
            let at = self.parent(parent)?;
            replacing(at, name, "create file", || openat(Some(at.as_raw_fd()), name, flags, Mode::from_bits_truncate(0o600)))?
        };
        self.forget(removed);
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let n = io::copy(data, &mut file).map_err(|e| format!("unpack file: {e}"))?;
        if n != size {
            return Err(format!("the layer ends {n} bytes into this {size}-byte file"));
        }
        set_owner_and_mode(file.as_fd(), meta)?;
        let t = TimeSpec::new(meta.mtime, 0);
        futimens(file.as_raw_fd(), &t, &t).map_err(failed("set mtime"))
    }

    /// Makes symlink `name` in `parent` pointing at `target` (never followed here).
    pub fn symlink(&mut self, parent: &Path, name: &OsStr, target: &OsStr, meta: &Meta) -> Result<(), String> {
        let removed = {
            let at = self.parent(parent)?;
            let ((), removed) = replacing(at, name, "create symlink", || symlinkat(target, Some(at.as_raw_fd()), name))?;
            let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
            fchownat(Some(at.as_raw_fd()), name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(failed("set owner"))?;
            let t = TimeSpec::new(meta.mtime, 0);
            utimensat(Some(at.as_raw_fd()), name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(failed("set mtime"))?;
            removed
        };
        self.forget(removed);
        Ok(())
    }

    /// Makes `name` in `parent` a hard link to `old` in `old_dir` (a
    /// symlink there is linked itself, as link(2) does).
    pub fn hard_link(&mut self, old_dir: BorrowedFd, old: &OsStr, parent: &Path, name: &OsStr) -> Result<(), String> {
        let removed = {
            let at = self.parent(parent)?;
            let link = || linkat(Some(old_dir.as_raw_fd()), old, Some(at.as_raw_fd()), name, AtFlags::empty());
            replacing(at, name, "create hard link", link)?.1
        };
        self.forget(removed);
        Ok(())
    }

    /// Makes device or FIFO `name` in `parent`.
    pub fn mknod(&mut self, parent: &Path, name: &OsStr, kind: SFlag, dev: libc::dev_t, meta: &Meta) -> Result<(), String> {
        let removed = {
            let at = self.parent(parent)?;
            let raw = Some(at.as_raw_fd());
            let ((), removed) = replacing(at, name, "create device", || mknodat(raw, name, kind, Mode::empty(), dev))?;
            let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
            fchownat(raw, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(failed("set owner"))?;
            // `name` is the node just made, not a symlink (Linux has no lchmod).
            fchmodat(raw, name, Mode::from_bits_truncate(meta.mode), FchmodatFlags::FollowSymlink).map_err(failed("set mode"))?;
            let t = TimeSpec::new(meta.mtime, 0);
            utimensat(raw, name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(failed("set mtime"))?;
            removed
        };
        self.forget(removed);
        Ok(())
    }

    /// Hides `name` of the lower layers: an overlayfs whiteout (char 0:0).
    pub fn whiteout(&mut self, parent: &Path, name: &OsStr) -> Result<(), String> {
        let removed = {
            let at = self.parent(parent)?;
            let removed = remove_all(at, name)?;
            mknodat(Some(at.as_raw_fd()), name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(failed("create whiteout"))?;
            removed
        };
        self.forget(removed);
        Ok(())
    }

    /// Hides the lower layers' contents of `dir` (`trusted.overlay.opaque=y`).
    pub fn set_opaque(&mut self, dir: &Path) -> Result<(), String> {
        let fd = self.parent(dir)?;
        // SAFETY: the name is NUL-terminated and the value is a 1-byte buffer
        // whose length is passed; fd is an open directory.
        let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        if rc != 0 {
            return Err(format!("mark opaque: {}", io::Error::last_os_error()));
        }
        Ok(())
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The directory `name` in `at`; ELOOP if it is a symlink.
fn open_subdir(at: BorrowedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    let fd = openat(Some(at.as_raw_fd()), name, dir_flags(), Mode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn file_type(at: BorrowedFd, name: &OsStr) -> Option<libc::mode_t> {
    fstatat(Some(at.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok().map(|st| st.st_mode & libc::S_IFMT)
}

fn is_dir(at: BorrowedFd, name: &OsStr) -> bool {
    file_type(at, name) == Some(libc::S_IFDIR)
}

/// Why the parent directory `done` (`name` in `at`) could not be opened.
fn why_not_a_dir(at: BorrowedFd, name: &OsStr, done: &Path, e: Errno) -> String {
    let p = done.to_string_lossy();
    match file_type(at, name) {
        Some(libc::S_IFLNK) => format!("parent {p:?} is a symlink"),
        Some(t) if t != libc::S_IFDIR => format!("parent {p:?} is not a directory"),
        _ => format!("open {p:?}: {}", io::Error::from(e)),
    }
}

fn failed(what: &'static str) -> impl Fn(Errno) -> String {
    move |e| format!("{what}: {}", io::Error::from(e))
}

/// Runs `make`; if `name` exists in `at`, removes it (whatever it is, a
/// symlink itself rather than what it points at) and runs `make` again.
/// Also says whether something was removed.
fn replacing<T>(at: BorrowedFd, name: &OsStr, what: &'static str, make: impl Fn() -> nix::Result<T>) -> Result<(T, bool), String> {
    match make() {
        Err(Errno::EEXIST) => {
            remove_all(at, name)?;
            Ok((make().map_err(failed(what))?, true))
        }
        r => Ok((r.map_err(failed(what))?, false)),
    }
}

fn set_owner_and_mode(fd: BorrowedFd, meta: &Meta) -> Result<(), String> {
    // Owner first: chown clears setuid and setgid.
    fchown(fd.as_raw_fd(), Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid))).map_err(failed("set owner"))?;
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode)).map_err(failed("set mode"))
}

/// Removes `name` from `at` and, for a directory, everything below it,
/// never following a symlink; says whether there was anything. A loop, not
/// recursion: the layer decides how deep its directories go.
fn remove_all(at: BorrowedFd, name: &OsStr) -> Result<bool, String> {
    let fail = |e: Errno| format!("remove {:?}: {}", name.to_string_lossy(), io::Error::from(e));
    match unlinkat(Some(at.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => return Ok(true),
        Err(Errno::ENOENT) => return Ok(false),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(fail(e)),
    }
    // Per level below `at`: its name in its parent, and its subdirectories
    // still to empty. `cur` is the deepest level's directory.
    let mut cur = open_subdir(at, name).map_err(fail)?;
    let mut levels: Vec<(OsString, Vec<OsString>)> = vec![(name.to_owned(), clear(cur.as_fd()).map_err(fail)?)];
    while let Some((_, pending)) = levels.last_mut() {
        if let Some(sub) = pending.pop() {
            let next = open_subdir(cur.as_fd(), &sub).map_err(fail)?;
            let subs = clear(next.as_fd()).map_err(fail)?;
            cur = next;
            levels.push((sub, subs));
            continue;
        }
        let Some((empty, _)) = levels.pop() else { break };
        let parent = match levels.is_empty() {
            true => None,
            // Reached without following symlinks, so ".." is where we came from.
            false => Some(open_subdir(cur.as_fd(), OsStr::new("..")).map_err(fail)?),
        };
        let in_fd = parent.as_ref().map_or(at, |p| p.as_fd());
        unlinkat(Some(in_fd.as_raw_fd()), empty.as_os_str(), UnlinkatFlags::RemoveDir).map_err(fail)?;
        match parent {
            Some(p) => cur = p,
            None => break,
        }
    }
    Ok(true)
}

/// Unlinks everything in `dir` except directories, and returns their names.
fn clear(dir: BorrowedFd) -> nix::Result<Vec<OsString>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut d = Dir::openat(Some(dir.as_raw_fd()), ".", flags, Mode::empty())?;
    // Names first, then unlinking: readdir need not be stable under removal.
    let mut names = Vec::new();
    for e in d.iter() {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(OsString::from(OsStr::from_bytes(&n)));
        }
    }
    let mut dirs = Vec::new();
    for n in names {
        match unlinkat(Some(dir.as_raw_fd()), n.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::EISDIR) => dirs.push(n),
            Err(e) => return Err(e),
        }
    }
    Ok(dirs)
}
