//! Pods from the API server: list, then watch from the list's
//! resourceVersion, all filtered by `spec.nodeName=<node>` (the only pod
//! query the Node authorizer allows a kubelet). Runs on its own thread and
//! hands decoded pods to the pod loop; a 410 Gone relists, any other failure
//! retries with capped, jittered back-off. No per-pod polling.

use crate::api::client::{query_escape, ApiError, Client, Quiet, Retry};
use crate::api::{decode, defaults, validate, ObjectMeta, Pod};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A pod as the API server sent it: understood, or not (with why).
#[derive(Debug, Clone)]
pub enum ApiPod {
    Ok(Box<Pod>),
    /// A pod picolet cannot run (unknown enum value, undecodable field...):
    /// reported on the pod, never run, never a panic.
    Rejected { meta: ObjectMeta, reason: String },
}

impl ApiPod {
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            ApiPod::Ok(p) => &p.metadata,
            ApiPod::Rejected { meta, .. } => meta,
        }
    }
}

pub enum Update {
    /// A fresh list: the complete set of pods bound to the node.
    Synced(Vec<ApiPod>),
    Upsert(ApiPod),
    Deleted { uid: String },
    /// The object fetcher stored something pods may be waiting for.
    Objects,
}

/// Decodes one API pod: defaults as the API server applied them (a no-op for
/// what it already set), then the same validation as static pods.
pub fn decode(v: Value) -> ApiPod {
    let meta: ObjectMeta = serde_json::from_value(v.get("metadata").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    let mut pod = match decode::pod_from_json(v) {
        Ok(p) => p,
        Err(e) => {
            let field = if e.field.is_empty() { String::new() } else { format!("{}: ", e.field) };
            return ApiPod::Rejected { meta, reason: format!("{field}{}", e.reason) };
        }
    };
    defaults::apply(&mut pod);
    // As upstream marks a pod's source; static pods say "file".
    pod.metadata.annotations.insert("kubernetes.io/config.source".into(), "api".into());
    match validate::validate(&pod) {
        Ok(()) => ApiPod::Ok(Box::new(pod)),
        Err(errs) => {
            let reason = errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
            ApiPod::Rejected { meta: pod.metadata, reason }
        }
    }
}

/// How long the API server keeps one watch open before we start another.
const WATCH_SECONDS: u64 = 300;

fn list(client: &Client, node: &str) -> Result<(Vec<ApiPod>, String), ApiError> {
    let sel = query_escape(&format!("spec.nodeName={node}"));
    let op = format!("GET /api/v1/pods?fieldSelector={sel}");
    let mut v = client.get(&format!("/api/v1/pods?fieldSelector={sel}"))?;
    if !v.is_object() {
        // Not a PodList (and indexing it to write would panic): try again later.
        return Err(ApiError { op, status: 0, reason: String::new(), message: "bad response: not a JSON object".into() });
    }
    let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
    let items = match v["items"].take() {
        Value::Array(items) => items.into_iter().map(decode).collect(),
        _ => Vec::new(),
    };
    Ok((items, rv))
}

/// Lists and watches forever, sending updates to `tx`. Stops when the
/// receiver is gone.
pub fn run(client: Arc<Client>, node: String, tx: smol::channel::Sender<Update>) {
    let mut quiet = Quiet::default();
    let mut retry = Retry::new(Duration::from_millis(500), Duration::from_secs(5));
    let sel = query_escape(&format!("spec.nodeName={node}"));
    'relist: loop {
        let (items, mut rv) = match list(&client, &node) {
            Ok(x) => x,
            Err(e) => {
                quiet.failed("listing pods", &e);
                std::thread::sleep(retry.fail());
                continue;
            }
        };
        quiet.ok("pod list");
        retry.reset();
        if tx.send_blocking(Update::Synced(items)).is_err() {
            return;
        }
        loop {
            let path = format!("/api/v1/pods?fieldSelector={sel}&watch=1&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds={WATCH_SECONDS}");
            let events = match client.watch(&path, Duration::from_secs(WATCH_SECONDS)) {
                Ok(ev) => ev,
                Err(e) if e.gone() => continue 'relist,
                Err(e) => {
                    quiet.failed("watching pods", &e);
                    std::thread::sleep(retry.fail());
                    // Resume from where we were; a 410 will tell us to relist.
                    continue;
                }
            };
            quiet.ok("pod watch");
            retry.reset();
            for ev in events {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) if e.gone() => continue 'relist,
                    Err(e) => {
                        quiet.failed("watching pods", &e);
                        break;
                    }
                };
                if let Some(v) = ev.object["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
                let update = match ev.kind.as_str() {
                    "ADDED" | "MODIFIED" => Update::Upsert(decode(ev.object)),
                    "DELETED" => Update::Deleted { uid: ev.object["metadata"]["uid"].as_str().unwrap_or("").to_string() },
                    _ => continue, // BOOKMARK: only the resourceVersion matters
                };
                if tx.send_blocking(update).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A list answer that is JSON but no object (a broken proxy): an error
    /// to retry, not a panic on indexing it.
    #[test]
    fn a_list_that_is_not_an_object_is_an_error() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n[1,2]");
        });
        let kc = crate::api::kubeconfig::Kubeconfig {
            server: format!("http://127.0.0.1:{port}"),
            ca_pem: None,
            insecure: false,
            client_cert_pem: None,
            client_key_pem: None,
            token: None,
            token_file: None,
        };
        let e = list(&Client::new(&kc).unwrap(), "n").err().expect("an error");
        assert_eq!(e.message, "bad response: not a JSON object");
    }

    fn pod(extra: Value) -> Value {
        let mut p = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "5"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "busybox"}]},
        });
        if let (Some(a), Value::Object(b)) = (p.as_object_mut(), extra) {
            for (k, v) in b {
                a.insert(k, v);
            }
        }
        p
    }

    #[test]
    fn decodes_and_defaults() {
        match decode(pod(json!({}))) {
            ApiPod::Ok(p) => {
                assert_eq!(p.metadata.uid, "u1");
                assert_eq!(p.spec.restart_policy, "Always");
            }
            ApiPod::Rejected { reason, .. } => panic!("{reason}"),
        }
    }

    #[test]
    fn unknown_enum_values_and_bad_types_are_rejected_with_the_field() {
        let mut v = pod(json!({}));
        v["spec"]["restartPolicy"] = "Sometimes".into();
        match decode(v) {
            ApiPod::Rejected { meta, reason } => {
                assert_eq!(meta.uid, "u1");
                assert!(reason.contains("restartPolicy"), "{reason}");
            }
            ApiPod::Ok(_) => panic!("accepted"),
        }
        let mut v = pod(json!({}));
        v["spec"]["containers"][0]["ports"] = json!([{"containerPort": "eighty"}]);
        match decode(v) {
            ApiPod::Rejected { meta, reason } => {
                assert_eq!(meta.name, "web");
                assert!(reason.contains("containerPort"), "{reason}");
            }
            ApiPod::Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn huge_annotations_are_just_data() {
        let mut v = pod(json!({}));
        v["metadata"]["annotations"] = json!({"big": "x".repeat(256 << 10)});
        assert!(matches!(decode(v), ApiPod::Ok(_)));
    }
}
