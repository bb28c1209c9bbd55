//! The Node object picolet registers and the status it reports (pure: the
//! facts are gathered once by `facts`, the rest is data in, JSON out).

use super::allocatable::Reserved;
use super::eviction::{Pressure, Thresholds};
use serde_json::{json, Value};
use std::path::Path;

/// The version reported as nodeInfo.kubeletVersion: the Kubernetes release
/// whose API picolet implements, with picolet's own version as build
/// metadata (as k3s does with `+k3s1`), so version-skew checks see a semver.
pub const KUBELET_VERSION: &str = concat!("v1.34.0+picolet.", env!("CARGO_PKG_VERSION"));

/// What the node is, gathered at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub internal_ip: String,
    pub hostname: String,
    pub cpus: u64,
    pub memory: i64,
    pub ephemeral_storage: u64,
    /// The hard nodefs.available threshold in bytes, taken off allocatable storage.
    pub eviction_nodefs: u64,
    pub max_pods: u32,
    pub port: u16,
    pub kernel_version: String,
    pub os_image: String,
    pub boot_id: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub runtime_version: String,
    /// What pods may use (node::allocatable), computed once at start.
    pub allocatable: super::allocatable::Allocatable,
}

/// Kubernetes' name for the architecture picolet was built for.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86_64" => "amd64",
        "x86" => "386",
        other => other,
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `PRETTY_NAME` from os-release, as upstream's osImage.
fn os_image(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// What the Node object takes from picolet's configuration.
#[derive(Debug, Clone, Copy)]
pub struct NodeConfig<'a> {
    pub root_dir: &'a Path,
    pub node_labels: &'a [(String, String)],
    pub kube_reserved: Reserved,
    pub system_reserved: Reserved,
    pub eviction_hard: &'a Thresholds,
    pub max_pods: u32,
    pub port: u16,
}

/// Gathers the node's facts (reads /proc, /etc, /sys and statvfs).
pub fn facts(name: &str, cfg: NodeConfig, internal_ip: &str, runtime_version: String) -> Facts {
    // As upstream: the hostname label and address follow --hostname-override.
    let hostname = name.to_string();
    let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN).ok().flatten().map(|n| n.max(1) as u64).unwrap_or(1);
    let storage = nix::sys::statvfs::statvfs(cfg.root_dir).map(|s| s.blocks() as u64 * s.fragment_size() as u64).unwrap_or(0);
    let os_release = std::fs::read_to_string("/etc/os-release").or_else(|_| std::fs::read_to_string("/usr/lib/os-release")).unwrap_or_default();
    let memory = super::memory_capacity();
    let allocatable = super::allocatable::of_node(cfg.kube_reserved, cfg.system_reserved, cfg.eviction_hard, cpus as i64, memory);
    Facts {
        name: name.to_string(),
        labels: cfg.node_labels.to_vec(),
        internal_ip: internal_ip.to_string(),
        hostname,
        cpus,
        memory,
        ephemeral_storage: storage,
        eviction_nodefs: cfg
            .eviction_hard
            .get(super::eviction::Signal::NodeFsAvailable)
            .map_or(0, |t| t.quantity(storage as i64).max(0) as u64),
        max_pods: cfg.max_pods,
        port: cfg.port,
        kernel_version: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        os_image: os_image(&os_release),
        boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        machine_id: read_trim("/etc/machine-id"),
        system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
        runtime_version,
        allocatable,
    }
}


pub fn labels(f: &Facts) -> Value {
    let mut l = serde_json::Map::new();
    for (k, v) in &f.labels {
        l.insert(k.clone(), v.clone().into());
    }
    l.insert("kubernetes.io/hostname".into(), f.hostname.clone().into());
    l.insert("kubernetes.io/os".into(), "linux".into());
    l.insert("kubernetes.io/arch".into(), arch().into());
    l.insert("beta.kubernetes.io/os".into(), "linux".into());
    l.insert("beta.kubernetes.io/arch".into(), arch().into());
    Value::Object(l)
}

/// The Node to create at registration.
pub fn node_object(f: &Facts) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f.name,
            "labels": labels(f),
            // Tells controllers the attach/detach controller manages volumes.
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {},
    })
}

fn condition(kind: &str, on: bool, reason: &str, message: &str, now: &str, previous: &Value) -> Value {
    let status = if on { "True" } else { "False" };
    // lastTransitionTime moves only when the status does.
    let prev = previous["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let transition = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => now.into(),
    };
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": transition,
    })
}

/// The node's status; `previous` is the last status written (or Null).
pub fn status(f: &Facts, p: Pressure, previous: &Value, now: &str) -> Value {
    let cap_storage = f.ephemeral_storage;
    let alloc_storage = cap_storage.saturating_sub(f.eviction_nodefs);
    let conditions = vec![
        condition("MemoryPressure", p.memory, if p.memory { "KubeletHasInsufficientMemory" } else { "KubeletHasSufficientMemory" },
            if p.memory { "kubelet has insufficient memory available" } else { "kubelet has sufficient memory available" }, now, previous),
        condition("DiskPressure", p.disk, if p.disk { "KubeletHasDiskPressure" } else { "KubeletHasNoDiskPressure" },
            if p.disk { "kubelet has disk pressure" } else { "kubelet has no disk pressure" }, now, previous),
        condition("PIDPressure", p.pid, if p.pid { "KubeletHasInsufficientPID" } else { "KubeletHasSufficientPID" },
            if p.pid { "kubelet has insufficient PID available" } else { "kubelet has sufficient PID available" }, now, previous),
        condition("Ready", true, "KubeletReady", "kubelet is posting ready status", now, previous),
    ];
    let mut addresses = Vec::new();
    if !f.internal_ip.is_empty() {
        addresses.push(json!({"type": "InternalIP", "address": f.internal_ip}));
    }
    addresses.push(json!({"type": "Hostname", "address": f.hostname}));
    json!({
        "capacity": {
            "cpu": f.cpus.to_string(),
            "memory": format!("{}Ki", f.memory / 1024),
            "pods": f.max_pods.to_string(),
            "ephemeral-storage": format!("{}Ki", cap_storage / 1024),
        },
        "allocatable": {
            "cpu": super::allocatable::format_cpu(f.allocatable.cpu_milli),
            "memory": format!("{}Ki", f.allocatable.memory / 1024),
            "pods": f.max_pods.to_string(),
            "ephemeral-storage": alloc_storage.to_string(),
        },
        "conditions": conditions,
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": f.port}},
        "nodeInfo": {
            "machineID": f.machine_id,
            "systemUUID": f.system_uuid,
            "bootID": f.boot_id,
            "kernelVersion": f.kernel_version,
            "osImage": f.os_image,
            "containerRuntimeVersion": f.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

/// Whether two statuses differ in more than their heartbeat times: only then
/// (or when the report period passes) is the status written.
pub fn changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = v["conditions"].as_array_mut() {
            for c in cs {
                c.as_object_mut().map(|o| o.remove("lastHeartbeatTime"));
            }
        }
        v
    };
    strip(a) != strip(b)
}

/// The node's Lease in kube-node-lease, renewed at `now` (a MicroTime).
pub fn lease(name: &str, node_uid: &str, duration: u32, now_micro: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration, "renewTime": now_micro},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            name: "pi-1".into(),
            labels: vec![("role".into(), "edge".into())],
            internal_ip: "10.0.0.5".into(),
            hostname: "pi-1".into(),
            cpus: 4,
            memory: 4 << 30,
            ephemeral_storage: 100 << 30,
            eviction_nodefs: 10 << 30,
            max_pods: 110,
            port: 10250,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            boot_id: "b".into(),
            machine_id: "m".into(),
            system_uuid: String::new(),
            runtime_version: "runc://1.1.5".into(),
            allocatable: crate::node::allocatable::allocatable(
                4000,
                4 << 30,
                crate::node::allocatable::Reserved { cpu_milli: 500, memory: 0 },
                crate::node::allocatable::Reserved { cpu_milli: 0, memory: 256 << 20 },
                crate::node::allocatable::DEFAULT_EVICTION_MEMORY,
            ),
        }
    }

    #[test]
    fn labels_and_allocatable() {
        let f = facts();
        let n = node_object(&f);
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/arch"], arch());
        assert_eq!(n["metadata"]["labels"]["role"], "edge");
        let s = status(&f, Pressure::default(), &Value::Null, "t0");
        assert_eq!(s["capacity"]["memory"], "4194304Ki");
        assert_eq!(s["allocatable"]["memory"], format!("{}Ki", ((4i64 << 30) - (256 << 20) - (100 << 20)) / 1024));
        assert_eq!(s["capacity"]["cpu"], "4");
        assert_eq!(s["allocatable"]["cpu"], "3500m");
        assert_eq!(s["allocatable"]["pods"], "110");
        assert_eq!(s["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(s["addresses"][0]["type"], "InternalIP");
    }

    #[test]
    fn heartbeat_alone_is_no_change_and_transitions_keep_their_time() {
        let f = facts();
        let a = status(&f, Pressure::default(), &Value::Null, "t0");
        let b = status(&f, Pressure::default(), &a, "t1");
        assert!(!changed(&a, &b));
        assert_eq!(b["conditions"][3]["lastTransitionTime"], "t0");
        assert_eq!(b["conditions"][3]["lastHeartbeatTime"], "t1");
        let c = status(&f, Pressure { memory: true, ..Default::default() }, &b, "t2");
        assert!(changed(&b, &c));
        assert_eq!(c["conditions"][0]["lastTransitionTime"], "t2");
        assert_eq!(c["conditions"][0]["reason"], "KubeletHasInsufficientMemory");
    }

    #[test]
    fn os_release() {
        assert_eq!(os_image("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_image(""), "Linux");
    }
}
