//! Hostile layers (issue #16, points 4 and 11): nothing a layer holds may
//! create, change or remove anything outside the layer's own directory, and
//! the root entry (`/`, `./`) is the layer root, not an escape.
//!
//! Each test unpacks into `<sandbox>/store/layer` next to a sibling layer and
//! an `outside` directory that symlinks in the layer point at, and compares a
//! listing of the whole sandbox (minus the layer itself) before and after,
//! once with openat2 and once with the O_NOFOLLOW walk of older kernels.

use super::*;
use crate::image::testutil::{scratch, sha256};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use tar::EntryType::{self, *};

/// One layer entry: name, type, and the file data or link target.
type Entry<'a> = (&'a str, EntryType, &'a str);

struct Sandbox {
    dir: PathBuf,
    /// What went wrong, case by case; `finish` fails the test with all of it.
    failures: std::cell::RefCell<Vec<String>>,
    /// Owner of every entry written.
    uid: std::cell::Cell<u64>,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = scratch(name);
        Sandbox::fill(&dir);
        Sandbox { dir, failures: Default::default(), uid: Default::default() }
    }

    fn fill(dir: &Path) {
        fs::create_dir_all(dir.join("outside/sub")).unwrap();
        fs::write(dir.join("outside/keep"), "precious").unwrap();
        fs::create_dir_all(dir.join("store/sibling")).unwrap();
        fs::write(dir.join("store/sibling/keep"), "other layer").unwrap();
    }

    fn fail(&self, msg: String) {
        self.failures.borrow_mut().push(msg);
    }

    /// Records a failed unpack; true if it succeeded.
    fn ok(&self, res: Result<(), String>) -> bool {
        if let Err(e) = &res {
            self.fail(format!("unexpected error: {e}"));
        }
        res.is_ok()
    }

    fn finish(self) {
        let f = self.failures.take();
        assert!(f.is_empty(), "{} failed case(s):\n{}", f.len(), f.join("\n"));
    }


    fn outside(&self) -> String {
        self.dir.join("outside").to_str().unwrap().to_string()
    }

    fn layer(&self) -> PathBuf {
        self.dir.join("store/layer")
    }

    /// Unpacks `entries` as a layer, both ways; returns the digest and the
    /// outcome (recording a failure if the two ways differ).
    fn unpack(&self, entries: &[Entry]) -> (String, Result<(), String>) {
        let (digest, res) = self.unpack_once(entries, true);
        let (_, walked) = self.unpack_once(entries, false);
        if walked != res {
            self.fail(format!("{entries:?}: openat2 gave {res:?}, the walk {walked:?}"));
        }
        (digest, res)
    }

    fn unpack_once(&self, entries: &[Entry], openat2: bool) -> (String, Result<(), String>) {
        let blob = self.dir.join("layer.tar");
        let _ = fs::remove_dir_all(self.layer());
        write_layer(&blob, entries, self.uid.get());
        let digest = sha256(&fs::read(&blob).unwrap());
        let before = snapshot(&self.dir, &self.layer());
        let res = unpack(&blob, &digest, &self.layer(), openat2).map_err(|e| e.to_string());
        let after = snapshot(&self.dir, &self.layer());
        if before != after {
            let changed: Vec<_> = before
                .iter()
                .filter(|(k, v)| after.get(*k) != Some(v))
                .map(|(k, v)| format!("{} was {v}, now {:?}", k.display(), after.get(k)))
                .chain(after.keys().filter(|k| !before.contains_key(*k)).map(|k| format!("{} created", k.display())))
                .collect();
            self.fail(format!("{entries:?} changed things outside the layer ({res:?}): {}", changed.join("; ")));
            // Put the sandbox back for the next case.
            let _ = fs::remove_dir_all(&self.dir);
            Sandbox::fill(&self.dir);
        }
        (digest, res)
    }

    /// Unpacks `entries` and asserts it fails with `reason` for `entry`.
    fn refused(&self, entries: &[Entry], entry: &str, reason: &str) {
        let (digest, res) = self.unpack(entries);
        let want = Err(format!("layer {digest}: entry {entry:?}: {reason}"));
        if res != want {
            self.fail(format!("{entries:?}: got {res:?}, want {want:?}"));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A later assert panicked: still show the cases recorded before it.
        let f = self.failures.borrow();
        if std::thread::panicking() && !f.is_empty() {
            eprintln!("{} failed case(s) before the panic:\n{}", f.len(), f.join("\n"));
        }
    }
}

/// Unpacks with openat2 (where the kernel has it) and with the O_NOFOLLOW
/// walk of kernels before 5.6, which must agree.
fn unpack(blob: &Path, digest: &str, dest: &Path, openat2: bool) -> Result<(), ImageError> {
    if openat2 {
        return unpack_layer(blob, digest, dest);
    }
    fs::create_dir(dest).unwrap();
    unpack_tar(File::open(blob).unwrap(), LayerDir::open(dest).unwrap().without_openat2(), digest, blob)
}

fn write_layer(path: &Path, entries: &[Entry], uid: u64) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        // Written raw: `set_path` would refuse the bad names we want to test.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(if kind.is_file() { data.len() as u64 } else { 0 });
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(uid);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if kind.is_symlink() || kind.is_hard_link() {
            h.as_old_mut().linkname[..data.len()].copy_from_slice(data.as_bytes());
        }
        if kind.is_character_special() {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, if kind.is_file() { data.as_bytes() } else { &[][..] }).unwrap();
    }
    b.finish().unwrap();
}

/// Everything under `dir` except `skip`: type, mode, owner, mtime, content
/// or link target, opaque xattr. Symlinks are never followed.
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let m = fs::symlink_metadata(&d).unwrap();
        let what = if m.is_dir() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p != skip {
                    todo.push(p);
                }
            }
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("link to {:?}", fs::read_link(&d).unwrap())
        } else if m.is_file() {
            format!("file {:?}", String::from_utf8_lossy(&fs::read(&d).unwrap()))
        } else {
            format!("special {:o}", m.rdev())
        };
        let xattr = opaque_xattr_of(&d);
        // Making the layer itself changes its parent's mtime.
        let mtime = if Some(d.as_path()) == skip.parent() { 0 } else { m.mtime() };
        out.insert(d, format!("{what} mode {:o} owner {}:{} mtime {mtime} xattr {xattr:?}", m.mode(), m.uid(), m.gid()));
    }
    out
}

fn opaque_xattr_of(p: &Path) -> Option<Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: both names are NUL-terminated; the buffer's length is passed.
    let n = unsafe { nix::libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn entries_through_an_absolute_symlink_are_refused() {
    let s = Sandbox::new("hostile-abs-symlink");
    let out = s.outside();
    let l = ("l", Symlink, out.as_str());
    s.refused(&[l, ("l/x/.wh.y", Regular, "")], "l/x/.wh.y", "parent \"l\" is a symlink");
    s.refused(&[l, ("l/file", Regular, "evil")], "l/file", "parent \"l\" is a symlink");
    s.refused(&[l, ("l/dir/", Directory, "")], "l/dir/", "parent \"l\" is a symlink");
    s.refused(&[l, ("l/sub/deeper", Regular, "evil")], "l/sub/deeper", "parent \"l\" is a symlink");
    s.refused(&[l, ("l/.wh.keep", Regular, "")], "l/.wh.keep", "parent \"l\" is a symlink");
    s.refused(&[l, ("l/sub/.wh..wh..opq", Regular, "")], "l/sub/.wh..wh..opq", "parent \"l\" is a symlink");
    s.refused(&[l, ("l/null", Char, "")], "l/null", "parent \"l\" is a symlink");
    s.refused(&[l, ("./l/sub/link", Symlink, "/etc/passwd")], "./l/sub/link", "parent \"l\" is a symlink");
    s.finish();
}

#[test]
fn entries_through_relative_symlinks_are_refused() {
    let s = Sandbox::new("hostile-rel-symlink");
    // a/up -> ../../.. is the sandbox itself, seen from the layer.
    let up = [("a/", Directory, ""), ("a/up", Symlink, "../../..")];
    s.refused(&[up[0], up[1], ("a/up/x/.wh.y", Regular, "")], "a/up/x/.wh.y", "parent \"a/up\" is a symlink");
    s.refused(&[up[0], up[1], ("a/up/outside/keep", Regular, "evil")], "a/up/outside/keep", "parent \"a/up\" is a symlink");
    // A chain: l1 -> l2 -> .. (the store, holding the sibling layer).
    let chain = [("l1", Symlink, "l2"), ("l2", Symlink, "..")];
    s.refused(&[chain[0], chain[1], ("l1/sibling/.wh.keep", Regular, "")], "l1/sibling/.wh.keep", "parent \"l1\" is a symlink");
    s.refused(&[chain[0], chain[1], ("l1/escaped", Regular, "evil")], "l1/escaped", "parent \"l1\" is a symlink");
    s.finish();
}

#[test]
fn hard_links_stay_inside() {
    let s = Sandbox::new("hostile-hardlinks");
    let out = s.outside();
    s.refused(&[("h", Link, "../../etc/passwd")], "h", "hard link target \"../../etc/passwd\" leaves the layer directory");
    s.refused(&[("h", Link, "../outside/keep")], "h", "hard link target \"../outside/keep\" leaves the layer directory");
    s.refused(&[("l", Symlink, out.as_str()), ("h", Link, "l/keep")], "h", "hard link target \"l/keep\": parent \"l\" is a symlink");
    s.refused(&[("l", Symlink, out.as_str()), ("l/h", Link, "f")], "l/h", "parent \"l\" is a symlink");
    // A hard link to a symlink links the symlink itself (as link(2) does),
    // whatever it points at.
    let keep = format!("{out}/keep");
    let (_, res) = s.unpack(&[("s", Symlink, keep.as_str()), ("h", Link, "s"), ("f", Regular, "data"), ("g", Link, "/f")]);
    if s.ok(res) {
        let layer = s.layer();
        let (sm, hm) = (fs::symlink_metadata(layer.join("s")).unwrap(), fs::symlink_metadata(layer.join("h")).unwrap());
        assert!(hm.file_type().is_symlink() && hm.ino() == sm.ino());
        assert_eq!(fs::metadata(layer.join("g")).unwrap().ino(), fs::metadata(layer.join("f")).unwrap().ino());
    }
    s.finish();
}

#[test]
fn whiteouts_of_dot_names_are_refused() {
    let s = Sandbox::new("hostile-whiteouts");
    let d = [("d/", Directory, ""), ("d/f", Regular, "x")];
    s.refused(&[("f", Regular, "x"), (".wh..", Regular, "")], ".wh..", "whiteout of \".\": not a file name");
    s.refused(&[("f", Regular, "x"), (".wh...", Regular, "")], ".wh...", "whiteout of \"..\": not a file name");
    s.refused(&[d[0], d[1], ("d/.wh..", Regular, "")], "d/.wh..", "whiteout of \".\": not a file name");
    s.refused(&[d[0], d[1], ("d/.wh...", Regular, "")], "d/.wh...", "whiteout of \"..\": not a file name");
    s.refused(&[d[0], ("d/.wh.", Regular, "")], "d/.wh.", "whiteout of \"\": not a file name");
    s.finish();
}

#[test]
fn parent_dir_names_that_leave_the_layer_are_refused() {
    let s = Sandbox::new("hostile-dotdot");
    s.refused(&[("ok", Regular, "fine"), ("../x", Regular, "evil")], "../x", "leaves the layer directory");
    s.refused(&[("a/../../x", Regular, "evil")], "a/../../x", "leaves the layer directory");
    s.refused(&[("./../store/sibling/.wh.keep", Regular, "")], "./../store/sibling/.wh.keep", "leaves the layer directory");
    s.refused(&[("..", Directory, "")], "..", "leaves the layer directory");
    s.finish();
}

/// Point 11: `umoci insert DIR /` starts its layer with `/`; `./` and `.`
/// are the same root. Names are cleaned as containerd does.
#[test]
fn root_entries_and_dot_prefixes_are_the_layer_root() {
    let s = Sandbox::new("hostile-root-entry");
    let (_, res) = s.unpack(&[
        ("/", Directory, ""),
        ("etc/", Directory, ""),
        ("etc/hostname", Regular, "box"),
        ("./", Directory, ""),
        (".", Directory, ""),
        ("./bin/", Directory, ""),
        ("./bin/busybox", Regular, "#!binary"),
        ("./bin//sh", Symlink, "busybox"),
        (".//usr/./lib/", Directory, ""),
        ("usr/lib/../share/x", Regular, "cleaned"),
    ]);
    if s.ok(res) {
        let layer = s.layer();
        assert_eq!(fs::read_to_string(layer.join("etc/hostname")).unwrap(), "box");
        assert_eq!(fs::read_link(layer.join("bin/sh")).unwrap(), Path::new("busybox"));
        assert!(layer.join("usr/lib").is_dir());
        assert_eq!(fs::read_to_string(layer.join("usr/share/x")).unwrap(), "cleaned");
    }
    s.finish();
}

/// An entry replacing a symlink replaces the link, never what it points at.
#[test]
fn entries_replace_symlinks_instead_of_following_them() {
    let s = Sandbox::new("hostile-replace");
    let out = s.outside();
    let keep = format!("{out}/keep");
    let (_, res) = s.unpack(&[
        ("l", Symlink, out.as_str()),
        ("l/", Directory, ""),
        ("l/inside", Regular, "ok"),
        ("f", Symlink, keep.as_str()),
        ("f", Regular, "replaced"),
        ("n", Symlink, keep.as_str()),
        ("n", Char, ""),
    ]);
    if s.ok(res) {
        let layer = s.layer();
        assert!(fs::symlink_metadata(layer.join("l")).unwrap().is_dir());
        assert_eq!(fs::read_to_string(layer.join("l/inside")).unwrap(), "ok");
        assert_eq!(fs::read_to_string(layer.join("f")).unwrap(), "replaced");
        assert!(fs::symlink_metadata(layer.join("n")).unwrap().file_type().is_char_device());
    }
    s.finish();
}

/// Owner ids are 32 bits; a header asking for more is refused, not truncated.
#[test]
fn owner_ids_past_32_bits_are_refused() {
    let s = Sandbox::new("hostile-uid");
    s.uid.set(u64::from(u32::MAX) + 6);
    s.refused(&[("null", Char, "")], "null", "uid 4294967301 out of range");
    s.refused(&[("f", Regular, "x")], "f", "uid 4294967301 out of range");
    s.finish();
}
