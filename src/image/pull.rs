//! Pulling an image from a registry into the store: resolve the reference to
//! a manifest (descending a manifest list / OCI index to the wanted
//! platform), then fetch the config and the layers the store does not have.
//!
//! Every blob is streamed to disk through a SHA-256 hasher (never held in
//! memory) and renamed into `blobs/` only when it hashes to its digest.
//! Blobs of a known size download into `partial/<hex>`: a download that
//! breaks off (cut, stalled past the progress timeout) stays there, and the
//! next attempt re-hashes the kept prefix and asks for the rest with
//! `Range: bytes=N-` (a registry that ignores it sends everything again); a
//! wrong digest deletes it. Partials are flock'd while written and swept
//! after a day unused. Manifests are read with a 4 MiB
//! limit and checked against the digest they were asked by. The reference is
//! recorded (the same `images.json` that `images list` and pods read) only
//! once every blob is in and every layer unpacked. Verified blobs of a pull
//! that failed later stay, so a retry does not fetch them again.
//!
//! Layers: gzip, zstd and uncompressed tar (told apart by magic bytes in
//! `unpack.rs`, whatever the media type says). Not yet: pull policy,
//! back-off, events, single-flight, GC.

use super::credentials::Keyring;
use super::registry::{self, Registries, Session, MANIFEST_ACCEPT};
use super::store::{hex, Record, Store, JSON_LIMIT};
use super::{reference, ImageError};
use serde_json::Value;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Partial downloads not touched for this long are deleted.
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform this binary was built for: `linux/arm64`, `linux/amd64`,
    /// `linux/arm/v7` (`v6` for an ARMv6 build).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" if cfg!(target_feature = "v7") => ("arm", Some("v7")),
            "arm" => ("arm", Some("v6")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform { os: "linux".into(), architecture: arch.into(), variant: variant.map(String::from) }
    }

    /// Parses `os/arch[/variant]` (`--platform`); `aarch64`, `x86_64` and
    /// `armhf` are accepted for arm64, amd64 and arm/v7.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err("want os/arch[/variant], like linux/arm/v7".into());
        }
        let (arch, mut variant) = match parts[1] {
            "aarch64" => ("arm64", None),
            "x86_64" | "x86-64" => ("amd64", None),
            "armhf" => ("arm", Some("v7".to_string())),
            "armel" => ("arm", Some("v6".to_string())),
            a => (a, None),
        };
        if let Some(v) = parts.get(2) {
            variant = Some(v.to_string());
        }
        if arch == "arm" && variant.is_none() {
            variant = Some("v7".into());
        }
        Ok(Platform { os: parts[0].to_string(), architecture: arch.to_string(), variant })
    }

    /// How well an index entry for `offered` fits: lower is better, None
    /// does not run here. ARM falls back to older variants (v7 → v6 → v5);
    /// an arm entry without a variant counts as v7, as containerd does.
    pub fn rank(&self, offered: &Platform) -> Option<usize> {
        if offered.os != self.os || offered.architecture != self.architecture {
            return None;
        }
        let ov = offered.variant.as_deref();
        match self.architecture.as_str() {
            "arm" => {
                let order = ["v8", "v7", "v6", "v5"];
                let want = self.variant.as_deref().unwrap_or("v7");
                let start = order.iter().position(|v| *v == want)?;
                order[start..].iter().position(|v| *v == ov.unwrap_or("v7"))
            }
            "arm64" => matches!(ov, None | Some("v8")).then_some(0),
            _ => match (self.variant.as_deref(), ov) {
                (None, None) => Some(0),
                (None, Some(_)) => Some(1),
                (Some(w), Some(o)) if w == o => Some(0),
                (Some(_), None) => Some(1),
                _ => None,
            },
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The normalized reference now in the store.
    pub reference: String,
    /// The platform manifest's digest.
    pub manifest: String,
    /// `sha256:<config digest>`, the image id.
    pub id: String,
    /// The platform picked from an index, or None for a single manifest.
    pub platform: Option<String>,
    /// The endpoint the image came from.
    pub endpoint: String,
    /// Layers downloaded, and layers the store already had.
    pub fetched: usize,
    pub reused: usize,
    /// Bytes downloaded (blobs, manifests not counted).
    pub bytes: u64,
}

/// A content descriptor, read from the JSON by hand (serde_json's `Value`
/// is in the binary anyway; derived deserializers cost size on ARM).
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<Platform>,
}

/// A manifest or an index: which one is told by which fields are present.
struct Manifest {
    schema_version: u64,
    media_type: String,
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

fn descriptor(v: &Value) -> Option<Descriptor> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let p = &v["platform"];
    Some(Descriptor {
        media_type: s(&v["mediaType"]),
        digest: v["digest"].as_str()?.to_string(),
        size: v["size"].as_u64().unwrap_or(0),
        platform: p.is_object().then(|| Platform {
            os: s(&p["os"]),
            architecture: s(&p["architecture"]),
            variant: p["variant"].as_str().filter(|x| !x.is_empty()).map(String::from),
        }),
    })
}

fn manifest(v: &Value) -> Result<Manifest, String> {
    let list = |key: &str| -> Result<Vec<Descriptor>, String> {
        v[key].as_array().map_or(&[][..], Vec::as_slice).iter().map(|d| descriptor(d).ok_or_else(|| format!("{key}: a descriptor without a digest"))).collect()
    };
    let config = match &v["config"] {
        Value::Null => None,
        c => Some(descriptor(c).ok_or("config: a descriptor without a digest")?),
    };
    Ok(Manifest {
        schema_version: v["schemaVersion"].as_u64().unwrap_or(0),
        media_type: v["mediaType"].as_str().unwrap_or("").to_string(),
        config,
        layers: list("layers")?,
        manifests: if v["manifests"].is_array() { Some(list("manifests")?) } else { None },
    })
}

impl Store {
    /// Pulls `reference` (as users write it: `busybox`, `ghcr.io/a/b:1`,
    /// `host:5000/x@sha256:...`) for `platform` into the store, trying the
    /// endpoints `regs` gives for its registry in order and, at each, the
    /// credentials `keyrings` have for it (in keyring order, every match in
    /// turn, as upstream tries them), then `configs.<host>.auth` of `regs`;
    /// anonymous only when there are none at all.
    pub fn pull_with(&self, regs: &Registries, keyrings: &[&Keyring], reference: &str, platform: &Platform) -> Result<Pulled, ImageError> {
        self.sweep_partials();
        at_each_endpoint(regs, keyrings, reference, "pull", |mut s, a| self.pull_from(&mut s, &a, platform))
    }

    fn pull_from(&self, s: &mut Session, a: &Asked, platform: &Platform) -> Result<Pulled, ImageError> {
        let (r, norm, want) = (a.r, a.norm, a.want);
        let (mut digest, mut doc) = self.fetch_manifest(s, want, r.digest.as_deref())?;
        let mut picked = None;
        let mut depth = 0;
        while let Some(list) = doc.manifests.take() {
            depth += 1;
            if depth > 2 {
                return Err(ImageError::Registry { url: norm.into(), reason: "indexes nested too deeply".into() });
            }
            // Attestations (`unknown/unknown`) are not images.
            let entries: Vec<(&Platform, &Descriptor)> =
                list.iter().filter_map(|d| Some((d.platform.as_ref()?, d))).filter(|(p, _)| p.os != "unknown").collect();
            let best = entries.iter().filter_map(|(p, d)| Some((platform.rank(p)?, p, *d))).min_by_key(|(rank, _, _)| *rank);
            let Some((_, p, d)) = best else {
                let offered = entries.iter().map(|(p, _)| p.to_string()).collect();
                return Err(ImageError::NoPlatform { archive: PathBuf::from(norm), wanted: platform.to_string(), offered });
            };
            picked = Some(p.to_string());
            let d = d.digest.clone();
            (digest, doc) = self.fetch_manifest(s, &d, Some(&d))?;
        }
        if doc.schema_version == 1 || doc.media_type.contains("manifest.v1") {
            return Err(ImageError::Registry { url: norm.into(), reason: "schema 1 manifests are not supported".into() });
        }
        let config = doc.config.ok_or_else(|| ImageError::Registry { url: norm.into(), reason: format!("manifest {digest} has no config") })?;
        let mut out = Pulled {
            reference: norm.to_string(),
            manifest: digest.clone(),
            id: config.digest.clone(),
            platform: picked,
            endpoint: a.endpoint.to_string(),
            fetched: 0,
            reused: 0,
            bytes: 0,
        };
        for l in &doc.layers {
            if l.media_type.contains("encrypted") {
                return Err(ImageError::Registry { url: norm.into(), reason: format!("layer {} is encrypted ({}), not supported", l.digest, l.media_type) });
            }
        }
        out.bytes += self.fetch_blob(s, &config, "config")?.0;
        let mut layers = Vec::new();
        for l in &doc.layers {
            if l.media_type.contains("foreign") || l.media_type.contains("nondistributable") {
                return Err(ImageError::Registry { url: norm.into(), reason: format!("layer {} is a foreign (Windows) layer", l.digest) });
            }
            let (n, fetched) = self.fetch_blob(s, l, "layer")?;
            out.bytes += n;
            if fetched {
                out.fetched += 1;
            } else {
                out.reused += 1;
            }
            self.ensure_layer(&l.digest)?;
            layers.push(l.digest.clone());
        }
        let mut size = 0;
        for d in [&digest, &config.digest].into_iter().chain(&layers) {
            size += fs::metadata(self.blob_path(d)?).map(|m| m.len()).unwrap_or(0);
        }
        let rec = Record { manifest: Some(digest), config: config.digest, layers, size, pulled: true };
        let _g = self.lock_index();
        let mut recs = self.records()?;
        recs.insert(norm.to_string(), rec);
        self.write_records(&recs)?;
        Ok(out)
    }

    /// Fetches manifest `reference` (a tag or a digest) with a size limit,
    /// checks it against `digest` when given, and stores it as a blob.
    fn fetch_manifest(&self, s: &mut Session, reference: &str, digest: Option<&str>) -> Result<(String, Manifest), ImageError> {
        let path = format!("manifests/{reference}");
        let mut resp = s.get(&path, MANIFEST_ACCEPT, false)?;
        let url = s.url(&path);
        let too_large = resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).is_some_and(|n| n > JSON_LIMIT);
        if too_large {
            return Err(ImageError::TooLarge { what: "manifest".into(), path: PathBuf::from(&url), limit: JSON_LIMIT });
        }
        let body = resp.body_mut().with_config().limit(JSON_LIMIT).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => ImageError::TooLarge { what: "manifest".into(), path: PathBuf::from(&url), limit: JSON_LIMIT },
            e => ImageError::Registry { url: url.clone(), reason: e.to_string() },
        })?;
        let actual = format!("sha256:{}", hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref()));
        if let Some(want) = digest {
            if want != actual {
                return Err(ImageError::DigestMismatch { blob: format!("manifest {want}"), archive: PathBuf::from(&url), actual });
            }
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| ImageError::Json { what: "manifest".into(), path: PathBuf::from(&url), source: e })?;
        let doc = manifest(&v).map_err(|reason| ImageError::Registry { url: url.clone(), reason: format!("bad manifest: {reason}") })?;
        self.put_blob(&mut body.as_slice(), Some(&actual), "manifest", &PathBuf::from(&url))?;
        Ok((actual, doc))
    }

    /// Streams blob `d` into the store unless it is already there; returns the
    /// bytes read and whether it was downloaded.
    fn fetch_blob(&self, s: &mut Session, d: &Descriptor, what: &str) -> Result<(u64, bool), ImageError> {
        let existing = self.blob_path(&d.digest)?;
        if existing.is_file() {
            super::store::touch(&existing);
            return Ok((0, false));
        }
        if d.size == 0 {
            // No size to resume against (descriptors should have one).
            return self.fetch_whole(s, d, what);
        }
        let dir = self.root.join("partial");
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("create", &dir, e))?;
        let path = dir.join(&d.digest[7..]);
        loop {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| ImageError::io("open", &path, e))?;
            // Another pull of the same blob (a layer shared by two images)
            // finishes or gives up first; then its blob is used.
            let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| ImageError::Sys { what: "lock".into(), path: path.clone(), source: e })?;
            // The file we locked may have been renamed into blobs/ meanwhile.
            let same = fs::metadata(&path).ok().map(|m| m.ino()) == file.metadata().ok().map(|m| m.ino());
            if existing.is_file() {
                if same && file.metadata().is_ok_and(|m| m.len() == 0) {
                    let _ = fs::remove_file(&path);
                }
                return Ok((0, false));
            }
            if same {
                return self.fetch_resumable(s, d, what, file, &path);
            }
        }
    }

    /// Downloads `d` into the locked `partial/<hex>` `file`, after what it holds.
    fn fetch_resumable(
        &self,
        s: &mut Session,
        d: &Descriptor,
        what: &str,
        mut file: nix::fcntl::Flock<File>,
        path: &Path,
    ) -> Result<(u64, bool), ImageError> {
        let blob = format!("blobs/{}", d.digest);
        let url = s.url(&blob);
        let name = format!("{what} {}", d.digest);
        let io_err = |e: io::Error| ImageError::io(format!("write {name} to"), path, e);
        let mut have = file.metadata().map_err(io_err)?.len();
        if have > d.size {
            have = 0;
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        if have > 0 {
            // The kept prefix is hashed again: the digest covers every byte.
            file.rewind().map_err(io_err)?;
            let mut buf = vec![0; 64 << 10];
            let mut left = have;
            while left > 0 {
                let n = file.read(&mut buf[..left.min(64 << 10) as usize]).map_err(io_err)?;
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
                left -= n as u64;
            }
            have -= left;
            if have == d.size {
                // Complete but never renamed (killed just before): no request needed.
                if format!("sha256:{}", hex(ctx.clone().finish().as_ref())) == d.digest {
                    return self.land_partial(file, path, d).map(|()| (0, true));
                }
                (have, ctx) = (0, ring::digest::Context::new(&ring::digest::SHA256));
            } else {
                log::info!("resuming {name} from {url} at {have} of {} bytes", d.size);
            }
        }
        let mut resp = match s.get_from(&blob, "*/*", true, have) {
            // The registry lost track of the range: start over.
            Err(ImageError::Registry { reason, .. }) if have > 0 && reason.starts_with("416") => {
                (have, ctx) = (0, ring::digest::Context::new(&ring::digest::SHA256));
                s.get_from(&blob, "*/*", true, 0)?
            }
            r => r?,
        };
        if have > 0 {
            let ranged = resp.status().as_u16() == 206;
            let from = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).and_then(content_range_start);
            if !ranged || from != Some(have) {
                // A whole answer (the registry ignores Range) or a range we did not ask for.
                log::info!("{url}: no range answer (status {}), downloading {name} from the start", resp.status().as_u16());
                (have, ctx) = (0, ring::digest::Context::new(&ring::digest::SHA256));
                if ranged {
                    drop(resp);
                    resp = s.get_from(&blob, "*/*", true, 0)?;
                }
            }
        }
        file.set_len(have).map_err(io_err)?;
        file.seek(io::SeekFrom::Start(have)).map_err(io_err)?;
        let reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
        // More than the descriptor's size is never read (the digest would not match).
        let mut body = reader.take(d.size - have);
        let mut buf = vec![0; 64 << 10];
        let mut got = have;
        let broke = loop {
            match body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    file.write_all(&buf[..n]).map_err(io_err)?;
                    ctx.update(&buf[..n]);
                    got += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if got < d.size {
            let kept = if got > 0 { format!("; {got} bytes kept, the next pull resumes there") } else { String::new() };
            let reason = match broke {
                Some(e) if is_timeout(&e) => match s.progress_timeout() {
                    Some(t) => format!("{name} stalled: nothing received for {}s after {got} of {} bytes (timed out{kept})", t.as_secs(), d.size),
                    None => format!("{name} stalled after {got} of {} bytes (timed out{kept})", d.size),
                },
                Some(e) => format!("{name} cut off after {got} of {} bytes: {e}{kept}", d.size),
                None => format!("{name} cut off after {got} of {} bytes: the registry ended the body early{kept}", d.size),
            };
            return Err(ImageError::Registry { url, reason });
        }
        let actual = format!("sha256:{}", hex(ctx.finish().as_ref()));
        if actual != d.digest {
            // Nothing of it can be trusted, kept prefix included.
            let _ = fs::remove_file(path);
            return Err(ImageError::DigestMismatch { blob: name, archive: PathBuf::from(&url), actual });
        }
        self.land_partial(file, path, d)?;
        Ok((d.size - have, true))
    }

    /// Moves the verified partial `path` into `blobs/`.
    fn land_partial(&self, file: nix::fcntl::Flock<File>, path: &Path, d: &Descriptor) -> Result<(), ImageError> {
        file.sync_all().map_err(|e| ImageError::io("sync", path, e))?;
        let dst = self.blob_path(&d.digest)?;
        fs::rename(path, &dst).map_err(|e| ImageError::io("rename blob to", &dst, e))
    }

    /// A blob without a size in its descriptor: into a temp file, no resuming.
    fn fetch_whole(&self, s: &mut Session, d: &Descriptor, what: &str) -> Result<(u64, bool), ImageError> {
        let path = format!("blobs/{}", d.digest);
        let url = s.url(&path);
        let resp = s.get(&path, "*/*", true)?;
        let reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
        let mut counted = Counted { inner: reader, n: 0 };
        match self.put_blob(&mut counted, Some(&d.digest), &format!("{what} {}", d.digest), &PathBuf::from(&url)) {
            Ok((_, n, _)) => Ok((n, true)),
            Err(ImageError::Io { source, .. }) => Err(ImageError::Registry {
                url,
                reason: format!("{what} {} cut off after {} bytes: {source}", d.digest, counted.n),
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes partial downloads nobody has touched for a day (an image
    /// that is not pulled again); skips the ones being written.
    fn sweep_partials(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("partial")) else { return };
        for e in entries.flatten() {
            let old = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| SystemTime::now().duration_since(t).ok());
            if old.is_some_and(|age| age > PARTIAL_MAX_AGE) {
                let Ok(f) = File::open(e.path()) else { continue };
                if nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

/// `bytes N-M/T` → N.
fn content_range_start(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Whether a body read failed on the per-read (progress) timeout.
fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock || e.to_string().to_lowercase().contains("timeout")
}

/// Counts what is read through it (to say where a download broke off).
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// One error for a pull (or an `Always` check) that tried `errors.len()`
/// times at `endpoints` endpoints: the error itself when there was one
/// try, else all of them. Unreachable only when every try got no answer:
/// a registry that refused (a 401 among them) is a refusal, not offline.
/// What one try asks a registry about.
pub(super) struct Asked<'a> {
    pub r: &'a reference::Reference,
    /// The normalized reference, for messages and the store.
    pub norm: &'a str,
    /// The tag or digest to ask for.
    pub want: &'a str,
    pub endpoint: &'a str,
}

/// Runs `f` with a session at each endpoint `regs` gives for `reference`'s
/// registry and, at each, with each credential the keyrings (then `regs`)
/// have for it, in order, until one succeeds.
pub(super) fn at_each_endpoint<T>(
    regs: &Registries,
    keyrings: &[&Keyring],
    reference: &str,
    what: &str,
    mut f: impl FnMut(Session, Asked) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let r = reference::parse(reference)?;
    let norm = reference::normalize(reference)?;
    let want = r.digest.clone().or_else(|| r.tag.clone()).unwrap_or_else(|| "latest".into());
    let mut errors = Vec::new();
    let endpoints = regs.endpoints(&r.domain);
    for endpoint in &endpoints {
        for cred in &registry::candidates(regs, keyrings, &r.domain, endpoint, &r.path) {
            let tried = Session::new(regs, endpoint, &r.path).and_then(|mut s| {
                if let Some(c) = cred {
                    s.use_credential(c);
                }
                f(s, Asked { r: &r, norm: &norm, want: &want, endpoint })
            });
            match tried {
                Ok(v) => return Ok(v),
                // The image itself is unusable: no point asking elsewhere.
                Err(e @ (ImageError::NoPlatform { .. } | ImageError::DigestMismatch { .. })) => return Err(e),
                Err(e) => {
                    log::debug!("{what} {norm} at {endpoint}: {e}");
                    errors.push(e);
                }
            }
        }
    }
    Err(every_failed(norm, errors, endpoints.len()))
}

fn every_failed(norm: String, mut errors: Vec<ImageError>, endpoints: usize) -> ImageError {
    if errors.len() == 1 {
        if let Some(e) = errors.pop() {
            return e;
        }
    }
    let tried = if errors.len() > endpoints { "endpoint and credential" } else { "endpoint" };
    let reason = format!("every {tried} failed: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    match errors.iter().all(|e| matches!(e, ImageError::Unreachable { .. })) {
        true => ImageError::Unreachable { url: norm, reason },
        false => ImageError::Registry { url: norm, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-9/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn platform_parsing() {
        assert_eq!(p("linux/arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6").to_string(), "linux/arm/v6");
        assert!(Platform::parse("linux").is_err() && Platform::parse("linux//x").is_err() && Platform::parse("a/b/c/d").is_err());
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn platform_ranking() {
        let offered = |s: &str| {
            let mut x = p(s);
            if s == "linux/arm" {
                x.variant = None;
            }
            x
        };
        assert_eq!(p("linux/arm/v7").rank(&offered("linux/arm/v7")), Some(0));
        assert_eq!(p("linux/arm/v7").rank(&offered("linux/arm/v6")), Some(1));
        assert_eq!(p("linux/arm/v7").rank(&offered("linux/arm")), Some(0));
        assert_eq!(p("linux/arm/v6").rank(&offered("linux/arm/v7")), None);
        assert_eq!(p("linux/arm/v7").rank(&offered("linux/arm64")), None);
        assert_eq!(p("linux/arm64").rank(&offered("linux/arm64/v8")), Some(0));
        assert_eq!(p("linux/amd64").rank(&offered("linux/amd64")), Some(0));
        assert_eq!(p("linux/amd64").rank(&offered("windows/amd64")), None);
    }
}
