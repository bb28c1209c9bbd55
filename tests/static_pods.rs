//! Static pods from a manifest directory: added → started, changed →
//! replaced, removed → stopped; identity, defaults, status and bad input.

mod common;
use common::*;

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo serving version $(VERSION); trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    env:
    - name: VERSION
      value: "one"
"#;

#[test]
fn add_change_remove() {
    let mut p = Picolet::new("lifecycle-static");
    p.write_manifest("web.yaml", WEB);
    p.start();

    let pod = p.wait_pod("web", "Running", |p| phase(p) == "Running" && running(p, "main"));
    // Identity as upstream: name suffixed with the node name, content-derived UID.
    assert_eq!(pod["metadata"]["name"], format!("web-{}", p.node));
    assert_eq!(pod["metadata"]["namespace"], "default");
    let uid1 = pod["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(uid1.len(), 32);
    assert_eq!(pod["metadata"]["annotations"]["kubernetes.io/config.source"], "file");
    assert_eq!(pod["spec"]["nodeName"], p.node.as_str());
    // Defaults the API server would have set.
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
    // Status as upstream.
    for c in ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&pod, c), "True", "condition {c}");
    }
    let main = container(&pod, "main");
    assert_eq!(main["ready"], true);
    assert_eq!(main["started"], true);
    assert_eq!(main["restartCount"], 0);
    assert_eq!(main["image"], "docker.io/library/busybox:latest");
    assert!(main["imageID"].as_str().unwrap().starts_with("sha256:"));
    assert!(main["containerID"].as_str().unwrap().starts_with("runc://"));
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    assert!(pod["status"]["startTime"].is_string());
    assert!(pod["status"]["hostIP"].is_string());
    p.wait_log(&pod, "main", 0, "serving version one");

    // Changed manifest: a new pod (new UID) replaces the old one.
    p.write_manifest("web.yaml", &WEB.replace("\"one\"", "\"two\""));
    let pod2 = p.wait_pod("web", "the new version running", |q| q["metadata"]["uid"] != uid1.as_str() && running(q, "main"));
    p.wait_log(&pod2, "main", 0, "serving version two");
    p.wait_until("old instance gone", || {
        p.pods()["items"].as_array().unwrap().iter().all(|q| q["metadata"]["uid"] != uid1.as_str())
    });

    // Removed manifest: stopped and gone, its containers removed from runc.
    p.remove_manifest("web.yaml");
    p.wait_gone("web");
    let out = std::process::Command::new("runc").arg("--root").arg(p.root.join("runc")).args(["list", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "no containers left");
}

#[test]
fn uid_is_stable_across_restarts_and_json_and_multidoc_work() {
    let mut p = Picolet::new("identity");
    p.write_manifest(
        "two.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: first}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "1000"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: second, namespace: kube-system}
spec:
  containers: [{name: c, image: "busybox:latest", command: [sleep, "1000"]}]
"#,
    );
    p.write_manifest(
        "third.json",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"third"},"spec":{"containers":[{"name":"c","image":"busybox","command":["sleep","1000"]}]}}"#,
    );
    p.start();
    let mut uids = vec![];
    for name in ["first", "second", "third"] {
        let pod = p.wait_pod(name, "Running", |q| phase(q) == "Running");
        uids.push(pod["metadata"]["uid"].as_str().unwrap().to_string());
    }
    assert_eq!(p.pod("second").unwrap()["metadata"]["namespace"], "kube-system");
    p.kill();
    p.start();
    for (name, uid) in ["first", "second", "third"].iter().zip(&uids) {
        let pod = p.wait_pod(name, "Running", |q| phase(q) == "Running");
        assert_eq!(pod["metadata"]["uid"].as_str().unwrap(), uid, "{name} keeps its UID");
        assert_eq!(container(&pod, "c")["restartCount"], 0, "{name} was not restarted");
    }
}

#[test]
fn bad_manifest_is_reported_once_and_skipped() {
    let mut p = Picolet::new("bad-input");
    p.write_manifest("good.yaml", WEB);
    p.write_manifest("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: broken\nspec: [");
    p.write_manifest(
        "invalid.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: invalid}\nspec:\n  restartPolicy: Sometimes\n  containers: [{name: c, image: busybox}]\n",
    );
    p.write_manifest(
        "wrongtype.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: wrongtype}\nspec:\n  containers: [{name: c, image: busybox, ports: [{containerPort: eighty}]}]\n",
    );
    p.start();
    let good = p.wait_pod("web", "Running", |q| running(q, "main"));
    // Several more scans happen (each tick after a change, and the periodic rescan).
    p.write_manifest("other.yaml", &WEB.replace("name: web", "name: other"));
    p.wait_pod("other", "Running", |q| running(q, "main"));
    let log = p.picolet_log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("broken.yaml"), 1, "reported once:\n{log}");
    assert_eq!(count("invalid.yaml"), 1, "reported once:\n{log}");
    assert!(log.contains("spec.restartPolicy"), "names the field:\n{log}");
    assert!(log.contains("Sometimes"), "names the value:\n{log}");
    assert!(log.contains("containerPort"), "names the field with the wrong type:\n{log}");
    assert!(p.pod("invalid").is_none() && p.pod("broken").is_none() && p.pod("wrongtype").is_none());
    // The good pod was untouched.
    let again = p.pod("web").unwrap();
    assert_eq!(again["metadata"]["uid"], good["metadata"]["uid"]);
    assert_eq!(container(&again, "main")["restartCount"], 0);
}

#[test]
fn missing_image_and_config_errors_are_waiting_reasons() {
    let mut p = Picolet::new("waiting-reasons");
    p.write_manifest(
        "never.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: never}\nspec:\n  containers: [{name: c, image: 'example.org/absent:1.0', imagePullPolicy: Never}]\n",
    );
    p.write_manifest(
        "absent.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: absent}\nspec:\n  containers: [{name: c, image: 'example.org/absent:1.0'}]\n",
    );
    p.write_manifest(
        "nonroot.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: nonroot}\nspec:\n  securityContext: {runAsNonRoot: true}\n  containers: [{name: c, image: busybox, command: [sleep, '1000']}]\n",
    );
    p.start();
    let waiting = |q: &serde_json::Value| container(q, "c")["state"]["waiting"]["reason"].as_str().unwrap_or("").to_string();
    let pod = p.wait_pod("never", "ErrImageNeverPull", |q| waiting(q) == "ErrImageNeverPull");
    assert_eq!(phase(&pod), "Pending");
    assert!(container(&pod, "c")["state"]["waiting"]["message"].as_str().unwrap().contains("example.org/absent:1.0"));
    // The pull fails (no registry answers for example.org), then backs off.
    p.wait_pod("absent", "ErrImagePull", |q| waiting(q) == "ErrImagePull" || waiting(q) == "ImagePullBackOff");
    let pod = p.wait_pod("nonroot", "CreateContainerConfigError", |q| waiting(q) == "CreateContainerConfigError");
    assert!(container(&pod, "c")["state"]["waiting"]["message"].as_str().unwrap().contains("runAsNonRoot"));
    // picolet is still serving.
    assert_eq!(http_get(p.port, "/healthz").unwrap().0, 200);
}
