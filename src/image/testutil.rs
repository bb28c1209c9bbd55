//! Test helpers: the real test images (built once per test run by
//! `tests/images/build.sh`), scratch dirs, and archive rewriting.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The directory holding busybox.tar, busybox-docker.tar and layered.tar.
pub fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = target().join("test-images");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/build.sh");
        let st = Command::new("bash").arg(&script).arg(&out).status().expect("run build.sh");
        assert!(st.success(), "tests/images/build.sh failed");
        out
    })
}

/// A fresh empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = target().join("t").join(name);
    if d.exists() {
        let _ = super::unmount_rootfs(&d.join("c"));
        std::fs::remove_dir_all(&d).expect("clean scratch dir");
    }
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", super::store::hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref()))
}

/// Copies the tar `src` to `dst`, replacing the files in `replace` (by path)
/// and appending `add` as new files.
pub fn rewrite_archive(src: &Path, dst: &Path, replace: &[(&str, Vec<u8>)], add: &[(String, Vec<u8>)]) {
    let mut ar = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(dst).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if let Some((_, new)) = replace.iter().find(|(p, _)| *p == path) {
            data = new.clone();
            h.set_size(data.len() as u64);
            h.set_cksum();
        }
        b.append(&h, &data[..]).unwrap();
    }
    for (p, data) in add {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

/// The contents of the file `path` inside the tar `src`.
pub fn read_member(src: &Path, path: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(src).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == path {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{path} not in {}", src.display());
}
