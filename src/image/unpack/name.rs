//! Layer entry names, cleaned the way containerd and Docker clean them: `.`
//! parts and repeated or trailing slashes dropped, a leading `/` meaning the
//! layer root (`umoci insert DIR /` writes `/` as its first entry), `..`
//! taken back lexically (`usr/lib/../share` is `usr/share`, `/../x` is `x`
//! as `/..` is `/`). A relative name whose `..` climbs above the root is
//! refused (Docker does too), as are NUL bytes and names longer than
//! the kernel's PATH_MAX. Symlinks are not looked at here (`dir.rs` refuses
//! to go through them); nor are whiteouts applied (`mod.rs` does).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Longer names cannot be used in a container anyway (Linux's PATH_MAX).
const PATH_MAX: usize = 4096;
const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// `raw` (an entry name or hard link target, as the tar header has it) as a
/// path of plain components relative to the layer root; empty for the root.
pub(super) fn clean(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    if raw.len() > PATH_MAX {
        return Err(format!("is longer than {PATH_MAX} bytes"));
    }
    let rooted = raw.starts_with(b"/");
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() && !rooted {
                    return Err("leaves the layer directory".into());
                }
            }
        }
    }
    Ok(out)
}

/// What an entry's last component says about whiteouts.
#[derive(Debug, PartialEq)]
pub(super) enum Whiteout<'a> {
    /// `.wh..wh..opq`: hide the lower layers' contents of the directory.
    Opaque,
    /// `.wh.<name>`: hide `<name>` of the lower layers.
    Of(&'a OsStr),
    /// Other `.wh..wh.` names: AUFS bookkeeping, meaningless here.
    Meta,
}

/// None for an ordinary name; an error for a whiteout of `.`, `..` or
/// nothing, which would aim at the directory itself or its parent.
pub(super) fn whiteout(name: &OsStr) -> Result<Option<Whiteout<'_>>, String> {
    let b = name.as_bytes();
    let Some(hidden) = b.strip_prefix(WHITEOUT) else { return Ok(None) };
    if b == OPAQUE {
        return Ok(Some(Whiteout::Opaque));
    }
    if hidden.starts_with(WHITEOUT) {
        return Ok(Some(Whiteout::Meta));
    }
    if matches!(hidden, b"" | b"." | b"..") {
        return Err(format!("whiteout of {:?}: not a file name", String::from_utf8_lossy(hidden)));
    }
    Ok(Some(Whiteout::Of(OsStr::from_bytes(hidden))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        clean(raw.as_bytes()).unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn names_are_cleaned_like_containerd_does() {
        for (raw, want) in [
            ("/", ""),
            ("./", ""),
            (".", ""),
            ("//", ""),
            ("/etc/passwd", "etc/passwd"),
            ("./bin//sh", "bin/sh"),
            (".//usr/./lib/", "usr/lib"),
            ("usr/lib/../share", "usr/share"),
            ("a/..", ""),
            ("a/b/../../c", "c"),
            ("/../x", "x"),
            ("/a/../../x", "x"),
        ] {
            assert_eq!(ok(raw), want, "{raw}");
        }
    }

    #[test]
    fn escapes_and_bad_bytes_are_refused() {
        for raw in ["..", "../x", "a/../../x", "./../x", "a/b/../../../x"] {
            assert_eq!(clean(raw.as_bytes()).unwrap_err(), "leaves the layer directory", "{raw}");
        }
        assert_eq!(clean(b"a\0b").unwrap_err(), "contains a NUL byte");
        assert_eq!(clean(&[b'a'; 4097]).unwrap_err(), "is longer than 4096 bytes");
        assert!(clean(&[b'a'; 4096]).is_ok());
    }

    #[test]
    fn whiteout_names() {
        let w = |s: &'static str| whiteout(OsStr::new(s));
        assert_eq!(w("file"), Ok(None));
        assert_eq!(w(".whx"), Ok(None));
        assert_eq!(w(".wh.gone"), Ok(Some(Whiteout::Of(OsStr::new("gone")))));
        assert_eq!(w(".wh..hidden"), Ok(Some(Whiteout::Of(OsStr::new(".hidden")))));
        assert_eq!(w(".wh...x"), Ok(Some(Whiteout::Of(OsStr::new("..x")))));
        assert_eq!(w(".wh..wh..opq"), Ok(Some(Whiteout::Opaque)));
        assert_eq!(w(".wh..wh.plnk"), Ok(Some(Whiteout::Meta)));
        assert_eq!(w(".wh."), Err("whiteout of \"\": not a file name".into()));
        assert_eq!(w(".wh.."), Err("whiteout of \".\": not a file name".into()));
        assert_eq!(w(".wh..."), Err("whiteout of \"..\": not a file name".into()));
    }
}
