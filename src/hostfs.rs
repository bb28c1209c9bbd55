//! The host's filesystem, as every part of picolet uses it: files written so
//! a crash never leaves half of one, and the mount table.
//!
//! The ground floor: imports nothing of picolet's. Not here: statvfs figures
//! (node::fs_capacity, stats/), anything about pods or images.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `path` so that a reader sees either the old or the new content:
/// temp file, fsync, rename, fsync the directory. A failed write leaves no
/// temp file behind.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, data, 0o666)
}

/// [`write_atomic`] creating the file with `mode` (less the umask), e.g.
/// 0600 for secrets: the content is never readable with wider permissions.
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    // A temp file left by a crash keeps its old mode when opened again.
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Mount points of this process's mount namespace, unescaped.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    Ok(parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo")?).into_iter().map(|(p, _)| p).collect())
}

/// Whether `p` (resolved through symlinks) is a mount point.
pub fn is_mount_point(p: &Path) -> io::Result<bool> {
    let real = fs::canonicalize(p)?;
    Ok(mount_points()?.iter().any(|m| *m == real))
}

/// (mount point, fs type) of each line of a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let point = f.nth(4)?;
            let mut rest = f.skip_while(|x| *x != "-");
            rest.next()?;
            let fstype = rest.next().unwrap_or("");
            Some((PathBuf::from(unescape(point)), fstype.to_string()))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        let byte = octal.and_then(|d| u8::try_from(d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'))).ok());
        if let Some(v) = byte {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parsing() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m[0], (PathBuf::from("/mnt/with space"), "ext3".to_string()));
        assert_eq!(m[1], (PathBuf::from("/proc"), "proc".to_string()));
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/x\\134y"), "/x\\y");
        assert_eq!(unescape("/end\\04"), "/end\\04");
        assert_eq!(unescape("/big\\777"), "/big\\777");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("picolet-fs-{}", std::process::id()));
        let path = dir.join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let secret = dir.join("secret.json");
        write_atomic_mode(&secret, b"s", 0o600).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
