//! Which pod to evict first, and what its status message says, as upstream:
//! pods using more than they request first, then lower priority first, then
//! the most usage above request. Memory is the pod's working set; disk its
//! containers' writable layers and logs plus its emptyDirs (bytes or inodes).

use super::{format_binary, format_decimal, Observations, Signal, Threshold, SYSTEM_CRITICAL_PRIORITY};
use std::cmp::Ordering;

/// One container's figures for the message; None where no stats were had.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    /// Working set bytes.
    pub memory: Option<i64>,
    /// Writable layer plus logs, bytes.
    pub disk: Option<i64>,
    /// The spec's requests as written ("64Mi"), None when not set.
    pub memory_request: Option<String>,
    pub disk_request: Option<String>,
}

/// A running pod as the ranking sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodUsage {
    pub uid: String,
    /// `namespace/name`, for logs.
    pub name: String,
    /// spec.priority (0 when unset).
    pub priority: i32,
    /// A static or mirror pod (see [`evictable`]).
    pub is_static: bool,
    /// None when the pod has no stats (ranked first, as upstream).
    pub memory: Option<i64>,
    pub disk_bytes: Option<i64>,
    pub disk_inodes: Option<i64>,
    /// Pod requests in bytes (upstream's podRequest: app containers summed, at least the largest init container).
    pub memory_request: i64,
    pub disk_request: i64,
    /// App containers (spec.containers), in stats order.
    pub containers: Vec<ContainerUsage>,
}

impl PodUsage {
    /// (usage, request) for the resource `s` starves.
    fn usage(&self, s: Signal) -> (Option<i64>, i64) {
        match s {
            Signal::MemoryAvailable => (self.memory, self.memory_request),
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => (self.disk_inodes, 0),
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => (self.disk_bytes, self.disk_request),
        }
    }
}

/// Whether the eviction manager may evict a pod: not one of priority at or
/// above system-critical. Upstream also spares every static pod (they are
/// not re-admitted after an eviction); picolet, which often runs nothing
/// but static pods, evicts non-critical static pods too and spares a static
/// pod marked critical by priority.
pub fn evictable(p: &PodUsage) -> bool {
    p.priority < SYSTEM_CRITICAL_PRIORITY
}

/// Sorts `pods` into eviction order for signal `s`.
pub fn rank(pods: &mut [PodUsage], s: Signal) {
    pods.sort_by(|a, b| compare(a, b, s));
}

fn compare(a: &PodUsage, b: &PodUsage, s: Signal) -> Ordering {
    let (ua, ra) = a.usage(s);
    let (ub, rb) = b.usage(s);
    // Without stats first; then over-request first.
    let key = |u: Option<i64>, r: i64| match u {
        None => 0,
        Some(u) if u > r => 1,
        Some(_) => 2,
    };
    key(ua, ra)
        .cmp(&key(ub, rb))
        .then(a.priority.cmp(&b.priority))
        // The most above request first.
        .then_with(|| (ub.unwrap_or(0) - rb).cmp(&(ua.unwrap_or(0) - ra)))
}

/// Upstream's eviction message: the starved resource, the threshold and
/// what was available, and each container using more than it requests.
pub fn message(s: Signal, met: &[Threshold], obs: &Observations, pod: &PodUsage) -> String {
    let resource = s.resource();
    let mut m = format!("The node was low on resource: {resource}. ");
    // The first threshold met on the same resource (nodefs and imagefs share one).
    if let Some((t, r)) = met.iter().filter(|t| t.signal.resource() == resource).find_map(|t| obs.get(t.signal).map(|r| (t, r))) {
        let available = if s.is_inodes() { format_decimal(r.available) } else { format_binary(r.available) };
        m += &format!("Threshold quantity: {}, available: {available}. ", format_binary(t.quantity(r.capacity)));
    }
    for c in &pod.containers {
        let (usage, request) = match s {
            Signal::MemoryAvailable => (c.memory, &c.memory_request),
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => (c.disk, &c.disk_request),
            // Upstream names no container for inodes.
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => continue,
        };
        let Some(usage) = usage else { continue };
        let req_bytes = request.as_deref().and_then(crate::api::quantity::parse_int).unwrap_or(0);
        if usage > req_bytes {
            let req = request.clone().unwrap_or_else(|| "0".into());
            m += &format!("Container {} was using {}, request is {req}, has larger consumption of {resource}. ", c.name, format_binary(usage));
        }
    }
    m
}
