//! Downward API values, shared by container env (`runtime::env`) and the
//! downwardAPI and projected volumes (`volume`): pod fields as volume files
//! show them, and container resources (`resourceFieldRef`) with their
//! divisor, as upstream's fieldpath and resource helpers compute them.

use crate::api::quantity::{parse_int, parse_milli};
use crate::api::types::{Container, Map, Pod, ResourceFieldSelector};

/// The node's allocatable resources: what a container's unset (or zero)
/// limits stand for in the downward API, as upstream merges them in.
/// CPU and memory are node allocatable (node::allocatable); ephemeral
/// storage is the capacity (picolet reserves none of it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Allocatable {
    pub cpu_milli: i128,
    pub memory: i128,
    pub ephemeral_storage: i128,
}

impl Allocatable {
    /// This node's: allocatable CPU and memory (node::allocatable), and the
    /// size of the filesystem where pods' writable layers and logs go.
    pub fn of_node(cpu_milli: i64, memory: i64, fs_capacity: i64) -> Allocatable {
        Allocatable { cpu_milli: i128::from(cpu_milli), memory: i128::from(memory), ephemeral_storage: i128::from(fs_capacity) }
    }
}

/// `path[key]` with the key in single (or double) quotes: `("path", "key")`.
pub fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let (base, rest) = path.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
    Some((base, key))
}

/// The content of a downwardAPI volume file for `fieldPath`: name,
/// namespace, uid, all labels or annotations (`key="value"` lines, sorted),
/// or one label or annotation (`metadata.labels['app']`).
pub fn volume_field(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.labels" => Ok(m.labels.get(key).cloned().unwrap_or_default()),
            "metadata.annotations" => Ok(m.annotations.get(key).cloned().unwrap_or_default()),
            _ => Err(format!("fieldPath {path:?} does not support subscript")),
        };
    }
    Ok(match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "metadata.labels" => format_map(&m.labels),
        "metadata.annotations" => format_map(&m.annotations),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// `key="value"` per line, keys sorted, values quoted as Go's `%q` does;
/// no newline after the last.
pub fn format_map(m: &Map) -> String {
    m.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// A double-quoted string with Go's `strconv.Quote` escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The container a resourceFieldRef reads: `containerName` among the pod's
/// containers and init containers, else `own` (env's default: the container itself).
fn target<'a>(sel: &ResourceFieldSelector, pod: &'a Pod, own: Option<&'a Container>) -> Result<&'a Container, String> {
    if sel.container_name.is_empty() {
        return own.ok_or_else(|| "resourceFieldRef: containerName is required".to_string());
    }
    pod.spec
        .containers
        .iter()
        .chain(&pod.spec.init_containers)
        .find(|c| c.name == sel.container_name)
        .ok_or_else(|| format!("container {} not found", sel.container_name))
}

/// The value of a resourceFieldRef: the container's limit or request in
/// units of `divisor` (unset or "0" means 1), rounded up. Unset or zero
/// limits are the node's allocatable; unset requests are 0.
pub fn resource_value(sel: &ResourceFieldSelector, pod: &Pod, own: Option<&Container>, node: &Allocatable) -> Result<String, String> {
    let c = target(sel, pod, own)?;
    let empty = Map::new();
    let (limits, requests) = match &c.resources {
        Some(r) => (&r.limits, &r.requests),
        None => (&empty, &empty),
    };
    let bad = |q: &str| format!("invalid quantity {q:?} in resourceFieldRef {}", sel.resource);
    let divisor = match sel.divisor.as_deref() {
        None => None,
        Some(d) => Some(parse_milli(d).filter(|v| *v >= 0).ok_or_else(|| bad(d))?).filter(|v| *v != 0),
    };
    let (kind, name) = sel.resource.split_once('.').unwrap_or(("", ""));
    let cpu = name == "cpu";
    // CPU counts in thousandths (MilliValue upstream), the others in whole units (Value).
    let value = |q: &str| -> Result<i128, String> {
        if cpu {
            parse_milli(q).ok_or_else(|| bad(q))
        } else {
            parse_int(q).map(i128::from).ok_or_else(|| bad(q))
        }
    };
    let allocatable = match name {
        "cpu" => node.cpu_milli,
        "memory" => node.memory,
        "ephemeral-storage" => node.ephemeral_storage,
        _ => return Err(format!("unsupported container resource : {}", sel.resource)),
    };
    let amount = match kind {
        "limits" => match limits.get(name).map(|q| value(q)).transpose()? {
            Some(v) if v != 0 => v,
            _ => allocatable,
        },
        "requests" => requests.get(name).map(|q| value(q)).transpose()?.unwrap_or(0),
        _ => return Err(format!("unsupported container resource : {}", sel.resource)),
    };
    let unit = match divisor {
        None if cpu => 1000,
        None => 1,
        Some(d) if cpu => d,
        Some(d) => (d + 999) / 1000,
    }
    .max(1);
    Ok(ceil_div(amount, unit).to_string())
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) != 0 {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::ResourceRequirements;

    #[test]
    fn format_map_quotes_as_go_does() {
        let mut m = Map::new();
        m.insert("app".into(), "web".into());
        m.insert("a/b".into(), "say \"hi\"\n\ttab\\ \u{1} é".into());
        assert_eq!(format_map(&m), "a/b=\"say \\\"hi\\\"\\n\\ttab\\\\ \\x01 é\"\napp=\"web\"");
        assert_eq!(format_map(&Map::new()), "");
    }

    #[test]
    fn volume_fields() {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.metadata.namespace = "ns".into();
        p.metadata.uid = "u".into();
        p.metadata.labels.insert("tier".into(), "front".into());
        p.metadata.labels.insert("app".into(), "x".into());
        assert_eq!(volume_field(&p, "metadata.labels").unwrap(), "app=\"x\"\ntier=\"front\"");
        assert_eq!(volume_field(&p, "metadata.labels['tier']").unwrap(), "front");
        assert_eq!(volume_field(&p, "metadata.annotations['none']").unwrap(), "");
        assert_eq!(volume_field(&p, "metadata.annotations").unwrap(), "");
        assert_eq!(volume_field(&p, "metadata.namespace").unwrap(), "ns");
        assert!(volume_field(&p, "spec.nodeName").unwrap_err().contains("unsupported fieldPath"));
        assert!(volume_field(&p, "metadata.name['x']").is_err());
    }

    fn sel(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector { container_name: String::new(), resource: resource.into(), divisor: divisor.map(Into::into) }
    }

    #[test]
    fn resources_round_up_in_divisor_units() {
        let mut r = ResourceRequirements::default();
        r.limits.insert("cpu".into(), "250m".into());
        r.limits.insert("memory".into(), "64Mi".into());
        r.requests.insert("cpu".into(), "100m".into());
        r.requests.insert("memory".into(), "1000001".into());
        r.requests.insert("ephemeral-storage".into(), "1Gi".into());
        let c = Container { name: "c".into(), resources: Some(r), ..Default::default() };
        let mut pod = Pod::default();
        pod.spec.containers.push(c.clone());
        pod.spec.containers.push(Container { name: "bare".into(), ..Default::default() });
        let node = Allocatable { cpu_milli: 4000, memory: 8 << 30, ephemeral_storage: 100_000_000_000 };
        let v = |s: ResourceFieldSelector| resource_value(&s, &pod, Some(&c), &node);
        let cases = [
            (sel("limits.cpu", None), "1"),         // 0.25 core rounds up to 1
            (sel("limits.cpu", Some("0")), "1"),    // "0" is how the API writes an unset divisor
            (sel("limits.cpu", Some("1m")), "250"),
            (sel("requests.cpu", Some("1m")), "100"),
            (sel("limits.memory", None), "67108864"),
            (sel("limits.memory", Some("1Mi")), "64"),
            (sel("limits.memory", Some("1M")), "68"),  // 67.1 MB rounds up
            (sel("requests.memory", Some("1M")), "2"), // 1000001 bytes
            (sel("requests.ephemeral-storage", Some("1Mi")), "1024"),
            // Unset limits are the node's allocatable; unset requests are 0.
            (sel("limits.ephemeral-storage", Some("1G")), "100"),
        ];
        for (s, want) in cases {
            assert_eq!(v(s.clone()).unwrap(), want, "{s:?}");
        }
        let bare = ResourceFieldSelector { container_name: "bare".into(), ..sel("limits.cpu", Some("1m")) };
        assert_eq!(v(bare.clone()).unwrap(), "4000");
        assert_eq!(v(ResourceFieldSelector { resource: "limits.memory".into(), divisor: Some("1Gi".into()), ..bare.clone() }).unwrap(), "8");
        assert_eq!(v(ResourceFieldSelector { resource: "requests.memory".into(), ..bare.clone() }).unwrap(), "0");
        assert_eq!(v(ResourceFieldSelector { container_name: "nope".into(), ..bare }).unwrap_err(), "container nope not found");
        assert_eq!(v(sel("limits.gpu", None)).unwrap_err(), "unsupported container resource : limits.gpu");
        // In a volume there is no "own" container: containerName is required.
        assert!(resource_value(&sel("limits.cpu", None), &pod, None, &node).is_err());
    }

    #[test]
    fn subscripts() {
        assert_eq!(split_subscript("metadata.labels['a.b/c']"), Some(("metadata.labels", "a.b/c")));
        assert_eq!(split_subscript("metadata.labels[\"x\"]"), Some(("metadata.labels", "x")));
        assert_eq!(split_subscript("metadata.labels"), None);
        assert_eq!(split_subscript("metadata.labels[x]"), None);
    }
}
