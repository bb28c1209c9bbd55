//! The content-addressed image store under `<root-dir>/images-store`:
//!
//! ```text
//! blobs/sha256/<hex>     manifests, configs and layer blobs, verified on write
//! layers/<16 hex>/       each layer unpacked once (overlayfs whiteouts), read-only use
//! images.json            normalized reference -> manifest/config/layer digests
//! archives.json          archives import_dir has seen (name, size, mtime)
//! index.lock             flock'd while the two files above are updated
//! tmp/                   temp files and dirs, renamed into place when complete
//! partial/<hex>          registry downloads that broke off, resumed by the next pull (pull.rs)
//! ```
//!
//! It does not talk to registries; importing is in `import.rs`, pulling in
//! `pull.rs` (both land blobs through `put_blob`), unpacking in `unpack.rs`,
//! deleting images (image GC, `images rm`) in `gc.rs`.

use super::{reference, unpack, ImageConfig, ImageError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// Largest JSON document (index, manifest, config) read into memory.
pub(crate) const JSON_LIMIT: u64 = 4 << 20;

/// The image store. Cheap to open; all state is on disk.
#[derive(Debug)]
pub struct Store {
    pub(crate) root: PathBuf,
    /// Serialises read-modify-write of the index files within this process
    /// (`lock_index` adds a file lock for other processes).
    pub(crate) lock: Mutex<()>,
}

/// Held while the index files are read, changed and written: the in-process
/// mutex plus `flock` on `index.lock`, so `picolet images pull/import` run
/// by hand and a running picolet do not lose each other's updates.
pub(crate) struct IndexGuard<'a> {
    _mutex: std::sync::MutexGuard<'a, ()>,
    _file: Option<nix::fcntl::Flock<File>>,
}

/// One stored image as `list()` shows it; references sharing an id are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// Normalized references pointing at this image, sorted.
    pub references: Vec<String>,
    /// `sha256:<config digest>`.
    pub id: String,
    /// Bytes of the image's blobs (manifest, config, layers) in the store.
    pub size: u64,
}

/// A resolved image, ready to be mounted.
#[derive(Debug, Clone)]
pub struct Image {
    /// The normalized reference it was resolved by.
    pub reference: String,
    /// `sha256:<config digest>`, what `status.imageID` shows.
    pub id: String,
    /// The config blob's `config` object.
    pub config: ImageConfig,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
}

/// What `images.json` remembers per reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    pub config: String,
    pub layers: Vec<String>,
    pub size: u64,
    /// Came from a registry (not an archive): `imagePullPolicy: Always`
    /// asks the registry whether the tag moved only for these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pulled: bool,
}

#[derive(Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: ImageConfig,
}

impl Store {
    /// Opens (creating if needed) the store at `root` and clears leftovers of
    /// interrupted imports and pulls from `tmp/`; files of a process still
    /// alive (another picolet command working on the same store) are left.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| ImageError::io("create", &p, e))?;
        }
        let tmp = root.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let p = e.path();
                // temp_path names are <kind>-<pid>-<n>.
                let pid = e.file_name().to_str().and_then(|n| n.split('-').nth(1)?.parse::<u32>().ok());
                if pid.is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()) {
                    continue;
                }
                let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            }
        }
        Ok(Store { root: root.to_path_buf(), lock: Mutex::new(()) })
    }

    /// All images, one entry per image id, references sorted. The size counts
    /// each blob once even when references share it.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let mut by_id: BTreeMap<String, (Vec<String>, BTreeSet<String>)> = BTreeMap::new();
        for (r, rec) in self.records()? {
            let (refs, blobs) = by_id.entry(rec.config.clone()).or_default();
            refs.push(r);
            blobs.extend(rec.manifest.iter().chain([&rec.config]).chain(&rec.layers).cloned());
        }
        let mut out = Vec::new();
        for (id, (references, blobs)) in by_id {
            let mut size = 0;
            for b in blobs {
                size += fs::metadata(self.blob_path(&b)?).map(|m| m.len()).unwrap_or(0);
            }
            out.push(ImageInfo { references, id, size });
        }
        Ok(out)
    }

    /// Normalizes `reference` and looks it up. A digest reference also matches
    /// an image of the same repository whose manifest or config has that digest.
    /// Layers missing from `layers/` are unpacked again from their blobs.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let norm = reference::normalize(reference)?;
        let records = self.records()?;
        let found = records.get(&norm).cloned().or_else(|| {
            let r = reference::parse(reference).ok()?;
            let digest = r.digest.as_ref()?;
            let repo = r.repository();
            records.iter().find_map(|(k, rec)| {
                let same_repo = reference::parse(k).ok()?.repository() == repo;
                let same = rec.manifest.as_ref() == Some(digest) || &rec.config == digest;
                (same_repo && same).then(|| rec.clone())
            })
        });
        let Some(rec) = found else { return Ok(None) };
        let cfg_path = self.blob_path(&rec.config)?;
        let bytes = read_capped(&cfg_path, "image config")?;
        let cfg: ConfigBlob = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Json { what: "image config".into(), path: cfg_path, source: e })?;
        let layers = rec.layers.iter().map(|d| self.ensure_layer(d)).collect::<Result<_, _>>()?;
        Ok(Some(Image { reference: norm, id: rec.config, config: cfg.config, layers }))
    }

    /// Takes the index lock (see `IndexGuard`). Without a lock file (a
    /// read-only store) only the in-process mutex is held.
    pub(crate) fn lock_index(&self) -> IndexGuard<'_> {
        let mutex = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("index.lock"))
            .ok()
            .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
        IndexGuard { _mutex: mutex, _file: file }
    }

    pub(crate) fn records(&self) -> Result<BTreeMap<String, Record>, ImageError> {
        read_json_or_default(&self.root.join("images.json"), "image index")
    }

    pub(crate) fn write_records(&self, recs: &BTreeMap<String, Record>) -> Result<(), ImageError> {
        self.write_json(&self.root.join("images.json"), recs)
    }

    pub(crate) fn write_json<T: Serialize>(&self, path: &Path, v: &T) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(v)
            .map_err(|e| ImageError::Json { what: "index".into(), path: path.to_path_buf(), source: e })?;
        crate::hostfs::write_atomic(path, &bytes).map_err(|e| ImageError::io("write", path, e))
    }

    /// `blobs/sha256/<hex>`; refuses anything that is not a sha256 digest, as
    /// digests come from archives and become paths.
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = digest_hex(digest).ok_or_else(|| ImageError::InvalidReference {
            reference: digest.to_string(),
            reason: "not a sha256 digest".into(),
        })?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub(crate) fn layer_dir(&self, digest: &str) -> Result<PathBuf, ImageError> {
        self.blob_path(digest)?;
        Ok(self.root.join("layers").join(&digest[7..7 + 16]))
    }

    pub(crate) fn temp_path(&self, kind: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{kind}-{}-{n}", std::process::id()))
    }

    /// The unpacked directory of layer `digest`, unpacking its blob first if needed.
    pub(crate) fn ensure_layer(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let dir = self.layer_dir(digest)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        let blob = self.blob_path(digest)?;
        if !blob.is_file() {
            return Err(ImageError::MissingBlob { digest: digest.to_string(), archive: blob });
        }
        let tmp = self.temp_path("layer");
        if let Err(e) = unpack::unpack_layer(&blob, digest, &tmp) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok(dir),
            // Someone else unpacked it meanwhile: theirs is as good as ours.
            Err(_) if dir.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(dir)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(ImageError::io("rename layer to", &dir, e))
            }
        }
    }

    /// Streams `r` into the store, hashing as it goes. With `expected`, a
    /// different hash is an error and nothing is kept. Returns the digest,
    /// the size, and whether the blob is new to the store.
    pub(crate) fn put_blob(
        &self,
        r: &mut dyn Read,
        expected: Option<&str>,
        name: &str,
        archive: &Path,
    ) -> Result<(String, u64, bool), ImageError> {
        let tmp = self.temp_path("blob");
        let res = self.put_blob_tmp(r, expected, name, archive, &tmp);
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn put_blob_tmp(
        &self,
        r: &mut dyn Read,
        expected: Option<&str>,
        name: &str,
        archive: &Path,
        tmp: &Path,
    ) -> Result<(String, u64, bool), ImageError> {
        let file = File::create(tmp).map_err(|e| ImageError::io("create", tmp, e))?;
        let mut w = HashWriter { inner: file, ctx: ring::digest::Context::new(&ring::digest::SHA256), n: 0 };
        io::copy(r, &mut w).map_err(|e| ImageError::io(format!("read {name} from"), archive, e))?;
        let digest = format!("sha256:{}", hex(w.ctx.finish().as_ref()));
        if let Some(want) = expected {
            if want != digest {
                return Err(ImageError::DigestMismatch {
                    blob: name.to_string(),
                    archive: archive.to_path_buf(),
                    actual: digest,
                });
            }
        }
        let dst = self.blob_path(&digest)?;
        if dst.exists() {
            touch(&dst);
            let _ = fs::remove_file(tmp);
            return Ok((digest, w.n, false));
        }
        w.inner.sync_all().map_err(|e| ImageError::io("sync", tmp, e))?;
        fs::rename(tmp, &dst).map_err(|e| ImageError::io("rename blob to", &dst, e))?;
        Ok((digest, w.n, true))
    }
}

struct HashWriter {
    inner: File,
    ctx: ring::digest::Context,
    n: u64,
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The 64 hex chars of a `sha256:` digest, if it is one.
pub(crate) fn digest_hex(d: &str) -> Option<&str> {
    let h = d.strip_prefix("sha256:")?;
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(h)
}

/// Reads at most `JSON_LIMIT` bytes of `r`; more is an error.
pub(crate) fn read_limited(r: &mut dyn Read, what: &str, path: &Path) -> Result<Vec<u8>, ImageError> {
    let mut buf = Vec::new();
    r.take(JSON_LIMIT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::io(format!("read {what} from"), path, e))?;
    if buf.len() as u64 > JSON_LIMIT {
        return Err(ImageError::TooLarge { what: what.to_string(), path: path.to_path_buf(), limit: JSON_LIMIT });
    }
    Ok(buf)
}

pub(crate) fn read_capped(path: &Path, what: &str) -> Result<Vec<u8>, ImageError> {
    let mut f = File::open(path).map_err(|e| ImageError::io(format!("open {what}"), path, e))?;
    read_limited(&mut f, what, path)
}

pub(crate) fn read_json_or_default<T: Default + for<'de> Deserialize<'de>>(
    path: &Path,
    what: &str,
) -> Result<T, ImageError> {
    match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(ImageError::io(format!("open {what}"), path, e)),
        Ok(mut f) => {
            let bytes = read_limited(&mut f, what, path)?;
            serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Json { what: what.to_string(), path: path.to_path_buf(), source: e })
        }
    }
}

/// Marks a stored blob as just used, so a sweep leaves it (pulls and
/// imports reuse blobs before their image is in the index).
pub(crate) fn touch(blob: &Path) {
    if let Ok(f) = fs::File::options().write(true).open(blob) {
        let _ = f.set_modified(SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::scratch;

    #[test]
    fn open_sweeps_tmp_but_spares_live_processes() {
        let dir = scratch("store-sweep");
        Store::open(&dir).unwrap();
        let tmp = dir.join("tmp");
        // pid 1 is alive; a pid above pid_max never is; ours is this process's leftovers.
        let live = tmp.join("blob-1-0");
        let dead = tmp.join("blob-4999999-0");
        let own = tmp.join(format!("blob-{}-7", std::process::id()));
        for f in [&live, &dead, &own] {
            fs::write(f, b"partial").unwrap();
        }
        fs::create_dir(tmp.join("layer-4999999-1")).unwrap();
        let s = Store::open(&dir).unwrap();
        assert!(live.exists());
        assert!(!dead.exists() && !own.exists() && !tmp.join("layer-4999999-1").exists());
        // The index lock can be taken twice in a row (it is released on drop).
        drop(s.lock_index());
        drop(s.lock_index());
        assert!(dir.join("index.lock").exists());
    }
}
