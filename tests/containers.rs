//! What a container sees: shared pod namespaces, managed /etc files, env
//! expansion and fieldRefs, working dir, security context, volumes.

mod common;
use common::*;

#[test]
fn pod_containers_share_network_ipc_uts_and_see_managed_files() {
    let mut p = Picolet::new("namespaces");
    p.write_manifest(
        "pair.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: pair}
spec:
  hostAliases: [{ip: "10.1.2.3", hostnames: [db.local]}]
  containers:
  - name: a
    image: busybox
    command: [sh, -c, "echo net=$(readlink /proc/self/ns/net) ipc=$(readlink /proc/self/ns/ipc) uts=$(readlink /proc/self/ns/uts); echo host=$(hostname) file=$(cat /etc/hostname); cat /etc/hosts; echo resolv=$(grep -c . /etc/resolv.conf); exec sleep 1000"]
  - name: b
    image: busybox
    command: [sh, -c, "echo net=$(readlink /proc/self/ns/net) ipc=$(readlink /proc/self/ns/ipc) uts=$(readlink /proc/self/ns/uts); exec sleep 1000"]
"#,
    );
    p.start();
    let pod = p.wait_pod("pair", "Running", |q| running(q, "a") && running(q, "b"));
    let a = p.wait_log(&pod, "a", 0, "resolv=");
    let b = p.wait_log(&pod, "b", 0, "net=");
    let ns = |lines: &[String]| lines.iter().find(|l| l.starts_with("net=")).unwrap().clone();
    assert_eq!(ns(&a), ns(&b), "same network, IPC and UTS namespaces");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(!ns(&a).contains(host_net.to_str().unwrap()), "not the host's network namespace");
    assert!(a.contains(&format!("host=pair-{0} file=pair-{0}", p.node)), "{a:?}");
    // dnsPolicy ClusterFirst with no cluster DNS falls back to the node's resolv.conf, as upstream.
    let host_lines = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default().lines().filter(|l| !l.is_empty()).count();
    assert!(a.contains(&format!("resolv={host_lines}")), "{a:?}");
    assert!(a.iter().any(|l| l.contains("10.1.2.3") && l.contains("db.local")), "hostAliases in /etc/hosts: {a:?}");
    assert!(a.iter().any(|l| l.contains("Kubernetes-managed hosts file")), "{a:?}");
}

#[test]
fn host_network_pod_uses_the_node_network() {
    let mut p = Picolet::new("hostnet");
    p.write_manifest(
        "hostnet.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hostnet}\nspec:\n  hostNetwork: true\n  containers: [{name: c, image: busybox, command: [sh, -c, 'echo net=$(readlink /proc/self/ns/net); exec sleep 1000']}]\n",
    );
    p.start();
    let pod = p.wait_pod("hostnet", "Running", |q| running(q, "c"));
    let lines = p.wait_log(&pod, "c", 0, "net=");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(lines[0].contains(host_net.to_str().unwrap()), "{lines:?}");
    assert_eq!(pod["status"]["podIP"], pod["status"]["hostIP"]);
}

#[test]
fn env_expansion_field_refs_working_dir_and_security_context() {
    let mut p = Picolet::new("env");
    p.write_manifest(
        "env.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: env, labels: {tier: edge}}
spec:
  containers:
  - name: c
    image: busybox
    workingDir: /tmp
    command: [sh, -c]
    args: ["echo greeting=$(GREETING) literal=$LITERAL unknown=$UNKNOWN; echo pod=$POD_NAME ns=$POD_NS tier=$TIER; echo cwd=$(pwd) uid=$(id -u) gid=$(id -g); touch /rootfs-test 2>/dev/null && echo rootfs=rw || echo rootfs=ro; echo oom=$(cat /proc/self/oom_score_adj); grep CapEff /proc/self/status; exec sleep 1000"]
    env:
    - {name: NAME, value: world}
    - {name: GREETING, value: "hello $(NAME)"}
    - {name: LITERAL, value: "$$(GREETING)"}
    - {name: UNKNOWN, value: "$(NOPE)"}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    securityContext:
      runAsUser: 1000
      runAsGroup: 1000
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
"#,
    );
    p.start();
    let pod = p.wait_pod("env", "Running", |q| running(q, "c"));
    let lines = p.wait_log(&pod, "c", 0, "CapEff");
    assert!(lines.contains(&"greeting=hello world literal=$(GREETING) unknown=$(NOPE)".to_string()), "{lines:?}");
    assert!(lines.contains(&format!("pod=env-{} ns=default tier=edge", p.node)), "{lines:?}");
    assert!(lines.contains(&"cwd=/tmp uid=1000 gid=1000".to_string()), "{lines:?}");
    assert!(lines.contains(&"rootfs=ro".to_string()), "{lines:?}");
    // BestEffort: the OOM killer's first choice, not picolet's own -999.
    assert!(lines.contains(&"oom=1000".to_string()), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")), "{lines:?}");
}

#[test]
fn volumes_empty_dir_memory_and_host_path() {
    let mut p = Picolet::new("volumes");
    let host = p.base.join("host-data");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("greeting"), "from the host\n").unwrap();
    p.write_manifest(
        "vols.yaml",
        &r#"
apiVersion: v1
kind: Pod
metadata: {name: vols}
spec:
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
  - {name: data, hostPath: {path: HOST, type: Directory}}
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, "echo shared-hello > /shared/msg; exec sleep 1000"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: reader
    image: busybox
    command: [sh, -c, "while [ ! -s /shared/msg ]; do sleep 0.1; done; cat /shared/msg; cat /data/greeting; touch /data/x 2>/dev/null && echo data=rw || echo data=ro; df -k /mem | tail -1; exec sleep 1000"]
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: data, mountPath: /data, readOnly: true}
    - {name: mem, mountPath: /mem}
"#
        .replace("HOST", host.to_str().unwrap()),
    );
    p.write_manifest(
        "badhost.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: badhost}\nspec:\n  volumes: [{name: d, hostPath: {path: /nonexistent/picolet-test, type: Directory}}]\n  containers: [{name: c, image: busybox, command: [sleep, '1000'], volumeMounts: [{name: d, mountPath: /d}]}]\n",
    );
    p.start();
    let pod = p.wait_pod("vols", "Running", |q| running(q, "reader"));
    let lines = p.wait_log(&pod, "reader", 0, "/mem");
    assert!(lines.contains(&"shared-hello".to_string()), "{lines:?}");
    assert!(lines.contains(&"from the host".to_string()), "{lines:?}");
    assert!(lines.contains(&"data=ro".to_string()), "{lines:?}");
    let df = lines.iter().find(|l| l.ends_with("/mem")).unwrap();
    assert!(df.split_whitespace().nth(1) == Some("8192"), "8Mi tmpfs: {df}");
    let bad = p.wait_pod("badhost", "a hostPath error", |q| {
        container(q, "c")["state"]["waiting"]["message"].as_str().unwrap_or("").contains("/nonexistent/picolet-test")
    });
    assert_eq!(phase(&bad), "Pending");
}
