//! The consumer side of the local object store: a pod whose volumes and env
//! come from ConfigMaps, Secrets, a service-account token and Services that
//! the test stores under `<root>/objects` the way the API fetcher would
//! (the documented file layout), and sees updates through the `..data` swap.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;

/// Writes a store file as the fetcher does: 0600, temp file then rename.
fn put(p: &Picolet, rel: &str, v: Value) {
    use std::os::unix::fs::OpenOptionsExt;
    let path = p.root.join("objects").join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).unwrap();
    std::io::Write::write_all(&mut f, v.to_string().as_bytes()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

fn app_config(greeting: &str, conf: &str, rv: &str) -> Value {
    json!({"metadata": {"name": "app", "namespace": "default", "resourceVersion": rv},
           "data": {"greeting": greeting, "app.conf": conf, "MODE": "prod"}})
}

fn waiting<'a>(pod: &'a Value, c: &str) -> (&'a str, &'a str) {
    let w = &container(pod, c)["state"]["waiting"];
    (w["reason"].as_str().unwrap_or(""), w["message"].as_str().unwrap_or(""))
}

fn mounts_under(root: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let fstype = f.iter().skip_while(|x| **x != "-").nth(1)?;
            f[4].starts_with(root.to_str()?).then(|| (f[4].to_string(), fstype.to_string()))
        })
        .collect()
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: apivol, labels: {app: demo, tier: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    resources: {limits: {memory: 64Mi, cpu: 500m}}
    command: [sh, -c]
    args:
    - |
      sa=/var/run/secrets/kubernetes.io/serviceaccount
      echo "cfg greeting=$(cat /etc/cfg/greeting) conf=$(cat /etc/cfg/conf/app.conf) confmode=$(stat -L -c %a /etc/cfg/conf/app.conf) gmode=$(stat -L -c %a /etc/cfg/greeting) link=$(readlink /etc/cfg/greeting)"
      echo "sec password=$(cat /etc/sec/password) user=$(cat /etc/sec/user) mode=$(stat -L -c %a /etc/sec/password)"
      echo "info labels=$(tr '\n' ',' </etc/info/labels) mem=$(cat /etc/info/mem)"
      echo "sa token=$(cat $sa/token) ns=$(cat $sa/namespace) ca=$(head -n1 $sa/ca.crt) mode=$(stat -L -c %a $sa/token)"
      echo "env GREETING=$GREETING DB_PASSWORD=$DB_PASSWORD OPT=${MISSING_OPT-unset} MEM_MI=$MEM_MI CPU_M=$CPU_M CFG_MODE=$CFG_MODE CFG_greeting=$CFG_greeting"
      echo "svc $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $KUBERNETES_PORT_443_TCP redis=$REDIS_SERVICE_HOST:$REDIS_SERVICE_PORT"
      touch /etc/cfg/x 2>/dev/null && echo "ro cfg=rw" || echo "ro cfg=ro"
      awk '$2 == "/etc/sec" || $2 == "/etc/cfg" { print "mount", $2, $3, substr($4, 1, 2) }' /proc/mounts
      old=$(cat /etc/cfg/greeting)
      while [ "$(cat /etc/cfg/greeting)" = "$old" ]; do sleep 0.2; done
      echo "updated greeting=$(cat /etc/cfg/greeting) conf=$(cat /etc/cfg/conf/app.conf)"
      exec sleep 1000
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: app, key: greeting}}}
    - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
    - {name: MISSING_OPT, valueFrom: {configMapKeyRef: {name: app, key: nope, optional: true}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    envFrom:
    - {prefix: CFG_, configMapRef: {name: app}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec}
    - {name: info, mountPath: /etc/info}
    - {name: kube-api-access-abcde, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
  - name: late
    image: busybox
    command: [sh, -c, 'echo "late=$LATE"; exec sleep 1000']
    env:
    - {name: LATE, valueFrom: {secretKeyRef: {name: db, key: late}}}
  volumes:
  - name: cfg
    configMap: {name: app, items: [{key: greeting, path: greeting}, {key: app.conf, path: conf/app.conf, mode: 0600}]}
  - name: sec
    secret: {secretName: db, defaultMode: 0400}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
  - name: kube-api-access-abcde
    projected:
      defaultMode: 420
      sources:
      - serviceAccountToken: {expirationSeconds: 3607, path: token}
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
      - downwardAPI: {items: [{path: namespace, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}]}
"#;

#[test]
fn configmap_secret_downward_projected_volumes_and_env_from_the_store() {
    let mut p = Picolet::new("apivol");
    // What the fetcher would have stored (the ConfigMap "app" and the token come later).
    put(&p, "default/secret/db.json", json!({"metadata": {"name": "db", "namespace": "default", "resourceVersion": "4"},
        "data": {"password": "czNjcmV0", "user": "YWRtaW4="}}));
    put(&p, "default/configmap/kube-root-ca.crt.json", json!({"metadata": {"name": "kube-root-ca.crt", "namespace": "default"},
        "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"}}));
    put(&p, "default/services.json", json!([
        {"name": "kubernetes", "clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
        {"name": "redis", "clusterIP": "10.96.0.7", "ports": [{"port": 6379, "protocol": "TCP"}]}]));
    p.write_manifest("apivol.yaml", MANIFEST);
    p.start();

    // A required object missing from the store: the pod waits and says why.
    let pod = p.wait_pod("apivol", "the missing configmap reported", |q| waiting(q, "c").1.contains("not found"));
    assert_eq!(waiting(&pod, "c"), ("ContainerCreating", "volume cfg: configmap \"app\" not found"));
    put(&p, "default/configmap/app.json", app_config("hello", "port=80\n", "1"));
    let pod = p.wait_pod("apivol", "the missing token reported", |q| waiting(q, "c").1.contains("token"));
    assert_eq!(
        waiting(&pod, "c").1,
        "volume kube-api-access-abcde: failed to fetch token: no token for serviceaccount \"default/default\" in the local object store yet"
    );
    // The token, stored for this pod's UID: <ns>/token/<uid>/<sa>/<sha256(audience)[..8]>-<expirationSeconds>.json
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let token_file = format!("default/token/{uid}/default/e3b0c44298fc1c14-3607.json");
    put(&p, &token_file, json!({"serviceAccountName": "default", "expirationSeconds": 3607, "token": "eyJhbGciOiJSUzI1NiJ9.one.sig",
        "expirationTimestamp": "2099-01-01T00:00:00Z", "storedAt": "2025-01-01T00:00:00Z"}));

    let pod = p.wait_pod("apivol", "c running", |q| running(q, "c"));
    let lines = p.wait_log(&pod, "c", 0, "mount /etc/sec");
    let line = |prefix: &str| lines.iter().find(|l| l.starts_with(prefix)).cloned().unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"));
    assert_eq!(line("cfg "), "cfg greeting=hello conf=port=80 confmode=600 gmode=644 link=..data/greeting");
    assert_eq!(line("sec "), "sec password=s3cret user=admin mode=400");
    assert_eq!(line("info "), "info labels=app=\"demo\",tier=\"web\" mem=64", "no newline after the last label, as upstream");
    assert_eq!(line("sa "), "sa token=eyJhbGciOiJSUzI1NiJ9.one.sig ns=default ca=-----BEGIN CERTIFICATE----- mode=644");
    assert_eq!(line("env "), "env GREETING=hello DB_PASSWORD=s3cret OPT=unset MEM_MI=64 CPU_M=500 CFG_MODE=prod CFG_greeting=hello");
    assert_eq!(line("svc "), "svc 10.96.0.1:443 tcp://10.96.0.1:443 redis=10.96.0.7:6379");
    assert_eq!(line("ro "), "ro cfg=ro", "API-backed volumes are read-only");
    assert_eq!(line("mount /etc/sec"), "mount /etc/sec tmpfs ro", "secrets on a tmpfs");
    assert!(line("mount /etc/cfg").ends_with(" ro"), "{lines:?}");

    // A container whose env needs a key that isn't there waits in CreateContainerConfigError...
    assert_eq!(waiting(&pod, "late"), ("CreateContainerConfigError", "couldn't find key late in Secret default/db"));
    // ...until the key arrives.
    put(&p, "default/secret/db.json", json!({"metadata": {"name": "db", "namespace": "default", "resourceVersion": "5"},
        "data": {"password": "czNjcmV0", "user": "YWRtaW4=", "late": "b24tdGltZQ=="}}));
    let pod = p.wait_pod("apivol", "late running", |q| running(q, "late"));
    p.wait_log(&pod, "late", 0, "late=on-time");

    // An updated ConfigMap reaches the running container through the ..data
    // swap, within the Manager's 10 s check of running pods.
    let vol = p.root.join(format!("pods/{uid}/volumes/kubernetes.io~configmap/cfg"));
    let before = std::fs::read_link(vol.join("..data")).unwrap();
    put(&p, "default/configmap/app.json", app_config("bonjour", "port=8080\n", "2"));
    let lines = p.wait_log(&pod, "c", 0, "updated ");
    assert!(lines.contains(&"updated greeting=bonjour conf=port=8080".to_string()), "{lines:#?}");
    let after = std::fs::read_link(vol.join("..data")).unwrap();
    assert_ne!(before, after);
    let versions: Vec<String> = std::fs::read_dir(&vol)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    assert_eq!(versions, [after.to_string_lossy().into_owned()], "only the current version is kept");
    assert_eq!(container(&p.pod("apivol").unwrap(), "c")["restartCount"], 0, "updated in place, no restart");

    // Secrets and the token volume live on tmpfs mounts, gone with the pod.
    let pod_dir = p.root.join(format!("pods/{uid}"));
    let mounts = mounts_under(&pod_dir);
    for plugin in ["kubernetes.io~secret/sec", "kubernetes.io~projected/kube-api-access-abcde"] {
        assert!(mounts.iter().any(|(m, t)| m.ends_with(plugin) && t == "tmpfs"), "{plugin} not on tmpfs: {mounts:?}");
    }
    p.remove_manifest("apivol.yaml");
    p.wait_gone("apivol");
    assert_eq!(mounts_under(&pod_dir), vec![], "volumes unmounted");
    assert!(!pod_dir.exists());
}
