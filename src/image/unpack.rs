//! Unpacks one layer blob (gzip, zstd or plain tar, told apart by magic bytes) into a
//! directory that overlayfs can use as a lower layer: OCI whiteouts become
//! overlayfs whiteouts (`.wh.x` → char device 0:0 `x`, `.wh..wh..opq` → the
//! `trusted.overlay.opaque=y` xattr). It does not flatten layers, and it
//! refuses entries that would land outside the directory.

use super::ImageError;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const WHITEOUT: &str = ".wh.";
/// Largest zstd window accepted (the frame header names it; the decoder
/// allocates it). 8 MiB is what RFC 8878 asks every decoder to support and
/// what the usual layer encoders use (zstd up to level 19, Go's
/// klauspost/compress as in buildkit and containers/image); only
/// `--long`/`--ultra` frames need more, and a hostile registry cannot make
/// picolet allocate 128 MiB (libzstd's own limit).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the layer at `blob` into `dest` (created), preserving ownership,
/// permissions and mtimes (the caller must be root).
pub(crate) fn unpack_layer(blob: &Path, dest: &Path) -> Result<(), ImageError> {
    let f = File::open(blob).map_err(|e| ImageError::io("open layer", blob, e))?;
    let mut r = BufReader::with_capacity(64 << 10, f);
    let head = r.fill_buf().map_err(|e| ImageError::io("read layer", blob, e))?;
    let r: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut d = zstd::stream::read::Decoder::with_buffer(r).map_err(|e| ImageError::io("start zstd decoder for", blob, e))?;
        d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| ImageError::io("set zstd window limit for", blob, e))?;
        Box::new(ZstdErrors(d))
    } else {
        Box::new(r)
    };
    fs::create_dir(dest).map_err(|e| ImageError::io("create", dest, e))?;
    unpack_tar(r, dest, blob)
}

/// Says why libzstd refused a frame whose window is over the limit.
struct ZstdErrors<R>(R);

impl<R: Read> Read for ZstdErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.to_string().contains("too much memory") {
                std::io::Error::other(format!(
                    "{e}: the zstd window is over {} MiB (compressed with --long or --ultra?)",
                    1 << (ZSTD_WINDOW_LOG_MAX - 20)
                ))
            } else {
                e
            }
        })
    }
}

fn unpack_tar(r: impl Read, dest: &Path, blob: &Path) -> Result<(), ImageError> {
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let entries = ar.entries().map_err(|e| ImageError::io("read layer", blob, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::io("read layer entry from", blob, e))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = safe_relative(&raw).ok_or_else(|| ImageError::UnsafePath { entry: raw.clone(), layer: blob.into() })?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // "." or "./": the layer root itself
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        if name == OPAQUE {
            let dir = inside(dest, parent, &raw, blob)?;
            set_opaque(&dir).map_err(|e| ImageError::io("mark opaque", &dir, e))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.starts_with(WHITEOUT) || hidden.is_empty() {
                continue; // other AUFS metadata (.wh..wh.plnk, ...): meaningless here
            }
            let dir = inside(dest, parent, &raw, blob)?;
            let target = dir.join(hidden);
            remove_any(&target).map_err(|e| ImageError::io("remove", &target, e))?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| ImageError::Sys { what: "create whiteout".into(), path: target.clone(), source: e })?;
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let dir = inside(dest, parent, &raw, blob)?;
            make_node(&entry, &dir.join(&name)).map_err(|e| ImageError::io("create device", dir.join(&name), e))?;
            continue;
        }
        let done = entry.unpack_in(dest).map_err(|e| ImageError::io(format!("unpack {raw:?} from"), blob, e))?;
        if !done {
            return Err(ImageError::UnsafePath { entry: raw, layer: blob.into() });
        }
    }
    Ok(())
}

/// The entry path without `.` parts; None if absolute or containing `..`.
pub(crate) fn safe_relative(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// Creates `dest/rel` as a directory and makes sure that, symlinks resolved,
/// it is still inside `dest`.
fn inside(dest: &Path, rel: &Path, raw: &str, blob: &Path) -> Result<PathBuf, ImageError> {
    let dir = dest.join(rel);
    fs::create_dir_all(&dir).map_err(|e| ImageError::io("create", &dir, e))?;
    let real = dir.canonicalize().map_err(|e| ImageError::io("resolve", &dir, e))?;
    let root = dest.canonicalize().map_err(|e| ImageError::io("resolve", dest, e))?;
    if !real.starts_with(&root) {
        return Err(ImageError::UnsafePath { entry: raw.to_string(), layer: blob.into() });
    }
    Ok(real)
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_opaque(dir: &Path) -> std::io::Result<()> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and the value is a 1-byte buffer.
    let rc = unsafe { nix::libc::setxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn make_node<R: Read>(entry: &tar::Entry<R>, path: &Path) -> std::io::Result<()> {
    let h = entry.header();
    let kind = h.entry_type();
    let flag = if kind.is_character_special() {
        SFlag::S_IFCHR
    } else if kind.is_block_special() {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFIFO
    };
    let major = h.device_major()?.unwrap_or(0);
    let minor = h.device_minor()?.unwrap_or(0);
    let mode = Mode::from_bits_truncate(h.mode()? & 0o7777);
    remove_any(path)?;
    mknod(path, flag, mode, makedev(major.into(), minor.into()))?;
    let (uid, gid) = (h.uid()? as u32, h.gid()? as u32);
    nix::unistd::fchownat(
        None,
        path,
        Some(uid.into()),
        Some(gid.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::scratch;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // Written raw: `set_path` would refuse the bad names we want to test.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn layer_tar(path: &Path, entries: &[(&str, tar::EntryType, &str)]) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        for (name, kind, data) in entries {
            let mut h = header(name, *kind, if kind.is_file() { data.len() as u64 } else { 0 });
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name(data).unwrap();
            }
            h.set_cksum();
            b.append(&h, if kind.is_file() { data.as_bytes() } else { &[][..] }).unwrap();
        }
        b.finish().unwrap();
    }

    #[test]
    fn escaping_entries_are_refused() {
        use tar::EntryType::Regular;
        for (i, bad) in ["../evil", "/abs-evil", "a/../../evil"].iter().enumerate() {
            let dir = scratch(&format!("unpack-escape-{i}"));
            let blob = dir.join("layer.tar");
            layer_tar(&blob, &[("ok", Regular, "fine"), (bad, Regular, "evil")]);
            fs::create_dir(dir.join("out")).unwrap();
            let err = unpack_layer(&blob, &dir.join("out/layer")).unwrap_err();
            assert!(matches!(err, ImageError::UnsafePath { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("escapes"), "{err}");
            assert!(!dir.join("out/evil").exists() && !dir.join("evil").exists());
        }
    }

    #[test]
    fn symlink_parent_cannot_escape() {
        use tar::EntryType::*;
        let dir = scratch("unpack-symlink-escape");
        let blob = dir.join("layer.tar");
        layer_tar(&blob, &[("link", Symlink, "/"), ("link/etc-evil", Regular, "x"), ("link/.wh.x", Regular, "")]);
        assert!(unpack_layer(&blob, &dir.join("layer")).is_err());
        assert!(!Path::new("/etc-evil").exists());
    }

    #[test]
    fn links_and_whiteouts() {
        use tar::EntryType::*;
        let dir = scratch("unpack-links");
        let blob = dir.join("layer.tar");
        layer_tar(
            &blob,
            &[
                ("./", Directory, ""),
                ("./bin/", Directory, ""),
                ("./bin/busybox", Regular, "#!binary"),
                ("./bin/sh", Symlink, "busybox"),
                ("./bin/ash", Link, "bin/busybox"),
                ("./etc/.wh.gone", Regular, ""),
                ("./opq/.wh..wh..opq", Regular, ""),
                ("./opq/new", Regular, "new"),
            ],
        );
        let out = dir.join("layer");
        unpack_layer(&blob, &out).unwrap();
        assert_eq!(fs::read_link(out.join("bin/sh")).unwrap(), Path::new("busybox"));
        let (a, b) = (fs::metadata(out.join("bin/busybox")).unwrap(), fs::metadata(out.join("bin/ash")).unwrap());
        assert_eq!(a.ino(), b.ino());
        let wh = fs::symlink_metadata(out.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert!(!out.join("etc/.wh.gone").exists() && !out.join("opq/.wh..wh..opq").exists());
        assert_eq!(opaque_xattr(&out.join("opq")), Some(b"y".to_vec()));
        assert_eq!(fs::read_to_string(out.join("opq/new")).unwrap(), "new");
    }

    pub(crate) fn opaque_xattr(dir: &Path) -> Option<Vec<u8>> {
        let p = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 16];
        let n = unsafe {
            nix::libc::getxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }

    #[test]
    fn gzip_and_zstd_layers_detected_by_magic() {
        use tar::EntryType::*;
        let dir = scratch("unpack-gzip");
        let plain = dir.join("plain");
        layer_tar(&plain, &[("hello", Regular, "hi")]);
        let gz = dir.join("gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        std::io::copy(&mut File::open(&plain).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
        let zst = dir.join("zst");
        zstd::stream::copy_encode(File::open(&plain).unwrap(), File::create(&zst).unwrap(), 3).unwrap();
        for (blob, out) in [(&plain, "a"), (&gz, "b"), (&zst, "c")] {
            unpack_layer(blob, &dir.join(out)).unwrap();
            assert_eq!(fs::read_to_string(dir.join(out).join("hello")).unwrap(), "hi");
        }
    }
}

#[cfg(test)]
mod zstd_tests {
    use super::*;
    use crate::image::testutil::scratch;

    /// A frame asking for a window over the limit is refused with a reason,
    /// before anything big is allocated.
    #[test]
    fn zstd_window_over_the_limit_is_refused() {
        let dir = scratch("unpack-zstd-window");
        let blob = dir.join("big-window.zst");
        let mut enc = zstd::stream::write::Encoder::new(File::create(&blob).unwrap(), 3).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.window_log(ZSTD_WINDOW_LOG_MAX + 2).unwrap();
        std::io::Write::write_all(&mut enc, &[0u8; 4096]).unwrap();
        enc.finish().unwrap();
        let err = unpack_layer(&blob, &dir.join("out")).unwrap_err().to_string();
        assert!(err.contains("zstd window is over 8 MiB"), "{err}");
    }
}

#[cfg(test)]
#[path = "unpack_hostile_tests.rs"]
mod hostile_tests;
