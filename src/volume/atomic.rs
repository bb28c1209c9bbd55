//! Projecting a set of files into a volume directory so that a reader never
//! sees half an update, with the semantics of upstream's AtomicWriter (the
//! writer of configMap, secret, downwardAPI and projected volumes):
//!
//! ```text
//! <dir>/..2024_05_01_12_00_00.123456789/   the files, as a whole (0755 dir)
//! <dir>/..data -> ..2024_05_01_12_00_00.123456789
//! <dir>/key    -> ..data/key                one link per top-level path
//! ```
//!
//! An update writes a new timestamped directory, points a temporary link
//! `..data_tmp` at it and renames that over `..data` (rename is atomic),
//! then adds links for new paths, drops links of paths no longer there and
//! removes the old directory. Whoever resolves `..data` once sees one
//! version, whole. Nothing is written when content and modes are unchanged.
//! Names starting with `..` are the writer's: payload paths may not use them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";

/// One file of a volume: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks a payload path as upstream does (relative, no `..` element, not
/// starting with `..`, names ≤ 255 and paths ≤ 4096 bytes) and cleans it
/// (`a//./b` → `a/b`).
pub fn clean_path(p: &str) -> io::Result<String> {
    if p.is_empty() {
        return Err(invalid("invalid path: must not be empty".into()));
    }
    if p.starts_with('/') {
        return Err(invalid(format!("invalid path: must be relative path: {p}")));
    }
    if p.len() > 4096 {
        return Err(invalid("invalid path: must be less than or equal to 4096 characters".into()));
    }
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if parts.contains(&"..") {
        return Err(invalid(format!("invalid path: must not contain '..': {p}")));
    }
    if parts.iter().any(|c| c.len() > 255) {
        return Err(invalid("invalid path: filenames must be less than or equal to 255 characters".into()));
    }
    match parts.first() {
        None => Err(invalid(format!("invalid path: must not be empty: {p}"))),
        Some(first) if first.starts_with("..") => Err(invalid(format!("invalid path: must not start with '..': {p}"))),
        Some(_) => Ok(parts.join("/")),
    }
}

/// Writes `payload` into `dir` (created if missing). True if a new version
/// was written, false if the volume already had exactly this content.
pub fn write(dir: &Path, payload: &BTreeMap<String, FileProjection>) -> io::Result<bool> {
    let mut clean = BTreeMap::new();
    for (p, f) in payload {
        clean.insert(clean_path(p)?, f);
    }
    fs::create_dir_all(dir)?;
    let data_link = dir.join(DATA_DIR);
    let old = match fs::read_link(&data_link) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let old_dir = old.as_ref().map(|t| dir.join(t)).filter(|d| d.is_dir());
    let mut to_remove = BTreeSet::new();
    if let Some(old_dir) = &old_dir {
        to_remove = paths_to_remove(&clean, old_dir)?;
        if to_remove.is_empty() && !differs(&clean, old_dir)? {
            create_visible(dir, &clean)?;
            remove_strays(dir, old.as_deref())?;
            return Ok(false);
        }
    }

    let ts = new_ts_dir(dir)?;
    let ts_name = PathBuf::from(ts.file_name().expect("named"));
    let swapped = (|| {
        write_files(&ts, &clean)?;
        let tmp_link = dir.join(NEW_DATA_DIR);
        match fs::remove_file(&tmp_link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(&ts_name, &tmp_link)?;
        fs::rename(&tmp_link, &data_link).inspect_err(|_| {
            let _ = fs::remove_file(&tmp_link);
        })
    })();
    if let Err(e) = swapped {
        let _ = fs::remove_dir_all(&ts);
        return Err(e);
    }
    create_visible(dir, &clean)?;
    for p in to_remove.iter().filter(|p| !p.contains('/')) {
        match fs::remove_file(dir.join(p)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if let Some(old_dir) = old_dir {
        fs::remove_dir_all(old_dir)?;
    }
    remove_strays(dir, Some(&ts_name))?;
    Ok(true)
}

/// Relative paths (files and directories) under the old version that the
/// new payload no longer has, directories of new paths excepted.
fn paths_to_remove(payload: &BTreeMap<String, &FileProjection>, old_dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut old = BTreeSet::new();
    walk(old_dir, "", &mut old)?;
    for p in payload.keys() {
        let mut sub = p.as_str();
        loop {
            old.remove(sub);
            match sub.rsplit_once('/') {
                Some((parent, _)) => sub = parent,
                None => break,
            }
        }
    }
    Ok(old)
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        if e.file_type()?.is_dir() {
            walk(&e.path(), &rel, out)?;
        }
        out.insert(rel);
    }
    Ok(())
}

/// Whether any file of `payload` is missing from `old_dir` or has other bytes or mode.
fn differs(payload: &BTreeMap<String, &FileProjection>, old_dir: &Path) -> io::Result<bool> {
    for (p, f) in payload {
        let path = old_dir.join(p);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != f.mode || meta.len() != f.data.len() as u64 {
            return Ok(true);
        }
        if fs::read(&path)? != f.data {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A new `..<UTC timestamp>` directory in `dir`, mode 0755.
fn new_ts_dir(dir: &Path) -> io::Result<PathBuf> {
    let now = crate::api::time::rfc3339_nano(std::time::SystemTime::now());
    let stamp: String = now.trim_end_matches('Z').chars().map(|c| if "-T:".contains(c) { '_' } else { c }).collect();
    for n in 0u32.. {
        let name = if n == 0 { format!("..{stamp}") } else { format!("..{stamp}{n}") };
        let path = dir.join(name);
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!()
}

fn write_files(ts: &Path, payload: &BTreeMap<String, &FileProjection>) -> io::Result<()> {
    for (p, f) in payload {
        let path = ts.join(p);
        if let Some(parent) = path.parent() {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o755);
            b.create(parent)?;
        }
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(f.mode).open(&path)?;
        file.write_all(&f.data)?;
        // The umask may have taken bits off; the mode asked for is the mode.
        file.set_permissions(fs::Permissions::from_mode(f.mode))?;
    }
    Ok(())
}

/// `<first component> -> ..data/<first component>` for every payload path.
fn create_visible(dir: &Path, payload: &BTreeMap<String, &FileProjection>) -> io::Result<()> {
    let firsts: BTreeSet<&str> = payload.keys().map(|p| p.split('/').next().unwrap_or(p)).collect();
    for first in firsts {
        let link = dir.join(first);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(first), &link)?;
        }
    }
    Ok(())
}

/// Timestamped directories other than `current` left by a crash mid-update.
fn remove_strays(dir: &Path, current: Option<&Path>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let s = name.to_string_lossy();
        if s.starts_with("..") && s != DATA_DIR && Some(Path::new(&name)) != current && e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("picolet-atomic-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn payload(files: &[(&str, &str, u32)]) -> BTreeMap<String, FileProjection> {
        files.iter().map(|(p, d, m)| (p.to_string(), FileProjection { data: d.as_bytes().to_vec(), mode: *m })).collect()
    }

    fn target(dir: &Path) -> PathBuf {
        dir.join(fs::read_link(dir.join(DATA_DIR)).unwrap())
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn paths_are_checked_and_cleaned() {
        assert_eq!(clean_path("a//./b/").unwrap(), "a/b");
        assert_eq!(clean_path("..a/../b").unwrap_err().to_string(), "invalid path: must not contain '..': ..a/../b");
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "..data", "..x/y", ".", &"n".repeat(256)] {
            assert!(clean_path(bad).is_err(), "{bad:?}");
        }
        assert!(clean_path("...").is_err(), "starts with '..'");
        assert!(clean_path(".hidden").is_ok());
    }

    #[test]
    fn write_update_and_no_op() {
        let d = tempdir("update").join("vol");
        assert!(write(&d, &payload(&[("a", "one", 0o644), ("sub/b", "two", 0o600), ("c", "x", 0o400)])).unwrap());
        let first = target(&d);
        assert!(first.file_name().unwrap().to_string_lossy().starts_with("..20"), "{first:?}");
        assert_eq!(fs::metadata(&first).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read_link(d.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(fs::read_link(d.join("sub")).unwrap(), Path::new("..data/sub"));
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap(), "two");
        assert_eq!(fs::metadata(d.join("sub/b")).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(d.join("c")).unwrap().permissions().mode() & 0o7777, 0o400);

        // The same again: nothing written, same version.
        assert!(!write(&d, &payload(&[("a", "one", 0o644), ("sub/b", "two", 0o600), ("c", "x", 0o400)])).unwrap());
        assert_eq!(target(&d), first);

        // Changed content, a key gone, a key new, a mode changed.
        assert!(write(&d, &payload(&[("a", "ONE", 0o644), ("sub/b", "two", 0o640), ("new", "n", 0o644)])).unwrap());
        let second = target(&d);
        assert_ne!(second, first);
        assert!(!first.exists(), "old version removed");
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "ONE");
        assert_eq!(fs::metadata(d.join("sub/b")).unwrap().permissions().mode() & 0o7777, 0o640);
        assert!(fs::symlink_metadata(d.join("c")).is_err(), "link of a removed key removed");
        let ts = second.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(names(&d), vec![ts, "..data".into(), "a".into(), "new".into(), "sub".into()]);

        // Mode only.
        assert!(write(&d, &payload(&[("a", "ONE", 0o600), ("sub/b", "two", 0o640), ("new", "n", 0o644)])).unwrap());
        // Empty payload (an optional object that is gone): only the writer's names remain.
        assert!(write(&d, &BTreeMap::new()).unwrap());
        assert_eq!(names(&d).len(), 2);
        assert!(write(&d, &payload(&[("..x", "bad", 0o644)])).is_err());
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    #[test]
    fn crash_leftovers_are_cleaned() {
        let d = tempdir("leftovers").join("vol");
        write(&d, &payload(&[("a", "1", 0o644)])).unwrap();
        // As if picolet died mid-update: a half-written version and a temp link.
        fs::create_dir(d.join("..2020_01_01_00_00_00.5")).unwrap();
        fs::write(d.join("..2020_01_01_00_00_00.5/a"), "half").unwrap();
        std::os::unix::fs::symlink("..2020_01_01_00_00_00.5", d.join(NEW_DATA_DIR)).unwrap();
        assert!(!write(&d, &payload(&[("a", "1", 0o644)])).unwrap(), "content unchanged");
        assert!(!d.join("..2020_01_01_00_00_00.5").exists());
        assert!(write(&d, &payload(&[("a", "2", 0o644)])).unwrap());
        assert!(fs::symlink_metadata(d.join(NEW_DATA_DIR)).is_err());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "2");
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    /// A reader that resolves `..data` once sees one whole version: both
    /// files of the same generation, never a short one, while updates swap.
    #[test]
    fn readers_never_see_half_an_update() {
        let d = tempdir("readers").join("vol");
        let big = |g: u32| format!("{g:08}").repeat(64 * 1024);
        let gen = |g: u32| payload(&[("a", &big(g), 0o644), ("b", &big(g), 0o644)]);
        write(&d, &gen(0)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (d, stop) = (d.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut whole = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(t) = fs::read_link(d.join(DATA_DIR)) else { continue };
                    let version = d.join(t);
                    // The old version may be gone by now: that is fine, a mix is not.
                    if let (Ok(a), Ok(b)) = (fs::read_to_string(version.join("a")), fs::read_to_string(version.join("b"))) {
                        assert_eq!(a.len(), 8 * 64 * 1024, "short read");
                        assert_eq!(a, b, "mixed versions");
                        whole += 1;
                    }
                }
                whole
            })
        };
        for g in 1..60 {
            assert!(write(&d, &gen(g)).unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), big(59));
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }
}
