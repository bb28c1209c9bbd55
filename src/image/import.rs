//! Importing image archives into the store: OCI image layouts (tar, possibly
//! gzipped as a whole) and `docker save` archives (old style, and new style
//! that is also an OCI layout). It does not pull from registries.
//!
//! The tar stream is read once: every regular file is streamed into the blob
//! store through a hasher (files under `blobs/sha256/` must match their name),
//! while `index.json`, `manifest.json`, `oci-layout` and `repositories` are kept
//! in memory. Manifests are then resolved from the store. Blobs this import
//! added but no imported image uses (docker's `VERSION`, other platforms, ...)
//! are removed again, as is everything it added when it fails.
//!
//! Image names: `io.containerd.image.name`, else `org.opencontainers.image.ref.name`
//! when it is a full reference, else docker's `RepoTags`. A ref.name that is
//! only a tag (umoci and skopeo write e.g. `latest`) names the image
//! `<archive file stem>:<tag>`, so `busybox.tar` with `latest` becomes
//! `docker.io/library/busybox:latest`; an image with no name at all is
//! `<stem>:latest`. The stem is the file name without `.tar`, `.tar.gz` or
//! `.tgz`, lowercased.

use super::store::{digest_hex, read_capped, read_json_or_default, read_limited, Record, Store};
use super::{normalize, ImageError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

const SMALL_FILES: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];
const MAX_INDEX_DEPTH: usize = 4;

/// What `import_dir` remembers of an archive it has handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seen {
    size: u64,
    mtime_ns: u64,
}

#[derive(Default)]
struct Scan {
    small: BTreeMap<String, Vec<u8>>,
    /// archive path → blob digest, for every regular file.
    files: BTreeMap<String, String>,
    /// archive path → archive path it links to.
    links: BTreeMap<String, String>,
    new_blobs: Vec<String>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    fn fits(&self) -> bool {
        self.os == "linux" && self.architecture == host_arch()
    }
    fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// A manifest or an index: which one is told by which fields are present.
#[derive(Deserialize)]
struct ManifestOrIndex {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// The host architecture as OCI names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Store {
    /// Imports every image in the archive at `path`; returns the normalized
    /// references imported. Idempotent; a reference that already exists is
    /// repointed to the archive's image.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let _g = self.lock_index();
        let mut scan = Scan::default();
        let mut new_layers = Vec::new();
        let res = self
            .scan(path, &mut scan)
            .and_then(|()| self.images_of(path, &scan))
            .and_then(|images| self.commit(images, &scan, &mut new_layers));
        if res.is_err() {
            for d in &new_layers {
                let _ = fs::remove_dir_all(d);
            }
            for b in &scan.new_blobs {
                if let Ok(p) = self.blob_path(b) {
                    let _ = fs::remove_file(p);
                }
            }
        }
        res
    }

    /// Imports the archives (`*.tar`, `*.tar.gz`, `*.tgz`) in `dir` that it has
    /// not handled before, judged by path, size and mtime, so rescanning is
    /// cheap. A failed archive is remembered too and retried only once it
    /// changes. A missing `dir` gives an empty result.
    pub fn import_dir(&self, dir: &Path) -> Vec<(PathBuf, Result<Vec<String>, ImageError>)> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => return vec![(dir.to_path_buf(), Err(ImageError::io("read", dir, e)))],
        };
        let mut candidates: Vec<(PathBuf, Seen)> = rd
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let name = p.file_name()?.to_str()?;
                if !(name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
                    return None;
                }
                let m = fs::metadata(&p).ok().filter(|m| m.is_file())?;
                let mtime = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
                Some((p, Seen { size: m.len(), mtime_ns: mtime.as_nanos() as u64 }))
            })
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let index_path = self.root.join("archives.json");
        let mut seen: BTreeMap<String, Seen> = read_json_or_default(&index_path, "archive index").unwrap_or_default();
        let mut out = Vec::new();
        for (p, s) in candidates {
            let key = p.to_string_lossy().into_owned();
            if seen.get(&key) == Some(&s) {
                continue;
            }
            out.push((p.clone(), self.import_archive(&p)));
            seen.insert(key, s);
        }
        if !out.is_empty() {
            let _g = self.lock_index();
            if let Err(e) = self.write_json(&index_path, &seen) {
                log::warn!("{e}");
            }
        }
        out
    }

    fn scan(&self, archive: &Path, scan: &mut Scan) -> Result<(), ImageError> {
        let f = File::open(archive).map_err(|e| ImageError::io("open archive", archive, e))?;
        let mut r = BufReader::with_capacity(64 << 10, f);
        let gz = r.fill_buf().map_err(|e| ImageError::io("read archive", archive, e))?.starts_with(&[0x1f, 0x8b]);
        let r: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(r)) } else { Box::new(r) };
        let mut ar = tar::Archive::new(r);
        let entries = ar.entries().map_err(|e| ImageError::io("read archive", archive, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ImageError::io("read archive entry from", archive, e))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let key = safe_relative(&raw)
                .map(|p| p.to_string_lossy().into_owned())
                .ok_or_else(|| ImageError::bad(archive, format!("entry {raw:?} escapes the archive")))?;
            let kind = entry.header().entry_type();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                if SMALL_FILES.contains(&key.as_str()) {
                    let bytes = read_limited(&mut entry, &key, archive)?;
                    scan.small.insert(key, bytes);
                    continue;
                }
                let expected = match key.strip_prefix("blobs/sha256/") {
                    Some(hex) => {
                        let d = format!("sha256:{hex}");
                        digest_hex(&d).ok_or_else(|| ImageError::bad(archive, format!("bad blob name {key:?}")))?;
                        Some(d)
                    }
                    None => None,
                };
                let (digest, _, new) = self.put_blob(&mut entry, expected.as_deref(), &key, archive)?;
                if new {
                    scan.new_blobs.push(digest.clone());
                }
                scan.files.insert(key, digest);
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().ok().flatten().map(|t| t.into_owned()).unwrap_or_default();
                let base = if kind.is_symlink() { Path::new(&key).parent().unwrap_or(Path::new("")) } else { Path::new("") };
                if let Some(t) = lexical_join(base, &target) {
                    scan.links.insert(key, t);
                }
            }
        }
        Ok(())
    }

    /// The digest of the file at `key` in the archive, links followed.
    fn file_digest(&self, archive: &Path, scan: &Scan, key: &str) -> Result<String, ImageError> {
        let mut k = safe_relative(key).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        for _ in 0..16 {
            if let Some(d) = scan.files.get(&k) {
                return Ok(d.clone());
            }
            match scan.links.get(&k) {
                Some(t) => k = t.clone(),
                None => break,
            }
        }
        Err(ImageError::bad(archive, format!("{key:?} is not in the archive")))
    }

    fn images_of(&self, archive: &Path, scan: &Scan) -> Result<Vec<(Vec<String>, Record)>, ImageError> {
        let stem = stem(archive);
        if let Some(bytes) = scan.small.get("manifest.json") {
            let entries: Vec<DockerEntry> = serde_json::from_slice(bytes).map_err(|e| ImageError::Json {
                what: "manifest.json".into(),
                path: archive.into(),
                source: e,
            })?;
            let mut out = Vec::new();
            for e in entries {
                let config = self.file_digest(archive, scan, &e.config)?;
                let layers = e.layers.iter().map(|l| self.file_digest(archive, scan, l)).collect::<Result<_, _>>()?;
                let tags = e.repo_tags.unwrap_or_default();
                let names = if tags.is_empty() {
                    vec![normalize(&stem)?]
                } else {
                    tags.iter().map(|t| normalize(t)).collect::<Result<_, _>>()?
                };
                out.push((names, Record { manifest: None, config, layers, size: 0, pulled: false }));
            }
            return Ok(out);
        }
        let Some(bytes) = scan.small.get("index.json") else {
            return Err(ImageError::bad(archive, "neither index.json nor manifest.json found"));
        };
        let index: ManifestOrIndex = serde_json::from_slice(bytes).map_err(|e| ImageError::Json {
            what: "index.json".into(),
            path: archive.into(),
            source: e,
        })?;
        let all = index.manifests.unwrap_or_default();
        let offered: Vec<String> = all.iter().filter_map(|d| d.platform.as_ref().map(Platform::name)).collect();
        let fitting: Vec<&Descriptor> = all.iter().filter(|d| d.platform.as_ref().map_or(true, Platform::fits)).collect();
        if fitting.is_empty() {
            if all.is_empty() {
                return Err(ImageError::bad(archive, "index.json lists no images"));
            }
            return Err(ImageError::NoPlatform { archive: archive.into(), wanted: format!("linux/{}", host_arch()), offered });
        }
        let mut out = Vec::new();
        for d in fitting {
            let names = vec![name_for(d.annotations.as_ref(), &stem)?];
            out.push((names, self.manifest_record(archive, &d.digest, 0)?));
        }
        Ok(out)
    }

    /// Reads manifest `digest` from the store; an index is descended into,
    /// picking the entry for this host.
    fn manifest_record(&self, archive: &Path, digest: &str, depth: usize) -> Result<Record, ImageError> {
        let doc = self.read_doc(archive, digest)?;
        if let Some(list) = doc.manifests {
            if depth >= MAX_INDEX_DEPTH {
                return Err(ImageError::bad(archive, format!("indexes nested too deeply at {digest}")));
            }
            let Some(pick) = list.iter().find(|d| d.platform.as_ref().is_some_and(Platform::fits)) else {
                let offered = list.iter().filter_map(|d| d.platform.as_ref().map(Platform::name)).collect();
                let wanted = format!("linux/{}", host_arch());
                return Err(ImageError::NoPlatform { archive: archive.into(), wanted, offered });
            };
            return self.manifest_record(archive, &pick.digest, depth + 1);
        }
        let config = doc.config.ok_or_else(|| ImageError::bad(archive, format!("manifest {digest} has no config")))?;
        let layers: Vec<String> = doc.layers.into_iter().map(|l| l.digest).collect();
        for d in layers.iter().chain([&config.digest]) {
            let blob = self.blob_path(d)?;
            if !blob.is_file() {
                return Err(ImageError::MissingBlob { digest: d.clone(), archive: archive.into() });
            }
            super::store::touch(&blob);
        }
        Ok(Record { manifest: Some(digest.to_string()), config: config.digest, layers, size: 0, pulled: false })
    }

    fn read_doc(&self, archive: &Path, digest: &str) -> Result<ManifestOrIndex, ImageError> {
        let p = self.blob_path(digest)?;
        if !p.is_file() {
            return Err(ImageError::MissingBlob { digest: digest.to_string(), archive: archive.into() });
        }
        let bytes = read_capped(&p, "manifest")?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Json { what: format!("manifest {digest}"), path: archive.into(), source: e })
    }

    /// Unpacks layers, records the references and drops unused new blobs.
    fn commit(
        &self,
        images: Vec<(Vec<String>, Record)>,
        scan: &Scan,
        new_layers: &mut Vec<PathBuf>,
    ) -> Result<Vec<String>, ImageError> {
        let mut used = BTreeSet::new();
        let mut recs = self.records()?;
        let mut names = Vec::new();
        for (refs, mut rec) in images {
            let mut size = 0;
            for d in rec.manifest.iter().chain([&rec.config]).chain(&rec.layers) {
                size += fs::metadata(self.blob_path(d)?).map(|m| m.len()).unwrap_or(0);
                used.insert(d.clone());
            }
            rec.size = size;
            for l in &rec.layers {
                let dir = self.layer_dir(l)?;
                if !dir.is_dir() {
                    self.ensure_layer(l)?;
                    new_layers.push(dir);
                }
            }
            for r in refs {
                recs.insert(r.clone(), rec.clone());
                if !names.contains(&r) {
                    names.push(r);
                }
            }
        }
        self.write_records(&recs)?;
        for b in scan.new_blobs.iter().filter(|b| !used.contains(*b)) {
            if let Ok(p) = self.blob_path(b) {
                let _ = fs::remove_file(p);
            }
        }
        Ok(names)
    }
}

fn name_for(ann: Option<&BTreeMap<String, String>>, stem: &str) -> Result<String, ImageError> {
    let get = |k: &str| ann.and_then(|a| a.get(k)).filter(|v| !v.is_empty());
    if let Some(n) = get("io.containerd.image.name") {
        return normalize(n);
    }
    match get("org.opencontainers.image.ref.name") {
        Some(n) if n.contains(['/', ':', '@']) => normalize(n),
        Some(tag) => normalize(&format!("{stem}:{tag}")),
        None => normalize(stem),
    }
}

/// The archive's file name without `.tar`, `.tar.gz`, `.tgz`, lowercased.
fn stem(archive: &Path) -> String {
    let name = archive.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let s = [".tar.gz", ".tgz", ".tar"].iter().find_map(|suf| name.strip_suffix(suf)).unwrap_or(&name);
    s.to_string()
}

/// The archive entry path without `.` parts; None if absolute or containing `..`.
fn safe_relative(p: &str) -> Option<PathBuf> {
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

/// `base/target` with `.`/`..` resolved lexically; None if it leaves the root.
fn lexical_join(base: &Path, target: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let joined = if target.is_absolute() { target.to_path_buf() } else { base.join(target) };
    for c in joined.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
