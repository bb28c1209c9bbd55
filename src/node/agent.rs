//! The node's side of the cluster: register the Node, report its status and
//! renew its Lease. Runs on its own thread with blocking HTTP; the pod loop
//! never waits for it.

use super::eviction::Pressure;
use super::status::{self, Facts};
use crate::api::client::{ApiError, Client, Quiet, Retry};
use crate::api::time::now;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Timing {
    /// nodeStatusUpdateFrequency: status computed (and lease renewed) this often.
    pub update: Duration,
    /// nodeStatusReportFrequency: status written at least this often.
    pub report: Duration,
    pub lease_seconds: u32,
}

const MERGE: &str = "application/merge-patch+json";

fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
}

/// Microseconds, as the Lease's MicroTime wants.
fn now_micro() -> String {
    // …22.123456789Z → …22.123456Z
    let nano = crate::api::time::rfc3339_nano(std::time::SystemTime::now());
    format!("{}Z", &nano[..nano.len() - 4])
}

/// Creates the Node, or adopts the existing one (a restart, a re-install) and
/// brings its labels up to date. Returns the Node object.
fn register(client: &Client, f: &Facts) -> Result<Value, ApiError> {
    match client.send("POST", "/api/v1/nodes", "application/json", &status::node_object(f)) {
        Ok(n) => {
            log::info!("registered node {}", f.name);
            Ok(n)
        }
        Err(e) if e.conflict() => {
            let patch = json!({"metadata": {"labels": status::labels(f)}});
            let n = client.send("PATCH", &format!("/api/v1/nodes/{}", f.name), MERGE, &patch)?;
            log::info!("node {} already registered; using it", f.name);
            Ok(n)
        }
        Err(e) => Err(e),
    }
}

/// Publishes the Node's spec.podCIDR ("" while it has none) for the default CNI config;
/// the controller-manager may set it some time after registration.
fn publish_pod_cidr(node: &Value, cell: &Mutex<Option<String>>) {
    let cidr = node["spec"]["podCIDR"].as_str().unwrap_or("").to_string();
    let mut held = cell.lock().unwrap_or_else(|e| e.into_inner());
    if held.as_deref() != Some(cidr.as_str()) {
        if !cidr.is_empty() {
            log::info!("node podCIDR: {cidr}");
        }
        *held = Some(cidr);
    }
}

/// The lease, renewed: created when missing, replaced (optimistically, by
/// resourceVersion) otherwise.
fn renew(client: &Client, name: &str, uid: &str, seconds: u32, held: &mut Option<Value>) -> Result<(), ApiError> {
    let mut lease = status::lease(name, uid, seconds, &now_micro());
    let result = match held.as_ref().and_then(|h| h["metadata"]["resourceVersion"].as_str()) {
        Some(rv) => {
            lease["metadata"]["resourceVersion"] = rv.into();
            client.send("PUT", &lease_path(name), "application/json", &lease)
        }
        None => match client.get(&lease_path(name)) {
            Ok(existing) => {
                lease["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"].clone();
                client.send("PUT", &lease_path(name), "application/json", &lease)
            }
            Err(e) if e.not_found() => client.send("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "application/json", &lease),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(l) => {
            *held = Some(l);
            Ok(())
        }
        Err(e) => {
            // A conflict or a vanished lease: start again from a fresh read.
            *held = None;
            Err(e)
        }
    }
}

/// Runs forever: registration with back-off, then status and lease every
/// `update`. `pressure` is set by the eviction logic; `node_uid` is set once
/// the Node exists (mirror pods must name it as their owner); `pod_cidr` follows the
/// Node's spec.podCIDR.
pub fn run(client: Arc<Client>, f: Facts, t: Timing, pressure: Arc<Mutex<Pressure>>, node_uid: Arc<OnceLock<String>>, pod_cidr: Arc<Mutex<Option<String>>>) {
    let mut quiet = Quiet::default();
    let mut retry = Retry::new(Duration::from_millis(500), Duration::from_secs(7));
    let uid = loop {
        match register(&client, &f) {
            Ok(node) => {
                publish_pod_cidr(&node, &pod_cidr);
                break node["metadata"]["uid"].as_str().unwrap_or("").to_string();
            }
            Err(e) => {
                quiet.failed(&format!("registering node {}", f.name), &e);
                std::thread::sleep(retry.fail());
            }
        }
    };
    quiet.ok("node registration");
    let _ = node_uid.set(uid.clone());
    let mut written = Value::Null;
    let mut last_write: Option<Instant> = None;
    let mut lease: Option<Value> = None;
    let mut status_quiet = Quiet::default();
    let mut lease_quiet = Quiet::default();
    loop {
        let p = *pressure.lock().unwrap_or_else(|e| e.into_inner());
        let s = status::status(&f, p, &written, &now());
        let due = last_write.map_or(true, |at| at.elapsed() >= t.report);
        if due || status::changed(&s, &written) {
            match client.send("PATCH", &format!("/api/v1/nodes/{}/status", f.name), MERGE, &json!({"status": s})) {
                Ok(node) => {
                    publish_pod_cidr(&node, &pod_cidr);
                    status_quiet.ok("node status");
                    written = s;
                    last_write = Some(Instant::now());
                }
                Err(e) => status_quiet.failed("node status", &e),
            }
        }
        match renew(&client, &f.name, &uid, t.lease_seconds, &mut lease) {
            Ok(()) => lease_quiet.ok("node lease"),
            Err(e) => lease_quiet.failed("node lease", &e),
        }
        std::thread::sleep(t.update);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pod_cidr_follows_the_node() {
        let cell = std::sync::Mutex::new(None);
        super::publish_pod_cidr(&serde_json::json!({"spec": {}}), &cell);
        assert_eq!(cell.lock().unwrap().as_deref(), Some(""), "read, none yet");
        super::publish_pod_cidr(&serde_json::json!({"spec": {"podCIDR": "10.244.1.0/24"}}), &cell);
        assert_eq!(cell.lock().unwrap().as_deref(), Some("10.244.1.0/24"));
    }

    #[test]
    fn micro_time_has_six_digits() {
        let t = super::now_micro();
        let frac = t.split_once('.').unwrap().1;
        assert_eq!(frac.len(), 7, "{t}");
        assert!(frac.ends_with('Z'));
    }
}
