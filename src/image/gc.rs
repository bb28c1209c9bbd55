//! Image garbage collection, as upstream's image GC manager: when the image
//! filesystem's usage passes imageGCHighThresholdPercent, unused images are
//! deleted, least recently used first, until usage is at or below
//! imageGCLowThresholdPercent; images first seen less than imageMinimumGCAge
//! ago are kept, and so is every image a container record (running or kept
//! exited) names. Under disk pressure eviction asks for every unused image
//! old enough ([`ImageGc::delete_unused`]).
//!
//! "First seen" and "last used" are kept in memory, as upstream: after a
//! restart every image is new again, so nothing is deleted in the first
//! imageMinimumGCAge.
//!
//! Deleting is crash-safe: the index (images.json) is rewritten first, then
//! the blobs and unpacked layers no remaining reference needs are removed.
//! A crash in between leaves blobs nothing references; [`Store::sweep`]
//! removes those later. Blobs a pull or import reuses are touched, and blobs
//! younger than the sweep's age are left, so a pull under way keeps the
//! blobs it counts on.

use super::store::{digest_hex, Record, Store};
use super::{normalize, ImageError};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How often the periodic pass runs (upstream's ImageGCPeriod).
pub const PERIOD: Duration = Duration::from_secs(300);
/// Unreferenced blobs and layers younger than this are left to a later sweep.
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// What image GC is told (KubeletConfiguration's names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub high_percent: u8,
    pub low_percent: u8,
    pub min_age: Duration,
}

/// The image filesystem's (capacity, available) bytes; a seam for tests.
pub trait FsUsage {
    fn usage(&self) -> Option<(u64, u64)>;
}

/// statvfs of the filesystem holding a path.
pub struct Statvfs(pub PathBuf);

impl FsUsage for Statvfs {
    fn usage(&self) -> Option<(u64, u64)> {
        let s = nix::sys::statvfs::statvfs(&self.0).ok()?;
        let f = s.fragment_size() as u64;
        Some((s.blocks() as u64 * f, s.blocks_available() as u64 * f))
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    first: Instant,
    last_used: Option<Instant>,
}

/// What a pass deleted.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// References of the deleted images.
    pub deleted: Vec<String>,
    /// Bytes of blobs removed.
    pub bytes: u64,
}

/// Image GC state: when each image (by id) was first seen and last used.
#[derive(Debug)]
pub struct ImageGc {
    pub policy: Policy,
    seen: HashMap<String, Seen>,
}

impl ImageGc {
    pub fn new(policy: Policy) -> ImageGc {
        ImageGc { policy, seen: HashMap::new() }
    }

    /// Brings the records up to date with the images in the store (`ids`)
    /// and those containers use (`in_use`) at `now`.
    pub fn observe(&mut self, ids: &[String], in_use: &HashSet<String>, now: Instant) {
        self.seen.retain(|id, _| ids.contains(id));
        for id in ids {
            let s = self.seen.entry(id.clone()).or_insert(Seen { first: now, last_used: None });
            if in_use.contains(id) {
                s.last_used = Some(now);
            }
        }
    }

    /// Unused images old enough to delete, in deletion order: least
    /// recently used first (never used before any used), then first seen.
    pub fn candidates(&self, in_use: &HashSet<String>, now: Instant) -> Vec<String> {
        let mut c: Vec<(&String, &Seen)> = self
            .seen
            .iter()
            .filter(|(id, s)| !in_use.contains(*id) && now.saturating_duration_since(s.first) >= self.policy.min_age)
            .collect();
        c.sort_by(|a, b| a.1.last_used.cmp(&b.1.last_used).then(a.1.first.cmp(&b.1.first)).then(a.0.cmp(b.0)));
        c.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// Upstream's periodic pass: above the high threshold, deletes candidates
    /// until usage is at or below the low one (measured again after each).
    pub fn collect(&mut self, store: &Store, fs: &dyn FsUsage, in_use: &HashSet<String>, now: Instant) -> Result<Report, ImageError> {
        self.refresh(store, in_use, now)?;
        let mut report = Report::default();
        let Some((capacity, available)) = fs.usage() else { return Ok(report) };
        if capacity == 0 || usage_percent(capacity, available) <= u64::from(self.policy.high_percent) {
            return Ok(report);
        }
        let target = capacity * (100 - u64::from(self.policy.low_percent)) / 100;
        log::info!(
            "image filesystem {}% used, above imageGCHighThresholdPercent {}: freeing down to {}%",
            usage_percent(capacity, available),
            self.policy.high_percent,
            self.policy.low_percent
        );
        for id in self.candidates(in_use, now) {
            self.delete(store, &id, &mut report)?;
            if fs.usage().is_some_and(|(_, a)| a >= target) {
                break;
            }
        }
        if fs.usage().is_some_and(|(_, a)| a < target) {
            log::warn!("image GC: still above imageGCLowThresholdPercent {}% after deleting every unused image", self.policy.low_percent);
        }
        Ok(report)
    }

    /// Deletes every candidate (disk pressure).
    pub fn delete_unused(&mut self, store: &Store, in_use: &HashSet<String>, now: Instant) -> Result<Report, ImageError> {
        self.refresh(store, in_use, now)?;
        let mut report = Report::default();
        for id in self.candidates(in_use, now) {
            self.delete(store, &id, &mut report)?;
        }
        Ok(report)
    }

    fn refresh(&mut self, store: &Store, in_use: &HashSet<String>, now: Instant) -> Result<(), ImageError> {
        let ids: Vec<String> = store.list()?.into_iter().map(|i| i.id).collect();
        self.observe(&ids, in_use, now);
        Ok(())
    }

    fn delete(&mut self, store: &Store, id: &str, report: &mut Report) -> Result<(), ImageError> {
        let (refs, bytes) = store.delete_image(id)?;
        log::info!("image GC: deleted image {} ({}), {bytes} bytes freed", short(id), refs.join(", "));
        self.seen.remove(id);
        report.deleted.extend(refs);
        report.bytes += bytes;
        Ok(())
    }
}

/// Upstream's integer usage: 100 − available×100/capacity.
fn usage_percent(capacity: u64, available: u64) -> u64 {
    100 - (available.min(capacity) * 100 / capacity)
}

fn short(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    // `get`: an id read from images.json need not be ASCII.
    hex.get(..12).unwrap_or(hex)
}

/// Digests (blobs and layers) the records need.
fn needed(recs: &BTreeMap<String, Record>) -> BTreeSet<String> {
    recs.values().flat_map(|r| r.manifest.iter().chain([&r.config]).chain(&r.layers).cloned()).collect()
}

impl Store {
    /// Deletes image `id` (a config digest) and every reference to it.
    /// Returns the references dropped and the blob bytes removed.
    pub fn delete_image(&self, id: &str) -> Result<(Vec<String>, u64), ImageError> {
        self.drop_references(|_, r| r.config == id)
    }

    /// `picolet images rm REF`: drops one reference; the image's blobs go
    /// when no other reference names it. Returns the image id, or None when
    /// no image has that reference.
    pub fn remove_reference(&self, reference: &str) -> Result<Option<(String, u64)>, ImageError> {
        let norm = normalize(reference)?;
        let Some(rec) = self.records()?.get(&norm).cloned() else { return Ok(None) };
        let (_, bytes) = self.drop_references(|name, _| *name == norm)?;
        Ok(Some((rec.config, bytes)))
    }

    /// Removes the references `gone` selects from the index, then the blobs
    /// and layers only they needed.
    fn drop_references(&self, gone: impl Fn(&String, &Record) -> bool) -> Result<(Vec<String>, u64), ImageError> {
        let _guard = self.lock_index();
        let mut recs = self.records()?;
        let before = needed(&recs);
        let refs: Vec<String> = recs.iter().filter(|(k, r)| gone(k, r)).map(|(k, _)| k.clone()).collect();
        if refs.is_empty() {
            return Ok((refs, 0));
        }
        recs.retain(|k, _| !refs.contains(k));
        // The index first: a crash after this leaves only orphans for `sweep`.
        self.write_records(&recs)?;
        let after = needed(&recs);
        let mut bytes = 0;
        for d in before.difference(&after) {
            bytes += self.remove_digest(d, Duration::ZERO);
        }
        Ok((refs, bytes))
    }

    /// Removes blob `d` and its unpacked layer unless touched within `age`;
    /// returns the blob's size.
    fn remove_digest(&self, d: &str, age: Duration) -> u64 {
        let Ok(blob) = self.blob_path(d) else { return 0 };
        let Ok(md) = fs::metadata(&blob) else { return 0 };
        if age > Duration::ZERO && !older_than(&blob, age) {
            return 0;
        }
        if let Ok(dir) = self.layer_dir(d) {
            remove_tree(&dir);
        }
        match fs::remove_file(&blob) {
            Ok(()) => md.len(),
            Err(e) => {
                log::warn!("image GC: removing {}: {e}", blob.display());
                0
            }
        }
    }

    /// Removes blobs and unpacked layers no reference needs and nothing
    /// touched within `age` (leftovers of a crash mid-delete, of pulls
    /// that failed after some blobs landed). Returns the blob bytes removed.
    pub fn sweep(&self, age: Duration) -> Result<u64, ImageError> {
        let _guard = self.lock_index();
        let keep = needed(&self.records()?);
        let layers: HashSet<PathBuf> = keep.iter().filter_map(|d| self.layer_dir(d).ok()).collect();
        let mut bytes = 0;
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).map_err(|e| ImageError::io("read", &blobs, e))?.flatten() {
            let d = format!("sha256:{}", e.file_name().to_string_lossy());
            if digest_hex(&d).is_some() && !keep.contains(&d) {
                bytes += self.remove_digest(&d, age);
            }
        }
        // Layers whose blob is gone (or was never kept).
        let dir = self.root.join("layers");
        for e in fs::read_dir(&dir).map_err(|e| ImageError::io("read", &dir, e))?.flatten() {
            let p = e.path();
            if !layers.contains(&p) && older_than(&p, age.max(Duration::from_secs(1))) {
                remove_tree(&p);
            }
        }
        if bytes > 0 {
            log::info!("image store: removed {bytes} bytes of blobs no image references");
        }
        Ok(bytes)
    }
}

fn older_than(p: &Path, age: Duration) -> bool {
    let modified = fs::metadata(p).and_then(|m| m.modified()).unwrap_or(SystemTime::now());
    SystemTime::now().duration_since(modified).unwrap_or_default() >= age
}

fn remove_tree(p: &Path) {
    if let Err(e) = fs::remove_dir_all(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("image GC: removing {}: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests;
