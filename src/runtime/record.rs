//! What picolet keeps on disk about each container, so a restarted picolet
//! knows its containers without asking anyone: `<root>/containers/<id>/`
//! holds `record.json` (written by picolet), `exit.json` (by the reaper), the
//! OCI bundle (`config.json`, `rootfs/`, `upper/`) and the log FIFOs.

use serde::{Deserialize, Serialize};
use crate::hostfs::write_atomic;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One container attempt. `attempt` is the restart count it was started with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Record {
    pub id: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub container: String,
    pub init: bool,
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    /// The image's StopSignal (empty: SIGTERM).
    pub stop_signal: String,
    pub pid: u32,
    pub created_at: String,
    pub started_at: Option<String>,
    /// Set when picolet itself failed the start (runc start error): exit info
    /// then comes from here, not from the reaper.
    pub start_error: Option<String>,
    /// Both log pipes reached EOF and were copied out.
    pub logs_done: bool,
}

/// A container's directory under the root.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join("containers").join(id)
}

impl Record {
    pub fn save(&self, root: &Path) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(&dir(root, &self.id).join("record.json"), &body)
    }

    /// Every readable record. A corrupt or half-written file is skipped with a
    /// warning rather than stopping start-up.
    pub fn load_all(root: &Path) -> Vec<Record> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(root.join("containers")) else { return out };
        for e in entries.flatten() {
            let path = e.path().join("record.json");
            match fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
                    Ok(r) => out.push(r),
                    Err(err) => log::warn!("ignoring unreadable container record {}: {err}", path.display()),
                },
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    // picolet died while preparing the bundle: the record is
                    // written before runc sees the container, so nothing runs here.
                    log::info!("removing unfinished container dir {}", e.path().display());
                    let _ = crate::image::unmount_rootfs(&e.path());
                    let _ = fs::remove_dir_all(e.path());
                }
                Err(err) => log::warn!("{}: {err}", path.display()),
            }
        }
        out.sort_by(|a, b| (&a.pod_uid, &a.container, a.attempt).cmp(&(&b.pod_uid, &b.container, b.attempt)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_written_record_is_skipped() {
        let root = std::env::temp_dir().join(format!("picolet-record-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let r = Record { id: "a".into(), pod_uid: "u".into(), container: "c".into(), ..Default::default() };
        r.save(&root).unwrap();
        fs::create_dir_all(dir(&root, "b")).unwrap();
        fs::write(dir(&root, "b").join("record.json"), b"{\"id\": \"b\", \"podU").unwrap();
        let all = Record::load_all(&root);
        assert_eq!(all, vec![r]);
        fs::remove_dir_all(&root).unwrap();
    }
}
