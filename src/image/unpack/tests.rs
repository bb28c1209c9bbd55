use super::*;
use crate::image::testutil::{scratch, sha256};
use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use tar::EntryType::{self, *};

/// One entry: name, type, file data or link target, mode, uid.
type Entry<'a> = (&'a str, EntryType, &'a str, u32, u64);

fn layer_tar(path: &Path, entries: &[Entry]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (name, kind, data, mode, uid) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(if kind.is_file() { data.len() as u64 } else { 0 });
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*uid);
        h.set_mtime(1_700_000_000);
        if kind.is_character_special() {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        if kind.is_symlink() || kind.is_hard_link() {
            h.set_link_name(data).unwrap();
        }
        let data = if kind.is_file() { data.as_bytes() } else { &[][..] };
        if name.len() <= 100 {
            // Written raw, as `set_path` would drop the `./` prefixes.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        } else {
            b.append_data(&mut h, name, data).unwrap(); // a GNU long name entry first
        }
    }
    b.finish().unwrap();
}

/// Unpacks the plain tar `blob` into `dest`, resolving parents with openat2
/// or, as on kernels before 5.6, with the O_NOFOLLOW walk.
fn unpack_with(blob: &Path, dest: &Path, openat2: bool) -> Result<(), ImageError> {
    let digest = sha256(&fs::read(blob).unwrap());
    fs::create_dir(dest).unwrap();
    let layer = LayerDir::open(dest).unwrap();
    let layer = if openat2 { layer } else { layer.without_openat2() };
    unpack_tar(File::open(blob).unwrap(), layer, &digest, blob)
}

pub(crate) fn opaque_xattr(dir: &Path) -> Option<Vec<u8>> {
    let p = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: both names are NUL-terminated; the buffer's length is passed.
    let n = unsafe { nix::libc::getxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn links_whiteouts_and_metadata() {
    let dir = scratch("unpack-links");
    let blob = dir.join("layer.tar");
    layer_tar(
        &blob,
        &[
            ("./", Directory, "", 0o755, 0),
            ("./bin/", Directory, "", 0o755, 0),
            ("./bin/busybox", Regular, "#!binary", 0o4755, 0),
            ("./bin/sh", Symlink, "busybox", 0o777, 0),
            ("./bin/ash", Link, "bin/busybox", 0o755, 0),
            ("./etc/.wh.gone", Regular, "", 0o644, 0),
            ("./opq/.wh..wh..opq", Regular, "", 0o644, 0),
            ("./opq/new", Regular, "new", 0o644, 0),
            ("./home/app/", Directory, "", 0o2750, 1000),
            ("./home/app/data", Regular, "mine", 0o600, 1000),
            ("./.wh..wh.plnk", Regular, "", 0o644, 0),
            ("./tmp/", Directory, "", 0o1777, 0),
            ("./dev/null", Char, "", 0o666, 0),
            ("./run/fifo", Fifo, "", 0o620, 5),
        ],
    );
    for openat2 in [true, false] {
        let out = dir.join(format!("layer-{openat2}"));
        unpack_with(&blob, &out, openat2).unwrap();
        assert_eq!(fs::read_link(out.join("bin/sh")).unwrap(), Path::new("busybox"));
        let (a, b) = (fs::metadata(out.join("bin/busybox")).unwrap(), fs::metadata(out.join("bin/ash")).unwrap());
        assert_eq!(a.ino(), b.ino());
        assert_eq!((a.permissions().mode() & 0o7777, a.mtime()), (0o4755, 1_700_000_000));
        let wh = fs::symlink_metadata(out.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert!(!out.join("etc/.wh.gone").exists() && !out.join("opq/.wh..wh..opq").exists());
        assert!(!out.join(".wh..wh.plnk").exists());
        assert_eq!(opaque_xattr(&out.join("opq")), Some(b"y".to_vec()));
        assert_eq!(fs::read_to_string(out.join("opq/new")).unwrap(), "new");
        let app = fs::metadata(out.join("home/app")).unwrap();
        assert_eq!((app.permissions().mode() & 0o7777, app.uid(), app.gid()), (0o2750, 1000, 1000));
        let data = fs::metadata(out.join("home/app/data")).unwrap();
        assert_eq!((data.permissions().mode() & 0o7777, data.uid()), (0o600, 1000));
        assert_eq!(fs::metadata(out.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
        let null = fs::symlink_metadata(out.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device() && null.rdev() == makedev(1, 3) && null.permissions().mode() & 0o7777 == 0o666);
        let fifo = fs::symlink_metadata(out.join("run/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo() && fifo.permissions().mode() & 0o7777 == 0o620 && fifo.uid() == 5);
        // Implied parents are plain 0755 directories.
        assert_eq!(fs::metadata(out.join("etc")).unwrap().permissions().mode() & 0o7777, 0o755);
    }
}

/// Later entries replace earlier ones, as in containerd: a directory is kept
/// (and takes the new mode), anything else is removed first, a directory
/// with everything below it.
#[test]
fn later_entries_replace_earlier_ones() {
    let dir = scratch("unpack-replace");
    let blob = dir.join("layer.tar");
    let mut entries: Vec<Entry> = vec![("d/", Directory, "", 0o700, 0), ("d/keep", Regular, "kept", 0o644, 0)];
    // A deep tree, then a file where its top was, then a whiteout of a tree.
    let deep: Vec<String> = (1..=64).map(|i| format!("t/{}", vec!["x"; i].join("/"))).collect();
    entries.extend(deep.iter().map(|p| (p.as_str(), Directory, "", 0o755, 0)));
    entries.extend([
        ("t/x/x/file", Regular, "f", 0o644, 0),
        ("t/x/x/link", Symlink, "/", 0o777, 0),
        ("t", Regular, "now a file", 0o644, 0),
        ("w/a/b/", Directory, "", 0o755, 0),
        ("w/a/b/c", Regular, "c", 0o644, 0),
        ("w/.wh.a", Regular, "", 0o644, 0),
        ("d/", Directory, "", 0o750, 0),
        ("f", Regular, "old", 0o644, 0),
        ("f", Regular, "new", 0o644, 0),
        ("s", Regular, "file", 0o644, 0),
        ("s", Symlink, "f", 0o777, 0),
    ]);
    layer_tar(&blob, &entries);
    for openat2 in [true, false] {
        let out = dir.join(format!("layer-{openat2}"));
        unpack_with(&blob, &out, openat2).unwrap();
        assert_eq!(fs::read_to_string(out.join("d/keep")).unwrap(), "kept");
        assert_eq!(fs::metadata(out.join("d")).unwrap().permissions().mode() & 0o7777, 0o750);
        assert_eq!(fs::read_to_string(out.join("t")).unwrap(), "now a file");
        assert!(fs::symlink_metadata(out.join("w/a")).unwrap().file_type().is_char_device());
        assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "new");
        assert_eq!(fs::read_link(out.join("s")).unwrap(), Path::new("f"));
    }
}

#[test]
fn a_truncated_file_fails_the_layer() {
    let dir = scratch("unpack-truncated");
    let blob = dir.join("layer.tar");
    layer_tar(&blob, &[("big", Regular, &"x".repeat(5000), 0o644, 0)]);
    // Cut inside the file's data: header (512) + 1000 bytes.
    let bytes = fs::read(&blob).unwrap();
    fs::write(&blob, &bytes[..1512]).unwrap();
    let digest = sha256(&bytes[..1512]);
    let err = unpack_with(&blob, &dir.join("layer"), true).unwrap_err().to_string();
    assert_eq!(err, format!("layer {digest}: entry \"big\": the layer ends 1000 bytes into this 5000-byte file"));
}

/// openat2 is really used where the kernel has it (the walk alone would
/// pass every other test), and refuses what the walk refuses.
#[test]
fn openat2_resolves_beneath_without_symlinks() {
    if std::env::var_os("PICOLET_QEMU_USER").is_some() {
        return; // qemu-user may not pass openat2 through; the walk is tested everywhere
    }
    let dir = scratch("unpack-openat2");
    fs::create_dir_all(dir.join("root/a/b")).unwrap();
    std::os::unix::fs::symlink("a", dir.join("root/l")).unwrap();
    let layer = LayerDir::open(&dir.join("root")).unwrap();
    assert!(layer.beneath(Path::new("a/b")).is_ok());
    assert_eq!(layer.beneath(Path::new("l/b")).unwrap_err(), nix::errno::Errno::ELOOP);
    assert_eq!(layer.beneath(Path::new("a/../..")).unwrap_err(), nix::errno::Errno::EXDEV);
    assert!(layer.open_dir(Path::new("a/b"), false).is_ok() && layer.uses_openat2());
    let walked = layer.without_openat2();
    assert_eq!(walked.open_dir(Path::new("l/b"), false).unwrap_err(), "parent \"l\" is a symlink");
    assert_eq!(walked.open_dir(Path::new("a/missing"), false).unwrap_err(), "open \"a/missing\": No such file or directory (os error 2)");
}

#[test]
fn gzip_and_zstd_layers_detected_by_magic() {
    let dir = scratch("unpack-gzip");
    let plain = dir.join("plain");
    layer_tar(&plain, &[("hello", Regular, "hi", 0o644, 0)]);
    let gz = dir.join("gz");
    let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut File::open(&plain).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let zst = dir.join("zst");
    zstd::stream::copy_encode(File::open(&plain).unwrap(), File::create(&zst).unwrap(), 3).unwrap();
    for (blob, out) in [(&plain, "a"), (&gz, "b"), (&zst, "c")] {
        let digest = sha256(&fs::read(blob).unwrap());
        unpack_layer(blob, &digest, &dir.join(out)).unwrap();
        assert_eq!(fs::read_to_string(dir.join(out).join("hello")).unwrap(), "hi");
    }
}

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
    let out: PathBuf = dir.join("out");
    let err = unpack_layer(&blob, "sha256:big", &out).unwrap_err().to_string();
    assert!(err.contains("zstd window is over 8 MiB"), "{err}");
}
