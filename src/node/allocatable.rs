//! Node allocatable: what pods may use, `capacity - kubeReserved -
//! systemReserved - the hard eviction memory threshold` (node status), and
//! kubepods' memory.max, the same without the threshold (as upstream enforces
//! it, so that eviction comes before the OOM killer). Both from [`allocatable`].
//!
//! Reservations are upstream's `--kube-reserved` / `--system-reserved`
//! (`cpu=500m,memory=256Mi`) and the KubeletConfiguration maps of the same
//! names; picolet reads cpu and memory (other keys are accepted and ignored).

use crate::api::quantity::{parse_int, parse_milli};
use crate::node::eviction::Thresholds;

/// Upstream's default hard eviction threshold, memory.available<100Mi.
#[cfg(test)]
pub const DEFAULT_EVICTION_MEMORY: i64 = 100 << 20;

/// This node's allocatable under the configured reservations, with the hard
/// memory eviction threshold taken off: the node status and the downward
/// API's default limits.
pub fn of_node(kube: Reserved, system: Reserved, eviction_hard: &Thresholds, cpus: i64, memory: i64) -> Allocatable {
    let eviction = crate::node::eviction::memory_threshold_bytes(eviction_hard, memory);
    allocatable(cpus * 1000, memory, kube, system, eviction)
}

/// What kubepods' cgroup is limited to: capacity less the reservations only.
pub fn enforced(kube: Reserved, system: Reserved, cpus: i64, memory: i64) -> Allocatable {
    allocatable(cpus * 1000, memory, kube, system, 0)
}

/// A reservation (kubeReserved or systemReserved).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reserved {
    pub cpu_milli: i64,
    pub memory: i64,
}

impl Reserved {
    /// `cpu=500m,memory=256Mi` (the flag's form).
    pub fn parse(text: &str) -> Result<Reserved, String> {
        let pairs: Result<Vec<(String, String)>, String> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                None => Err(format!("{kv:?} is not resource=quantity")),
            })
            .collect();
        Reserved::from_pairs(&pairs?)
    }

    /// From (resource, quantity) pairs (the config file's map).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Reserved, String> {
        let mut r = Reserved::default();
        for (k, v) in pairs {
            match k.as_str() {
                "cpu" => {
                    let milli = parse_milli(v).filter(|n| *n >= 0).ok_or(format!("cpu: {v:?} is not a quantity"))?;
                    r.cpu_milli = i64::try_from(milli).map_err(|_| format!("cpu: {v:?} is too large"))?;
                }
                "memory" => r.memory = parse_int(v).filter(|n| *n >= 0).ok_or(format!("memory: {v:?} is not a quantity"))?,
                // ephemeral-storage, pid: upstream's, not enforced by picolet.
                _ => {}
            }
        }
        Ok(r)
    }
}

/// What pods may use on this node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocatable {
    pub cpu_milli: i64,
    pub memory: i64,
}

/// Capacity minus both reservations and, for memory, the hard eviction
/// threshold (the eviction code passes the configured one); never negative.
pub fn allocatable(capacity_cpu_milli: i64, capacity_memory: i64, kube: Reserved, system: Reserved, eviction_memory: i64) -> Allocatable {
    Allocatable {
        cpu_milli: capacity_cpu_milli.saturating_sub(kube.cpu_milli).saturating_sub(system.cpu_milli).max(0),
        memory: capacity_memory.saturating_sub(kube.memory).saturating_sub(system.memory).saturating_sub(eviction_memory).max(0),
    }
}

/// A CPU amount as the API writes it: whole cores as "2", else "1500m".
pub fn format_cpu(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_parse() {
        assert_eq!(Reserved::parse("cpu=500m,memory=256Mi").unwrap(), Reserved { cpu_milli: 500, memory: 256 << 20 });
        assert_eq!(Reserved::parse(" memory=1Gi , ephemeral-storage=1Gi").unwrap(), Reserved { cpu_milli: 0, memory: 1 << 30 });
        assert_eq!(Reserved::parse("").unwrap(), Reserved::default());
        assert!(Reserved::parse("cpu").unwrap_err().contains("resource=quantity"));
        assert!(Reserved::parse("memory=lots").unwrap_err().contains("memory"));
        assert_eq!(Reserved::parse("cpu=10000000000000000").unwrap_err(), "cpu: \"10000000000000000\" is too large");
    }

    #[test]
    fn allocatable_subtracts_reservations_and_eviction() {
        let kube = Reserved { cpu_milli: 100, memory: 100 << 20 };
        let system = Reserved { cpu_milli: 400, memory: 156 << 20 };
        let a = allocatable(2000, 1536 << 20, kube, system, DEFAULT_EVICTION_MEMORY);
        assert_eq!(a, Allocatable { cpu_milli: 1500, memory: (1536 - 100 - 156 - 100) << 20 });
        let none = allocatable(1000, 50 << 20, Reserved::default(), Reserved::default(), DEFAULT_EVICTION_MEMORY);
        assert_eq!(none, Allocatable { cpu_milli: 1000, memory: 0 });
        // Reservations as large as a quantity goes: nothing left, not a wrapped sum.
        let huge = Reserved { cpu_milli: i64::MAX, memory: i64::MAX };
        assert_eq!(allocatable(2000, 1 << 30, huge, huge, i64::MAX), Allocatable { cpu_milli: 0, memory: 0 });
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_cpu(2000), "2");
    }
}
