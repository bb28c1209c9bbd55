//! CNI protocol tests against a fake plugin seam: no root, no plugins installed.

use super::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Call {
    plugin: String,
    env: HashMap<String, String>,
    stdin: Value,
}

impl Call {
    fn cmd(&self) -> &str {
        &self.env["CNI_COMMAND"]
    }
}

#[derive(Default)]
struct Inner {
    installed: Vec<String>,
    calls: Vec<Call>,
    /// (plugin, command) → what it answers instead of success.
    failures: HashMap<(String, String), Output>,
}

/// Plugins that answer as the real ones would: bridge allocates an address, the others
/// pass their prevResult on.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Inner>>);

impl Fake {
    fn with(plugins: &[&str]) -> Fake {
        let f = Fake::default();
        f.0.lock().unwrap().installed = plugins.iter().map(|p| p.to_string()).collect();
        f
    }
    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.0.lock().unwrap().calls)
    }
    fn fail(&self, plugin: &str, cmd: &str, stdout: &str, stderr: &str) {
        let out = Output { success: false, stdout: stdout.into(), stderr: stderr.into() };
        self.0.lock().unwrap().failures.insert((plugin.into(), cmd.into()), out);
    }
    fn heal(&self) {
        self.0.lock().unwrap().failures.clear();
    }
    fn plugins(&self) -> Plugins {
        Plugins { dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()], exec: Box::new(self.clone()) }
    }
}

impl Exec for Fake {
    fn find(&self, plugin: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
        self.0.lock().unwrap().installed.iter().any(|p| p == plugin).then(|| dirs[1].join(plugin))
    }

    fn run(&self, path: &Path, env: &[(&str, String)], stdin: &[u8]) -> io::Result<Output> {
        let plugin = path.file_name().unwrap().to_string_lossy().to_string();
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let stdin: Value = serde_json::from_slice(stdin).unwrap();
        let mut inner = self.0.lock().unwrap();
        let cmd = env["CNI_COMMAND"].clone();
        inner.calls.push(Call { plugin: plugin.clone(), env: env.clone(), stdin: stdin.clone() });
        if let Some(out) = inner.failures.get(&(plugin.clone(), cmd.clone())) {
            return Ok(out.clone());
        }
        let result = match (plugin.as_str(), cmd.as_str()) {
            ("bridge", "ADD") => json!({
                "cniVersion": stdin["cniVersion"],
                "interfaces": [
                    {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                    {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                    {"name": env["CNI_IFNAME"], "mac": "cc:cc:cc:cc:cc:cc", "sandbox": env["CNI_NETNS"]}
                ],
                "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}],
                "routes": [{"dst": "0.0.0.0/0"}]
            }),
            ("loopback", "ADD") => json!({
                "cniVersion": stdin["cniVersion"],
                "interfaces": [{"name": "lo", "sandbox": env["CNI_NETNS"]}],
                "ips": [{"address": "127.0.0.1/8", "interface": 0}]
            }),
            (_, "ADD") => stdin["prevResult"].clone(),
            _ => return Ok(Output { success: true, stdout: vec![], stderr: vec![] }),
        };
        Ok(Output { success: true, stdout: serde_json::to_vec(&result).unwrap(), stderr: vec![] })
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("picolet-cni-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pod() -> Pod {
    let mut p = Pod::default();
    p.metadata.name = "web".into();
    p.metadata.namespace = "prod".into();
    p.metadata.uid = "0f3c-uid".into();
    let mut c = crate::api::types::Container { name: "c".into(), ..Default::default() };
    c.ports = vec![
        crate::api::types::ContainerPort { container_port: 80, host_port: Some(8080), ..Default::default() },
        crate::api::types::ContainerPort { container_port: 53, host_port: Some(5353), protocol: "UDP".into(), host_ip: "127.0.0.1".into(), ..Default::default() },
        crate::api::types::ContainerPort { container_port: 9000, ..Default::default() },
    ];
    p.spec.containers = vec![c];
    p
}

const ALL: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];

fn default() -> NetworkList {
    conf::default_list("10.88.0.0/16").unwrap()
}

fn attach_default(f: &Fake, dir: &Path) -> Result<Attached, CniError> {
    let p = pod();
    attach(&f.plugins(), &PodRef::of(&p), dir, Path::new("/run/p/ns/net"), &default(), port_mappings(&p))
}

#[test]
fn port_mappings_from_host_ports() {
    assert_eq!(
        Value::Array(port_mappings(&pod())),
        json!([
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
        ])
    );
}

#[test]
fn add_chains_results_and_passes_capabilities() {
    let dir = scratch("add");
    let f = Fake::with(&ALL);
    assert_eq!(attach_default(&f, &dir).unwrap(), Attached::Added(vec!["10.88.0.5".into()]));
    let calls = f.calls();
    let order: Vec<(&str, &str)> = calls.iter().map(|c| (c.plugin.as_str(), c.cmd())).collect();
    assert_eq!(order, [("loopback", "ADD"), ("bridge", "ADD"), ("portmap", "ADD")]);
    let (lo, bridge, portmap) = (&calls[0], &calls[1], &calls[2]);
    assert_eq!(lo.env["CNI_IFNAME"], "lo");
    assert_eq!(lo.stdin["name"], "cni-loopback");
    for c in &calls[1..] {
        assert_eq!(c.env["CNI_IFNAME"], "eth0");
        assert_eq!(c.env["CNI_NETNS"], "/run/p/ns/net");
        assert_eq!(c.env["CNI_CONTAINERID"], "0f3c-uid");
        assert_eq!(c.env["CNI_PATH"], "/opt/cni/bin:/usr/lib/cni");
        assert_eq!(
            c.env["CNI_ARGS"],
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=0f3c-uid;K8S_POD_UID=0f3c-uid"
        );
        assert_eq!((c.stdin["name"].as_str(), c.stdin["cniVersion"].as_str()), (Some("picolet"), Some("1.0.0")));
    }
    // the first plugin has no prevResult and, not asking for it, no runtimeConfig
    assert!(bridge.stdin.get("prevResult").is_none() && bridge.stdin.get("runtimeConfig").is_none());
    assert_eq!(bridge.stdin["ipam"]["ranges"], json!([[{"subnet": "10.88.0.0/16"}]]));
    // the next gets the previous result and only the capabilities it declared
    assert_eq!(portmap.stdin["prevResult"]["ips"][0]["address"], "10.88.0.5/16");
    assert_eq!(portmap.stdin["runtimeConfig"], json!({"portMappings": port_mappings(&pod())}));
    assert!(portmap.stdin.get("capabilities").is_none());
    // what DEL needs is in the pod dir
    let rec = Record::load(&dir).unwrap().unwrap();
    assert_eq!(rec.container_id, "0f3c-uid");
    assert_eq!(rec.attachments.iter().map(|a| a.ifname.as_str()).collect::<Vec<_>>(), ["lo", "eth0"]);
    assert_eq!(rec.attachments[1].network, default());
    assert_eq!(rec.ips(), ["10.88.0.5"]);

    // picolet restarted, namespace still pinned: no second ADD
    assert_eq!(attach_default(&f, &dir).unwrap(), Attached::Kept(vec!["10.88.0.5".into()]));
    assert!(f.calls().is_empty());

    // CHECK in ADD order with the stored result
    check(&f.plugins(), "prod/web", &dir, Path::new("/run/p/ns/net")).unwrap();
    let calls = f.calls();
    let order: Vec<(&str, &str)> = calls.iter().map(|c| (c.plugin.as_str(), c.cmd())).collect();
    assert_eq!(order, [("loopback", "CHECK"), ("bridge", "CHECK"), ("portmap", "CHECK")]);
    assert_eq!(calls[1].stdin["prevResult"]["ips"][0]["address"], "10.88.0.5/16");

    // DEL in reverse order with the result, even when the conf dir changed since
    detach(&f.plugins(), "prod/web", &dir, Some(Path::new("/run/p/ns/net"))).unwrap();
    let calls = f.calls();
    let order: Vec<(&str, &str)> = calls.iter().map(|c| (c.plugin.as_str(), c.cmd())).collect();
    assert_eq!(order, [("portmap", "DEL"), ("bridge", "DEL"), ("loopback", "DEL")]);
    assert_eq!(calls[0].stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(calls[1].stdin["prevResult"]["ips"][0]["address"], "10.88.0.5/16");
    assert!(!dir.join(RECORD).exists());
    // nothing left: DEL again is a no-op
    detach(&f.plugins(), "prod/web", &dir, None).unwrap();
    assert!(f.calls().is_empty());
}

#[test]
fn plugin_error_is_surfaced_and_the_partial_add_undone() {
    let dir = scratch("err");
    let f = Fake::with(&ALL);
    f.fail("portmap", "ADD", r#"{"cniVersion":"1.0.0","code":999,"msg":"unable to create chain","details":"iptables: No chain"}"#, "");
    let e = attach_default(&f, &dir).unwrap_err().to_string();
    assert_eq!(
        e,
        "pod prod/web: network picolet: CNI ADD plugin portmap failed (code 999): unable to create chain; iptables: No chain"
    );
    let order: Vec<(String, String)> = f.calls().iter().map(|c| (c.plugin.clone(), c.cmd().to_string())).collect();
    let want = ["loopback/ADD", "bridge/ADD", "portmap/ADD", "portmap/DEL", "bridge/DEL", "loopback/DEL"];
    assert_eq!(order.iter().map(|(p, c)| format!("{p}/{c}")).collect::<Vec<_>>(), want);
    assert!(!dir.join(RECORD).exists(), "undone: nothing to remember");

    // the undo fails too: the record stays, and the next try DELs before it ADDs
    f.fail("bridge", "DEL", "", "failed to find plugin\n");
    attach_default(&f, &dir).unwrap_err();
    assert!(dir.join(RECORD).exists());
    f.calls();
    f.heal();
    attach_default(&f, &dir).unwrap();
    let order: Vec<String> = f.calls().iter().map(|c| format!("{}/{}", c.plugin, c.cmd())).collect();
    assert_eq!(order, ["portmap/DEL", "bridge/DEL", "loopback/DEL", "loopback/ADD", "bridge/ADD", "portmap/ADD"]);
}

#[test]
fn error_without_json_uses_stderr_and_missing_plugins_are_named() {
    let dir = scratch("stderr");
    let f = Fake::with(&ALL);
    f.fail("bridge", "ADD", "", "panic: boom\n");
    let e = attach_default(&f, &dir).unwrap_err().to_string();
    assert_eq!(e, "pod prod/web: network picolet: CNI ADD plugin bridge failed: panic: boom");

    let f = Fake::with(&["bridge", "loopback"]);
    let e = attach_default(&f, &dir).unwrap_err().to_string();
    assert_eq!(e, "pod prod/web: network picolet: CNI plugin \"portmap\" not found in /opt/cni/bin, /usr/lib/cni");
}

#[test]
fn bad_result_is_an_error() {
    let dir = scratch("bad");
    let f = Fake::with(&["bridge"]);
    f.0.lock().unwrap().failures.insert(("bridge".into(), "ADD".into()), Output { success: true, stdout: b"hello".to_vec(), stderr: vec![] });
    let list = NetworkList { plugins: vec![default().plugins[0].clone()], ..default() };
    let p = pod();
    let e = attach(&f.plugins(), &PodRef::of(&p), &dir, Path::new("/n"), &list, vec![]).unwrap_err().to_string();
    assert!(e.starts_with("pod prod/web: network picolet: CNI plugin bridge returned no usable result: not JSON"), "{e}");
}

#[test]
fn retired_record_is_deleted_without_netns_before_a_new_add() {
    let dir = scratch("retire");
    let f = Fake::with(&ALL);
    attach_default(&f, &dir).unwrap();
    f.calls();
    // a reboot: the namespace is created again
    retire("prod/web", &dir).unwrap();
    assert!(!dir.join(RECORD).exists() && dir.join(STALE_RECORD).exists());
    // DEL fails: the stale record survives for the next try
    f.fail("bridge", "DEL", r#"{"code":7,"msg":"busy"}"#, "");
    assert!(attach_default(&f, &dir).unwrap_err().to_string().contains("CNI DEL plugin bridge failed (code 7): busy"));
    assert!(dir.join(STALE_RECORD).exists());
    f.calls();
    f.heal();
    attach_default(&f, &dir).unwrap();
    let calls = f.calls();
    let seen: Vec<String> = calls.iter().map(|c| format!("{}/{}/{}", c.plugin, c.cmd(), c.env["CNI_NETNS"])).collect();
    assert_eq!(
        seen,
        [
            "portmap/DEL/",
            "bridge/DEL/",
            "loopback/DEL/",
            "loopback/ADD//run/p/ns/net",
            "bridge/ADD//run/p/ns/net",
            "portmap/ADD//run/p/ns/net"
        ]
    );
    assert!(!dir.join(STALE_RECORD).exists() && dir.join(RECORD).exists());
    // a pod removed while its namespace is gone: DEL of both, no netns
    retire("prod/web", &dir).unwrap();
    detach(&f.plugins(), "prod/web", &dir, None).unwrap();
    assert_eq!(f.calls().len(), 3);
    assert!(!dir.join(STALE_RECORD).exists());
}

#[test]
fn check_is_skipped_where_the_spec_says() {
    let dir = scratch("check");
    let f = Fake::with(&["bridge"]);
    let p = pod();
    for (version, disable, calls) in [("0.3.1", false, 0), ("1.0.0", true, 0), ("0.4.0", false, 1)] {
        let _ = std::fs::remove_file(dir.join(RECORD));
        let list = NetworkList { cni_version: version.into(), disable_check: disable, plugins: vec![default().plugins[0].clone()], ..default() };
        attach(&f.plugins(), &PodRef::of(&p), &dir, Path::new("/n"), &list, vec![]).unwrap();
        f.calls();
        check(&f.plugins(), "prod/web", &dir, Path::new("/n")).unwrap();
        assert_eq!(f.calls().len(), calls, "version {version} disableCheck {disable}");
    }
}

#[test]
fn result_ips_of_each_format() {
    // 1.0.0: the pod's interface is the one with a sandbox; IPv4 first
    let r = json!({
        "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/n"}],
        "ips": [{"address": "10.0.0.1/24", "interface": 0}, {"address": "fd00::5/64", "interface": 1}, {"address": "10.88.0.7/16", "interface": 1}]
    });
    assert_eq!(result_ips(&r, "eth0"), ["10.88.0.7", "fd00::5"]);
    // no interface indexes (some IPAM-only chains)
    assert_eq!(result_ips(&json!({"ips": [{"address": "10.1.2.3/24"}]}), "eth0"), ["10.1.2.3"]);
    // 0.2.0
    assert_eq!(result_ips(&json!({"ip4": {"ip": "10.1.0.9/24"}, "ip6": {"ip": "fd00::9/64"}}), "eth0"), ["10.1.0.9", "fd00::9"]);
    assert!(result_ips(&json!({}), "eth0").is_empty());
}

#[test]
fn conf_dir_first_file_by_name_decides() {
    let dir = scratch("conf");
    assert_eq!(conf::load_dir(&dir.join("missing")).unwrap(), None);
    std::fs::write(dir.join("README"), "not a config").unwrap();
    std::fs::write(dir.join("99-last.conflist"), r#"{"cniVersion":"1.0.0","name":"last","plugins":[{"type":"ptp"}]}"#).unwrap();
    std::fs::write(dir.join("50-single.conf"), r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"br9"}"#).unwrap();
    let (path, list) = conf::load_dir(&dir).unwrap().unwrap();
    assert_eq!(path, dir.join("50-single.conf"));
    assert_eq!((list.name.as_str(), list.cni_version.as_str(), list.plugins.len()), ("single", "0.4.0", 1));
    assert_eq!(list.plugins[0]["bridge"], "br9");
    std::fs::write(dir.join("10-broken.json"), "{").unwrap();
    let e = conf::load_dir(&dir).unwrap_err().to_string();
    assert!(e.starts_with(&format!("CNI config {}: not JSON", dir.join("10-broken.json").display())), "{e}");
    for (text, why) in [
        (r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#, "no network name"),
        (r#"{"name":"n","plugins":[]}"#, "no plugins"),
        (r#"{"name":"n","plugins":[{"bridge":"x"}]}"#, "plugin 0 has no type"),
        (r#"{"name":"n"}"#, "plugin 0 has no type"),
    ] {
        assert_eq!(conf::parse(text.as_bytes()).unwrap_err(), why, "{text}");
    }
}

#[test]
fn default_config_and_pod_cidrs() {
    let l = conf::default_list("10.42.3.0/24,fd42::/64").unwrap();
    assert_eq!(
        serde_json::to_value(&l).unwrap(),
        json!({
            "name": "picolet",
            "cniVersion": "1.0.0",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
                 "ipam": {"type": "host-local",
                          "ranges": [[{"subnet": "10.42.3.0/24"}], [{"subnet": "fd42::/64"}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    );
    // what is written is what is read back
    let dir = scratch("default");
    let path = conf::write_default(&dir, &l).unwrap();
    assert_eq!(conf::load_dir(&dir).unwrap().unwrap(), (path, l));
    for bad in ["10.88.0.0", "10.88.0.0/31", "banana/16", "10.0.0.0/8,10.1.0.0/16", "fd00::/127"] {
        assert!(conf::check_pod_cidr(bad).is_err(), "{bad}");
    }
    assert!(conf::check_pod_cidr("fd00::/64").is_ok());
}

#[test]
fn container_ids_are_safe() {
    assert_eq!(container_id("5d1e-aa.b_c"), "5d1e-aa.b_c");
    assert_eq!(container_id("a/b c"), "a_b_c");
}

mod settings {
    use super::*;
    use crate::network::{CniSettings, PodCidr};

    fn settings(f: &Fake, dir: &Path, pod_cidr: PodCidr) -> CniSettings {
        CniSettings::new(dir.to_path_buf(), f.plugins(), pod_cidr)
    }

    #[test]
    fn default_written_once_from_the_right_cidr() {
        let dir = scratch("settings");
        let conf_dir = dir.join("net.d");
        let standalone = PodCidr { configured: None, node: None };
        // nothing installed: loopback only, nothing written
        let s = settings(&Fake::with(&[]), &conf_dir, standalone);
        assert_eq!(s.network_list("p").unwrap(), None);
        assert!(!conf_dir.exists());

        // a cluster node not read yet: wait
        let cell = Arc::new(Mutex::new(None));
        let s = settings(&Fake::with(&ALL), &conf_dir, PodCidr { configured: Some("10.1.0.0/16".into()), node: Some(cell.clone()) });
        assert_eq!(s.network_list("ns/p").unwrap_err().to_string(), "pod ns/p: network: waiting for the node's podCIDR to write the default CNI config (or set --pod-cidr)");
        // the Node has none: the configured one
        *cell.lock().unwrap() = Some(String::new());
        assert_eq!(s.pod_cidr.current().as_deref(), Some("10.1.0.0/16"));
        // the Node's wins
        *cell.lock().unwrap() = Some("10.244.1.0/24".into());
        let l = s.network_list("ns/p").unwrap().unwrap();
        assert_eq!(l.plugins[0]["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert!(conf_dir.join(conf::DEFAULT_FILE).exists());
        // written once: later it is read, whatever the CIDR says now
        *cell.lock().unwrap() = Some("10.244.9.0/24".into());
        assert_eq!(s.network_list("ns/p").unwrap().unwrap(), l);

        // standalone without --pod-cidr: the documented default
        let s = settings(&Fake::with(&ALL), &dir.join("other"), PodCidr { configured: None, node: None });
        let l = s.network_list("ns/p").unwrap().unwrap();
        assert_eq!(l.plugins[0]["ipam"]["ranges"][0][0]["subnet"], conf::DEFAULT_POD_CIDR);
    }
}

/// The sandbox wiring (needs root for namespaces): one ADD per namespace, none after a
/// restart, DEL without netns then ADD when the namespace had to be made again, DEL on
/// teardown.
#[test]
#[ignore = "needs root (network namespaces): tests/run.sh runs it"]
fn sandbox_setup_adds_once_per_namespace() {
    use crate::network::{setup, teardown, CniSettings, DnsSettings, Network, PodCidr};
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let dir = scratch("sandbox");
    let (pod_dir, conf_dir) = (dir.join("pod"), dir.join("net.d"));
    let f = Fake::with(&ALL);
    let net = Network {
        cni: Some(CniSettings::new(conf_dir.clone(), f.plugins(), PodCidr { configured: None, node: None })),
        dns: DnsSettings { cluster_dns: vec!["10.96.0.10".into()], cluster_domain: "cluster.local".into(), resolv_conf: None },
    };
    let p = pod();
    let cmds = |f: &Fake| f.calls().iter().map(|c| format!("{}/{}/{}", c.plugin, c.cmd(), c.env["CNI_NETNS"].is_empty())).collect::<Vec<_>>();
    let s = setup(&p, &pod_dir, &net).unwrap();
    assert_eq!(s.sandbox.pod_ip, "10.88.0.5");
    assert!(!s.missing_cluster_dns);
    assert!(conf_dir.join(conf::DEFAULT_FILE).exists());
    assert_eq!(cmds(&f), ["loopback/ADD/false", "bridge/ADD/false", "portmap/ADD/false"]);
    let hosts = std::fs::read_to_string(&s.sandbox.hosts).unwrap();
    assert!(hosts.ends_with("\n10.88.0.5\tweb\n"), "{hosts}");
    assert!(std::fs::read_to_string(&s.sandbox.resolv_conf).unwrap().starts_with("search prod.svc.cluster.local "));

    // a picolet restart: the namespace is still pinned, so CHECK, no ADD
    assert_eq!(setup(&p, &pod_dir, &net).unwrap().sandbox.pod_ip, "10.88.0.5");
    assert_eq!(cmds(&f), ["loopback/CHECK/false", "bridge/CHECK/false", "portmap/CHECK/false"]);

    // a reboot: the pin is gone; the old attachment is DELeted without netns, then ADD
    nix::mount::umount2(&pod_dir.join("ns/net"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    setup(&p, &pod_dir, &net).unwrap();
    let want = ["portmap/DEL/true", "bridge/DEL/true", "loopback/DEL/true", "loopback/ADD/false", "bridge/ADD/false", "portmap/ADD/false"];
    assert_eq!(cmds(&f), want);

    teardown(&pod_dir, "prod/web", &net).unwrap();
    assert_eq!(cmds(&f), ["portmap/DEL/false", "bridge/DEL/false", "loopback/DEL/false"]);
    assert!(!pod_dir.join(RECORD).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The real exec seam against plugins that are shell scripts: a hung plugin is killed at
/// the timeout, a flooding one at the output limit, and a plugin error names its pod.
mod exec_plugins {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn gone(pid_file: &Path) -> bool {
        let pid = std::fs::read_to_string(pid_file).unwrap();
        !Path::new(&format!("/proc/{}", pid.trim())).exists()
    }

    #[test]
    fn output_and_stdin_pass_through() {
        let dir = scratch("exec-ok");
        let p = script(&dir, "echo", r#"cat; echo "$CNI_COMMAND" >&2"#);
        let out = ExecPlugins { timeout: PLUGIN_TIMEOUT }.run(&p, &[("CNI_COMMAND", "ADD".into())], b"{\"a\":1}").unwrap();
        assert_eq!(out, Output { success: true, stdout: b"{\"a\":1}".to_vec(), stderr: b"ADD\n".to_vec() });
    }

    #[test]
    fn hung_plugin_is_killed_at_the_timeout_and_the_pod_is_told() {
        let dir = scratch("exec-hang");
        let pid = dir.join("pid");
        script(&dir, "bridge", &format!("echo $$ > {}; exec sleep 1000", pid.display()));
        let plugins = Plugins { dirs: vec![dir.clone()], exec: Box::new(ExecPlugins { timeout: Duration::from_millis(500) }) };
        let p = pod();
        let list = NetworkList { plugins: vec![default().plugins[0].clone()], ..default() };
        let e = attach(&plugins, &PodRef::of(&p), &dir, Path::new("/run/p/ns/net"), &list, vec![]).unwrap_err();
        assert!(matches!(e, CniError::Killed { .. }), "{e:?}");
        assert_eq!(e.to_string(), "pod prod/web: network picolet: CNI ADD plugin bridge: did not finish within 500ms; killed it");
        assert!(gone(&pid), "the hung plugin still runs");
    }

    #[test]
    fn flooding_plugin_is_cut_at_the_output_limit() {
        let dir = scratch("exec-flood");
        let pid = dir.join("pid");
        let p = script(&dir, "flood", &format!("echo $$ > {}; exec yes", pid.display()));
        let e = ExecPlugins { timeout: PLUGIN_TIMEOUT }.run(&p, &[], b"{}").unwrap_err();
        assert_eq!(e.to_string(), "wrote more than 1 MiB on stdout; killed it");
        assert!(gone(&pid), "the flooding plugin still runs");
    }
}
