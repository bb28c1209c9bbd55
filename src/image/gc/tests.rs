use super::*;
use crate::image::testutil::scratch;
use std::cell::Cell;

/// A store with hand-made images: each a config blob plus layer blobs
/// (bytes of the given sizes), some layers shared.
fn store(name: &str) -> Store {
    Store::open(&scratch(name)).unwrap()
}

fn blob(s: &Store, content: &[u8]) -> String {
    let (d, _, _) = s.put_blob(&mut &content[..], None, "test", Path::new("test")).unwrap();
    // An unpacked layer directory beside it, as resolve makes them.
    fs::create_dir_all(s.layer_dir(&d).unwrap().join("etc")).unwrap();
    d
}

fn image(s: &Store, reference: &str, config: &str, layers: &[&str]) -> String {
    let cfg = blob(s, format!("{{\"config\":{{}},\"id\":\"{config}\"}}").as_bytes());
    let layers = layers.iter().map(|l| blob(s, l.as_bytes())).collect();
    let mut recs = s.records().unwrap();
    recs.insert(normalize(reference).unwrap(), Record { manifest: None, config: cfg.clone(), layers, size: 0, pulled: false });
    s.write_records(&recs).unwrap();
    cfg
}

fn refs(s: &Store) -> Vec<String> {
    let mut r: Vec<String> = s.list().unwrap().into_iter().flat_map(|i| i.references).collect();
    r.sort();
    r
}

fn policy(min_age: u64) -> Policy {
    Policy { high_percent: 85, low_percent: 80, min_age: Duration::from_secs(min_age) }
}

#[test]
fn candidates_are_unused_old_enough_least_recently_used_first() {
    let t0 = Instant::now();
    let mut gc = ImageGc::new(policy(120));
    let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let none = HashSet::new();
    gc.observe(&ids[..2], &none, t0);
    // b and c used at t0+10s; c still in use later; d first seen late.
    let used: HashSet<String> = ["b".to_string(), "c".to_string()].into();
    gc.observe(&ids[..3], &used, t0 + Duration::from_secs(10));
    gc.observe(&ids, &HashSet::from(["c".to_string()]), t0 + Duration::from_secs(100));
    let in_use = HashSet::from(["c".to_string()]);
    // At 121s: c seen at 10s is too young anyway; d too young; a (never used), then b.
    assert_eq!(gc.candidates(&in_use, t0 + Duration::from_secs(121)), vec!["a", "b"]);
    assert_eq!(gc.candidates(&HashSet::new(), t0 + Duration::from_secs(400)), vec!["a", "d", "b", "c"]);
    // Forgotten once gone from the store.
    gc.observe(&ids[1..2], &none, t0 + Duration::from_secs(400));
    assert_eq!(gc.candidates(&none, t0 + Duration::from_secs(400)), vec!["b"]);
}

#[test]
fn delete_keeps_shared_layers_and_updates_the_index_first() {
    let s = store("gc-delete");
    let base = image(&s, "busybox:1", "base", &["shared layer", "busybox top"]);
    let other = image(&s, "app:v1", "app", &["shared layer", "app top"]);
    let shared = blob(&s, b"shared layer");
    let app_top = blob(&s, b"app top");
    let (gone, bytes) = s.delete_image(&other).unwrap();
    assert_eq!(gone, vec!["docker.io/library/app:v1"]);
    assert_eq!(bytes, ("app top".len() + r#"{"config":{},"id":"app"}"#.len()) as u64);
    assert!(s.blob_path(&base).unwrap().is_file());
    assert_eq!(refs(&s), vec!["docker.io/library/busybox:1"]);
    assert!(s.blob_path(&shared).unwrap().is_file() && s.layer_dir(&shared).unwrap().is_dir(), "shared with a kept image");
    assert!(!s.blob_path(&app_top).unwrap().exists() && !s.layer_dir(&app_top).unwrap().exists());
    assert!(!s.blob_path(&other).unwrap().exists());
    assert!(s.resolve("busybox:1").unwrap().is_some());
    assert_eq!(s.delete_image(&other).unwrap(), (vec![], 0), "already gone");
}

#[test]
fn images_rm_drops_one_reference_and_the_blobs_with_the_last() {
    let s = store("gc-rm");
    let id = image(&s, "busybox:1", "base", &["layer"]);
    let mut recs = s.records().unwrap();
    let rec = recs["docker.io/library/busybox:1"].clone();
    recs.insert("docker.io/library/busybox:latest".into(), rec);
    s.write_records(&recs).unwrap();
    assert_eq!(s.remove_reference("busybox:latest").unwrap(), Some((id.clone(), 0)));
    assert!(s.blob_path(&id).unwrap().is_file());
    let (got, bytes) = s.remove_reference("busybox:1").unwrap().unwrap();
    assert!(got == id && bytes > 0);
    assert!(!s.blob_path(&id).unwrap().exists());
    assert_eq!(s.remove_reference("busybox:1").unwrap(), None);
}

#[test]
fn sweep_removes_what_a_crash_left_but_not_fresh_blobs() {
    let s = store("gc-sweep");
    image(&s, "keep:1", "keep", &["kept layer"]);
    // A crash after the index was written: blobs and a layer nothing references.
    let orphan = blob(&s, b"orphan layer");
    assert_eq!(s.sweep(ORPHAN_AGE).unwrap(), 0, "too fresh: maybe a pull under way");
    assert!(s.blob_path(&orphan).unwrap().is_file());
    let old = SystemTime::now() - Duration::from_secs(7200);
    fs::File::options().write(true).open(s.blob_path(&orphan).unwrap()).unwrap().set_modified(old).unwrap();
    assert_eq!(s.sweep(ORPHAN_AGE).unwrap(), "orphan layer".len() as u64);
    assert!(!s.blob_path(&orphan).unwrap().exists());
    assert_eq!(refs(&s), vec!["docker.io/library/keep:1"]);
    assert!(s.resolve("keep:1").unwrap().is_some());
    // A reused blob is touched, so a sweep spares it.
    let reused = blob(&s, b"reused");
    fs::File::options().write(true).open(s.blob_path(&reused).unwrap()).unwrap().set_modified(old).unwrap();
    blob(&s, b"reused");
    assert_eq!(s.sweep(ORPHAN_AGE).unwrap(), 0);
}

/// The store's filesystem as a fixed capacity holding the blobs plus a
/// fixed amount of other data.
struct FakeFs<'a> {
    store: &'a Store,
    capacity: u64,
    other: u64,
    reads: Cell<u32>,
}

impl FsUsage for FakeFs<'_> {
    fn usage(&self) -> Option<(u64, u64)> {
        self.reads.set(self.reads.get() + 1);
        let dir = self.store.root.join("blobs/sha256");
        let used: u64 = fs::read_dir(dir).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
        Some((self.capacity, self.capacity - used - self.other))
    }
}

#[test]
fn collect_frees_down_to_the_low_threshold_oldest_first_never_in_use() {
    let s = store("gc-collect");
    let big = "x".repeat(100);
    let old = image(&s, "old:1", "old", &[&big]);
    let newer = image(&s, "newer:1", "newer", &[&format!("{big}y")]);
    let used = image(&s, "used:1", "used", &[&format!("{big}z")]);
    let t0 = Instant::now();
    let mut gc = ImageGc::new(policy(0));
    let in_use = HashSet::from([used.clone()]);
    gc.observe(&[old.clone(), newer.clone(), used.clone()], &HashSet::from([newer.clone()]), t0);
    let blobs = |s: &Store| fs::read_dir(s.root.join("blobs/sha256")).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum::<u64>();
    // 1000 bytes, 200 of other data: about 55% used; high 85 → nothing to do.
    let fake = FakeFs { store: &s, capacity: 1000, other: 200, reads: Cell::new(0) };
    assert_eq!(gc.collect(&s, &fake, &in_use, t0).unwrap(), Report::default());
    // 600 of other data: above 85%. Low 80% means 200 available: deleting
    // the never-used image is enough.
    let other = 1000 - 140 - blobs(&s);
    let fake = FakeFs { store: &s, capacity: 1000, other, reads: Cell::new(0) };
    let r = gc.collect(&s, &fake, &in_use, t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(r.deleted, vec!["docker.io/library/old:1"]);
    assert_eq!(refs(&s), vec!["docker.io/library/newer:1", "docker.io/library/used:1"]);
    // Still above with more data: the last unused goes, the used one stays.
    let fake = FakeFs { store: &s, capacity: 1000, other: 1000 - 50 - blobs(&s), reads: Cell::new(0) };
    let r = gc.collect(&s, &fake, &in_use, t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(r.deleted, vec!["docker.io/library/newer:1"]);
    assert_eq!(refs(&s), vec!["docker.io/library/used:1"]);
}

#[test]
fn minimum_age_and_disk_pressure_deletion() {
    let s = store("gc-unused");
    let a = image(&s, "a:1", "a", &["la"]);
    let b = image(&s, "b:1", "b", &["lb"]);
    let t0 = Instant::now();
    let mut gc = ImageGc::new(policy(120));
    let in_use = HashSet::from([b.clone()]);
    assert_eq!(gc.delete_unused(&s, &in_use, t0).unwrap().deleted, Vec::<String>::new(), "first seen now");
    let r = gc.delete_unused(&s, &in_use, t0 + Duration::from_secs(120)).unwrap();
    assert_eq!(r.deleted, vec!["docker.io/library/a:1"]);
    assert!(!s.blob_path(&a).unwrap().exists() && s.blob_path(&b).unwrap().exists());
}
