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
    command: [sh, -c, "echo shared-hello > /shared/msg; echo mine > /mine/file; exec sleep 1000"]
    env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    volumeMounts: [{name: shared, mountPath: /shared}, {name: data, mountPath: /mine, subPathExpr: "pods/$(POD_NAME)"}]
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
    // subPathExpr: made in the hostPath with its mode, named from the pod's env.
    let mine = host.join(format!("pods/vols-{}", p.node));
    p.wait_until("the writer's file under its subPathExpr", || mine.join("file").exists());
    assert_eq!(std::fs::read_to_string(mine.join("file")).unwrap(), "mine\n");
    let mode = |d: &std::path::Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d).unwrap().permissions()) & 0o7777;
    assert_eq!(mode(&mine), mode(&host));
    let bad = p.wait_pod("badhost", "a hostPath error", |q| {
        container(q, "c")["state"]["waiting"]["message"].as_str().unwrap_or("").contains("/nonexistent/picolet-test")
    });
    assert_eq!(phase(&bad), "Pending");
}

/// subPath against a pod that attacks it (issue #16, CVE-2017-1002101): a
/// sidecar keeps swapping a directory component of the other containers'
/// subPath for a symlink to a host directory while they start and restart,
/// each writing what its subPath shows into a hostPath file. None may ever
/// see the host's file; a subPath whose component already leads out is
/// refused with upstream's status. The staging mounts go with the pod, also
/// when picolet was restarted in between.
#[test]
fn a_sub_path_swapped_for_a_symlink_never_shows_the_host() {
    const VICTIMS: usize = 10;
    const STARTS: usize = 20;
    let mut p = Picolet::new("subpath-race");
    let secret = p.base.join("host-secret");
    std::fs::create_dir_all(secret.join("b")).unwrap();
    std::fs::write(secret.join("b/sentinel"), "host secret\n").unwrap();
    let results = p.base.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let victim = |i: usize| {
        format!(
            "  - name: victim-{i}\n    image: busybox\n    command: [sh, -c, 'echo \"$(ls /data)\" >> /results/seen']\n    volumeMounts: [{{name: work, mountPath: /data, subPath: a/b}}, {{name: results, mountPath: /results}}]\n"
        )
    };
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: race}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: results, hostPath: {{path: {results}, type: Directory}}}}
  initContainers:
  - name: setup
    image: busybox
    command: [sh, -c, "mkdir -p /work/a/b && echo inside > /work/a/b/marker && ln -s {secret} /work/evil"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  # a: the real directory, or a symlink to the host's directory, 20 ms each
  # in turns (a start takes longer); what picolet creates in a gap is dropped
  # on the next turn.
  - name: swapper
    image: busybox
    restartPolicy: Always
    command: [sh, -c, "cd /work; while true; do mv -T a a.real 2>/dev/null || rm -rf a; ln -sT {secret} a; usleep 20000; rm -f a; mv -T a.real a; usleep 20000; done"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: refused
    image: busybox
    command: [sh, -c, "ls /data >> /results/refused; exec sleep 1000"]
    volumeMounts: [{{name: work, mountPath: /data, subPath: evil/b}}, {{name: results, mountPath: /results}}]
{victims}"#,
        results = results.display(),
        secret = secret.display(),
        victims = (1..=VICTIMS).map(victim).collect::<String>(),
    );
    p.write_manifest("race.yaml", &manifest);
    p.start();

    let pod = p.wait_pod("race", "the subPath that leads out refused", |q| {
        container(q, "refused")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert_eq!(
        container(&pod, "refused")["state"]["waiting"]["message"],
        "failed to prepare subPath for volumeMount \"work\" of container \"refused\"",
        "{pod}"
    );
    // Each start is one more try at the race: the first of each victim, its
    // first restart (at once), then restarts backing off (10 s, 20 s...).
    let seen = || std::fs::read_to_string(results.join("seen")).unwrap_or_default();
    p.wait_until_within(&format!("{STARTS} starts of the victims"), std::time::Duration::from_secs(180), || seen().lines().count() >= STARTS);
    let seen = seen();
    assert!(seen.lines().all(|l| l == "marker" || l.is_empty()), "a container saw the host's directory:\n{seen}");
    assert!(!results.join("refused").exists(), "the refused container never ran");

    // The staging mounts outlive a picolet restart, and go with the pod.
    let staged = || mounts_under(&p.root).into_iter().filter(|m| m.contains("/volume-subpaths/")).count();
    assert!(staged() > 0, "{:?}", mounts_under(&p.root));
    p.kill();
    p.start();
    p.remove_manifest("race.yaml");
    p.wait_gone("race");
    assert_eq!(mounts_under(&p.root), Vec::<String>::new());
    assert_eq!(std::fs::read_to_string(secret.join("b/sentinel")).unwrap(), "host secret\n");
    assert_eq!(std::fs::read_dir(&secret).unwrap().count() + std::fs::read_dir(secret.join("b")).unwrap().count(), 2, "nothing made on the host");
}

fn mounts_under(root: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(root.to_str().unwrap())).map(str::to_string).collect()
}
