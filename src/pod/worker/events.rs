//! The manager's side of pod Events: where a pass of the worker records
//! what happened (`pod::events` has the type and the upstream wording) and
//! `take_events` for whoever sends them to a cluster.
//!
//! Emission follows the log lines: an error that repeats every tick
//! (a missing image, a config error, a sandbox that cannot be set up) is an
//! event when it appears or changes, as it is a log line; starts, kills,
//! probe failures and hook failures are an event each time.

use super::Manager;
use crate::api::Container;
use crate::api::events::PodEvent;
use crate::pod::events as ev;
use crate::probe::state::Kind;
use crate::probe::Outcome;
use crate::runtime::record::Record;
use crate::runtime::runc::Runtime;

impl<R: Runtime> Manager<R> {
    /// Takes the events recorded since the last call, oldest first. At most
    /// `pod::events::QUEUE_CAP` wait; past that the oldest are dropped.
    pub fn take_events(&mut self) -> Vec<PodEvent> {
        self.events.take()
    }

    /// Records an event about pod `uid`, or its container `container`.
    pub(super) fn event(&mut self, uid: &str, container: Option<&str>, warning: bool, reason: &'static str, message: String) {
        let Some(st) = self.pods.get(uid) else { return };
        let pod = &st.pod;
        let e = PodEvent {
            pod_uid: uid.to_string(),
            namespace: pod.metadata.namespace.clone(),
            pod_name: pod.metadata.name.clone(),
            field_path: container.and_then(|c| ev::field_path(pod, c)),
            warning,
            reason,
            message,
        };
        self.events.push(e);
    }

    /// The events for container `name` having just entered its current
    /// waiting reason (ErrImageNeverPull, CrashLoopBackOff, ...).
    pub(super) fn waiting_events(&mut self, uid: &str, name: &str) {
        let Some(st) = self.pods.get(uid) else { return };
        let Some((reason, message)) = st.waiting.get(name) else { return };
        let image = container(&st.pod.spec.containers, &st.pod.spec.init_containers, name).map(|c| c.image.as_str()).unwrap_or("");
        for (warning, reason, message) in ev::waiting_events(reason, message, image, name, &st.pod) {
            self.event(uid, Some(name), warning, reason, message);
        }
    }

    /// `Pulled` for a start that found its image. A start that keeps failing
    /// after the image step (config or create errors, retried every tick)
    /// does not repeat it.
    pub(super) fn pulled_event(&mut self, uid: &str, c: &Container) {
        let Some(st) = self.pods.get(uid) else { return };
        let repeat = st
            .waiting
            .get(&c.name)
            .is_some_and(|(r, _)| r == "CreateContainerConfigError" || r == "CreateContainerError");
        if !repeat {
            self.event(uid, Some(&c.name), false, ev::PULLED, ev::pulled(&c.image));
        }
    }

    /// `Unhealthy` for every failed probe, `ProbeWarning` for a warning, as
    /// upstream's prober (the sender merges repeats into a count).
    pub(super) fn probe_event(&mut self, r: &Record, kind: Kind, outcome: &Outcome) {
        let (reason, message) = match outcome {
            Outcome::Failure(msg) => (ev::UNHEALTHY, format!("{} probe failed: {msg}", kind.name())),
            Outcome::Warning(msg) => (ev::PROBE_WARNING, format!("{} probe warning: {msg}", kind.name())),
            Outcome::Success => return,
        };
        self.event(&r.pod_uid, Some(&r.container), true, reason, message);
    }

    /// A pod's sandbox (volumes, then namespaces) could not be set up.
    /// ClusterFirst fell back to Default for lack of clusterDNS: upstream's warning.
    pub(super) fn missing_cluster_dns(&mut self, uid: &str) {
        let Some(st) = self.pods.get(uid) else { return };
        let msg = crate::network::dns::missing_cluster_dns_message(&st.pod.spec.dns_policy);
        log::warn!("pod {}: {msg}", super::full_name(&st.pod));
        let message = format!("pod: {:?}. {msg}", ev::pod_desc(&st.pod));
        self.event(uid, None, true, ev::MISSING_CLUSTER_DNS, message);
    }

    pub(super) fn sandbox_event(&mut self, uid: &str, reason: &'static str, error: &str) {
        let message = if reason == ev::FAILED_MOUNT {
            format!("Unable to attach or mount volumes: {error}")
        } else {
            format!("Failed to create pod sandbox: {error}")
        };
        self.event(uid, None, true, reason, message);
    }
}

fn container<'a>(app: &'a [Container], init: &'a [Container], name: &str) -> Option<&'a Container> {
    app.iter().chain(init).find(|c| c.name == name)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::health::JobKind;
    use super::super::{Job, JobReport, Settings};
    use super::*;
    use crate::api::{Pod, Probe};
    use crate::image::Store;
    use crate::pod::status::Observed;
    use crate::runtime::RuntimeError;
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;
    use std::time::Duration;

    /// A runtime that remembers the verbs it was asked for and always succeeds.
    #[derive(Clone, Default)]
    pub(in super::super) struct Fake(pub(in super::super) Rc<RefCell<Vec<String>>>);

    impl Runtime for Fake {
        fn create(&self, id: &str, _: &Path, _: &Path, _: &Path) -> Result<u32, RuntimeError> {
            self.0.borrow_mut().push(format!("create {id}"));
            Ok(std::process::id())
        }
        fn start(&self, id: &str) -> Result<(), RuntimeError> {
            self.0.borrow_mut().push(format!("start {id}"));
            Ok(())
        }
        fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
            self.0.borrow_mut().push(format!("kill {id} {signal}"));
            Ok(())
        }
        fn delete(&self, _: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn release(&self, _: &str) {}
        fn version(&self) -> String {
            "fake://0".into()
        }
        fn exec_paths(&self) -> (PathBuf, PathBuf) {
            (PathBuf::from("runc"), PathBuf::from("/nonexistent"))
        }
    }

    /// A fresh root for one test, outside the source tree.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("picolet-events-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub(in super::super) fn manager(name: &str) -> (Manager<Fake>, Fake, PathBuf) {
        manager_in(scratch(name))
    }

    pub(in super::super) fn manager_in(root: PathBuf) -> (Manager<Fake>, Fake, PathBuf) {
        let cfg = Settings {
            root: root.clone(),
            logs_dir: root.join("logs"),
            host_ip: "127.0.0.1".into(),
            memory_capacity: 1 << 30,
            node_allocatable: crate::node::allocatable::Allocatable { cpu_milli: 2000, memory: 1 << 30 },
            cgroups: None,
            pull: None,
            metrics: Default::default(),
            network: std::sync::Arc::new(crate::network::Network::loopback_only()),
            wake: None,
        };
        let store = Store::open(&root.join("images-store")).unwrap();
        let fake = Fake::default();
        (Manager::new(cfg, fake.clone(), store), fake, root)
    }

    /// A pod that needs no namespaces of its own (so no root): host network
    /// and IPC, one container `web` whose image is not in the store.
    pub(in super::super) fn pod(uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web-node1".into();
        p.metadata.uid = uid.into();
        p.spec.host_network = true;
        p.spec.host_ipc = true;
        p.spec.containers.push(Container {
            name: "web".into(),
            image: "missing:1".into(),
            image_pull_policy: "Never".into(),
            ..Default::default()
        });
        crate::api::defaults::apply(&mut p);
        p
    }

    fn summary(events: &[PodEvent]) -> Vec<(Option<&str>, bool, &str, &str)> {
        events.iter().map(|e| (e.field_path.as_deref(), e.warning, e.reason, e.message.as_str())).collect()
    }

    /// Puts a running attempt of `web` (our own pid stands in for it).
    pub(in super::super) fn running(m: &mut Manager<Fake>, uid: &str) -> Record {
        let r = Record {
            id: format!("{uid}-web-0"),
            pod_uid: uid.into(),
            pod_namespace: "default".into(),
            pod_name: "web-node1".into(),
            container: "web".into(),
            pid: std::process::id(),
            created_at: "2024-05-01T12:00:00Z".into(),
            started_at: Some("2024-05-01T12:00:00Z".into()),
            ..Default::default()
        };
        m.pods.get_mut(uid).unwrap().attempts.entry("web".into()).or_default().push(r.clone());
        r
    }

    #[test]
    fn one_pull_for_two_pods_then_err_image_pull_and_back_off() {
        let (mut m, _, root) = manager("pull-fails");
        m.cfg.pull = Some(super::super::PullConfig {
            registries: Default::default(),
            platform: crate::image::Platform::host(),
            limit: Some(1),
        });
        // Nothing listens on port 9: the pull fails at once.
        let pods: Vec<Pod> = ["u-a", "u-b"]
            .iter()
            .map(|uid| {
                let mut p = pod(uid);
                p.metadata.name = format!("{uid}-pod");
                p.spec.containers[0].image = "127.0.0.1:9/x:1".into();
                p.spec.containers[0].image_pull_policy = "IfNotPresent".into();
                p
            })
            .collect();
        m.sync(&pods);
        assert_eq!(m.pulls.in_flight.len(), 1);
        assert_eq!(m.pulls.in_flight.values().next().unwrap().len(), 2);
        let got = m.take_events();
        let pulling: Vec<_> = got.iter().filter(|e| e.reason == "Pulling").map(|e| e.message.as_str()).collect();
        assert_eq!(pulling, ["Pulling image \"127.0.0.1:9/x:1\""; 2]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !m.pulls.in_flight.is_empty() || m.pulls.failed.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the pull did not end");
            std::thread::sleep(std::time::Duration::from_millis(20));
            m.sync(&pods);
        }
        let got = m.take_events();
        for uid in ["u-a", "u-b"] {
            let reasons: Vec<_> = got.iter().filter(|e| e.pod_uid == uid).map(|e| (e.warning, e.reason)).collect();
            assert_eq!(reasons[..2], [(true, "Failed"), (true, "Failed")], "{reasons:?}");
            let st = &m.pods[uid];
            assert!(["ErrImagePull", "ImagePullBackOff"].contains(&st.waiting["web"].0.as_str()));
        }
        assert!(got.iter().any(|e| e.message.starts_with("Failed to pull image \"127.0.0.1:9/x:1\": ")));
        // Within the back-off: no new pull, ImagePullBackOff and a BackOff Event.
        m.sync(&pods);
        assert!(m.pulls.in_flight.is_empty());
        assert_eq!(m.pods["u-a"].waiting["web"].0, "ImagePullBackOff");
        let all: Vec<_> = got.into_iter().chain(m.take_events()).collect();
        assert!(all.iter().any(|e| !e.warning && e.reason == "BackOff" && e.message == "Back-off pulling image \"127.0.0.1:9/x:1\""));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn missing_image_is_two_warnings_once() {
        let (mut m, _, root) = manager("never-pull");
        let p = pod("u-never");
        m.sync(std::slice::from_ref(&p));
        let got = m.take_events();
        let never = "Container image \"missing:1\" is not present with pull policy of Never";
        assert_eq!(
            summary(&got),
            [
                (Some("spec.containers{web}"), true, "ErrImageNeverPull", never),
                (Some("spec.containers{web}"), true, "Failed", "Error: ErrImageNeverPull"),
            ]
        );
        assert_eq!((got[0].namespace.as_str(), got[0].pod_name.as_str(), got[0].pod_uid.as_str()), ("default", "web-node1", "u-never"));
        // The same state on the next passes: logged once, an event once.
        m.sync(std::slice::from_ref(&p));
        m.sync(std::slice::from_ref(&p));
        assert!(m.take_events().is_empty());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn failed_volume_is_failed_mount_on_the_pod() {
        let (mut m, _, root) = manager("mount");
        let mut p = pod("u-mount");
        let vol = serde_json::json!({"name": "data", "hostPath": {"path": root.join("absent").to_str().unwrap(), "type": "Directory"}});
        p.spec.volumes.push(serde_json::from_value(vol).unwrap());
        // Not at once: a cluster pod's objects may still be on their way.
        m.sync(std::slice::from_ref(&p));
        assert!(m.take_events().is_empty());
        m.sandbox_grace = std::time::Duration::ZERO;
        m.sync(std::slice::from_ref(&p));
        let got = m.take_events();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].field_path.as_deref(), got[0].warning, got[0].reason), (None, true, "FailedMount"));
        assert!(got[0].message.starts_with("Unable to attach or mount volumes: volume data: "), "{}", got[0].message);
        m.sync(std::slice::from_ref(&p));
        assert!(m.take_events().is_empty());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn crash_loop_back_off() {
        let (mut m, _, root) = manager("backoff");
        let p = pod("u-back");
        m.sync(std::slice::from_ref(&p));
        m.take_events();
        // An attempt that exited just now, and a back-off already running.
        let r = running(&mut m, "u-back");
        let now = crate::api::time::now();
        let exited = Observed::Exited {
            exit_code: 1,
            reason: "Error".into(),
            message: String::new(),
            started_at: Some(now.clone()),
            finished_at: now,
        };
        m.exited.insert(r.id.clone(), exited);
        let _ = m.backoff.check("u-back/web", std::time::Duration::ZERO, std::time::Duration::ZERO);
        m.sync(std::slice::from_ref(&p));
        assert_eq!(
            summary(&m.take_events()),
            [(Some("spec.containers{web}"), true, "BackOff", "Back-off restarting failed container web in pod web-node1_default(u-back)")]
        );
        m.sync(std::slice::from_ref(&p));
        assert!(m.take_events().is_empty(), "one BackOff per back-off period");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn probe_failures_and_liveness_kill() {
        let (mut m, fake, root) = manager("probes");
        let mut p = pod("u-probe");
        let probe: Probe = serde_json::from_value(serde_json::json!({"exec": {"command": ["false"]}, "failureThreshold": 2})).unwrap();
        p.spec.containers[0].liveness_probe = Some(probe.clone());
        p.spec.containers[0].readiness_probe = Some(probe);
        m.sync(std::slice::from_ref(&p));
        let r = running(&mut m, "u-probe");
        m.sync(std::slice::from_ref(&p));
        m.take_events();
        let kinds: Vec<JobKind> = m.take_jobs().into_iter().filter(|j| j.id == r.id).map(|j: Job| j.kind).collect();
        assert!(kinds.contains(&JobKind::Probe(Kind::Liveness)), "{kinds:?}");
        let report = |kind, outcome| JobReport { id: r.id.clone(), kind: JobKind::Probe(kind), outcome, took: Duration::ZERO };
        m.report(report(Kind::Readiness, Outcome::Failure("HTTP probe failed with statuscode: 503".into())));
        m.report(report(Kind::Readiness, Outcome::Failure("HTTP probe failed with statuscode: 503".into())));
        m.report(report(Kind::Liveness, Outcome::Warning("redirect to another host".into())));
        m.report(report(Kind::Liveness, Outcome::Failure("exit code 1".into())));
        m.report(report(Kind::Liveness, Outcome::Failure("exit code 1".into())));
        let web = Some("spec.containers{web}");
        assert_eq!(
            summary(&m.take_events()),
            [
                (web, true, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
                (web, true, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
                (web, true, "ProbeWarning", "Liveness probe warning: redirect to another host"),
                (web, true, "Unhealthy", "Liveness probe failed: exit code 1"),
                (web, true, "Unhealthy", "Liveness probe failed: exit code 1"),
                (web, false, "Killing", "Container web failed liveness probe, will be restarted"),
            ]
        );
        // A result that lands once the kill began is not an event (nor a log line).
        m.report(report(Kind::Readiness, Outcome::Failure("HTTP probe failed with statuscode: 503".into())));
        assert!(m.take_events().is_empty());
        assert!(fake.0.borrow().contains(&format!("kill {} SIGTERM", r.id)));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn hooks_and_stopping() {
        let (mut m, _, root) = manager("hooks");
        let mut p = pod("u-hook");
        p.spec.restart_policy = "Never".into();
        let hook: crate::api::Lifecycle =
            serde_json::from_value(serde_json::json!({"postStart": {"exec": {"command": ["x"]}}, "preStop": {"exec": {"command": ["y"]}}})).unwrap();
        p.spec.containers[0].lifecycle = Some(hook);
        m.sync(std::slice::from_ref(&p));
        let r = running(&mut m, "u-hook");
        m.post_start.insert(r.id.clone());
        m.take_events();
        m.report(JobReport { id: r.id.clone(), kind: JobKind::PostStart, outcome: Outcome::Failure("secret output".into()), took: Duration::ZERO });
        m.report(JobReport { id: r.id.clone(), kind: JobKind::PreStop, outcome: Outcome::Failure("secret output".into()), took: Duration::ZERO });
        let web = Some("spec.containers{web}");
        // Hook output stays out of events (it may hold secrets), as upstream.
        assert_eq!(
            summary(&m.take_events()),
            [
                (web, true, "FailedPostStartHook", "PostStartHook failed"),
                (web, false, "Killing", "FailedPostStartHook"),
                (web, true, "FailedPreStopHook", "PreStopHook failed"),
            ]
        );

        // The pod goes: its other running container is stopped, once.
        let (mut m, _, root2) = manager("stopping");
        let p = pod("u-stop");
        m.sync(std::slice::from_ref(&p));
        running(&mut m, "u-stop");
        m.take_events();
        m.sync(&[]);
        m.sync(&[]);
        assert_eq!(summary(&m.take_events()), [(web, false, "Killing", "Stopping container web")]);
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(root2);
    }

    #[test]
    fn sidecar_and_never_kill_wording() {
        let (mut m, _, root) = manager("sidecar");
        let mut p = pod("u-side");
        p.spec.restart_policy = "Never".into();
        let probe: Probe = serde_json::from_value(serde_json::json!({"exec": {"command": ["false"]}, "failureThreshold": 1})).unwrap();
        p.spec.containers[0].startup_probe = Some(probe.clone());
        let mut side = p.spec.containers[0].clone();
        side.name = "side".into();
        side.restart_policy = Some("Always".into());
        side.startup_probe = None;
        side.liveness_probe = Some(probe);
        p.spec.init_containers.push(side);
        m.sync(std::slice::from_ref(&p));
        let web = running(&mut m, "u-side");
        let mut side = web.clone();
        side.id = "u-side-side-0".into();
        side.container = "side".into();
        side.init = true;
        m.pods.get_mut("u-side").unwrap().attempts.insert("side".into(), vec![side.clone()]);
        m.sync(std::slice::from_ref(&p));
        m.take_events();
        m.report(JobReport { id: web.id.clone(), kind: JobKind::Probe(Kind::Startup), outcome: Outcome::Failure("x".into()), took: Duration::ZERO });
        m.report(JobReport { id: side.id.clone(), kind: JobKind::Probe(Kind::Liveness), outcome: Outcome::Failure("y".into()), took: Duration::ZERO });
        let kills: Vec<(Option<String>, String)> =
            m.take_events().into_iter().filter(|e| e.reason == "Killing").map(|e| (e.field_path, e.message)).collect();
        assert_eq!(
            kills,
            [
                (Some("spec.containers{web}".to_string()), "Container web failed startup probe".to_string()),
                (Some("spec.initContainers{side}".to_string()), "Init container side failed liveness probe".to_string()),
            ]
        );
        let _ = std::fs::remove_dir_all(root);
    }

    /// The start path mounts the image's layers, so it needs root (and the
    /// test images); the rest of the tests here do not.
    #[test]
    #[ignore = "needs root (mounts the image's layers): tests/run.sh runs it"]
    fn start_is_pulled_created_started() {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let (mut m, fake, root) = manager_in(crate::image::testutil::scratch("events-start"));
        m.images.import_archive(&crate::image::testutil::images().join("busybox.tar")).unwrap();
        let mut p = pod("u-start");
        p.spec.containers[0].image = "busybox".into();
        p.spec.containers[0].image_pull_policy = "IfNotPresent".into();
        m.sync(std::slice::from_ref(&p));
        let web = Some("spec.containers{web}");
        assert_eq!(
            summary(&m.take_events()),
            [
                (web, false, "Pulled", "Container image \"busybox\" already present on machine"),
                (web, false, "Created", "Created container: web"),
                (web, false, "Started", "Started container web"),
            ]
        );
        assert_eq!(fake.0.borrow().len(), 2, "create and start");
        let dir = crate::runtime::record::dir(&root, "u-start-web-0");
        crate::image::unmount_rootfs(&dir).unwrap();
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn untaken_events_are_bounded() {
        let (mut m, _, root) = manager("bounded");
        m.sync(&[pod("u-many")]);
        for i in 0..ev::QUEUE_CAP + 5 {
            m.event("u-many", None, false, ev::PULLED, i.to_string());
        }
        m.event("not-a-pod", None, false, ev::PULLED, "ignored".into());
        let got = m.take_events();
        assert_eq!(got.len(), ev::QUEUE_CAP);
        assert_eq!(got.last().unwrap().message, (ev::QUEUE_CAP + 4).to_string());
        let _ = std::fs::remove_dir_all(root);
    }
}
