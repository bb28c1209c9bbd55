//! The static-pod file source: the manifest directory as the desired set of pods.
//!
//! [`FileSource::scan`] reads the directory (not recursively), decodes each
//! manifest, applies the API defaults, gives every pod its static identity
//! (name suffixed with the node name, a content-derived UID, the config
//! annotations) and validates it. Bad files and documents are logged once per
//! distinct content and skipped; the other pods are unaffected. Files whose
//! stat is unchanged are not re-read.
//!
//! [`DirWatch`] only says "something changed"; the caller rescans. It does not
//! follow the directory if it is deleted and recreated, so callers should also
//! rescan periodically (upstream's fileCheckFrequency is 20s).
//!
//! Identity: the UID is the sha256 (first 16 bytes, hex) of
//! `"host:" + node + "file:" + path + canonical JSON of the pod as decoded`,
//! i.e. before defaults, so a picolet upgrade that changes defaults does not
//! restart every static pod, while any change of the manifest's known fields
//! gives a new UID. An explicit `metadata.uid` in the file is replaced.

use crate::api::{decode, defaults, validate, Pod};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Manifests larger than this are refused rather than read into memory.
const MAX_FILE_SIZE: u64 = 4 << 20;
/// A file modified this recently may change again within the same timestamp
/// tick without its stat changing, so its stat is not trusted yet.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Reads static pods from a manifest directory, caching per file.
pub struct FileSource {
    dir: PathBuf,
    node_name: String,
    files: BTreeMap<PathBuf, Cached>,
    missing_logged: bool,
    dir_error_logged: Option<String>,
    /// Duplicates already reported: (file, namespace/name, uid).
    reported_dups: HashSet<(PathBuf, String, String)>,
    errors: Vec<(PathBuf, String)>,
    #[cfg(test)]
    parses: usize,
    #[cfg(test)]
    warnings: usize,
}

/// What one file yielded, and how to tell whether it changed.
struct Cached {
    /// `None` when the stat cannot be trusted (unreadable, or modified just now).
    stamp: Option<Stamp>,
    /// sha256 of the content; `None` when it could not be read.
    content: Option<[u8; 32]>,
    pods: Vec<Pod>,
    problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl FileSource {
    /// A source for the manifests in `dir`, for the node `node_name`.
    pub fn new(dir: &Path, node_name: &str) -> FileSource {
        FileSource {
            dir: dir.to_path_buf(),
            node_name: node_name.to_string(),
            files: BTreeMap::new(),
            missing_logged: false,
            dir_error_logged: None,
            reported_dups: HashSet::new(),
            errors: Vec::new(),
            #[cfg(test)]
            parses: 0,
            #[cfg(test)]
            warnings: 0,
        }
    }

    /// Reads the directory (non-recursive; skips dotfiles and files not ending
    /// `.yaml`, `.yml` or `.json`) and returns the full desired set of static
    /// pods, in file-name order. Unchanged files (same size, mtime, ctime and
    /// inode) are not re-read; a file whose content is unchanged is not
    /// re-parsed. A bad file or document is logged once per distinct content
    /// and skipped. A missing directory yields an empty set (logged once); any
    /// other error listing the directory keeps the previous set.
    pub fn scan(&mut self) -> Vec<Pod> {
        // The path may name one manifest file, as upstream allows.
        let single = fs::metadata(&self.dir).map(|m| m.is_file()).unwrap_or(false);
        let listed = if single {
            Ok(vec![self.dir.clone()])
        } else {
            fs::read_dir(&self.dir).map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
        };
        let entries = match listed {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.missing_logged {
                    self.warn(&format!("static pod directory {} does not exist; no static pods", self.dir.display()));
                    self.missing_logged = true;
                }
                self.files.clear();
                self.reported_dups.clear();
                self.errors = vec![(self.dir.clone(), "directory does not exist".to_string())];
                return Vec::new();
            }
            Err(e) => {
                let msg = format!("cannot list: {e}");
                if self.dir_error_logged.as_deref() != Some(&msg) {
                    self.warn(&format!("static pod directory {}: {msg}; keeping the previous pods", self.dir.display()));
                    self.dir_error_logged = Some(msg.clone());
                }
                self.errors = vec![(self.dir.clone(), msg)];
                return self.dedup();
            }
        };
        self.missing_logged = false;
        self.dir_error_logged = None;

        let mut present = Vec::new();
        for entry in entries {
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !single && (name.starts_with('.') || ![".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext))) {
                continue;
            }
            let path = entry;
            // Follow symlinks; anything but a regular file (e.g. a directory) is ignored.
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => present.push((path, Some(m))),
                Ok(_) => {}
                Err(_) => present.push((path, None)), // a dangling link is reported by load
            }
        }
        let keep: HashSet<&PathBuf> = present.iter().map(|(p, _)| p).collect();
        self.files.retain(|p, _| keep.contains(p));
        for (path, meta) in present {
            self.load(path, meta);
        }
        self.errors = self.files.iter().flat_map(|(p, c)| c.problems.iter().map(|m| (p.clone(), m.clone()))).collect();
        self.dedup()
    }

    /// The latest problems: (file, message).
    #[cfg(test)]
    pub fn errors(&self) -> Vec<(PathBuf, String)> {
        self.errors.clone()
    }

    /// Brings the cache entry for `path` up to date.
    fn load(&mut self, path: PathBuf, meta: Option<fs::Metadata>) {
        let stamp = meta.as_ref().map(Stamp::of);
        let old = self.files.remove(&path);
        let old = match old {
            Some(o) if stamp.is_some() && o.stamp == stamp => {
                self.files.insert(path, o);
                return;
            }
            o => o,
        };
        let trusted = stamp.filter(|_| !meta.as_ref().is_some_and(recently_modified));
        let text = match read_limited(&path) {
            Ok(t) => t,
            Err(msg) => {
                let problems = vec![msg];
                if old.as_ref().map(|o| &o.problems) != Some(&problems) {
                    self.warn(&format!("static pod file {}: {}", path.display(), problems[0]));
                }
                self.files.insert(path, Cached { stamp: None, content: None, pods: Vec::new(), problems });
                return;
            }
        };
        let digest = sha256(text.as_bytes());
        if let Some(mut o) = old.filter(|o| o.content == Some(digest)) {
            o.stamp = trusted;
            self.files.insert(path, o);
            return;
        }
        #[cfg(test)]
        {
            self.parses += 1;
        }
        let (pods, problems) = parse_file(&path, &text, &self.node_name);
        for p in &problems {
            self.warn(&format!("static pod file {}: {p}; skipped", path.display()));
        }
        self.files.insert(path, Cached { stamp: trusted, content: Some(digest), pods, problems });
    }

    /// Collects the cached pods, keeping the first of each namespace/name by
    /// file order; later ones are reported (logged once each) and dropped.
    fn dedup(&mut self) -> Vec<Pod> {
        let mut first: HashMap<(&str, &str), &Path> = HashMap::new();
        let mut pods = Vec::new();
        let mut dups = Vec::new();
        for (path, cached) in &self.files {
            for pod in &cached.pods {
                let (ns, name) = (pod.metadata.namespace.as_str(), pod.metadata.name.as_str());
                match first.get(&(ns, name)) {
                    Some(owner) => {
                        let msg = format!("pod {ns}/{name} is already defined by {}; ignored", owner.display());
                        dups.push(((path.clone(), format!("{ns}/{name}"), pod.metadata.uid.clone()), msg));
                    }
                    None => {
                        first.insert((ns, name), path);
                        pods.push(pod.clone());
                    }
                }
            }
        }
        let mut reported = HashSet::new();
        for (key, msg) in dups {
            if !self.reported_dups.contains(&key) {
                self.warn(&format!("static pod file {}: {msg}", key.0.display()));
            }
            self.errors.push((key.0.clone(), msg));
            reported.insert(key);
        }
        self.reported_dups = reported;
        pods
    }

    fn warn(&mut self, msg: &str) {
        log::warn!("{msg}");
        #[cfg(test)]
        {
            self.warnings += 1;
        }
    }
}

fn recently_modified(m: &fs::Metadata) -> bool {
    match m.modified().map(|t| SystemTime::now().duration_since(t)) {
        Ok(Ok(age)) => age < RACY_WINDOW,
        _ => true, // in the future, or unknown: don't trust it
    }
}

fn read_limited(path: &Path) -> Result<String, String> {
    let f = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_SIZE + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err(format!("larger than {} bytes; not read", MAX_FILE_SIZE));
    }
    String::from_utf8(buf).map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// Decodes, defaults, identifies and validates every pod in one file.
/// Returns the good pods and one message per problem.
fn parse_file(path: &Path, text: &str, node: &str) -> (Vec<Pod>, Vec<String>) {
    let mut pods = Vec::new();
    let mut problems = Vec::new();
    for (document, result) in decode::pods_from_str_indexed(text) {
        let mut pod = match result {
            Ok(p) => p,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let uid = static_uid(node, path, &pod);
        defaults::apply(&mut pod);
        set_identity(&mut pod, node, uid);
        match validate::validate(&pod) {
            Ok(()) => pods.push(pod),
            Err(errs) => {
                for e in errs {
                    problems.push(format!("document {document} (pod {:?}): {e}", pod.metadata.name));
                }
            }
        }
    }
    (pods, problems)
}

/// The UID of a static pod: stable for identical content at the same path on
/// the same node, different when any of them changes.
fn static_uid(node: &str, path: &Path, decoded: &Pod) -> String {
    // Struct fields serialize in declaration order and maps are BTreeMaps, so
    // this JSON is canonical for a given pod.
    let json = serde_json::to_vec(decoded).unwrap_or_default();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"host:");
    ctx.update(node.as_bytes());
    ctx.update(b"file:");
    ctx.update(path.as_os_str().as_bytes());
    ctx.update(&json);
    ctx.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Gives a decoded, defaulted pod its static-pod identity on `node`.
fn set_identity(pod: &mut Pod, node: &str, uid: String) {
    let m = &mut pod.metadata;
    // An empty name stays empty so validation reports it as required.
    if !m.name.is_empty() {
        m.name = format!("{}-{node}", m.name);
    }
    if m.namespace.is_empty() {
        m.namespace = "default".into();
    }
    m.annotations.insert("kubernetes.io/config.hash".into(), uid.clone());
    m.annotations.insert("kubernetes.io/config.source".into(), "file".into());
    m.uid = uid;
    pod.spec.node_name = node.to_string();
    // Static pods tolerate every NoExecute taint, so node problems never evict them.
    let toleration = serde_json::json!({"operator": "Exists", "effect": "NoExecute"});
    if !pod.spec.tolerations.contains(&toleration) {
        pod.spec.tolerations.push(toleration);
    }
}

/// Watches the manifest directory with inotify (non-blocking) so a change can
/// be applied at once: poll the fd for readability, call [`DirWatch::drain`],
/// then [`FileSource::scan`].
pub struct DirWatch {
    inotify: Inotify,
}

impl DirWatch {
    /// Watches `dir`, which must exist.
    pub fn new(dir: &Path) -> nix::Result<DirWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        inotify.add_watch(dir, mask)?;
        Ok(DirWatch { inotify })
    }

    /// Discards all pending events, so the fd stops being readable until the
    /// next change.
    pub fn drain(&self) {
        // read_events fails with EAGAIN once the queue is empty.
        while matches!(self.inotify.read_events(), Ok(ev) if !ev.is_empty()) {}
    }
}

impl AsFd for DirWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("picolet-source-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn write(&self, name: &str, text: &str) {
            fs::write(self.0.join(name), text).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn manifest(name: &str, image: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n")
    }

    fn names(pods: &[Pod]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_str()).collect()
    }

    #[test]
    fn identity_and_defaults() {
        let d = TempDir::new();
        d.write("web.yaml", &manifest("web", "nginx:1.25").replace("name: web", "name: web\n  uid: explicit"));
        let mut src = FileSource::new(&d.0, "node1");
        let pods = src.scan();
        assert_eq!(names(&pods), ["web-node1"]);
        let p = &pods[0];
        assert_eq!(p.metadata.namespace, "default");
        assert_eq!(p.spec.node_name, "node1");
        assert_eq!(p.metadata.uid.len(), 32);
        assert!(p.metadata.uid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(p.metadata.uid, "explicit");
        assert_eq!(p.metadata.annotations["kubernetes.io/config.hash"], p.metadata.uid);
        assert_eq!(p.metadata.annotations["kubernetes.io/config.source"], "file");
        assert_eq!(p.spec.restart_policy, "Always");
        assert_eq!(p.spec.containers[0].image_pull_policy, "IfNotPresent");
        assert_eq!(p.spec.tolerations, [serde_json::json!({"operator": "Exists", "effect": "NoExecute"})]);
        assert!(src.errors().is_empty());

        // Same content for another node gives another UID.
        let other = FileSource::new(&d.0, "node2").scan();
        assert_eq!(names(&other), ["web-node2"]);
        assert_ne!(other[0].metadata.uid, p.metadata.uid);
    }

    #[test]
    fn a_single_manifest_file_is_a_source_too() {
        let d = TempDir::new();
        d.write("pod.conf", &manifest("solo", "busybox"));
        let mut src = FileSource::new(&d.0.join("pod.conf"), "n");
        assert_eq!(names(&src.scan()), ["solo-n"]);
    }

    #[test]
    fn add_change_remove_and_uid_stability() {
        let d = TempDir::new();
        let mut src = FileSource::new(&d.0, "n");
        assert!(src.scan().is_empty());
        d.write("a.yaml", &manifest("a", "busybox"));
        let first = src.scan();
        assert_eq!(names(&first), ["a-n"]);
        assert_eq!(src.parses, 1);

        let again = src.scan();
        assert_eq!(again, first, "unchanged file gives the same pod and UID");
        assert_eq!(src.parses, 1, "unchanged file not re-parsed");

        // Rewriting identical content (new mtime) re-reads but does not re-parse.
        d.write("a.yaml", &manifest("a", "busybox"));
        assert_eq!(src.scan()[0].metadata.uid, first[0].metadata.uid);
        assert_eq!(src.parses, 1);

        // A fresh source computes the same UID for the same content.
        assert_eq!(FileSource::new(&d.0, "n").scan()[0].metadata.uid, first[0].metadata.uid);

        d.write("a.yaml", &manifest("a", "busybox:1.36"));
        let changed = src.scan();
        assert_eq!(src.parses, 2);
        assert_ne!(changed[0].metadata.uid, first[0].metadata.uid);

        d.write("b.json", r#"{"metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"x"}]}}"#);
        assert_eq!(names(&src.scan()), ["a-n", "b-n"]);
        fs::remove_file(d.0.join("a.yaml")).unwrap();
        assert_eq!(names(&src.scan()), ["b-n"]);
        fs::remove_file(d.0.join("b.json")).unwrap();
        assert!(src.scan().is_empty());
    }

    #[test]
    fn skips_hidden_other_extensions_and_directories() {
        let d = TempDir::new();
        d.write(".hidden.yaml", &manifest("hidden", "x"));
        d.write("notes.txt", &manifest("notes", "x"));
        d.write("b.yml", &manifest("b", "x"));
        d.write("a.yaml.swp", "garbage");
        fs::create_dir(d.0.join("sub.yaml")).unwrap();
        fs::write(d.0.join("sub.yaml").join("c.yaml"), manifest("c", "x")).unwrap();
        let mut src = FileSource::new(&d.0, "n");
        assert_eq!(names(&src.scan()), ["b-n"]);
        assert!(src.errors().is_empty());
    }

    #[test]
    fn bad_file_reported_once_and_good_file_unaffected() {
        let d = TempDir::new();
        d.write("good.yaml", &manifest("good", "x"));
        d.write("bad.yaml", "spec:\n  containers:\n  - name: c\n    ports:\n    - containerPort: x\n");
        let mut src = FileSource::new(&d.0, "n");
        assert_eq!(names(&src.scan()), ["good-n"]);
        assert_eq!(src.warnings, 1);
        let errs = src.errors();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, d.0.join("bad.yaml"));
        assert_eq!(errs[0].1, "document 0: spec.containers[0].ports[0].containerPort: invalid type: string \"x\", expected i32");

        for _ in 0..3 {
            assert_eq!(names(&src.scan()), ["good-n"]);
        }
        assert_eq!(src.warnings, 1, "logged once per distinct content");
        assert_eq!(src.errors().len(), 1, "still reported");

        d.write("bad.yaml", "metadata: [\n");
        src.scan();
        assert_eq!(src.warnings, 2, "new content, new report");
        assert!(src.errors()[0].1.starts_with("document 0: line "), "{:?}", src.errors());

        d.write("bad.yaml", &manifest("fixed", "x"));
        assert_eq!(names(&src.scan()), ["fixed-n", "good-n"]);
        assert!(src.errors().is_empty());
    }

    #[test]
    fn invalid_documents_skipped_within_a_file() {
        let d = TempDir::new();
        let long = "a".repeat(250);
        let text = format!("{}---\n{}---\n{}", manifest("one", "x"), manifest(&long, "x"), manifest("two", ""));
        d.write("multi.yaml", &text);
        let mut src = FileSource::new(&d.0, "node1");
        assert_eq!(names(&src.scan()), ["one-node1"]);
        let errs: Vec<String> = src.errors().into_iter().map(|e| e.1).collect();
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].starts_with("document 1 (pod \"aaa"), "{}", errs[0]);
        assert!(errs[0].contains("): metadata.name: Invalid value: \"aaa"), "{}", errs[0]);
        assert!(errs[0].ends_with("-node1\": must be no more than 253 characters"), "{}", errs[0]);
        assert_eq!(errs[1], "document 2 (pod \"two-node1\"): spec.containers[0].image: Required value");
    }

    #[test]
    fn duplicates_keep_first_file_and_report_once() {
        let d = TempDir::new();
        d.write("a.yaml", &manifest("web", "x:1"));
        d.write("b.yaml", &manifest("web", "x:2"));
        let mut src = FileSource::new(&d.0, "n");
        let pods = src.scan();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].spec.containers[0].image, "x:1");
        let errs = src.errors();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, d.0.join("b.yaml"));
        assert!(errs[0].1.contains("default/web-n is already defined by"), "{}", errs[0].1);
        src.scan();
        assert_eq!(src.warnings, 1);
        assert_eq!(src.errors().len(), 1);
        fs::remove_file(d.0.join("a.yaml")).unwrap();
        let pods = src.scan();
        assert_eq!(pods[0].spec.containers[0].image, "x:2");
        assert!(src.errors().is_empty());
    }

    #[test]
    fn missing_directory_is_empty_and_logged_once() {
        let d = TempDir::new();
        let dir = d.0.join("manifests");
        let mut src = FileSource::new(&dir, "n");
        assert!(src.scan().is_empty());
        assert!(src.scan().is_empty());
        assert_eq!(src.warnings, 1);
        assert_eq!(src.errors(), [(dir.clone(), "directory does not exist".to_string())]);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("p.yaml"), manifest("p", "x")).unwrap();
        assert_eq!(names(&src.scan()), ["p-n"]);
        assert!(src.errors().is_empty());
    }

    #[test]
    fn unreadable_entries_are_reported() {
        let d = TempDir::new();
        std::os::unix::fs::symlink(d.0.join("nowhere"), d.0.join("dangling.yaml")).unwrap();
        d.write("bin.yaml", "\u{0}");
        fs::write(d.0.join("latin1.yaml"), b"metadata: {name: caf\xe9}\n").unwrap();
        let mut src = FileSource::new(&d.0, "n");
        assert!(src.scan().is_empty());
        src.scan();
        let errs = src.errors();
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].1.starts_with("document 0:"), "{errs:#?}");
        assert!(errs[1].1.starts_with("cannot read:"));
        assert!(errs[2].1.starts_with("not UTF-8 text"));
        assert_eq!(src.warnings, 3);
    }

    /// Waits up to `ms` for the watch fd to become readable.
    fn readable(w: &DirWatch, ms: u16) -> bool {
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(ms)).unwrap() > 0
    }

    #[test]
    fn dir_watch_wakes_on_changes() {
        let d = TempDir::new();
        let w = DirWatch::new(&d.0).unwrap();
        assert!(!readable(&w, 0));
        let steps: [(&str, Box<dyn Fn()>); 4] = [
            ("create", Box::new(|| d.write("a.yaml", "x"))),
            ("modify", Box::new(|| {
                use std::io::Write;
                fs::OpenOptions::new().append(true).open(d.0.join("a.yaml")).unwrap().write_all(b"y").unwrap();
            })),
            ("rename", Box::new(|| fs::rename(d.0.join("a.yaml"), d.0.join("b.yaml")).unwrap())),
            ("delete", Box::new(|| fs::remove_file(d.0.join("b.yaml")).unwrap())),
        ];
        for (what, act) in steps {
            act();
            assert!(readable(&w, 5000), "no wake-up on {what}");
            w.drain();
            assert!(!readable(&w, 0), "still readable after drain ({what})");
        }
    }

    #[test]
    fn dir_watch_needs_a_directory() {
        let d = TempDir::new();
        assert!(DirWatch::new(&d.0.join("missing")).is_err());
        d.write("f.yaml", "");
        assert!(DirWatch::new(&d.0.join("f.yaml")).is_err());
    }
}
