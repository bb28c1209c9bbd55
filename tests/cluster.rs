//! picolet as a node of a real cluster (tests/cluster/: etcd, kube-apiserver
//! with Node,RBAC authorization and NodeRestriction, controller-manager,
//! scheduler), driven and checked with the real kubectl.

mod common;
use common::cluster::{Cluster, cluster, container_running, join, node};
use common::Picolet;
use serde_json::Value;

fn condition<'a>(obj: &'a Value, t: &str) -> &'a str {
    obj["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == t)).and_then(|c| c["status"].as_str()).unwrap_or("")
}

fn node_ready(c: &Cluster, p: &Picolet) -> Value {
    let mut n = Value::Null;
    c.wait(&format!("node {} Ready", p.node), Some(p), || {
        n = c.get(&["node", &p.node]).unwrap_or(Value::Null);
        condition(&n, "Ready") == "True"
    });
    n
}

struct Event {
    reason: String,
    message: String,
    count: i64,
}

/// The Events about one object, as `kubectl get events` lists them.
fn events(c: &Cluster, ns: &str, name: &str) -> Vec<Event> {
    let sel = format!("involvedObject.name={name}");
    let list = c.get(&["events", "-n", ns, "--field-selector", &sel]).unwrap_or(Value::Null);
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_string();
    list["items"].as_array().into_iter().flatten().map(|e| Event { reason: s(e, "reason"), message: s(e, "message"), count: e["count"].as_i64().unwrap_or(0) }).collect()
}

#[test]
fn node_registers_reports_status_and_renews_its_lease() {
    let c = cluster();
    let mut p = node(c, "reg");
    p.extra_args.push("--node-labels=picolet.dev/board=pi4,node.kubernetes.io/role-hint=edge".into());
    p.start();
    let n = node_ready(c, &p);
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"].as_str().is_some(), true);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["picolet.dev/board"], "pi4");
    let st = &n["status"];
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&n, t), "False", "{t}");
    }
    let types: Vec<&str> = st["addresses"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["InternalIP", "Hostname"]);
    assert_eq!(st["capacity"]["pods"], "110");
    for k in ["cpu", "memory", "ephemeral-storage"] {
        assert!(st["capacity"][k].is_string() && st["allocatable"][k].is_string(), "{k}: {st}");
    }
    let info = &st["nodeInfo"];
    assert!(info["containerRuntimeVersion"].as_str().unwrap().starts_with("runc://"), "{info}");
    assert!(info["kubeletVersion"].as_str().unwrap().starts_with("v1."), "{info}");
    assert!(!info["bootID"].as_str().unwrap().is_empty());
    assert_eq!(info["architecture"], "amd64");
    assert_eq!(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], p.server_port);
    // kubectl shows it Ready; the controller-manager lifts the not-ready taint.
    let table = c.kubectl(&["get", "node", &p.node]);
    assert!(table.contains(" Ready "), "{table}");
    c.wait("the not-ready taint to go", Some(&p), || {
        let n = c.get(&["node", &p.node]).unwrap_or(Value::Null);
        !n["spec"]["taints"].as_array().into_iter().flatten().any(|t| t["key"] == "node.kubernetes.io/not-ready")
    });
    // The lease is held by the node and renewed.
    let lease = c.get(&["lease", "-n", "kube-node-lease", &p.node]).expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], p.node.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    c.wait("the lease to be renewed", Some(&p), || {
        let l = c.get(&["lease", "-n", "kube-node-lease", &p.node]).unwrap_or(Value::Null);
        l["spec"]["renewTime"].as_str().is_some_and(|t| t != first)
    });
    // A restarted picolet adopts its Node instead of failing to register.
    p.kill();
    p.start();
    c.wait("re-registration to be logged", Some(&p), || p.picolet_log().contains("already registered"));
    node_ready(c, &p);
}

#[test]
fn kubeconfig_with_inline_data_and_with_a_bearer_token() {
    let c = cluster();
    let mut p = Picolet::new("inline");
    let kc = c.node_kubeconfig(&p.node, true);
    join(c, &mut p, &kc);
    p.start();
    node_ready(c, &p);

    let mut t = Picolet::new("token");
    t.node = "token-node".into();
    let kc = c.token_kubeconfig(&t.node);
    join(c, &mut t, &kc);
    t.start();
    node_ready(c, &t);
}

#[test]
fn bound_and_scheduled_pods_run_and_report_status() {
    let c = cluster();
    let mut p = node(c, "pods");
    p.start();
    node_ready(c, &p);
    c.namespace("pods");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: bound, namespace: pods}}\nspec:\n  nodeName: {}\n  containers:\n  - {{name: app, image: busybox, command: [sh, -c, 'echo hello from bound; exec sleep 1000']}}\n",
        p.node
    ));
    // Placed by kube-scheduler (the selector keeps it off other tests' nodes).
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: scheduled, namespace: pods}}\nspec:\n  nodeSelector: {{kubernetes.io/hostname: {}}}\n  containers:\n  - {{name: app, image: busybox, command: [sleep, '1000']}}\n",
        p.node
    ));
    for name in ["bound", "scheduled"] {
        let pod = c.wait_pod("pods", name, "Running", &p, |pod| pod["status"]["phase"] == "Running" && container_running(pod, "app"));
        assert_eq!(pod["spec"]["nodeName"], p.node.as_str());
        assert_eq!(condition(&pod, "Ready"), "True");
        assert_eq!(condition(&pod, "PodScheduled"), "True", "the scheduler's condition is kept");
        let cs = &pod["status"]["containerStatuses"][0];
        assert_eq!(cs["restartCount"], 0);
        assert!(cs["containerID"].as_str().unwrap().starts_with("runc://"), "{cs}");
        assert!(pod["status"]["hostIP"].is_string());
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }
    let pod = c.get(&["pod", "-n", "pods", "bound"]).unwrap();
    p.wait_log(&pod, "app", 0, "hello from bound");

    // Events with upstream reasons, as `kubectl get events` shows them.
    let reasons = |name: &str| -> Vec<(String, i64)> { events(c, "pods", name).into_iter().map(|e| (e.reason, e.count)).collect() };
    c.wait("Pulled, Created and Started events", Some(&p), || {
        let r: Vec<String> = reasons("bound").into_iter().map(|(r, _)| r).collect();
        ["Pulled", "Created", "Started"].iter().all(|want| r.iter().any(|x| x == want))
    });
    // The token and CA of the default kube-api-access volume arriving a few
    // milliseconds after the pod is no FailedMount.
    assert!(!reasons("bound").iter().any(|(r, _)| r == "FailedMount"), "{:?}", reasons("bound"));
    // A crash loop: BackOff is one Event whose count rises, not a flood.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: crasher, namespace: pods}}\nspec:\n  nodeName: {}\n  containers:\n  - {{name: app, image: busybox, command: [sh, -c, 'exit 3']}}\n",
        p.node
    ));
    c.wait("a BackOff event counted twice", Some(&p), || reasons("crasher").iter().any(|(r, n)| r == "BackOff" && *n >= 2));
    let backoffs = reasons("crasher").iter().filter(|(r, _)| r == "BackOff").count();
    assert_eq!(backoffs, 1, "BackOff events are aggregated into one object");
    let pod = c.get(&["pod", "-n", "pods", "crasher"]).unwrap();
    let cs = &pod["status"]["containerStatuses"][0];
    assert!(cs["restartCount"].as_i64().unwrap() >= 2, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
}

#[test]
fn graceful_deletion_then_final_delete() {
    let c = cluster();
    let mut p = node(c, "del");
    p.start();
    node_ready(c, &p);
    c.namespace("del");
    let mark = p.base.join("mark");
    std::fs::create_dir_all(&mark).unwrap();
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: graceful, namespace: del}}
spec:
  nodeName: {}
  terminationGracePeriodSeconds: 30
  volumes: [{{name: mark, hostPath: {{path: {}}}}}]
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'trap "echo TERM >> /mark/order; exit 0" TERM; echo ready; while true; do sleep 0.1; done']
    lifecycle: {{preStop: {{exec: {{command: [sh, -c, 'echo preStop >> /mark/order']}}}}}}
    volumeMounts: [{{name: mark, mountPath: /mark}}]
"#,
        p.node,
        mark.display()
    ));
    let pod = c.wait_pod("del", "graceful", "Running", &p, |pod| container_running(pod, "app"));
    p.wait_log(&pod, "app", 0, "ready");
    c.kubectl(&["delete", "pod", "-n", "del", "graceful", "--wait=false"]);
    // picolet runs preStop, sends SIGTERM, and removes the object for good
    // (grace 0 with a UID precondition) once nothing of it runs.
    c.wait("the pod object to be deleted", Some(&p), || c.try_kubectl(&["get", "pod", "-n", "del", "graceful"]).is_none());
    assert!(p.picolet_log().contains("is being deleted"));
    let order = std::fs::read_to_string(mark.join("order")).unwrap_or_default();
    assert_eq!(order, "preStop\nTERM\n", "preStop, then the stop signal");

    // A pod bound elsewhere never runs here; one whose binding vanishes is stopped.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: forced, namespace: del}}\nspec:\n  nodeName: {}\n  containers:\n  - {{name: app, image: busybox, command: [sleep, '1000']}}\n",
        p.node
    ));
    c.wait_pod("del", "forced", "Running", &p, |pod| container_running(pod, "app"));
    c.kubectl(&["delete", "pod", "-n", "del", "forced", "--grace-period=0", "--force"]);
    p.wait_until("the force-deleted pod's containers to stop", || p.picolet_log().contains("pod del/forced stopped and removed"));

    // The largest grace period the API server takes, in the spec and from
    // `kubectl delete --grace-period`: the pod stops when its container
    // honours SIGTERM, and the node stays up and Ready.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: patient, namespace: del}}\nspec:\n  nodeName: {}\n  terminationGracePeriodSeconds: 9223372036854775807\n  containers:\n  - {{name: app, image: busybox, command: [sh, -c, 'trap \"exit 0\" TERM; while :; do sleep 1; done']}}\n",
        p.node
    ));
    c.wait_pod("del", "patient", "Running", &p, |pod| container_running(pod, "app"));
    c.kubectl(&["delete", "pod", "-n", "del", "patient", "--grace-period=9223372036854775806", "--wait=false"]);
    c.wait("the pod object to be deleted", Some(&p), || c.try_kubectl(&["get", "pod", "-n", "del", "patient"]).is_none());
    assert!(p.picolet_log().contains("pod del/patient: stopping 1 container(s), grace period 9223372036854775806s"), "{}", p.picolet_log());
    assert_eq!(condition(&node_ready(c, &p), "Ready"), "True");
}

#[test]
fn static_pods_get_mirror_pods_recreated_after_deletion() {
    let c = cluster();
    let mut p = node(c, "mirror");
    p.write_manifest("web.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, labels: {app: web}}\nspec:\n  containers:\n  - {name: app, image: busybox, command: [sleep, '1000']}\n");
    p.start();
    let name = format!("web-{}", p.node);
    let mirror = c.wait_pod("default", &name, "a running mirror pod", &p, |pod| container_running(pod, "app"));
    let ann = &mirror["metadata"]["annotations"];
    assert!(ann["kubernetes.io/config.mirror"].is_string(), "{ann}");
    assert_eq!(ann["kubernetes.io/config.mirror"], ann["kubernetes.io/config.hash"]);
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert_eq!(mirror["spec"]["nodeName"], p.node.as_str());
    let uid = mirror["metadata"]["uid"].as_str().unwrap().to_string();
    c.kubectl(&["delete", "pod", "-n", "default", &name, "--wait=false"]);
    let again = c.wait_pod("default", &name, "a new mirror pod", &p, |pod| pod["metadata"]["uid"] != uid.as_str() && container_running(pod, "app"));
    // The static pod itself never stopped.
    assert_eq!(again["status"]["containerStatuses"][0]["restartCount"], 0);
    p.remove_manifest("web.yaml");
    c.wait("the mirror pod to go with its manifest", Some(&p), || c.try_kubectl(&["get", "pod", "-n", "default", &name]).is_none());
}

#[test]
fn a_pod_picolet_cannot_run_fails_with_a_reason_and_others_run() {
    let c = cluster();
    let mut p = node(c, "bad");
    p.start();
    node_ready(c, &p);
    c.namespace("bad");
    // An NFS volume: valid for the API server, nothing picolet can mount.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: nfs, namespace: bad}}\nspec:\n  nodeName: {}\n  volumes: [{{name: v, nfs: {{server: 10.0.0.1, path: /x}}}}]\n  containers:\n  - {{name: app, image: busybox, command: [sleep, '1000'], volumeMounts: [{{name: v, mountPath: /v}}]}}\n",
        p.node
    ));
    let big = "x".repeat(200 << 10);
    c.create(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  namespace: bad\n  annotations: {{huge: {big}}}\nspec:\n  nodeName: {}\n  containers:\n  - {{name: app, image: busybox, command: [sleep, '1000']}}\n",
        p.node
    ));
    let pod = c.wait_pod("bad", "nfs", "Failed", &p, |pod| pod["status"]["phase"] == "Failed");
    assert_eq!(pod["status"]["reason"], "UnsupportedPodSpec");
    assert!(pod["status"]["message"].as_str().unwrap().contains("spec.volumes[0].nfs: Unsupported value"), "{}", pod["status"]);
    let events = c.kubectl(&["get", "events", "-n", "bad", "--field-selector", "involvedObject.name=nfs"]);
    assert!(events.contains("UnsupportedPodSpec"), "{events}");
    c.wait_pod("bad", "big", "Running", &p, |pod| container_running(pod, "app"));
}

#[test]
fn configmaps_secrets_downward_api_and_tokens_reach_pods() {
    let c = cluster();
    let mut p = node(c, "objects");
    p.start();
    node_ready(c, &p);
    c.namespace("objs");
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: objs}\ndata: {mode: fast, 'app.conf': 'port=80'}\n");
    c.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: objs}\nstringData: {user: admin, token: t0ps3cret}\n");
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: backend, namespace: objs}\nspec:\n  ports: [{port: 8080, protocol: TCP}]\n");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: consumer, namespace: objs, labels: {{tier: edge}}}}
spec:
  nodeName: {}
  volumes:
  - {{name: cfg, configMap: {{name: settings, items: [{{key: app.conf, path: conf/app.conf}}]}}}}
  - {{name: sec, secret: {{secretName: creds, defaultMode: 0400}}}}
  - name: info
    downwardAPI:
      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo "mode=$MODE user=$CRED_user node=$NODE backend=$BACKEND_SERVICE_PORT kube=$KUBERNETES_SERVICE_HOST"; cat /cfg/conf/app.conf; echo; stat -L -c "secret-mode=%a" /sec/token; cat /info/labels; echo; echo ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace); test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-present; test -s /var/run/secrets/kubernetes.io/serviceaccount/ca.crt && echo ca-present; while true; do cat /cfg/conf/app.conf; echo; sleep 1; done']
    env:
    - {{name: MODE, valueFrom: {{configMapKeyRef: {{name: settings, key: mode}}}}}}
    - {{name: MISSING, valueFrom: {{configMapKeyRef: {{name: nope, key: x, optional: true}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    envFrom: [{{prefix: CRED_, secretRef: {{name: creds}}}}]
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: sec, mountPath: /sec}}
    - {{name: info, mountPath: /info}}
"#,
        p.node
    ));
    let pod = c.wait_pod("objs", "consumer", "Running", &p, |pod| container_running(pod, "app"));
    let lines = p.wait_log(&pod, "app", 0, "ca-present");
    let text = lines.join("\n");
    for want in ["mode=fast user=admin", &format!("node={}", p.node), "backend=8080", "kube=10.96.0.1", "port=80", "secret-mode=400", "tier=\"edge\"", "ns=objs", "token-present"] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // A changed ConfigMap reaches the running container's volume.
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: objs}\ndata: {mode: fast, 'app.conf': 'port=81'}\n");
    p.wait_log(&pod, "app", 0, "port=81");
    let pod = c.get(&["pod", "-n", "objs", "consumer"]).unwrap();
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "updated without a restart");
    // A missing ConfigMap holds the container back with upstream's reason.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: waiting, namespace: objs}}\nspec:\n  nodeName: {}\n  containers:\n  - name: app\n    image: busybox\n    command: [sleep, '1000']\n    env: [{{name: X, valueFrom: {{configMapKeyRef: {{name: later, key: k}}}}}}]\n",
        p.node
    ));
    let pod = c.wait_pod("objs", "waiting", "CreateContainerConfigError", &p, |pod| pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError");
    let msg = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("configmap \"later\" not found"), "{msg}");
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later, namespace: objs}\ndata: {k: v}\n");
    c.wait_pod("objs", "waiting", "Running once the ConfigMap exists", &p, |pod| container_running(pod, "app"));
}

#[test]
fn probe_failures_and_liveness_kills_are_events() {
    let c = cluster();
    let mut p = node(c, "unhealthy");
    p.start();
    node_ready(c, &p);
    c.namespace("probes");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sick, namespace: probes}}\nspec:\n  nodeName: {}\n  containers:\n  - name: app\n    image: busybox\n    command: [sleep, '1000']\n    livenessProbe: {{exec: {{command: [sh, -c, 'echo not today; exit 1']}}, periodSeconds: 1, failureThreshold: 2}}\n",
        p.node
    ));
    c.wait("Unhealthy and Killing events", Some(&p), || {
        let ev = events(c, "probes", "sick");
        ev.iter().any(|e| e.reason == "Unhealthy" && e.message.contains("Liveness probe failed") && e.message.contains("not today"))
            && ev.iter().any(|e| e.reason == "Killing" && e.message.contains("failed liveness probe, will be restarted"))
    });
}
