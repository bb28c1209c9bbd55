//! Kubernetes Events about pods, as the pod worker emits them: the reasons
//! and message wording of the upstream kubelet (1.34), and a bounded queue
//! the worker fills and a cluster client drains (`Manager::take_events`).
//!
//! Pure. What is sent, merged or dropped is decided by `api::events`, which
//! also defines the `PodEvent` it takes; here only what happened.
//! Standalone picolet logs the same facts and never drains the queue, so it
//! stays at its bound.

use crate::api::events::PodEvent;
use crate::api::Pod;
use std::collections::VecDeque;

// The upstream reasons (pkg/kubelet/events) picolet emits.
pub const PULLED: &str = "Pulled";
pub const PULLING: &str = "Pulling";
pub const CREATED: &str = "Created";
pub const STARTED: &str = "Started";
pub const FAILED: &str = "Failed";
pub const KILLING: &str = "Killing";
pub const BACK_OFF: &str = "BackOff";
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub const INSPECT_FAILED: &str = "InspectFailed";
pub const UNHEALTHY: &str = "Unhealthy";
pub const PROBE_WARNING: &str = "ProbeWarning";
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";
pub const FAILED_MOUNT: &str = "FailedMount";
pub const FAILED_CREATE_POD_SANDBOX: &str = "FailedCreatePodSandBox";
pub const EVICTED: &str = "Evicted";
pub const MISSING_CLUSTER_DNS: &str = "MissingClusterDNS";

/// Where a container's events point: upstream's GenerateContainerRef.
/// None when the pod has no container of that name.
pub fn field_path(pod: &Pod, container: &str) -> Option<String> {
    if pod.spec.containers.iter().any(|c| c.name == container) {
        Some(format!("spec.containers{{{container}}}"))
    } else if pod.spec.init_containers.iter().any(|c| c.name == container) {
        Some(format!("spec.initContainers{{{container}}}"))
    } else {
        None
    }
}

/// `name_namespace(uid)`, upstream's format.Pod, used in BackOff messages.
pub fn pod_desc(pod: &Pod) -> String {
    format!("{}_{}({})", pod.metadata.name, pod.metadata.namespace, pod.metadata.uid)
}

/// The events upstream records when a container cannot be started for
/// `reason` (a waiting reason) with status message `message`: a specific
/// one, then `Failed` with `Error: ...` as startContainer adds. Each is
/// (warning, reason, message).
pub fn waiting_events(reason: &str, message: &str, image: &str, container: &str, pod: &Pod) -> Vec<(bool, &'static str, String)> {
    match reason {
        "ErrImageNeverPull" => vec![
            (true, ERR_IMAGE_NEVER_PULL, message.to_string()),
            (true, FAILED, "Error: ErrImageNeverPull".into()),
        ],
        "ErrImagePull" => vec![
            (true, FAILED, format!("Failed to pull image {image:?}: {message}")),
            (true, FAILED, "Error: ErrImagePull".into()),
        ],
        "ImagePullBackOff" => vec![(false, BACK_OFF, format!("Back-off pulling image {image:?}"))],
        "InvalidImageName" => vec![
            (true, INSPECT_FAILED, format!("Failed to apply default image tag {image:?}: {message}")),
            (true, FAILED, "Error: InvalidImageName".into()),
        ],
        "CreateContainerConfigError" | "CreateContainerError" => vec![(true, FAILED, format!("Error: {message}"))],
        "CrashLoopBackOff" => vec![(
            true,
            BACK_OFF,
            format!("Back-off restarting failed container {container} in pod {}", pod_desc(pod)),
        )],
        _ => Vec::new(),
    }
}

pub fn pulled(image: &str) -> String {
    format!("Container image {image:?} already present on machine")
}

pub fn pulling(image: &str) -> String {
    format!("Pulling image {image:?}")
}

pub fn created(container: &str) -> String {
    format!("Created container: {container}")
}

pub fn started(container: &str) -> String {
    format!("Started container {container}")
}

pub fn stopping(container: &str) -> String {
    format!("Stopping container {container}")
}

/// The Killing message for a liveness (or startup) probe failure:
/// `kind` is "liveness" or "startup". Sidecars are always restarted and
/// say so differently, as upstream's init container actions do.
pub fn probe_kill(container: &str, kind: &str, sidecar: bool, restart: bool) -> String {
    if sidecar {
        format!("Init container {container} failed {kind} probe")
    } else if restart {
        format!("Container {container} failed {kind} probe, will be restarted")
    } else {
        format!("Container {container} failed {kind} probe")
    }
}

/// Events waiting to be taken, oldest first; past `cap` the oldest go.
pub struct Queue {
    items: VecDeque<PodEvent>,
    cap: usize,
    dropped: u64,
}

/// How many events pile up untaken before the oldest are dropped.
pub const QUEUE_CAP: usize = 1000;

impl Default for Queue {
    fn default() -> Queue {
        Queue::new(QUEUE_CAP)
    }
}

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue { items: VecDeque::new(), cap: cap.max(1), dropped: 0 }
    }

    pub fn push(&mut self, e: PodEvent) {
        if self.items.len() >= self.cap {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(e);
    }

    pub fn take(&mut self) -> Vec<PodEvent> {
        if self.dropped > 0 {
            log::debug!("{} pod event(s) dropped: more than {} waited to be taken", self.dropped, self.cap);
            self.dropped = 0;
        }
        let out: Vec<PodEvent> = self.items.drain(..).collect();
        // Give back what a long undrained queue grew to.
        self.items.shrink_to(16);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Container;

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web-node1".into();
        p.metadata.namespace = "default".into();
        p.metadata.uid = "u-1".into();
        p.spec.containers.push(Container { name: "app".into(), ..Default::default() });
        p.spec.init_containers.push(Container { name: "init".into(), ..Default::default() });
        p
    }

    #[test]
    fn field_paths() {
        let p = pod();
        assert_eq!(field_path(&p, "app").as_deref(), Some("spec.containers{app}"));
        assert_eq!(field_path(&p, "init").as_deref(), Some("spec.initContainers{init}"));
        assert_eq!(field_path(&p, "nope"), None);
    }

    #[test]
    fn upstream_wording() {
        let p = pod();
        assert_eq!(pulled("busybox:1.36"), "Container image \"busybox:1.36\" already present on machine");
        assert_eq!(created("app"), "Created container: app");
        assert_eq!(started("app"), "Started container app");
        assert_eq!(stopping("app"), "Stopping container app");
        assert_eq!(probe_kill("app", "liveness", false, true), "Container app failed liveness probe, will be restarted");
        assert_eq!(probe_kill("app", "startup", false, false), "Container app failed startup probe");
        assert_eq!(probe_kill("side", "liveness", true, true), "Init container side failed liveness probe");
        assert_eq!(
            waiting_events("CrashLoopBackOff", "back-off 10s ...", "img", "app", &p),
            vec![(true, "BackOff", "Back-off restarting failed container app in pod web-node1_default(u-1)".to_string())]
        );
        let never = "Container image \"x:1\" is not present with pull policy of Never";
        assert_eq!(
            waiting_events("ErrImageNeverPull", never, "x:1", "app", &p),
            vec![(true, "ErrImageNeverPull", never.to_string()), (true, "Failed", "Error: ErrImageNeverPull".to_string())]
        );
        let invalid = waiting_events("InvalidImageName", "bad reference", "X::", "app", &p);
        assert_eq!(invalid[0], (true, "InspectFailed", "Failed to apply default image tag \"X::\": bad reference".to_string()));
        assert_eq!(invalid[1].2, "Error: InvalidImageName");
        let pull = waiting_events("ErrImagePull", "not in the local store", "x:1", "app", &p);
        assert_eq!(pull[0].2, "Failed to pull image \"x:1\": not in the local store");
        assert_eq!(pull[1].2, "Error: ErrImagePull");
        assert_eq!(
            waiting_events("CreateContainerConfigError", "container has runAsNonRoot", "x", "app", &p),
            vec![(true, "Failed", "Error: container has runAsNonRoot".to_string())]
        );
        assert!(waiting_events("ContainerCreating", "", "x", "app", &p).is_empty());
    }

    #[test]
    fn queue_drops_oldest_past_its_bound() {
        let mut q = Queue::new(3);
        for i in 0..5 {
            q.push(PodEvent {
                pod_uid: "u".into(),
                namespace: "ns".into(),
                pod_name: "p".into(),
                field_path: None,
                warning: false,
                reason: PULLED,
                message: i.to_string(),
            });
        }
        assert_eq!(q.dropped, 2);
        let got: Vec<String> = q.take().into_iter().map(|e| e.message).collect();
        assert_eq!(got, ["2", "3", "4"]);
        assert!(q.take().is_empty());
        assert_eq!(q.dropped, 0);
    }
}
