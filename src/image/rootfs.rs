//! A container's root filesystem: the image's layer directories stacked with
//! overlayfs under a per-container upper/work dir. It does not copy or
//! flatten layers, and does not remove the container dir.

use super::ImageError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs;
use std::path::{Path, PathBuf};

/// Mount data is limited to one page.
const MAX_OPTIONS: usize = 4095;

/// Mounts `layers` (lowest first) at `container_dir/rootfs` with writable
/// `container_dir/{upper,work}` and returns that path. Already mounted → just
/// returns it.
pub fn mount_rootfs(layers: &[PathBuf], container_dir: &Path) -> Result<PathBuf, ImageError> {
    let rootfs = container_dir.join("rootfs");
    if layers.is_empty() {
        return Err(ImageError::io("mount", &rootfs, std::io::Error::other("image has no layers")));
    }
    for d in ["rootfs", "upper", "work"] {
        let p = container_dir.join(d);
        fs::create_dir_all(&p).map_err(|e| ImageError::io("create", &p, e))?;
    }
    if is_mounted(&rootfs)? {
        return Ok(rootfs);
    }
    let mut lower = Vec::with_capacity(layers.len());
    // overlayfs lists the top layer first.
    for l in layers.iter().rev() {
        let s = l.to_str().filter(|s| !s.contains([':', ',', '\\']));
        let s = s.ok_or_else(|| ImageError::io("use layer", l, std::io::Error::other("unusable characters in path")))?;
        lower.push(s);
    }
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    let opts = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
    if opts.len() > MAX_OPTIONS {
        let e = std::io::Error::other(format!("overlay options are {} bytes, more than a page", opts.len()));
        return Err(ImageError::io("mount", &rootfs, e));
    }
    mount(Some("overlay"), &rootfs, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| ImageError::Sys { what: "mount overlay at".into(), path: rootfs.clone(), source: e })?;
    Ok(rootfs)
}

/// Detaches the overlay at `container_dir/rootfs` if it is mounted.
pub fn unmount_rootfs(container_dir: &Path) -> Result<(), ImageError> {
    let rootfs = container_dir.join("rootfs");
    if !rootfs.exists() || !is_mounted(&rootfs)? {
        return Ok(());
    }
    match umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(ImageError::Sys { what: "unmount".into(), path: rootfs, source: e }),
    }
}

/// Whether `path` is a mount point.
fn is_mounted(path: &Path) -> Result<bool, ImageError> {
    crate::hostfs::is_mount_point(path).map_err(|e| ImageError::io("read mounts for", path, e))
}

