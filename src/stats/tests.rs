use super::*;
use crate::api::{ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod, PodStatus, Volume};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn status(name: &str, id: &str, running: Option<&str>) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        container_id: id.into(),
        state: match running {
            Some(at) => ContainerState { running: Some(ContainerStateRunning { started_at: Some(at.into()) }), ..Default::default() },
            None => ContainerState { terminated: Some(ContainerStateTerminated::default()), ..Default::default() },
        },
        ..Default::default()
    }
}

fn pod(name: &str, uid: &str, statuses: Vec<ContainerStatus>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = name.into();
    p.metadata.namespace = "ns".into();
    p.metadata.uid = uid.into();
    p.spec.volumes = vec![Volume { name: "cache".into(), ..Default::default() }];
    p.status = Some(PodStatus { start_time: Some("2024-05-01T12:00:00Z".into()), container_statuses: statuses, ..Default::default() });
    p
}

#[test]
fn running_pods_lists_running_containers_only() {
    let pods = vec![
        pod("web", "u1", vec![status("app", "runc://u1-app-0", Some("2024-05-01T12:00:05Z")), status("done", "runc://u1-done-0", None)]),
        pod("gone", "u2", vec![status("app", "runc://u2-app-0", None)]),
        pod("pending", "u3", vec![status("app", "", Some("2024-05-01T12:00:05Z"))]),
    ];
    let got = running_pods(&pods);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].pod_ref, PodRef { name: "web".into(), namespace: "ns".into(), uid: "u1".into() });
    assert_eq!(got[0].start_time, Some(t(1714564800)));
    assert_eq!(got[0].containers, vec![ContainerInfo { name: "app".into(), id: "u1-app-0".into(), started: Some(t(1714564805)) }]);
    assert_eq!(got[0].volumes, vec!["cache".to_string()]);
}

fn cpu(ns: u64) -> Option<CpuStats> {
    Some(CpuStats { time: t(1), usage_nano_cores: None, usage_core_nano_seconds: Some(ns) })
}

fn summary_with(node_ns: u64, ctr_ns: Option<u64>) -> Summary {
    let mut s = Summary::default();
    s.node.cpu = cpu(node_ns);
    if let Some(ns) = ctr_ns {
        s.pods.push(PodStats {
            pod_ref: PodRef { name: "p".into(), namespace: "ns".into(), uid: "u".into() },
            cpu: cpu(ns),
            containers: vec![ContainerStats { name: "c".into(), cpu: cpu(ns), ..Default::default() }],
            ..Default::default()
        });
    }
    s
}

#[test]
fn rates_need_two_samples_a_second_apart() {
    let mut r = Rates::new();
    let t0 = Instant::now();
    let mut s = summary_with(1_000_000_000, Some(0));
    r.apply(&mut s, t0);
    assert_eq!(s.node.cpu.as_ref().unwrap().usage_nano_cores, None, "one sample: no rate");

    // Too soon: still none, and the first sample stays the base.
    let mut s = summary_with(1_100_000_000, Some(10));
    r.apply(&mut s, t0 + Duration::from_millis(200));
    assert_eq!(s.node.cpu.as_ref().unwrap().usage_nano_cores, None);

    // 2 s later, 3 CPU-seconds more on the node: 1.5 cores. The container used 0.5 s: 0.25 cores.
    let mut s = summary_with(4_000_000_000, Some(500_000_000));
    r.apply(&mut s, t0 + Duration::from_secs(2));
    assert_eq!(s.node.cpu.as_ref().unwrap().usage_nano_cores, Some(1_500_000_000));
    assert_eq!(s.pods[0].cpu.as_ref().unwrap().usage_nano_cores, Some(250_000_000));
    assert_eq!(s.pods[0].containers[0].cpu.as_ref().unwrap().usage_nano_cores, Some(250_000_000));

    // Asked again right away: the same rate, not a noisy new one.
    let mut s = summary_with(4_000_000_001, Some(500_000_001));
    r.apply(&mut s, t0 + Duration::from_millis(2100));
    assert_eq!(s.pods[0].containers[0].cpu.as_ref().unwrap().usage_nano_cores, Some(250_000_000));

    // The container restarted: its counter went back, no rate this time.
    let mut s = summary_with(6_000_000_000, Some(1_000));
    r.apply(&mut s, t0 + Duration::from_secs(4));
    assert_eq!(s.pods[0].containers[0].cpu.as_ref().unwrap().usage_nano_cores, None);
    assert!(s.node.cpu.as_ref().unwrap().usage_nano_cores.is_some());

    // The pod went away: its samples go too.
    assert_eq!(r.samples.len(), 3);
    let mut s = summary_with(7_000_000_000, None);
    r.apply(&mut s, t0 + Duration::from_secs(6));
    assert_eq!(r.samples.keys().collect::<Vec<_>>(), ["node"]);
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn walk_counts_blocks_and_hard_links_once() {
    let dir = std::env::temp_dir().join(format!("picolet-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(walk(&dir), (0, 0));
    write(&dir.join("a/b/data"), &"x".repeat(10_000));
    std::fs::hard_link(dir.join("a/b/data"), dir.join("a/link")).unwrap();
    std::os::unix::fs::symlink("/", dir.join("a/root")).unwrap();
    let (bytes, inodes) = walk(&dir);
    // dir, a, a/b, data (once), the symlink (not followed)
    assert_eq!(inodes, 5);
    assert!((10_000..100_000).contains(&bytes), "{bytes}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A node with one pod of one running container, laid out as picolet and
/// the kernel would (a cgroup v1 host), under a temp dir.
#[test]
fn collects_a_summary_from_files() {
    let base = std::env::temp_dir().join(format!("picolet-summary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let src = Sources {
        roots: Roots { cgroup: base.join("cg"), proc: base.join("proc") },
        root: base.join("root"),
        logs_dir: base.join("logs"),
    };
    write(&src.roots.proc.join("stat"), "cpu  1000 0 500 9000 0 0 0 0 0 0\nbtime 1714000000\n");
    write(&src.roots.proc.join("meminfo"), "MemTotal: 4000 kB\nMemFree: 1000 kB\nInactive(file): 1000 kB\nAnonPages: 500 kB\n");
    write(&src.roots.proc.join("loadavg"), "0.1 0.1 0.1 1/99 5\n");
    write(&src.roots.proc.join("4242/cgroup"), "4:memory:/u1-app-0\n2:cpuacct:/u1-app-0\n");
    write(&src.roots.cgroup.join("cpuacct/u1-app-0/cpuacct.usage"), "2500000000\n");
    write(&src.roots.cgroup.join("memory/u1-app-0/memory.usage_in_bytes"), "3000000\n");
    write(&src.roots.cgroup.join("memory/u1-app-0/memory.stat"), "total_inactive_file 1000000\ntotal_rss 1500000\n");
    write(&src.roots.cgroup.join("memory/u1-app-0/memory.limit_in_bytes"), "9223372036854771712\n");
    let rec = Record { id: "u1-app-0".into(), pid: 4242, ..Default::default() };
    write(&record::dir(&src.root, "u1-app-0").join("record.json"), &serde_json::to_string(&rec).unwrap());
    write(&record::dir(&src.root, "u1-app-0").join("upper/tmp/scratch"), &"x".repeat(8192));
    write(&src.logs_dir.join("ns_web_u1/app/0.log"), "hello\n");
    write(&src.root.join("pods/u1/volumes/kubernetes.io~empty-dir/cache/f"), &"y".repeat(4096));
    // A second container whose record says it exited: listed, without figures.
    let gone = Record { id: "u1-side-0".into(), pid: 4243, ..Default::default() };
    write(&record::dir(&src.root, "u1-side-0").join("record.json"), &serde_json::to_string(&gone).unwrap());
    write(&record::dir(&src.root, "u1-side-0").join("exit.json"), "{}");

    let pods = running_pods(&[pod(
        "web",
        "u1",
        vec![status("app", "runc://u1-app-0", Some("2024-05-01T12:00:05Z")), status("side", "runc://u1-side-0", Some("2024-05-01T12:00:06Z"))],
    )]);
    let mut s = collect(&src, "n1", &pods, Detail::Full).unwrap();
    Rates::new().apply(&mut s, Instant::now());
    let v = serde_json::to_value(&s).unwrap();

    let node = &v["node"];
    assert_eq!(node["nodeName"], "n1");
    assert_eq!(node["startTime"], "2024-04-24T23:06:40Z");
    assert_eq!(node["cpu"]["usageCoreNanoSeconds"], 15_000_000_000u64);
    assert!(node["cpu"].get("usageNanoCores").is_none(), "first sample: no rate");
    assert_eq!(node["memory"]["workingSetBytes"], 2000 * 1024);
    assert_eq!(node["memory"]["availableBytes"], 2000 * 1024);
    assert!(node["fs"]["capacityBytes"].as_u64().unwrap() > 0, "{node}");
    assert!(node["runtime"]["imageFs"]["availableBytes"].is_u64(), "{node}");
    assert_eq!(node["rlimit"]["curproc"], 99);

    let p = &v["pods"][0];
    assert_eq!(p["podRef"], serde_json::json!({"name": "web", "namespace": "ns", "uid": "u1"}));
    assert_eq!(p["startTime"], "2024-05-01T12:00:00Z");
    let app = &p["containers"][0];
    assert_eq!((app["name"].as_str(), app["startTime"].as_str()), (Some("app"), Some("2024-05-01T12:00:05Z")));
    assert_eq!(app["cpu"]["usageCoreNanoSeconds"], 2_500_000_000u64);
    assert_eq!(app["memory"]["workingSetBytes"], 2_000_000);
    assert_eq!(app["memory"]["rssBytes"], 1_500_000);
    assert!(app["memory"].get("availableBytes").is_none(), "no limit: no availableBytes");
    assert!(app["rootfs"]["usedBytes"].as_u64().unwrap() >= 8192, "{app}");
    assert_eq!(app["rootfs"]["inodesUsed"], 3, "upper, tmp, scratch");
    assert!(app["logs"]["usedBytes"].as_u64().unwrap() > 0, "{app}");
    let side = &p["containers"][1];
    assert_eq!(side["name"], "side");
    assert!(side.get("cpu").is_none() && side.get("memory").is_none(), "{side}");
    assert_eq!(p["cpu"]["usageCoreNanoSeconds"], 2_500_000_000u64);
    assert_eq!(p["memory"]["workingSetBytes"], 2_000_000);
    assert_eq!(p["volume"][0]["name"], "cache");
    assert!(p["volume"][0]["usedBytes"].as_u64().unwrap() >= 4096);
    let used = |x: &serde_json::Value| x["usedBytes"].as_u64().unwrap();
    let sum = used(&app["rootfs"]) + used(&app["logs"]) + used(&side["rootfs"]) + used(&side["logs"]) + used(&p["volume"][0]);
    assert_eq!(used(&p["ephemeral-storage"]), sum);

    // CPU and memory only: no filesystems.
    let s = collect(&src, "n1", &pods, Detail::CpuAndMemory).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert!(v["node"].get("fs").is_none() && v["pods"][0].get("ephemeral-storage").is_none(), "{v}");
    assert!(v["pods"][0]["containers"][0].get("rootfs").is_none());
    assert_eq!(v["pods"][0]["containers"][0]["cpu"]["usageCoreNanoSeconds"], 2_500_000_000u64);
    std::fs::remove_dir_all(&base).unwrap();
}
