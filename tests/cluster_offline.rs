//! Offline autonomy: the API server goes away (this binary has a cluster of
//! its own, so stopping its API server disturbs no other test). Running pods
//! keep running, picolet retries quietly, statuses catch up when the API
//! server is back, and after a "reboot" (picolet killed, every container and
//! mount gone) the pods come back from picolet's own checkpoint, with their
//! ConfigMaps and Secrets as last seen.

mod common;
use common::cluster::{node, Cluster};
use serde_json::Value;
use std::time::Duration;

fn local_pod(p: &common::Picolet, name: &str) -> Option<Value> {
    p.pods()["items"].as_array()?.iter().find(|x| x["metadata"]["name"] == name).cloned()
}

fn status_of<'a>(pod: &'a Value) -> &'a Value {
    &pod["status"]["containerStatuses"][0]
}

#[test]
fn pods_survive_an_api_outage_and_a_reboot_without_it() {
    let c = Cluster::start(&format!("offline-{}", std::process::id()));
    let mut p = node(&c, "offline");
    p.start();
    c.wait("the node to be Ready", Some(&p), || {
        let n = c.get(&["node", &p.node]).unwrap_or(Value::Null);
        n["status"]["conditions"].as_array().into_iter().flatten().any(|x| x["type"] == "Ready" && x["status"] == "True")
    });
    c.namespace("edge");
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: edge}\ndata: {greeting: hello-offline}\n");
    c.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: app, namespace: edge}\nstringData: {password: s3cret}\n");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: keep, namespace: edge}}\nspec:\n  nodeName: {}\n  volumes: [{{name: cfg, configMap: {{name: app}}}}]\n  containers:\n  - name: app\n    image: busybox\n    command: [sh, -c, 'echo greeting=$(cat /cfg/greeting) password=$PASSWORD; exec sleep 100000']\n    env: [{{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: app, key: password}}}}}}]\n    volumeMounts: [{{name: cfg, mountPath: /cfg}}]\n",
        p.node
    ));
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: flaky, namespace: edge}}\nspec:\n  nodeName: {}\n  containers:\n  - {{name: app, image: busybox, command: [sh, -c, 'echo up; sleep 1; exit 1']}}\n",
        p.node
    ));
    let keep = c.wait_pod("edge", "keep", "Running", &p, |pod| status_of(pod)["state"]["running"].is_object());
    p.wait_log(&keep, "app", 0, "greeting=hello-offline password=s3cret");
    let keep_id = status_of(&keep)["containerID"].clone();

    // The API server goes away.
    let log_before = p.picolet_log().lines().count();
    c.apiserver("stop");
    let flaky_before = local_pod(&p, "flaky").map(|x| status_of(&x)["restartCount"].as_i64().unwrap_or(0)).unwrap_or(0);
    // Local work goes on: the crash-looping pod is restarted again. Its
    // back-off doubles (10, 20, 40, 80 s...), so how long the next restart
    // takes depends on how long stopping the API server took.
    p.wait_until_within("flaky to restart while offline", Duration::from_secs(200), || {
        local_pod(&p, "flaky").is_some_and(|x| status_of(&x)["restartCount"].as_i64().unwrap_or(0) > flaky_before)
    });
    // ...the healthy one is left alone...
    let keep_now = local_pod(&p, "keep").expect("keep is still known");
    assert_eq!(status_of(&keep_now)["containerID"], keep_id, "a running pod was restarted while offline");
    assert_eq!(status_of(&keep_now)["restartCount"], 0);
    // ...and the unreachable API server costs a few log lines, not one per retry.
    let log = p.picolet_log();
    let warnings: Vec<&str> = log.lines().skip(log_before).filter(|l| l.contains(" WARN ")).collect();
    assert!(!warnings.is_empty(), "the outage is reported");
    assert!(warnings.len() <= 12, "log flood while offline:\n{}", warnings.join("\n"));

    // Back: the statuses written while offline catch up.
    c.apiserver("start");
    let local = local_pod(&p, "flaky").unwrap();
    let restarts = status_of(&local)["restartCount"].as_i64().unwrap();
    c.wait_pod("edge", "flaky", "the offline restarts to be reported", &p, |pod| status_of(pod)["restartCount"].as_i64().unwrap_or(0) >= restarts);
    assert!(p.picolet_log().contains("the API server answers again"));

    // A reboot while the API server is away: picolet dies, every container
    // and mount goes; picolet comes back with no API server to ask.
    c.apiserver("stop");
    p.kill();
    common::cleanup(&p.root);
    p.start();
    let back = {
        let mut found = Value::Null;
        p.wait_until("keep to run again from the checkpoint", || {
            found = local_pod(&p, "keep").unwrap_or(Value::Null);
            status_of(&found)["state"]["running"].is_object() && status_of(&found)["containerID"] != keep_id
        });
        found
    };
    let restart = status_of(&back)["restartCount"].as_u64().unwrap() as u32;
    p.wait_log(&back, "app", restart, "greeting=hello-offline password=s3cret");
    c.apiserver("start");
}
