//! Unpacks one layer blob (gzip, zstd or plain tar, told apart by magic bytes) into a
//! directory that overlayfs can use as a lower layer: OCI whiteouts become
//! overlayfs whiteouts (`.wh.x` → char device 0:0 `x`, `.wh..wh..opq` → the
//! `trusted.overlay.opaque=y` xattr). It does not flatten layers, and does
//! not apply xattrs from PAX headers or directory mtimes.
//!
//! Nothing in a layer reaches outside its directory: names are cleaned in
//! `name.rs` (the root entry `/` or `./` is the layer root and skipped, as
//! containerd does; a `..` that climbs out is refused), and every change goes
//! through `dir.rs`, which opens parents without following symlinks and
//! works on directory descriptors. A bad entry fails the whole layer with an
//! error naming the layer digest and the entry.

mod dir;
mod name;

use super::ImageError;
use dir::{LayerDir, Meta};
use name::Whiteout;
use nix::libc;
use nix::sys::stat::{makedev, SFlag};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest zstd window accepted (the frame header names it; the decoder
/// allocates it). 8 MiB is what RFC 8878 asks every decoder to support and
/// what the usual layer encoders use (zstd up to level 19, Go's
/// klauspost/compress as in buildkit and containers/image); only
/// `--long`/`--ultra` frames need more, and a hostile registry cannot make
/// picolet allocate 128 MiB (libzstd's own limit).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Unpacks the layer at `blob` (whose digest is `digest`) into `dest`
/// (created), preserving ownership, permissions and file mtimes (the caller
/// must be root). On error `dest` is left for the caller to remove.
pub(crate) fn unpack_layer(blob: &Path, digest: &str, dest: &Path) -> Result<(), ImageError> {
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
    let layer = LayerDir::open(dest).map_err(|e| ImageError::io("open", dest, e))?;
    unpack_tar(r, layer, digest, blob)
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

fn unpack_tar(r: impl Read, mut layer: LayerDir, digest: &str, blob: &Path) -> Result<(), ImageError> {
    let mut ar = tar::Archive::new(r);
    let entries = ar.entries().map_err(|e| ImageError::io(format!("read layer {digest} from"), blob, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::io(format!("read layer {digest} from"), blob, e))?;
        let raw = entry.path_bytes().into_owned();
        apply(&mut layer, &mut entry, &raw).map_err(|reason| ImageError::LayerEntry {
            layer: digest.to_string(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason,
        })?;
    }
    Ok(())
}

/// Puts one entry into the layer; the error says why not.
fn apply<R: Read>(layer: &mut LayerDir, entry: &mut tar::Entry<R>, raw: &[u8]) -> Result<(), String> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
        return Ok(());
    }
    let path = name::clean(raw)?;
    let (Some(name), Some(parent)) = (path.file_name(), path.parent()) else {
        return Ok(()); // `/`, `./`: the layer root itself
    };
    match name::whiteout(name)? {
        Some(Whiteout::Opaque) => return layer.set_opaque(parent),
        Some(Whiteout::Of(hidden)) => return layer.whiteout(parent, hidden),
        Some(Whiteout::Meta) => return Ok(()),
        None => {}
    }
    let h = entry.header();
    let meta = meta(h)?;
    if kind.is_dir() || (h.as_ustar().is_none() && kind.is_file() && raw.ends_with(b"/")) {
        // (Old tars mark directories by the slash alone.)
        layer.mkdir(parent, name, &meta)
    } else if kind.is_symlink() {
        let target = entry.link_name_bytes().unwrap_or_default();
        if target.is_empty() {
            return Err("symlink with an empty target".into());
        }
        layer.symlink(parent, name, OsStr::from_bytes(&target), &meta)
    } else if kind.is_hard_link() {
        let raw_target = entry.link_name_bytes().unwrap_or_default();
        let shown = String::from_utf8_lossy(&raw_target);
        let target = name::clean(&raw_target).map_err(|e| format!("hard link target {shown:?} {e}"))?;
        let (Some(old), Some(old_parent)) = (target.file_name(), target.parent()) else {
            return Err(format!("hard link target {shown:?} is the layer root"));
        };
        let old_dir = layer.open_dir(old_parent, false).map_err(|e| format!("hard link target {shown:?}: {e}"))?;
        layer.hard_link(old_dir.as_fd(), old, parent, name)
    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        let number = |n: std::io::Result<Option<u32>>| n.map(|n| u64::from(n.unwrap_or(0))).map_err(|e| format!("bad device number: {e}"));
        let (flag, dev) = if kind.is_fifo() {
            (SFlag::S_IFIFO, 0) // writers may leave the device fields empty
        } else {
            let flag = if kind.is_character_special() { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            (flag, makedev(number(h.device_major())?, number(h.device_minor())?))
        };
        layer.mknod(parent, name, flag, dev, &meta)
    } else {
        // Regular, contiguous, sparse, and (as POSIX asks) any unknown type.
        let size = entry.size();
        layer.create_file(parent, name, entry, size, &meta)
    }
}

/// Owner, mode and mtime from the header; ids past 32 bits are refused.
fn meta(h: &tar::Header) -> Result<Meta, String> {
    let id = |what: &str, v: std::io::Result<u64>| {
        let v = v.map_err(|e| format!("bad {what}: {e}"))?;
        u32::try_from(v).map_err(|_| format!("{what} {v} out of range"))
    };
    Ok(Meta {
        uid: id("uid", h.uid())?,
        gid: id("gid", h.gid())?,
        mode: h.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777,
        mtime: h.mtime().map(|t| libc::time_t::try_from(t).unwrap_or(libc::time_t::MAX)).map_err(|e| format!("bad mtime: {e}"))?,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
