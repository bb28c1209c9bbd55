//! The command line: --help, flag errors, and the images subcommands; images
//! appearing in the import directory while picolet runs.

mod common;
use common::*;
use std::process::Command;

fn picolet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_picolet")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_documents_the_kubelet_flags() {
    let (code, out, _) = picolet(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--pod-manifest-path",
        "--root-dir",
        "--hostname-override",
        "--config",
        "-v",
        "--runtime-path",
        "--image-import-dir",
        "/var/lib/picolet",
        "staticPodPath",
        "containerLogMaxSize",
        "containerLogMaxFiles",
        "readOnlyPort",
        "fileCheckFrequency",
        "images import",
        "images list",
        "images pull",
        "--registry-config",
        "--platform",
    ] {
        assert!(out.contains(flag), "--help mentions {flag}:\n{out}");
    }
}

#[test]
fn bad_flags_and_config_are_clear_errors() {
    let (code, _, err) = picolet(&["--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, _, err) = picolet(&["--read-only-port=x"]);
    assert_eq!(code, 2);
    assert!(err.contains("--read-only-port") && err.contains("\"x\""), "{err}");
    let dir = std::env::temp_dir().join(format!("picolet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(&cfg, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: lots\n").unwrap();
    let (code, _, err) = picolet(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("readOnlyPort") && err.contains("config.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn images_import_and_list() {
    let images = images_dir();
    let root = std::env::temp_dir().join(format!("picolet-images-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let root_arg = format!("--root-dir={}", root.display());
    let (code, out, err) = picolet(&["images", "import", images.join("busybox.tar").to_str().unwrap(), &root_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("docker.io/library/busybox:latest"), "{out}");
    let (code, out, err) = picolet(&["images", "import", images.join("busybox-docker.tar").to_str().unwrap(), &root_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("docker.io/library/busybox:docker"), "{out}");
    let (code, out, _) = picolet(&["images", "list", &root_arg]);
    assert_eq!(code, 0);
    assert!(out.contains("docker.io/library/busybox:latest") && out.contains("docker.io/library/busybox:docker"), "{out}");
    // A corrupt archive is a clear error naming it, and the store still works.
    let bad = root.join("bad.tar");
    std::fs::write(&bad, b"this is not a tar archive").unwrap();
    let (code, _, err) = picolet(&["images", "import", bad.to_str().unwrap(), &root_arg]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.tar"), "{err}");
    let (_, out, _) = picolet(&["images", "list", &root_arg]);
    assert!(out.contains("busybox:latest"), "{out}");
    cleanup(&root);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn images_rm_keeps_shared_layers_and_refuses_an_image_in_use() {
    let images = images_dir();
    let root = std::env::temp_dir().join(format!("picolet-images-rm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let root_arg = format!("--root-dir={}", root.display());
    for tar in ["busybox.tar", "layered.tar"] {
        let (code, _, err) = picolet(&["images", "import", images.join(tar).to_str().unwrap(), &root_arg]);
        assert_eq!(code, 0, "{err}");
    }
    let blobs = || std::fs::read_dir(root.join("images-store/blobs/sha256")).unwrap().count();
    let before = blobs();
    // layered:v1 is busybox's layer plus one of its own: its own blobs go, the shared one stays.
    let (code, out, err) = picolet(&["images", "rm", "layered:v1", &root_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("deleted docker.io/library/layered:v1 (image "), "{out}");
    let (_, list, _) = picolet(&["images", "list", &root_arg]);
    assert!(list.contains("busybox:latest") && !list.contains("layered"), "{list}");
    // What is left is exactly busybox's manifest, config and layers.
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("images-store/images.json")).unwrap()).unwrap();
    let bb = &index["docker.io/library/busybox:latest"];
    let mut kept: Vec<&str> = bb["layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    kept.extend([bb["config"].as_str().unwrap(), bb["manifest"].as_str().unwrap()]);
    kept.sort();
    kept.dedup();
    assert!(blobs() < before && blobs() == kept.len(), "{before} → {} blobs, busybox needs {kept:?}", blobs());
    let (code, _, err) = picolet(&["images", "rm", "layered:v1", &root_arg]);
    assert_ne!(code, 0);
    assert!(err.contains("no image layered:v1"), "{err}");
    // A container record naming busybox (as a running or kept container has).
    let (_, list, _) = picolet(&["images", "list", &root_arg]);
    let short = list.lines().find(|l| l.contains("busybox:latest")).unwrap().split_whitespace().nth(1).unwrap().to_string();
    let id = index["docker.io/library/busybox:latest"]["config"].as_str().unwrap();
    assert!(id.contains(&short));
    let dir = root.join("containers/u1-app-0");
    std::fs::create_dir_all(&dir).unwrap();
    let rec = serde_json::json!({"id": "u1-app-0", "podUid": "u1", "podNamespace": "default", "podName": "web", "container": "app",
        "attempt": 0, "image": "docker.io/library/busybox:latest", "imageId": id, "createdAt": "2024-05-01T12:00:00Z"});
    std::fs::write(dir.join("record.json"), rec.to_string()).unwrap();
    let (code, _, err) = picolet(&["images", "rm", "busybox", &root_arg]);
    assert_ne!(code, 0);
    assert!(err.contains("image busybox is used by container app of pod default/web"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    let (code, out, err) = picolet(&["images", "rm", "busybox", &root_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted docker.io/library/busybox:latest"), "{out}");
    assert_eq!(blobs(), 0);
    cleanup(&root);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn image_dropped_into_import_dir_unblocks_a_waiting_pod() {
    let mut p = Picolet::new("late-image");
    // The docker-save archive arrives only after the pod is waiting for it.
    p.write_manifest(
        "late.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec:\n  containers: [{name: c, image: 'busybox:docker', command: [sh, -c, 'echo from docker archive; exec sleep 1000']}]\n",
    );
    p.start();
    // No registry has it: the pull fails, then backs off.
    p.wait_pod("late", "ErrImagePull", |q| ["ErrImagePull", "ImagePullBackOff"].contains(&container(q, "c")["state"]["waiting"]["reason"].as_str().unwrap_or("")));
    let tmp = p.base.join("busybox-docker.tar.part");
    std::fs::copy(images_dir().join("busybox-docker.tar"), &tmp).unwrap();
    std::fs::rename(&tmp, p.import.join("busybox-docker.tar")).unwrap();
    let pod = p.wait_pod("late", "Running", |q| running(q, "c"));
    assert_eq!(container(&pod, "c")["image"], "docker.io/library/busybox:docker");
    p.wait_log(&pod, "c", 0, "from docker archive");
}

#[test]
fn start_up_checks_are_one_line_errors_with_the_fix() {
    let root = std::env::temp_dir().join(format!("picolet-preflight-{}", std::process::id()));
    let root_arg = format!("--root-dir={}", root.display());
    let (code, _, err) = picolet(&["--runtime-path=/nonexistent/runc", &root_arg, "--read-only-port=0"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/runc") && err.contains("apt-get install runc"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    if !host_has_cgroup_v2() {
        let (code, _, err) = picolet(&[&root_arg, "--read-only-port=0"]);
        assert_eq!(code, 1);
        assert!(err.contains("cgroup") && err.contains("--cgroups-per-qos=false"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Not root: a one-line error saying how to run it.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_picolet"), "--read-only-port=0"])
        .arg(&root_arg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("must run as root") && err.contains("sudo"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
