//! Pod status as the upstream kubelet computes it: phase, conditions,
//! container statuses with their waiting/running/terminated reasons, QoS.
//! Pure: it takes what the worker observed and returns a `PodStatus`.

use crate::api::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, PodCondition, PodIp, PodStatus,
};

/// What one container attempt looks like from outside.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Created by the runtime, not started yet.
    Created,
    Running { started_at: String },
    Exited { exit_code: i32, reason: String, message: String, started_at: Option<String>, finished_at: String },
}

impl Observed {
    pub fn exited_ok(&self) -> bool {
        matches!(self, Observed::Exited { exit_code: 0, .. })
    }
}

/// One attempt of a container as the status needs it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempt: u32,
    pub id: String,
    pub image: String,
    pub image_id: String,
    pub observed: Observed,
}

/// A container of the pod: its latest and previous attempts and, if picolet
/// cannot run it now, why.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub latest: Option<Attempt>,
    pub previous: Option<Attempt>,
    pub waiting: Option<(String, String)>,
    /// For a running attempt: its startup probe passed (or it has none).
    pub started: bool,
    /// For a running attempt: started and its readiness probe passing (or none).
    pub ready: bool,
    /// For a running attempt: its postStart hook has not returned yet, so
    /// it is reported as still being created.
    pub post_start_pending: bool,
}

pub struct PodView<'a> {
    pub pod: &'a Pod,
    pub init: Vec<ContainerView>,
    pub app: Vec<ContainerView>,
    pub sandbox_ready: bool,
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    pub start_time: &'a str,
    /// Set when the pod was stopped for good (init failure with restartPolicy Never, eviction).
    pub failed_message: Option<String>,
    /// The status reason of such a pod ("Evicted"), empty for none.
    pub failed_reason: &'a str,
}

pub fn compute(v: &PodView, previous: Option<&PodStatus>, now: &str) -> PodStatus {
    let spec = &v.pod.spec;
    let has_init = !spec.init_containers.is_empty();
    let init_statuses: Vec<ContainerStatus> =
        spec.init_containers.iter().zip(&v.init).map(|(c, cv)| container_status(c, cv, true, true)).collect();
    let app_statuses: Vec<ContainerStatus> =
        spec.containers.iter().zip(&v.app).map(|(c, cv)| container_status(c, cv, false, has_init)).collect();

    // Once an app container has run, the pod stays initialized (upstream's
    // HasAnyRegularContainerStarted): a sidecar that stops, as it does when
    // the pod ends, does not send it back to Pending.
    let app_started = app_statuses.iter().any(|s| s.state.running.is_some() || s.state.terminated.is_some());
    let initialized = app_started || v.init.iter().zip(&spec.init_containers).all(|(cv, c)| init_done(c, cv));
    let phase = if v.failed_message.is_some() {
        "Failed".to_string()
    } else if !initialized {
        "Pending".to_string()
    } else {
        app_phase(&spec.restart_policy, &app_statuses)
    };
    let terminal = phase == "Succeeded" || phase == "Failed";

    let mut conditions = Vec::new();
    let mut cond = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" }.to_string();
        let last = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone());
        conditions.push(PodCondition {
            type_: type_.into(),
            status,
            last_probe_time: None,
            last_transition_time: Some(last.unwrap_or_else(|| now.to_string())),
            reason: if ok { String::new() } else { reason.into() },
            message: if ok { String::new() } else { message },
        });
    };
    // As upstream: whether the sandbox (the pod's network) is up, which a pod
    // that ended keeps until it is torn down; False then says its IP is free.
    cond("PodReadyToStartContainers", v.sandbox_ready, "", String::new());
    let pending_init: Vec<&str> = spec
        .init_containers
        .iter()
        .zip(&v.init)
        .filter(|(c, cv)| !init_done(c, cv))
        .map(|(c, _)| c.name.as_str())
        .collect();
    cond(
        "Initialized",
        initialized,
        "ContainersNotInitialized",
        format!("containers with incomplete status: [{}]", pending_init.join(" ")),
    );
    let unready: Vec<&str> = app_statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let (reason, message) = if terminal {
        ("PodCompleted", String::new())
    } else {
        ("ContainersNotReady", format!("containers with unready status: [{}]", unready.join(" ")))
    };
    cond("ContainersReady", unready.is_empty() && !terminal, reason, message.clone());
    cond("Ready", unready.is_empty() && !terminal, reason, message);
    cond("PodScheduled", true, "", String::new());

    let ip_list = |ip: &str| if ip.is_empty() { vec![] } else { vec![PodIp { ip: ip.to_string() }] };
    PodStatus {
        phase,
        conditions,
        message: v.failed_message.clone().unwrap_or_default(),
        reason: if v.failed_message.is_some() { v.failed_reason.to_string() } else { String::new() },
        host_ip: v.host_ip.to_string(),
        host_ips: ip_list(v.host_ip),
        pod_ip: v.pod_ip.to_string(),
        pod_ips: ip_list(v.pod_ip),
        start_time: Some(v.start_time.to_string()),
        init_container_statuses: init_statuses,
        container_statuses: app_statuses,
        qos_class: crate::api::qos::qos_class(v.pod).to_string(),
        observed_generation: v.pod.metadata.generation,
    }
}

/// An init container is done when it succeeded; a sidecar (restartPolicy
/// Always) once it is running.
pub fn init_done(c: &Container, cv: &ContainerView) -> bool {
    match cv.latest.as_ref().map(|a| &a.observed) {
        Some(Observed::Running { .. }) => c.is_sidecar(),
        Some(o) => o.exited_ok() && !c.is_sidecar(),
        None => false,
    }
}

fn app_phase(policy: &str, statuses: &[ContainerStatus]) -> String {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        if s.state.running.is_some() {
            running += 1;
        } else if let Some(t) = &s.state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.terminated.is_some() {
            stopped += 1; // crash looping: it ran, it will run again
        } else {
            waiting += 1;
        }
    }
    let phase = if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        }
    } else {
        "Pending"
    };
    phase.to_string()
}

fn terminated(a: &Attempt) -> Option<ContainerStateTerminated> {
    match &a.observed {
        Observed::Exited { exit_code, reason, message, started_at, finished_at } => Some(ContainerStateTerminated {
            exit_code: *exit_code,
            signal: None,
            reason: reason.clone(),
            message: message.clone(),
            started_at: started_at.clone(),
            finished_at: Some(finished_at.clone()),
            container_id: format!("runc://{}", a.id),
        }),
        _ => None,
    }
}

fn container_status(c: &Container, cv: &ContainerView, init: bool, has_init: bool) -> ContainerStatus {
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting { reason: reason.into(), message: message.into() }),
        ..Default::default()
    };
    let mut st = ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        ..Default::default()
    };
    let latest = cv.latest.as_ref();
    if let Some(a) = latest {
        st.restart_count = a.attempt as i32;
        st.image = a.image.clone();
        st.image_id = a.image_id.clone();
        st.container_id = format!("runc://{}", a.id);
    }
    let prev_terminated = cv.previous.as_ref().and_then(terminated);
    match (latest.map(|a| &a.observed), &cv.waiting) {
        (Some(Observed::Running { .. }), _) if cv.post_start_pending => {
            st.state = waiting("ContainerCreating", "");
            st.last_state = ContainerState { terminated: prev_terminated, ..Default::default() };
            st.started = Some(false);
        }
        (Some(Observed::Running { started_at }), _) => {
            st.state = ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(started_at.clone()) }),
                ..Default::default()
            };
            st.last_state = ContainerState { terminated: prev_terminated, ..Default::default() };
            st.ready = (!init || c.is_sidecar()) && cv.ready;
            st.started = Some(cv.started);
        }
        (Some(Observed::Exited { .. }), Some((reason, message))) => {
            // Waiting to run again (back-off): the attempt that ended is lastState.
            st.state = waiting(reason, message);
            st.last_state = ContainerState { terminated: latest.and_then(terminated), ..Default::default() };
            st.started = Some(false);
        }
        (Some(Observed::Exited { .. }), None) => {
            st.state = ContainerState { terminated: latest.and_then(terminated), ..Default::default() };
            st.last_state = ContainerState { terminated: prev_terminated, ..Default::default() };
            st.started = Some(false);
        }
        (Some(Observed::Created), _) | (None, None) => {
            // Upstream's default: PodInitializing in a pod with init containers.
            st.state = waiting(if has_init { "PodInitializing" } else { "ContainerCreating" }, "");
            st.last_state = ContainerState { terminated: prev_terminated, ..Default::default() };
            st.started = Some(false);
        }
        (None, Some((reason, message))) => {
            st.state = waiting(reason, message);
            st.started = Some(false);
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PodSpec;

    fn pod(policy: &str, names: &[&str]) -> Pod {
        Pod {
            spec: PodSpec {
                restart_policy: policy.into(),
                containers: names.iter().map(|n| Container { name: n.to_string(), image: "busybox".into(), ..Default::default() }).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn attempt(n: u32, o: Observed) -> Attempt {
        Attempt { attempt: n, id: format!("id{n}"), image: "busybox".into(), image_id: "sha256:x".into(), observed: o }
    }

    fn exited(code: i32) -> Observed {
        Observed::Exited {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: String::new(),
            started_at: Some("t0".into()),
            finished_at: "t1".into(),
        }
    }

    fn view<'a>(p: &'a Pod, app: Vec<ContainerView>) -> PodView<'a> {
        PodView { pod: p, init: vec![], app, sandbox_ready: true, host_ip: "10.0.0.1", pod_ip: "10.0.0.1", start_time: "t", failed_message: None, failed_reason: "" }
    }

    #[test]
    fn running_pod_is_ready() {
        let p = pod("Always", &["a"]);
        let cv = ContainerView { latest: Some(attempt(0, Observed::Running { started_at: "t0".into() })), started: true, ready: true, ..Default::default() };
        let s = compute(&view(&p, vec![cv]), None, "now");
        assert_eq!(s.phase, "Running");
        assert!(s.container_statuses[0].ready);
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(s.qos_class, "BestEffort");
    }

    #[test]
    fn probes_set_started_and_ready() {
        let p = pod("Always", &["a"]);
        let run = |started, ready, post_start_pending| ContainerView {
            latest: Some(attempt(0, Observed::Running { started_at: "t0".into() })),
            started,
            ready,
            post_start_pending,
            ..Default::default()
        };
        let s = compute(&view(&p, vec![run(true, false, false)]), None, "now");
        let c = &s.container_statuses[0];
        assert!(c.state.running.is_some() && !c.ready && c.started == Some(true));
        assert_eq!(s.phase, "Running");
        for t in ["ContainersReady", "Ready"] {
            let cond = s.conditions.iter().find(|c| c.type_ == t).unwrap();
            assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("False", "ContainersNotReady"));
            assert_eq!(cond.message, "containers with unready status: [a]");
        }
        let s = compute(&view(&p, vec![run(false, false, false)]), None, "now");
        assert_eq!(s.container_statuses[0].started, Some(false));
        // postStart still running: not Running yet.
        let s = compute(&view(&p, vec![run(false, false, true)]), None, "now");
        assert_eq!(s.container_statuses[0].state.waiting.as_ref().unwrap().reason, "ContainerCreating");
        assert_eq!(s.phase, "Pending");
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        let p = pod("Always", &["a"]);
        let cv = ContainerView {
            latest: Some(attempt(3, exited(1))),
            previous: Some(attempt(2, exited(1))),
            waiting: Some(("CrashLoopBackOff".into(), "back-off 40s restarting failed container=a".into())),
            ..Default::default()
        };
        let s = compute(&view(&p, vec![cv]), None, "now");
        let c = &s.container_statuses[0];
        assert_eq!(c.state.waiting.as_ref().unwrap().reason, "CrashLoopBackOff");
        assert_eq!(c.last_state.terminated.as_ref().unwrap().exit_code, 1);
        assert_eq!(c.restart_count, 3);
        assert_eq!(s.phase, "Running");
    }

    #[test]
    fn phases_for_finished_pods() {
        let p = pod("Never", &["a", "b"]);
        let ok = ContainerView { latest: Some(attempt(0, exited(0))), ..Default::default() };
        let bad = ContainerView { latest: Some(attempt(0, exited(2))), ..Default::default() };
        assert_eq!(compute(&view(&p, vec![ok.clone(), ok.clone()]), None, "n").phase, "Succeeded");
        assert_eq!(compute(&view(&p, vec![ok.clone(), bad.clone()]), None, "n").phase, "Failed");
        let p = pod("OnFailure", &["a"]);
        assert_eq!(compute(&view(&p, vec![ok]), None, "n").phase, "Succeeded");
        let none = ContainerView::default();
        let s = compute(&view(&p, vec![none]), None, "n");
        assert_eq!(s.phase, "Pending");
        assert_eq!(s.container_statuses[0].state.waiting.as_ref().unwrap().reason, "ContainerCreating");
    }

    #[test]
    fn a_stopped_sidecar_does_not_uninitialize_a_pod_that_ran() {
        let mut p = pod("Never", &["a"]);
        let sidecar = Container { name: "side".into(), image: "busybox".into(), restart_policy: Some("Always".into()), ..Default::default() };
        p.spec.init_containers = vec![sidecar];
        let stopped = ContainerView { latest: Some(attempt(0, exited(0))), ..Default::default() };
        let with = |app: ContainerView| {
            let mut v = view(&p, vec![app]);
            v.init = vec![stopped.clone()];
            compute(&v, None, "n")
        };
        let done = with(ContainerView { latest: Some(attempt(0, exited(0))), ..Default::default() });
        assert_eq!(done.phase, "Succeeded");
        assert!(done.conditions.iter().any(|c| c.type_ == "Initialized" && c.status == "True"));
        // Before any app container ran, a sidecar that is not running holds the pod back.
        let early = with(ContainerView::default());
        assert_eq!(early.phase, "Pending");
        assert!(early.conditions.iter().any(|c| c.type_ == "Initialized" && c.status == "False"));
    }

    #[test]
    fn an_ended_pod_is_ready_to_start_containers_until_its_sandbox_goes() {
        let p = pod("Never", &["a"]);
        let done = || vec![ContainerView { latest: Some(attempt(0, exited(0))), ..Default::default() }];
        let cond = |s: &PodStatus| s.conditions.iter().find(|c| c.type_ == "PodReadyToStartContainers").unwrap().status.clone();
        let up = compute(&view(&p, done()), None, "t1");
        assert_eq!((up.phase.as_str(), cond(&up).as_str()), ("Succeeded", "True"));
        let mut v = view(&p, done());
        v.sandbox_ready = false;
        let torn_down = compute(&v, Some(&up), "t2");
        assert_eq!(cond(&torn_down), "False");
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let p = pod("Always", &["a"]);
        let first = compute(&view(&p, vec![ContainerView::default()]), None, "t1");
        let second = compute(&view(&p, vec![ContainerView::default()]), Some(&first), "t2");
        let ready = second.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time.as_deref(), Some("t1"));
    }

}
