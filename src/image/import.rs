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
use super::unpack::safe_relative;
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
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
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
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
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
                out.push((names, Record { manifest: None, config, layers, size: 0 }));
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
            if !self.blob_path(d)?.is_file() {
                return Err(ImageError::MissingBlob { digest: d.clone(), archive: archive.into() });
            }
        }
        Ok(Record { manifest: Some(digest.to_string()), config: config.digest, layers, size: 0 })
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
mod tests {
    use super::*;
    use crate::image::testutil::{images, read_member, rewrite_archive, scratch, sha256};
    use crate::image::{mount_rootfs, unmount_rootfs};
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    const BUSYBOX: &str = "docker.io/library/busybox:latest";

    fn blob_names(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn first_bytes(p: &Path) -> [u8; 2] {
        let mut b = [0u8; 2];
        File::open(p).unwrap().read_exact(&mut b).unwrap();
        b
    }

    fn oci_index(ref_name: &str, media_type: &str, digest: &str, size: usize) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media_type, "digest": digest, "size": size,
                "annotations": {"org.opencontainers.image.ref.name": ref_name}
            }]
        }))
        .unwrap()
    }

    /// The manifest digest the top index.json of an OCI archive points at.
    fn top_manifest(archive: &Path) -> String {
        let idx: serde_json::Value = serde_json::from_slice(&read_member(archive, "index.json")).unwrap();
        idx["manifests"][0]["digest"].as_str().unwrap().to_string()
    }

    #[test]
    fn oci_archive_import_and_resolve() {
        let root = scratch("oci-import").join("store");
        let store = Store::open(&root).unwrap();
        let archive = images().join("busybox.tar");
        assert_eq!(store.import_archive(&archive).unwrap(), vec![BUSYBOX.to_string()]);
        let blobs = blob_names(&root);
        assert_eq!(blobs.len(), 3, "manifest, config, layer: {blobs:?}");

        for r in ["busybox", "busybox:latest", BUSYBOX] {
            let img = store.resolve(r).unwrap().unwrap_or_else(|| panic!("{r} not found"));
            assert_eq!(img.reference, BUSYBOX);
            assert!(digest_hex(&img.id).is_some(), "{}", img.id);
            assert_eq!(img.config.cmd, vec!["sh"]);
            assert!(img.config.env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin:")));
            assert_eq!(img.layers.len(), 1);
            let l = &img.layers[0];
            assert!(l.starts_with(root.join("layers")));
            assert!(fs::metadata(l.join("bin/busybox")).unwrap().permissions().mode() & 0o111 != 0);
            for applet in ["sh", "echo", "cat", "ls", "sleep", "httpd", "env", "id", "wget", "nc", "true"] {
                assert_eq!(fs::read_link(l.join("bin").join(applet)).unwrap(), Path::new("busybox"), "{applet}");
            }
            assert!(fs::read_to_string(l.join("etc/passwd")).unwrap().contains("app:x:1000:1000"));
            assert_eq!(fs::metadata(l.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
            assert_eq!(fs::metadata(l.join("home/app")).unwrap().uid(), 1000);
        }
        let img = store.resolve("busybox").unwrap().unwrap();
        // The id is the config digest and the config blob hashes to it.
        let cfg = fs::read(store.blob_path(&img.id).unwrap()).unwrap();
        assert_eq!(sha256(&cfg), img.id);
        // umoci writes gzip layers.
        let rec = &store.records().unwrap()[BUSYBOX];
        assert_eq!(first_bytes(&store.blob_path(&rec.layers[0]).unwrap()), [0x1f, 0x8b]);

        let by_digest = format!("busybox@{}", top_manifest(&archive));
        assert_eq!(store.resolve(&by_digest).unwrap().unwrap().id, img.id);
        assert!(store.resolve("busybox:nope").unwrap().is_none());
        assert!(store.resolve("nothere").unwrap().is_none());
        assert!(store.resolve("Bad/Ref").is_err());

        // Idempotent: same result, no new blobs, no leftovers in tmp/.
        assert_eq!(store.import_archive(&archive).unwrap(), vec![BUSYBOX.to_string()]);
        assert_eq!(blob_names(&root), blobs);
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        // A reopened store sees the same.
        let again = Store::open(&root).unwrap();
        assert_eq!(again.resolve("busybox").unwrap().unwrap().id, img.id);
    }

    #[test]
    fn docker_archive_import_and_list() {
        let root = scratch("docker-import").join("store");
        let store = Store::open(&root).unwrap();
        let refs = store.import_archive(&images().join("busybox-docker.tar")).unwrap();
        assert_eq!(refs, vec!["docker.io/library/busybox:docker".to_string()]);
        // VERSION, json and repositories files of the archive are not kept.
        assert_eq!(blob_names(&root).len(), 2, "config + layer");
        let img = store.resolve("busybox:docker").unwrap().unwrap();
        assert_eq!(img.config.cmd, vec!["sh"]);
        assert_eq!(fs::read_link(img.layers[0].join("bin/sh")).unwrap(), Path::new("busybox"));
        // skopeo's docker-archive layers are uncompressed tar.
        let rec = &store.records().unwrap()["docker.io/library/busybox:docker"];
        assert_ne!(first_bytes(&store.blob_path(&rec.layers[0]).unwrap()), [0x1f, 0x8b]);
        assert!(store.resolve("busybox").unwrap().is_none());

        store.import_archive(&images().join("busybox.tar")).unwrap();
        store.import_archive(&images().join("layered.tar")).unwrap();
        let list = store.list().unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        // Same config in both busybox archives: one image, two references.
        let bb = list.iter().find(|i| i.id == img.id).unwrap();
        assert_eq!(bb.references, vec!["docker.io/library/busybox:docker".to_string(), BUSYBOX.to_string()]);
        // Both layer blobs (gzip ~1 MB, plain ~2 MB) count once each.
        assert!(bb.size > 3_000_000, "{}", bb.size);
        let layered = list.iter().find(|i| i.id != img.id).unwrap();
        assert_eq!(layered.references, vec!["docker.io/library/layered:v1".to_string()]);
    }

    #[test]
    fn corrupted_blob_is_refused_and_nothing_kept() {
        let dir = scratch("corrupt");
        let root = dir.join("store");
        let store = Store::open(&root).unwrap();
        let src = images().join("busybox.tar");
        let bad = dir.join("busybox.tar");
        fs::copy(&src, &bad).unwrap();
        // Flip one byte in the middle of the biggest blob (the layer).
        let (pos, len, name) = {
            let mut ar = tar::Archive::new(File::open(&src).unwrap());
            let mut best = (0, 0, String::new());
            for e in ar.entries().unwrap() {
                let e = e.unwrap();
                if e.size() > best.1 {
                    best = (e.raw_file_position(), e.size(), e.path().unwrap().to_string_lossy().into_owned());
                }
            }
            best
        };
        let mut bytes = fs::read(&bad).unwrap();
        bytes[(pos + len / 2) as usize] ^= 0xff;
        fs::write(&bad, bytes).unwrap();

        let err = store.import_archive(&bad).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("sha256 mismatch") && msg.contains(&name) && msg.contains(&*bad.to_string_lossy()), "{msg}");
        assert!(blob_names(&root).is_empty(), "{:?}", blob_names(&root));
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(root.join("layers")).unwrap().count(), 0);
        assert!(store.list().unwrap().is_empty());
        assert!(store.resolve("busybox").unwrap().is_none());
    }

    #[test]
    fn whiteouts_and_opaque_dirs_in_overlay() {
        let dir = scratch("whiteout");
        let store = Store::open(&dir.join("store")).unwrap();
        store.import_archive(&images().join("layered.tar")).unwrap();
        let img = store.resolve("layered:v1").unwrap().unwrap();
        assert_eq!(img.layers.len(), 3);
        let top = &img.layers[2];
        let wh = fs::symlink_metadata(top.join("data/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert!(!top.join("data/.wh.gone").exists() && !top.join("opq/.wh..wh..opq").exists());
        assert!(img.layers[1].join("opq/lower").exists(), "lower content present in its own layer");

        let c = dir.join("c");
        let rootfs = mount_rootfs(&img.layers, &c).unwrap();
        assert_eq!(rootfs, c.join("rootfs"));
        let result = std::panic::catch_unwind(|| {
            assert!(rootfs.join("bin/busybox").is_file());
            assert_eq!(fs::read_to_string(rootfs.join("data/keep")).unwrap(), "keep\n");
            assert!(fs::symlink_metadata(rootfs.join("data/gone")).is_err(), "whiteout hides the file");
            assert_eq!(fs::read_to_string(rootfs.join("opq/upper")).unwrap(), "upper\n");
            assert!(fs::symlink_metadata(rootfs.join("opq/lower")).is_err(), "opaque dir hides lower content");
            // Idempotent: a second call does not stack another mount.
            assert_eq!(mount_rootfs(&img.layers, &c).unwrap(), rootfs);
            let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let needle = format!(" {} ", rootfs.display());
            assert_eq!(mi.lines().filter(|l| l.contains(&needle)).count(), 1);
            fs::write(rootfs.join("data/new"), "x").unwrap();
            assert!(c.join("upper/data/new").exists(), "writes go to the upper dir");
        });
        unmount_rootfs(&c).unwrap();
        assert!(result.is_ok());
        assert!(!rootfs.join("data/keep").exists(), "unmounted");
        unmount_rootfs(&c).unwrap();
        // Layers are untouched by container writes.
        assert!(!top.join("data/new").exists());
    }

    #[test]
    fn single_layer_rootfs() {
        let dir = scratch("single-layer");
        let store = Store::open(&dir.join("store")).unwrap();
        store.import_archive(&images().join("busybox.tar")).unwrap();
        let img = store.resolve("busybox").unwrap().unwrap();
        let c = dir.join("c");
        let rootfs = mount_rootfs(&img.layers, &c).unwrap();
        let ok = rootfs.join("bin/sh").exists() && rootfs.join("etc/passwd").is_file();
        unmount_rootfs(&c).unwrap();
        assert!(ok);
    }

    #[test]
    fn gzipped_archive_via_import_dir() {
        let dir = scratch("import-dir");
        let store = Store::open(&dir.join("store")).unwrap();
        let drop = dir.join("images");
        assert!(store.import_dir(&drop).is_empty(), "missing dir");
        fs::create_dir(&drop).unwrap();
        let gz = drop.join("busybox.tar.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        std::io::copy(&mut File::open(images().join("busybox.tar")).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
        fs::write(drop.join("notes.txt"), "not an image").unwrap();
        fs::write(drop.join("broken.tgz"), "not a tar").unwrap();

        let res = store.import_dir(&drop);
        assert_eq!(res.len(), 2, "{res:?}");
        let by_name = |n: &str| res.iter().find(|(p, _)| p.ends_with(n)).map(|(_, r)| r).unwrap();
        assert_eq!(by_name("busybox.tar.gz").as_ref().unwrap(), &vec![BUSYBOX.to_string()]);
        assert!(by_name("broken.tgz").is_err());
        assert!(store.resolve("busybox").unwrap().is_some());
        // A rescan does nothing until an archive changes.
        assert!(store.import_dir(&drop).is_empty());
        fs::copy(images().join("layered.tar"), drop.join("layered.tar")).unwrap();
        let res = store.import_dir(&drop);
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].1.as_ref().unwrap(), &vec!["docker.io/library/layered:v1".to_string()]);
    }

    #[test]
    fn tag_only_ref_name_uses_archive_stem_and_repoints() {
        let dir = scratch("tag-only");
        let store = Store::open(&dir.join("store")).unwrap();
        store.import_archive(&images().join("busybox.tar")).unwrap();
        let old = store.resolve("busybox").unwrap().unwrap().id;
        // layered.tar with ref.name "latest", saved as busybox.tar.
        let src = images().join("layered.tar");
        let m = top_manifest(&src);
        let size = read_member(&src, &format!("blobs/sha256/{}", &m[7..])).len();
        let idx = oci_index("latest", "application/vnd.oci.image.manifest.v1+json", &m, size);
        fs::create_dir(dir.join("x")).unwrap();
        let renamed = dir.join("x/BusyBox.tar");
        rewrite_archive(&src, &renamed, &[("index.json", idx)], &[]);
        assert_eq!(store.import_archive(&renamed).unwrap(), vec![BUSYBOX.to_string()]);
        let new = store.resolve("busybox").unwrap().unwrap();
        assert_ne!(new.id, old);
        assert_eq!(new.layers.len(), 3);
        assert_eq!(store.list().unwrap().len(), 1, "old image has no reference left");
    }

    fn nested(platforms: &[(&str, &str)], name: &str) -> (PathBuf, PathBuf) {
        let dir = scratch(name);
        let src = images().join("busybox.tar");
        let m = top_manifest(&src);
        let msize = read_member(&src, &format!("blobs/sha256/{}", &m[7..])).len();
        let entries: Vec<_> = platforms
            .iter()
            .map(|(os, arch)| {
                serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": m, "size": msize, "platform": {"os": os, "architecture": arch}})
            })
            .collect();
        let inner = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": entries})).unwrap();
        let d = sha256(&inner);
        let idx = oci_index("docker.io/library/multi:1", "application/vnd.oci.image.index.v1+json", &d, inner.len());
        let out = dir.join("multi.tar");
        rewrite_archive(&src, &out, &[("index.json", idx)], &[(format!("blobs/sha256/{}", &d[7..]), inner)]);
        (dir, out)
    }

    #[test]
    fn nested_index_picks_host_platform() {
        let (dir, archive) = nested(&[("linux", "s390x"), ("linux", host_arch()), ("windows", host_arch())], "nested-ok");
        let store = Store::open(&dir.join("store")).unwrap();
        assert_eq!(store.import_archive(&archive).unwrap(), vec!["docker.io/library/multi:1".to_string()]);
        let img = store.resolve("multi:1").unwrap().unwrap();
        assert_eq!(img.config.cmd, vec!["sh"]);
    }

    #[test]
    fn nested_index_without_host_platform_fails() {
        let (dir, archive) = nested(&[("linux", "s390x"), ("windows", host_arch())], "nested-none");
        let root = dir.join("store");
        let store = Store::open(&root).unwrap();
        let err = store.import_archive(&archive).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImageError::NoPlatform { .. }), "{msg}");
        assert!(msg.contains("linux/s390x") && msg.contains(&format!("windows/{}", host_arch())), "{msg}");
        assert!(blob_names(&root).is_empty());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn oversized_index_json_is_refused() {
        let dir = scratch("oversized");
        let big = dir.join("big.tar");
        let mut idx = vec![b' '; (JSON_LIMIT_FOR_TEST + 1) as usize];
        idx.extend_from_slice(b"{}");
        rewrite_archive(&images().join("busybox.tar"), &big, &[("index.json", idx)], &[]);
        let store = Store::open(&dir.join("store")).unwrap();
        let err = store.import_archive(&big).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("index.json"), "{err}");
    }

    const JSON_LIMIT_FOR_TEST: u64 = crate::image::store::JSON_LIMIT;

    #[test]
    fn archive_naming_helpers() {
        assert_eq!(stem(Path::new("/x/BusyBox.tar.gz")), "busybox");
        assert_eq!(stem(Path::new("a.tgz")), "a");
        let ann: BTreeMap<String, String> =
            [("org.opencontainers.image.ref.name".to_string(), "v2".to_string())].into();
        assert_eq!(name_for(Some(&ann), "app").unwrap(), "docker.io/library/app:v2");
        let mut ann2 = ann.clone();
        ann2.insert("io.containerd.image.name".into(), "ghcr.io/x/y:3".into());
        assert_eq!(name_for(Some(&ann2), "app").unwrap(), "ghcr.io/x/y:3");
        assert_eq!(name_for(None, "app").unwrap(), "docker.io/library/app:latest");
        assert_eq!(lexical_join(Path::new("a/b"), Path::new("../c.tar")).as_deref(), Some("a/c.tar"));
        assert_eq!(lexical_join(Path::new(""), Path::new("../x")), None);
    }
}
