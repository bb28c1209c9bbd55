//! Network configs: reading the conf dir the way libcni/containerd do, and the default
//! config picolet writes when the dir holds none.
//!
//! The default is one bridge (`cni0`, gateway, masquerade, hairpin) with host-local
//! addresses from the pod CIDR and portmap for hostPorts; loopback runs as its own network
//! (see `attach`). Pure apart from `load_dir` and `write_default`.

use super::{CniError, NetworkList};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The default network's name (host-local keeps its addresses in /var/lib/cni/networks/<name>).
pub const DEFAULT_NAME: &str = "picolet";
/// The file the default config is written to; sorts before most packaged configs' "87-…".
pub const DEFAULT_FILE: &str = "10-picolet.conflist";
/// The pod CIDR of a standalone node when none is configured (containerd's default too).
pub const DEFAULT_POD_CIDR: &str = "10.88.0.0/16";
pub const BRIDGE: &str = "cni0";

/// Config files as libcni lists them: these extensions, sorted by file name.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    files.retain(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("conf" | "conflist" | "json")));
    files.sort();
    Ok(files)
}

/// The first config of `dir` (as containerd: the first file decides; a broken one is an
/// error, not skipped). None when the dir has no config file.
pub fn load_dir(dir: &Path) -> Result<Option<(PathBuf, NetworkList)>, CniError> {
    let files = config_files(dir).map_err(|e| CniError::Config { path: dir.to_path_buf(), reason: e.to_string() })?;
    let Some(path) = files.into_iter().next() else { return Ok(None) };
    let bad = |reason: String| CniError::Config { path: path.clone(), reason };
    let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let list = parse(&text).map_err(bad)?;
    Ok(Some((path, list)))
}

/// A `.conflist` (name + plugins) or a single-plugin `.conf` (wrapped into a list of one).
pub fn parse(text: &[u8]) -> Result<NetworkList, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Err("no network name".into());
    }
    let version = obj.get("cniVersion").and_then(Value::as_str).unwrap_or("").to_string();
    let plugins = match obj.get("plugins") {
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err("plugins is not a list".into()),
        None => vec![v.clone()],
    };
    if plugins.is_empty() {
        return Err("no plugins".into());
    }
    for (i, p) in plugins.iter().enumerate() {
        if p["type"].as_str().map_or(true, str::is_empty) {
            return Err(format!("plugin {i} has no type"));
        }
    }
    let disable_check = obj.get("disableCheck").and_then(Value::as_bool).unwrap_or(false);
    Ok(NetworkList { name: name.to_string(), cni_version: version, plugins, disable_check })
}

/// Checks `a.b.c.d/n` or an IPv6 CIDR; returns whether it is IPv6.
fn check_cidr(cidr: &str) -> Result<bool, String> {
    let (ip, len) = cidr.split_once('/').ok_or_else(|| format!("{cidr:?} is not a CIDR (like {DEFAULT_POD_CIDR})"))?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| format!("{cidr:?}: {ip:?} is not an IP address"))?;
    let max = if ip.is_ipv6() { 128 } else { 32 };
    match len.parse::<u8>() {
        // host-local needs room for the gateway, at least one pod and the broadcast address.
        Ok(n) if n <= max - 2 => Ok(ip.is_ipv6()),
        _ => Err(format!("{cidr:?}: prefix length must be at most {}", max - 2)),
    }
}

/// Validates a `--pod-cidr` value: one CIDR, or an IPv4 and an IPv6 one separated by a comma.
pub fn check_pod_cidr(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let mut families = Vec::new();
    for p in &parts {
        families.push(check_cidr(p)?);
    }
    if parts.len() > 2 || (parts.len() == 2 && families[0] == families[1]) {
        return Err("at most one IPv4 and one IPv6 CIDR".into());
    }
    Ok(())
}

/// The default network for `pod_cidr` (as `check_pod_cidr` accepts).
pub fn default_list(pod_cidr: &str) -> Result<NetworkList, String> {
    check_pod_cidr(pod_cidr)?;
    let mut ranges = Vec::new();
    let mut routes = Vec::new();
    for cidr in pod_cidr.split(',').map(str::trim) {
        ranges.push(json!([{"subnet": cidr}]));
        routes.push(json!({"dst": if check_cidr(cidr)? { "::/0" } else { "0.0.0.0/0" }}));
    }
    let bridge = json!({
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": true,
        "ipMasq": true,
        // A pod reaching itself through its own hostPort comes back over the bridge.
        "hairpinMode": true,
        "ipam": {"type": "host-local", "ranges": ranges, "routes": routes},
    });
    let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    Ok(NetworkList { name: DEFAULT_NAME.into(), cni_version: "1.0.0".into(), plugins: vec![bridge, portmap], disable_check: false })
}

/// Writes `list` as `dir/DEFAULT_FILE`; returns its path.
pub fn write_default(dir: &Path, list: &NetworkList) -> Result<PathBuf, CniError> {
    let path = dir.join(DEFAULT_FILE);
    let body = serde_json::to_vec_pretty(list).expect("config serialises");
    crate::hostfs::write_atomic(&path, &body).map_err(|source| CniError::WriteConfig { path: path.clone(), source })?;
    Ok(path)
}
