use super::rank::{self, ContainerUsage, PodUsage};
use super::*;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;

#[test]
fn defaults_are_upstreams() {
    let t = Thresholds::default();
    assert_eq!(t.flag_value(), "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%");
    assert_eq!(memory_threshold_bytes(&t, 4 * GI), 100 * MI);
}

#[test]
fn parses_the_flag_and_the_config_map() {
    let t = Thresholds::parse_flag("memory.available<1200Mi, nodefs.available<30%").unwrap();
    assert_eq!(t.0.len(), 2, "a given list replaces the defaults");
    assert_eq!(t.get(Signal::MemoryAvailable).unwrap().value, Value::Quantity(1200 * MI));
    assert_eq!(t.get(Signal::NodeFsAvailable).unwrap().value, Value::Percentage(0.30));
    assert_eq!(memory_threshold_bytes(&t, 4 * GI), 1200 * MI);
    // A percentage of capacity, through f32 as upstream.
    let p = Thresholds::parse_flag("memory.available<10%").unwrap();
    assert_eq!(memory_threshold_bytes(&p, 1000), 100);
    assert!(Thresholds::parse_flag("").unwrap().0.is_empty());
    assert_eq!(memory_threshold_bytes(&Thresholds(vec![]), GI), 0);

    let pairs = vec![("imagefs.inodesFree".to_string(), "2%".to_string()), ("memory.available".into(), "1Gi".into())];
    let t = Thresholds::from_pairs(&pairs).unwrap();
    assert_eq!(t.flag_value(), "imagefs.inodesFree<2%,memory.available<1Gi");
    // 0% and 100% are no threshold; pid.available is accepted and ignored.
    let t = Thresholds::parse_flag("nodefs.available<0%,imagefs.available<100%,pid.available<10%").unwrap();
    assert!(t.0.is_empty());
}

#[test]
fn bad_thresholds_name_the_problem() {
    let e = Thresholds::parse_flag("memory.available=100Mi").unwrap_err();
    assert!(e.to_string().contains("signal<quantity"), "{e}");
    let e = Thresholds::parse_flag("memory.free<100Mi").unwrap_err();
    assert!(e.to_string().contains("memory.free") && e.to_string().contains("nodefs.inodesFree"), "{e}");
    let e = Thresholds::parse_flag("memory.available<lots").unwrap_err();
    assert!(e.to_string().starts_with("memory.available: \"lots\""), "{e}");
    assert!(Thresholds::parse_flag("memory.available<0").is_err());
    assert!(Thresholds::parse_flag("nodefs.available<120%").is_err());
    assert!(Thresholds::parse_flag("nodefs.available<-1%").is_err());
}

fn obs(mem_cap: i64, mem_ws: i64, fs: FsReading) -> Observations {
    Observations { memory: Some((mem_cap, mem_ws)), nodefs: Some(fs), imagefs: Some(fs) }
}

fn fs(avail: i64, cap: i64, ifree: i64, inodes: i64) -> FsReading {
    FsReading { available_bytes: avail, capacity_bytes: cap, inodes_free: ifree, inodes }
}

#[test]
fn signals_from_readings_and_thresholds_met() {
    let t = Thresholds::default();
    let healthy = obs(2 * GI, GI, fs(50 * GI, 100 * GI, 900, 1000));
    assert_eq!(healthy.get(Signal::MemoryAvailable), Some(Reading { available: GI, capacity: 2 * GI }));
    assert_eq!(healthy.get(Signal::NodeFsInodesFree), Some(Reading { available: 900, capacity: 1000 }));
    assert!(thresholds_met(&t, &healthy).is_empty());

    // 90Mi available < 100Mi.
    let low_mem = obs(2 * GI, 2 * GI - 90 * MI, fs(50 * GI, 100 * GI, 900, 1000));
    let met = thresholds_met(&t, &low_mem);
    assert_eq!(met.iter().map(|t| t.signal).collect::<Vec<_>>(), vec![Signal::MemoryAvailable]);
    // Exactly at the threshold is not below it.
    assert!(thresholds_met(&t, &obs(2 * GI, 2 * GI - 100 * MI, fs(50 * GI, 100 * GI, 900, 1000))).is_empty());

    // 12% free: imagefs (15%) but not nodefs (10%); 4% inodes free.
    let disk = obs(2 * GI, GI, fs(12 * GI, 100 * GI, 40, 1000));
    let met = thresholds_met(&t, &disk);
    assert_eq!(met.iter().map(|t| t.signal).collect::<Vec<_>>(), vec![Signal::NodeFsInodesFree, Signal::ImageFsAvailable]);
    assert_eq!(starved(&met).unwrap().signal, Signal::NodeFsInodesFree);
    // Memory is acted on before disk.
    let both = obs(2 * GI, 2 * GI - MI, fs(12 * GI, 100 * GI, 900, 1000));
    assert_eq!(starved(&thresholds_met(&t, &both)).unwrap().signal, Signal::MemoryAvailable);
    // Unreadable parts are not evaluated.
    assert!(thresholds_met(&t, &Observations::default()).is_empty());
}

#[test]
fn conditions_stay_on_for_the_transition_period() {
    let t0 = Instant::now();
    let mut c = Conditions::new(Duration::from_secs(300));
    let mem = [Threshold { signal: Signal::MemoryAvailable, value: Value::Quantity(1) }];
    let disk = [Threshold { signal: Signal::ImageFsAvailable, value: Value::Percentage(0.15) }];
    assert_eq!(c.update(&[], t0), Pressure::default());
    assert_eq!(c.update(&mem, t0), Pressure { memory: true, disk: false, pid: false });
    // Cleared readings keep the condition until the period has passed.
    assert!(c.update(&[], t0 + Duration::from_secs(299)).memory);
    assert!(!c.update(&[], t0 + Duration::from_secs(300)).memory);
    let p = c.update(&disk, t0 + Duration::from_secs(400));
    assert!(p.disk && !p.memory);
    // Met again: the period starts over.
    c.update(&disk, t0 + Duration::from_secs(500));
    assert!(c.update(&[], t0 + Duration::from_secs(799)).disk);
    assert!(!c.update(&[], t0 + Duration::from_secs(800)).disk);
    // A zero period follows the readings.
    let mut z = Conditions::new(Duration::ZERO);
    assert!(z.update(&mem, t0).memory);
    assert!(!z.update(&[], t0 + Duration::from_millis(1)).memory);
}

#[test]
fn quantities_print_as_kubernetes_does() {
    assert_eq!(format_binary(100 * MI), "100Mi");
    assert_eq!(format_binary(1536 * MI), "1536Mi");
    assert_eq!(format_binary(2 * GI), "2Gi");
    assert_eq!(format_binary(94371841), "94371841");
    assert_eq!(format_binary(0), "0");
    assert_eq!(format_binary(512), "512");
    assert_eq!(format_binary(1000), "1k");
    assert_eq!(format_binary(-5 * MI), "-5Mi");
    assert_eq!(format_decimal(5000), "5k");
    assert_eq!(format_decimal(12345), "12345");
    assert_eq!(format_decimal(2_000_000), "2M");
}

fn pod(name: &str, priority: i32, memory: Option<i64>, request: i64) -> PodUsage {
    PodUsage { uid: name.into(), name: format!("default/{name}"), priority, memory, memory_request: request, ..Default::default() }
}

fn names(p: &[PodUsage]) -> Vec<&str> {
    p.iter().map(|p| p.uid.as_str()).collect()
}

#[test]
fn memory_ranking_is_over_request_then_priority_then_excess() {
    let mut pods = vec![
        pod("within", -10, Some(50 * MI), 100 * MI),
        pod("over-small", 0, Some(120 * MI), 100 * MI),
        pod("over-big", 0, Some(400 * MI), 100 * MI),
        pod("over-high-priority", 1000, Some(900 * MI), 0),
        pod("best-effort", 0, Some(10 * MI), 0),
        pod("no-stats", 5000, None, 0),
    ];
    rank::rank(&mut pods, Signal::MemoryAvailable);
    assert_eq!(names(&pods), vec!["no-stats", "over-big", "over-small", "best-effort", "over-high-priority", "within"]);
}

#[test]
fn disk_ranking_uses_disk_usage_and_requests() {
    let d = |name: &str, bytes: i64, req: i64, inodes: i64| PodUsage {
        uid: name.into(),
        disk_bytes: Some(bytes),
        disk_request: req,
        disk_inodes: Some(inodes),
        ..Default::default()
    };
    let mut pods = vec![d("quiet", 10 * MI, 0, 5000), d("writer", 70 * MI, 0, 3), d("requested", 80 * MI, 100 * MI, 10)];
    rank::rank(&mut pods, Signal::NodeFsAvailable);
    assert_eq!(names(&pods), vec!["writer", "quiet", "requested"]);
    // Inodes have no requests: the most inodes first.
    rank::rank(&mut pods, Signal::ImageFsInodesFree);
    assert_eq!(names(&pods), vec!["quiet", "requested", "writer"]);
}

#[test]
fn critical_pods_are_spared() {
    assert!(rank::evictable(&pod("app", 0, None, 0)));
    let mut s = pod("static-app", 10, None, 0);
    s.is_static = true;
    assert!(rank::evictable(&s));
    assert!(!rank::evictable(&pod("node-critical", SYSTEM_CRITICAL_PRIORITY + 1000, None, 0)));
    assert!(!rank::evictable(&pod("cluster-critical", SYSTEM_CRITICAL_PRIORITY, None, 0)));
}

#[test]
fn messages_are_upstreams() {
    let t = Thresholds::default();
    let o = obs(2 * GI, 2 * GI - 90 * MI, fs(50 * GI, 100 * GI, 900, 1000));
    let met = thresholds_met(&t, &o);
    let mut p = pod("hog", 0, Some(200 * MI), 0);
    p.containers = vec![
        ContainerUsage { name: "app".into(), memory: Some(200 * MI), ..Default::default() },
        ContainerUsage { name: "idle".into(), memory: Some(MI), memory_request: Some("64Mi".into()), ..Default::default() },
    ];
    assert_eq!(
        rank::message(Signal::MemoryAvailable, &met, &o, &p),
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi. \
         Container app was using 200Mi, request is 0, has larger consumption of memory. "
    );

    // Disk: imagefs met first; requests as written. 15% of 100Gi goes
    // through upstream's f32 percentage, hence not exactly 15Gi.
    let o = obs(2 * GI, GI, fs(12 * GI, 100 * GI, 900, 1000));
    let met = thresholds_met(&t, &o);
    p.containers = vec![ContainerUsage { name: "writer".into(), disk: Some(70 * MI), disk_request: Some("10Mi".into()), ..Default::default() }];
    assert_eq!(
        rank::message(Signal::ImageFsAvailable, &met, &o, &p),
        "The node was low on resource: ephemeral-storage. Threshold quantity: 16106128000, available: 12Gi. \
         Container writer was using 70Mi, request is 10Mi, has larger consumption of ephemeral-storage. "
    );
    // Within its request: no container named. Inodes: available in decimal form.
    p.containers[0].disk_request = Some("1Gi".into());
    assert_eq!(
        rank::message(Signal::NodeFsAvailable, &met, &o, &p),
        "The node was low on resource: ephemeral-storage. Threshold quantity: 16106128000, available: 12Gi. "
    );
    let o = obs(2 * GI, GI, fs(50 * GI, 100 * GI, 4000, 100_000));
    let met = thresholds_met(&t, &o);
    assert_eq!(rank::message(Signal::NodeFsInodesFree, &met, &o, &p), "The node was low on resource: inodes. Threshold quantity: 5000, available: 4k. ");
}

#[test]
fn pod_requests_and_readings_from_this_machine() {
    use crate::api::{Container, Pod, ResourceRequirements};
    let c = |name: &str, mem: &str| Container {
        name: name.into(),
        resources: Some(ResourceRequirements { requests: [("memory".to_string(), mem.to_string())].into(), ..Default::default() }),
        ..Default::default()
    };
    let mut p = Pod::default();
    p.spec.containers = vec![c("a", "64Mi"), c("b", "32Mi"), Container::default()];
    assert_eq!(read::pod_request(&p, "memory"), 96 * MI);
    // The largest init container wins when it asks for more than the apps together.
    p.spec.init_containers = vec![c("init", "128Mi")];
    assert_eq!(read::pod_request(&p, "memory"), 128 * MI);
    assert_eq!(read::pod_request(&p, "ephemeral-storage"), 0);
    // The largest requests a quantity takes add up without overflow.
    let max = Pod { spec: crate::api::PodSpec { containers: vec![c("a", "9223372036854775807"), c("b", "9223372036854775807")], ..Default::default() }, ..Default::default() };
    assert_eq!(read::pod_request(&max, "memory"), i64::MAX);

    let dir = std::env::temp_dir();
    let r = read::Reader { roots: Default::default(), root_dir: dir.clone(), logs_dir: dir.clone(), image_store: dir };
    let o = r.observe();
    let fs = o.nodefs.expect("statvfs of the temp dir");
    assert!(fs.capacity_bytes > 0 && fs.available_bytes <= fs.capacity_bytes);
    assert_eq!(o.nodefs, o.imagefs, "one filesystem");
    let (cap, ws) = o.memory.expect("/proc/meminfo");
    assert!(cap > 0 && ws > 0 && ws <= cap);
}
