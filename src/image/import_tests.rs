//! Tests of importing, resolving and mounting, against the real archives
//! `tests/images/build.sh` makes with umoci and skopeo.

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

/// A one-layer OCI archive (`<stem>:v1`) whose layer holds `entries`
/// (name, type, link target), names written raw.
fn oci_archive_with_layer(path: &Path, entries: &[(&str, tar::EntryType, &str)]) -> String {
    let mut layer = tar::Builder::new(Vec::new());
    for (name, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        layer.append(&h, &[][..]).unwrap();
    }
    let layer = layer.into_inner().unwrap();
    let cfg = serde_json::to_vec(&serde_json::json!({"os": "linux", "architecture": host_arch(), "config": {}})).unwrap();
    let man = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}]
    }))
    .unwrap();
    let idx = oci_index("v1", "application/vnd.oci.image.manifest.v1+json", &sha256(&man), man.len());
    let blob = |b: &[u8]| format!("blobs/sha256/{}", &sha256(b)[7..]);
    let mut ar = tar::Builder::new(File::create(path).unwrap());
    let files = [
        ("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json".to_string(), idx),
        (blob(&cfg), cfg.clone()),
        (blob(&man), man),
        (blob(&layer), layer.clone()),
    ];
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        ar.append_data(&mut h, name, &data[..]).unwrap();
    }
    ar.finish().unwrap();
    sha256(&layer)
}

/// A layer reaching out of its directory fails the import with the layer
/// and the entry named, touches nothing outside, and leaves nothing behind.
#[test]
fn hostile_layer_fails_the_import_and_nothing_is_kept() {
    use tar::EntryType::*;
    let dir = scratch("import-hostile-layer");
    let root = dir.join("store");
    let store = Store::open(&root).unwrap();
    let archive = dir.join("evil.tar");
    // Unpacked in store/tmp/<layer>: a/up is the scratch dir itself.
    let layer = oci_archive_with_layer(&archive, &[("a/", Directory, ""), ("a/up", Symlink, "../../.."), ("a/up/x/.wh.y", Regular, "")]);
    let err = store.import_archive(&archive).unwrap_err().to_string();
    assert_eq!(err, format!("layer {layer}: entry \"a/up/x/.wh.y\": parent \"a/up\" is a symlink"));
    assert!(!dir.join("x").exists());
    assert!(blob_names(&root).is_empty(), "{:?}", blob_names(&root));
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join("layers")).unwrap().count(), 0);
    assert!(store.list().unwrap().is_empty());
    // The root entry umoci writes is the layer root (#16 point 11).
    let ok = dir.join("rooted.tar");
    oci_archive_with_layer(&ok, &[("/", Directory, ""), ("etc/", Directory, ""), ("/bin/", Directory, "")]);
    assert_eq!(store.import_archive(&ok).unwrap(), vec!["docker.io/library/rooted:v1".to_string()]);
    let img = store.resolve("rooted:v1").unwrap().unwrap();
    assert!(img.layers[0].join("etc").is_dir() && img.layers[0].join("bin").is_dir());
}
