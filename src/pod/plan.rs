//! What a running pod needs next, decided from its spec and the latest
//! observed attempt of each container. Pure: the worker performs the steps.

use super::status::Observed;
use crate::api::PodSpec;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create and start the first attempt of a container.
    Start { name: String, init: bool },
    /// picolet stopped between `create` and `start`: finish the start.
    FinishStart { name: String },
    /// The container ended and its restart policy wants it back (subject to back-off).
    Restart { name: String, init: bool },
    /// An init container failed under restartPolicy Never: the pod is over.
    Fail { message: String },
}

/// Init containers run one at a time, in order, each to success (a sidecar,
/// `restartPolicy: Always`, only has to be running); app containers start
/// once all init containers are done, and restart as restartPolicy says.
pub fn plan(spec: &PodSpec, latest: &HashMap<String, Observed>) -> Vec<Step> {
    let mut steps = Vec::new();
    for c in &spec.init_containers {
        let sidecar = c.is_sidecar();
        let name = c.name.clone();
        match latest.get(&c.name) {
            None => {
                steps.push(Step::Start { name, init: true });
                return steps;
            }
            Some(Observed::Created) => {
                steps.push(Step::FinishStart { name });
                return steps;
            }
            Some(Observed::Running { .. }) if sidecar => {}
            Some(Observed::Running { .. }) => return steps,
            Some(o) if o.exited_ok() && !sidecar => {}
            Some(_) if sidecar => steps.push(Step::Restart { name, init: true }),
            Some(_) if spec.restart_policy == "Never" => {
                steps.push(Step::Fail { message: format!("init container {} failed", c.name) });
                return steps;
            }
            Some(_) => {
                steps.push(Step::Restart { name, init: true });
                return steps;
            }
        }
    }
    for c in &spec.containers {
        let name = c.name.clone();
        match latest.get(&c.name) {
            None => steps.push(Step::Start { name, init: false }),
            Some(Observed::Created) => steps.push(Step::FinishStart { name }),
            Some(Observed::Running { .. }) => {}
            Some(Observed::Exited { exit_code, .. }) => {
                if restarts(&spec.restart_policy, *exit_code) {
                    steps.push(Step::Restart { name, init: false });
                }
            }
        }
    }
    steps
}

/// Whether an app container that exited with `exit_code` runs again under
/// the pod's restartPolicy.
fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Whether the pod is over: every app container exited and none will run
/// again (Succeeded or Failed). Sidecars do not count: upstream stops them
/// once the app containers are done.
pub fn ended(spec: &PodSpec, latest: &HashMap<String, Observed>) -> bool {
    !spec.containers.is_empty()
        && spec.containers.iter().all(|c| match latest.get(&c.name) {
            Some(Observed::Exited { exit_code, .. }) => !restarts(&spec.restart_policy, *exit_code),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Container;

    fn spec(policy: &str, init: &[(&str, bool)], app: &[&str]) -> PodSpec {
        let c = |n: &str| Container { name: n.into(), image: "busybox".into(), ..Default::default() };
        PodSpec {
            restart_policy: policy.into(),
            init_containers: init
                .iter()
                .map(|(n, sidecar)| Container { restart_policy: sidecar.then(|| "Always".into()), ..c(n) })
                .collect(),
            containers: app.iter().map(|n| c(n)).collect(),
            ..Default::default()
        }
    }

    fn running() -> Observed {
        Observed::Running { started_at: "t".into() }
    }

    fn exited(code: i32) -> Observed {
        Observed::Exited { exit_code: code, reason: String::new(), message: String::new(), started_at: None, finished_at: "t".into() }
    }

    fn state(pairs: &[(&str, Observed)]) -> HashMap<String, Observed> {
        pairs.iter().map(|(n, o)| (n.to_string(), o.clone())).collect()
    }

    fn start(n: &str, init: bool) -> Step {
        Step::Start { name: n.into(), init }
    }

    fn restart(n: &str, init: bool) -> Step {
        Step::Restart { name: n.into(), init }
    }

    #[test]
    fn init_containers_one_at_a_time() {
        let s = spec("Always", &[("a", false), ("b", false)], &["x", "y"]);
        assert_eq!(plan(&s, &state(&[])), [start("a", true)]);
        assert_eq!(plan(&s, &state(&[("a", running())])), []);
        assert_eq!(plan(&s, &state(&[("a", exited(0))])), [start("b", true)]);
        assert_eq!(plan(&s, &state(&[("a", exited(0)), ("b", exited(0))])), [start("x", false), start("y", false)]);
        assert_eq!(plan(&s, &state(&[("a", exited(1))])), [restart("a", true)]);
        assert_eq!(plan(&s, &state(&[("a", Observed::Created)])), [Step::FinishStart { name: "a".into() }]);
    }

    #[test]
    fn failed_init_under_never_fails_the_pod() {
        let s = spec("Never", &[("a", false)], &["x"]);
        assert_eq!(plan(&s, &state(&[("a", exited(3))])), [Step::Fail { message: "init container a failed".into() }]);
        let s = spec("OnFailure", &[("a", false)], &["x"]);
        assert_eq!(plan(&s, &state(&[("a", exited(3))])), [restart("a", true)]);
    }

    #[test]
    fn sidecars_only_need_to_run() {
        let s = spec("Never", &[("side", true), ("b", false)], &["x"]);
        assert_eq!(plan(&s, &state(&[("side", running())])), [start("b", true)]);
        // A sidecar that died is restarted whatever the pod's policy, without blocking the rest.
        assert_eq!(
            plan(&s, &state(&[("side", exited(1)), ("b", exited(0))])),
            [restart("side", true), start("x", false)]
        );
    }

    #[test]
    fn restart_policies_for_app_containers() {
        let done = |policy: &str, code: i32| plan(&spec(policy, &[], &["x"]), &state(&[("x", exited(code))]));
        assert_eq!(done("Always", 0), [restart("x", false)]);
        assert_eq!(done("Always", 1), [restart("x", false)]);
        assert_eq!(done("OnFailure", 0), []);
        assert_eq!(done("OnFailure", 1), [restart("x", false)]);
        assert_eq!(done("Never", 1), []);
        assert_eq!(plan(&spec("Always", &[], &["x"]), &state(&[("x", running())])), []);
    }

    #[test]
    fn a_pod_ends_when_no_app_container_runs_again() {
        let two = |policy: &str| spec(policy, &[("side", true)], &["x", "y"]);
        let ended_with = |policy: &str, pairs: &[(&str, Observed)]| ended(&two(policy), &state(pairs));
        assert!(ended_with("Never", &[("side", running()), ("x", exited(0)), ("y", exited(1))]));
        assert!(!ended_with("Never", &[("side", running()), ("x", exited(0)), ("y", running())]));
        assert!(!ended_with("Never", &[("x", exited(0))]), "y never ran");
        assert!(ended_with("OnFailure", &[("x", exited(0)), ("y", exited(0))]));
        assert!(!ended_with("OnFailure", &[("x", exited(0)), ("y", exited(2))]), "y restarts");
        assert!(!ended_with("Always", &[("x", exited(0)), ("y", exited(0))]));
        assert!(!ended(&spec("Never", &[("a", false)], &[]), &state(&[("a", exited(0))])), "no app containers");
    }
}
