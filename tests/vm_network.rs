//! Pod networking through the real CNI plugins (Debian's containernetworking-plugins in
//! /usr/lib/cni) and DNS, in the cgroup-v2 VM: `sudo tests/vm/suite.sh --test vm_network`.
//! Each test reads what a user sees: status podIP, traffic between pods, from the node and
//! through hostPorts, host-local's reservations, veths, and the files inside containers.

mod common;

use common::Picolet;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The default config's network and subnet (picolet's documented default pod CIDR).
const NETWORK: &str = "picolet";
const CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 88, 0, 0), 16);
const GATEWAY: &str = "10.88.0.1";

/// How long a batch of pods may take to start or go under TCG (a deadline, not a threshold).
const SLOW: Duration = Duration::from_secs(600);

/// A picolet with its own CNI conf dir (the default config gets written there) and the
/// cgroup setup the VM needs.
fn picolet(name: &str, extra: &[&str]) -> Picolet {
    let mut p = Picolet::new(name);
    p.extra_args.push(format!("--cni-conf-dir={}", p.base.join("net.d").display()));
    p.extra_args.extend(cgroup_args(name));
    p.extra_args.extend(extra.iter().map(|s| s.to_string()));
    p
}

/// `--cgroup-root=/<unique>` once picolet has it (the test itself sits in a systemd service
/// cgroup), else the documented way to run without resource management.
fn cgroup_args(name: &str) -> Vec<String> {
    let help = Command::new(common::picolet_bin()).arg("--help").output().expect("picolet --help");
    if String::from_utf8_lossy(&help.stdout).contains("--cgroup-root") {
        vec![format!("--cgroup-root=/vmnet-{name}-{}", std::process::id())]
    } else {
        vec!["--cgroups-per-qos=false".into(), "--enforce-node-allocatable=".into()]
    }
}

fn in_cidr(ip: &str) -> bool {
    let Ok(ip) = ip.parse::<Ipv4Addr>() else { return false };
    let mask = u32::MAX << (32 - CIDR.1);
    u32::from(ip) & mask == u32::from(CIDR.0) & mask
}

/// host-local's reservations for the default network: IP → container id.
fn reservations() -> BTreeMap<String, String> {
    let dir = PathBuf::from("/var/lib/cni/networks").join(NETWORK);
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.parse::<std::net::IpAddr>().is_ok() {
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.insert(name, owner.lines().next().unwrap_or("").trim().to_string());
        }
    }
    out
}

fn veths() -> BTreeSet<String> {
    let out = Command::new("ip").args(["-o", "link", "show", "type", "veth"]).output().expect("ip link");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap().to_string()).collect()
}

/// The node's network state, for failure messages.
fn diagnostics() -> String {
    let mut out = String::new();
    for cmd in [&["iptables-save"][..], &["ip", "-o", "addr"], &["ip", "route"], &["sysctl", "-a", "--pattern", "bridge-nf|ip_forward"]] {
        let o = Command::new(cmd[0]).args(&cmd[1..]).output();
        let text = o.map(|o| String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)).unwrap_or_else(|e| e.to_string());
        out.push_str(&format!("--- {}\n{text}", cmd.join(" ")));
    }
    out
}

/// One HTTP/1.0 GET; the body, or the error.
fn http_body(addr: &str, port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&format!("{addr}:{port}").parse().unwrap(), Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Polls `get` until it answers `want` (a listener may come up just after the pod runs).
fn wait_http(p: &Picolet, addr: &str, port: u16, want: &str) {
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let last = match http_body(addr, port) {
            Ok(b) if b.contains(want) => return,
            Ok(b) => b,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!("http://{addr}:{port}/ never answered {want:?}; last: {last}\n--- picolet log ---\n{}", p.picolet_log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn manifest(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 0\n{body}")
}

fn running_with_ip(pod: &Value) -> bool {
    pod["status"]["podIP"].as_str().is_some_and(|s| !s.is_empty()) && pod["status"]["containerStatuses"].as_array().is_some_and(|a| a.iter().all(|c| !c["state"]["running"].is_null()))
}

fn ip_of(pod: &Value) -> String {
    pod["status"]["podIP"].as_str().unwrap().to_string()
}

/// Waits until every pod in `names` is running with an IP; returns name → pod.
fn wait_running(p: &Picolet, names: &[String]) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + SLOW;
    loop {
        let items = p.pods()["items"].as_array().cloned().unwrap_or_default();
        let mut found = BTreeMap::new();
        for n in names {
            let full = format!("{n}-{}", p.node);
            if let Some(pod) = items.iter().find(|i| i["metadata"]["name"] == full.as_str()).filter(|i| running_with_ip(i)) {
                found.insert(n.clone(), pod.clone());
            }
        }
        if found.len() == names.len() {
            return found;
        }
        if Instant::now() > deadline {
            let missing: Vec<&String> = names.iter().filter(|n| !found.contains_key(*n)).collect();
            panic!("pods {missing:?} not running with an IP\n--- picolet log ---\n{}", p.picolet_log());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until no pod is left and every pod dir (where DEL's record lives) is gone.
fn wait_all_gone(p: &Picolet) {
    let deadline = Instant::now() + SLOW;
    loop {
        let left = p.pods()["items"].as_array().map_or(0, Vec::len);
        let dirs = std::fs::read_dir(p.root.join("pods")).map_or(0, |d| d.count());
        if left == 0 && dirs == 0 {
            return;
        }
        if Instant::now() > deadline {
            panic!("{left} pods and {dirs} pod dirs left\n--- picolet log ---\n{}", p.picolet_log());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn pod_ips_pod_to_pod_node_to_pod_and_host_port() {
    let (res_before, veth_before) = (reservations(), veths());
    let mut p = picolet("traffic", &[]);
    p.write_manifest(
        "web.yaml",
        &manifest(
            "web",
            "  containers:\n  - name: web\n    image: busybox\n    command: [httpd, -f, -p, \"8080\", -h, /var/www]\n    \
             ports:\n    - containerPort: 8080\n      hostPort: 18080\n",
        ),
    );
    p.start();
    let web = wait_running(&p, &["web".into()]).remove("web").unwrap();
    let web_ip = ip_of(&web);
    assert!(in_cidr(&web_ip), "pod IP {web_ip} not in {CIDR:?}");
    assert_eq!(web["status"]["podIPs"], serde_json::json!([{"ip": web_ip}]));
    // picolet wrote the default config: bridge + host-local + portmap, from the pod CIDR
    let conf: Value = serde_json::from_slice(&std::fs::read(p.base.join("net.d/10-picolet.conflist")).unwrap()).unwrap();
    let types: Vec<&str> = conf["plugins"].as_array().unwrap().iter().map(|x| x["type"].as_str().unwrap()).collect();
    assert_eq!((conf["name"].as_str(), types), (Some(NETWORK), vec!["bridge", "portmap"]));
    assert_eq!(conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
    assert_eq!(reservations().get(&web_ip).map(String::as_str), web["metadata"]["uid"].as_str(), "host-local holds the pod's address");

    // node → pod
    wait_http(&p, &web_ip, 8080, "hello from busybox");
    // hostPort, from the node: loopback and the node's address on the bridge
    wait_http(&p, "127.0.0.1", 18080, "hello from busybox");
    wait_http(&p, GATEWAY, 18080, "hello from busybox");

    // pod → pod: a second pod fetches the first one's page and logs it (with nc: the test
    // image's static busybox wget segfaults in a container without NSS files)
    let client = format!(
        "  containers:\n  - name: client\n    image: busybox\n    command: [sh, -c, 'while true; do \
         echo \"got: $(printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 5 {web_ip} 8080 | tail -1)\"; sleep 1; done']\n"
    );
    p.write_manifest("client.yaml", &manifest("client", &client));
    let c = wait_running(&p, &["client".into()]).remove("client").unwrap();
    assert_ne!(ip_of(&c), web_ip);
    let deadline = Instant::now() + common::DEADLINE;
    while !p.log_lines(&c, "client", 0).iter().any(|l| l.contains("got: hello from busybox")) {
        if Instant::now() > deadline {
            panic!("pod → pod failed; client said {:?}\n{}", p.log_lines(&c, "client", 0), diagnostics());
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    p.remove_manifest("web.yaml");
    p.remove_manifest("client.yaml");
    wait_all_gone(&p);
    assert_eq!(reservations(), res_before, "host-local reservations left behind");
    assert_eq!(veths(), veth_before, "veths left behind");
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn restart_keeps_ips_and_releases_pods_removed_meanwhile() {
    let res_before = reservations();
    let mut p = picolet("restart", &[]);
    let sleeper = "  containers:\n  - name: c\n    image: busybox\n    command: [sleep, \"3600\"]\n";
    p.write_manifest("keep.yaml", &manifest("keep", sleeper));
    p.write_manifest("gone.yaml", &manifest("gone", sleeper));
    p.start();
    let pods = wait_running(&p, &["keep".into(), "gone".into()]);
    let (keep_ip, gone_ip) = (ip_of(&pods["keep"]), ip_of(&pods["gone"]));
    let keep_uid = pods["keep"]["metadata"]["uid"].as_str().unwrap().to_string();

    // picolet dies; one pod is removed while it is down
    p.kill();
    p.remove_manifest("gone.yaml");
    p.start();
    p.wait_gone("gone");
    let keep = wait_running(&p, &["keep".into()]).remove("keep").unwrap();
    assert_eq!(ip_of(&keep), keep_ip, "the pod keeps its address across the restart");
    assert_eq!(keep["metadata"]["uid"].as_str(), Some(keep_uid.as_str()));
    p.wait_until("the removed pod's address to be released", || !reservations().contains_key(&gone_ip));
    // not ADDed twice: one reservation, one eth0 address in the pinned namespace
    let mine: Vec<String> = reservations().into_iter().filter(|(_, id)| *id == keep_uid).map(|(ip, _)| ip).collect();
    assert_eq!(mine, std::slice::from_ref(&keep_ip));
    let netns = p.root.join("pods").join(&keep_uid).join("ns/net");
    let out = Command::new("nsenter").arg(format!("--net={}", netns.display())).args(["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).output().unwrap();
    let addrs = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(addrs.matches(" inet ").count(), 1, "{addrs}");
    assert!(addrs.contains(&format!(" {keep_ip}/")), "{addrs}");
    assert!(p.picolet_log().contains("network attachment kept from before the restart"));

    p.remove_manifest("keep.yaml");
    wait_all_gone(&p);
    assert_eq!(reservations(), res_before);
}

/// Pods created and deleted in batches; every address is released and every veth removed.
/// PICOLET_VM_CHURN sets the number of pods (default 200, the figure), in batches of
/// 20; it is read when the test is built too, since the guest gets no environment from
/// suite.sh (`PICOLET_VM_CHURN=60 tests/vm/suite.sh ...`). Under TCG a pod costs ~7 s.
#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn many_pods_created_and_deleted_leave_no_reservations_or_veths() {
    let total: usize = std::env::var("PICOLET_VM_CHURN")
        .ok()
        .or(option_env!("PICOLET_VM_CHURN").map(String::from))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let batch = 20;
    let (res_before, veth_before) = (reservations(), veths());
    let mut p = picolet("churn", &[]);
    p.start();
    let mut seen = BTreeSet::new();
    let began = Instant::now();
    for start in (0..total).step_by(batch) {
        let names: Vec<String> = (start..(start + batch).min(total)).map(|i| format!("churn{i}")).collect();
        for n in &names {
            p.write_manifest(&format!("{n}.yaml"), &manifest(n, "  containers:\n  - name: c\n    image: busybox\n    command: [sleep, \"3600\"]\n"));
        }
        let pods = wait_running(&p, &names);
        let ips: BTreeSet<String> = pods.values().map(ip_of).collect();
        assert_eq!(ips.len(), names.len(), "pods running at once share no address: {ips:?}");
        assert!(ips.iter().all(|ip| in_cidr(ip)), "{ips:?}");
        seen.extend(ips);
        for n in &names {
            p.remove_manifest(&format!("{n}.yaml"));
        }
        wait_all_gone(&p);
        assert_eq!(reservations(), res_before, "after pods {start}..: stale host-local reservations");
    }
    assert_eq!(veths(), veth_before, "veths left behind");
    eprintln!("churn: {total} pods in batches of {batch}, {} distinct addresses, {:?}", seen.len(), began.elapsed());
    assert!(!p.picolet_log().contains("CNI DEL"), "a DEL failed:\n{}", p.picolet_log());
}

fn dns_pod(name: &str, extra_spec: &str) -> String {
    manifest(
        name,
        &format!(
            "{extra_spec}  containers:\n  - name: c\n    image: busybox\n    \
             command: [sh, -c, 'cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo END; sleep 3600']\n"
        ),
    )
}

/// The container's /etc/resolv.conf and /etc/hosts, as it printed them.
fn dns_files(p: &Picolet, name: &str) -> (String, String) {
    let pod = p.wait_pod(name, "running", |x| common::running(x, "c"));
    let lines = p.wait_log(&pod, "c", 0, "END");
    let text = lines.join("\n");
    let (resolv, hosts) = text.split_once("---").unwrap();
    (resolv.trim().to_string(), hosts.trim_end_matches("END").trim().to_string())
}

#[test]
#[ignore = "needs cgroup v2: runs in the VM, tests/vm/suite.sh"]
fn resolv_conf_and_hosts_for_each_dns_policy() {
    let base_resolv = std::env::temp_dir().join(format!("vmnet-resolv-{}", std::process::id()));
    std::fs::write(&base_resolv, "nameserver 192.0.2.53\nsearch example.org\noptions edns0\n").unwrap();
    let resolv_arg = format!("--resolv-conf={}", base_resolv.display());
    let mut p = picolet("dns", &["--cluster-dns=10.96.0.10", "--cluster-domain=cluster.local", &resolv_arg]);
    p.write_manifest(
        "cf.yaml",
        &dns_pod(
            "cf",
            "  hostname: cf\n  subdomain: sub\n  hostAliases:\n  - ip: 10.1.2.3\n    hostnames: [foo.local, bar.local]\n",
        ),
    );
    p.write_manifest("def.yaml", &dns_pod("def", "  dnsPolicy: Default\n"));
    p.write_manifest(
        "none.yaml",
        &dns_pod("none", "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [1.1.1.1]\n    searches: [my.dns]\n    options:\n    - name: ndots\n      value: \"2\"\n"),
    );
    p.write_manifest("hostcf.yaml", &dns_pod("hostcf", "  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n"));
    p.write_manifest("hostdef.yaml", &dns_pod("hostdef", "  hostNetwork: true\n"));
    p.start();

    let cluster = "search default.svc.cluster.local svc.cluster.local cluster.local example.org\nnameserver 10.96.0.10\noptions ndots:5";
    let host = "search example.org\nnameserver 192.0.2.53\noptions edns0";
    let (resolv, hosts) = dns_files(&p, "cf");
    assert_eq!(resolv, cluster);
    let ip = ip_of(&p.pod("cf").unwrap());
    assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains(&format!("\n{ip}\tcf.sub.default.svc.cluster.local\tcf\n")), "{hosts}");
    assert!(hosts.ends_with("\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local"), "{hosts}");
    assert_eq!(dns_files(&p, "def").0, host);
    assert_eq!(dns_files(&p, "none").0, "search my.dns\nnameserver 1.1.1.1\noptions ndots:2");
    assert_eq!(dns_files(&p, "hostcf").0, cluster);
    let (resolv, hosts) = dns_files(&p, "hostdef");
    assert_eq!(resolv, host, "ClusterFirst on the host network means Default");
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(hosts, node_hosts.trim(), "hostNetwork pods see the node's hosts file");
    for f in ["cf", "def", "none", "hostcf", "hostdef"] {
        p.remove_manifest(&format!("{f}.yaml"));
    }
    wait_all_gone(&p);
    p.kill();

    // no clusterDNS: ClusterFirst falls back to the host's, with upstream's warning
    let mut p = picolet("dns-fallback", &[&resolv_arg]);
    p.write_manifest("cf.yaml", &dns_pod("cf", ""));
    p.start();
    assert_eq!(dns_files(&p, "cf").0, host);
    assert!(p.picolet_log().contains("kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."));
    p.remove_manifest("cf.yaml");
    wait_all_gone(&p);
    let _ = std::fs::remove_file(&base_resolv);
}
