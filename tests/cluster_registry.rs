//! Pods of a real cluster (tests/cluster/) pulling from a private registry
//! (Debian's `docker-registry` over TLS with htpasswd, tests/common/registry.rs)
//! with their imagePullSecrets, and the Events `kubectl get events` shows.

mod common;
use common::cluster::{cluster, container_running, node, Cluster};
use common::registry::{Registry, PASSWORD, USER};
use common::Picolet;
use serde_json::Value;

/// (reason, message) of the Events about pod `ns/name`.
fn events(c: &Cluster, ns: &str, name: &str) -> Vec<(String, String)> {
    let sel = format!("involvedObject.name={name}");
    let list = c.get(&["events", "-n", ns, "--field-selector", &sel]).unwrap_or(Value::Null);
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_string();
    list["items"].as_array().into_iter().flatten().map(|e| (s(e, "reason"), s(e, "message"))).collect()
}

/// Waits until pod `name` has an Event for each of `reasons` (and `also` holds
/// for them); returns the Events.
fn wait_events(c: &Cluster, p: &Picolet, ns: &str, name: &str, reasons: &[&str], also: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    c.wait(&format!("events {reasons:?} for pod {name}"), Some(p), || {
        seen = events(c, ns, name);
        reasons.iter().all(|r| seen.iter().any(|(x, _)| x == r)) && also(&seen)
    });
    seen
}

fn waiting(pod: &Value) -> (&str, &str) {
    let w = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    (w["reason"].as_str().unwrap_or(""), w["message"].as_str().unwrap_or(""))
}

fn pod_yaml(ns: &str, name: &str, node: &str, image: &str, secrets: &[&str]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  nodeName: {node}\n  \
         containers:\n  - {{name: app, image: '{image}', command: [sh, -c, 'echo {name} runs; exec sleep 1000']}}\n"
    );
    if !secrets.is_empty() {
        y.push_str("  imagePullSecrets:\n");
        for s in secrets {
            y.push_str(&format!("  - name: {s}\n"));
        }
    }
    y
}

#[test]
fn pods_pull_from_a_private_registry_with_their_image_pull_secrets() {
    let reg = Registry::start("cluster", true);
    let image = reg.push_busybox("private/busybox:v1");
    let c = cluster();
    let mut p = node(c, "pullsecrets");
    // The CA only: the credentials come from the pods' Secrets.
    p.extra_args.push(format!("--registry-config={}", reg.config(None).display()));
    p.start();
    c.node_ready(&p);
    let ns = "pullsecrets";
    c.namespace(ns);
    let host = reg.host();
    let server = format!("--docker-server={host}");
    let user = format!("--docker-username={USER}");
    c.kubectl(&["create", "secret", "docker-registry", "regcred", "-n", ns, &server, &user, &format!("--docker-password={PASSWORD}")]);
    c.kubectl(&["create", "secret", "docker-registry", "wrongcred", "-n", ns, &server, &user, "--docker-password=not-it"]);

    // Without credentials, with wrong ones and with a Secret that does not
    // exist: ErrImagePull, then ImagePullBackOff, with upstream's Events.
    c.apply(&pod_yaml(ns, "anonymous", &p.node, &image, &[]));
    c.apply(&pod_yaml(ns, "wrong", &p.node, &image, &["wrongcred"]));
    c.apply(&pod_yaml(ns, "ghost", &p.node, &image, &["no-such-secret"]));
    for name in ["anonymous", "wrong", "ghost"] {
        let pod = c.wait_pod(ns, name, "ImagePullBackOff", &p, |q| waiting(q).0 == "ImagePullBackOff");
        let (_, msg) = waiting(&pod);
        assert!(msg.contains("Back-off pulling image") && msg.contains("401"), "{name}: {msg}");
        assert_eq!(pod["status"]["phase"], "Pending");
        let ev = wait_events(c, &p, ns, name, &["Pulling", "Failed", "BackOff"], |ev| {
            ev.iter().any(|(r, m)| r == "Failed" && m.contains("401")) && ev.iter().any(|(r, m)| r == "Failed" && m == "Error: ErrImagePull")
        });
        assert!(ev.iter().any(|(r, m)| r == "BackOff" && m == &format!("Back-off pulling image {image:?}")), "{name}: {ev:?}");
        let failed: Vec<&String> = ev.iter().filter(|(r, m)| r == "Failed" && m.contains("401")).map(|(_, m)| m).collect();
        eprintln!("{name}: {}", failed[0]);
        assert!(failed[0].starts_with(&format!("Failed to pull image {image:?}: ")), "{failed:?}");
        match name {
            "anonymous" => assert!(failed[0].contains("wants a username and password"), "{failed:?}"),
            "wrong" => assert!(failed[0].contains(&format!("authentication failed, check the credentials in secret {ns}/wrongcred")), "{failed:?}"),
            _ => {
                assert!(
                    ev.iter().any(|(r, m)| r == "FailedToRetrieveImagePullSecret"
                        && m == "Unable to retrieve some image pull secrets (no-such-secret); attempting to pull the image may not succeed."),
                    "{ev:?}"
                );
            }
        }
    }

    // With the right Secret: pulled (once, by this pod alone), Running.
    c.apply(&pod_yaml(ns, "private", &p.node, &image, &["no-such-secret", "wrongcred", "regcred"]));
    let pod = c.wait_pod(ns, "private", "Running", &p, |q| q["status"]["phase"] == "Running" && container_running(q, "app"));
    assert_eq!(pod["status"]["containerStatuses"][0]["image"], image.as_str());
    p.wait_log(&pod, "app", 0, "private runs");
    let ev = wait_events(c, &p, ns, "private", &["Pulling", "Pulled", "Created", "Started"], |_| true);
    assert!(ev.iter().any(|(r, m)| r == "Pulling" && m == &format!("Pulling image {image:?}")), "{ev:?}");
    assert!(ev.iter().any(|(r, m)| r == "Pulled" && m.starts_with(&format!("Successfully pulled image {image:?} in "))), "{ev:?}");

    // imagePullPolicy Always (`:latest`): the restart's check at the
    // registry carries the pod's Secret too (without it: a 401, ErrImagePull).
    let latest = reg.push_busybox("private/busybox:latest");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: always, namespace: {ns}}}\nspec:\n  nodeName: {}\n  restartPolicy: Always\n  \
         imagePullSecrets: [{{name: regcred}}]\n  containers:\n  - {{name: app, image: '{latest}', command: [sh, -c, 'echo always runs']}}\n",
        p.node
    ));
    let pod = c.wait_pod(ns, "always", "a restart", &p, |q| q["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
    p.wait_log(&pod, "app", 1, "always runs");
    let log = p.picolet_log();
    assert!(log.contains(&format!("image {latest} unchanged at its registry (sha256:")), "{log}");
    assert!(!log.contains(&format!("pod {ns}/always container app: ErrImagePull")), "{log}");

    // The password is in no Event and no log line.
    for name in ["anonymous", "wrong", "ghost", "private", "always"] {
        for (_, m) in events(c, ns, name) {
            assert!(!m.contains(PASSWORD), "{m}");
        }
    }
    let log = p.picolet_log();
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{USER}:{PASSWORD}"));
    assert!(!log.contains(PASSWORD) && !log.contains(&basic), "credentials in the log:\n{log}");
}
