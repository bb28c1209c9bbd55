//! The per-container probe state machine, as upstream's prober keeps it:
//! the startup probe runs first and holds back liveness and readiness; each
//! probe counts consecutive successes and failures and flips its result only
//! at successThreshold / failureThreshold; nothing runs before
//! initialDelaySeconds; one probe of a kind is in flight at a time.
//!
//! Pure: time comes in as an `Instant` argument and the caller runs the
//! probes, so it is tested with a fake clock. It does not know about
//! handlers, containers or signals; it says *what* is due and *whether* the
//! container must be killed.

use crate::api::{Container, Probe};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// A probe's timing with the defaults applied (and zeros made sane).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub timeout: Duration,
    pub period: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.filter(|v| *v > 0).unwrap_or(d) as u64);
        let count = |v: Option<i32>, d: i32| v.filter(|v| *v > 0).unwrap_or(d) as u32;
        Timing {
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            timeout: secs(p.timeout_seconds, 1),
            period: secs(p.period_seconds, 10),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        }
    }
}

#[derive(Debug, Clone)]
struct One {
    timing: Timing,
    next_due: Instant,
    in_flight: bool,
    successes: u32,
    failures: u32,
    /// The probe's current verdict (flips at the thresholds).
    ok: bool,
}

impl One {
    fn new(timing: Timing, started: Instant, initial: bool) -> One {
        One { timing, next_due: started + timing.initial_delay, in_flight: false, successes: 0, failures: 0, ok: initial }
    }

    /// Counts one result; true when the verdict changed.
    fn record(&mut self, ok: bool) -> bool {
        self.in_flight = false;
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.ok && self.successes >= self.timing.success_threshold {
                self.ok = true;
                return true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.ok && self.failures >= self.timing.failure_threshold {
                self.ok = false;
                return true;
            }
        }
        false
    }
}

/// What the caller must do after a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Nothing,
    /// The container failed its liveness or startup probe: kill it (the
    /// restart policy then applies).
    Kill(Kind),
}

/// The probes of one running container attempt.
#[derive(Debug, Clone)]
pub struct ContainerProbes {
    startup: Option<One>,
    liveness: Option<One>,
    readiness: Option<One>,
    /// Set once the startup probe succeeded (or at once without one).
    started: bool,
    /// The kill was requested: no further probing of this attempt.
    done: bool,
}

impl ContainerProbes {
    /// `started` is when the container started running.
    pub fn new(c: &Container, started: Instant) -> ContainerProbes {
        let one = |p: &Option<Probe>, initial: bool| p.as_ref().map(|p| One::new(Timing::of(p), started, initial));
        // Startup and readiness start as failing, liveness as succeeding (upstream's initial values).
        let startup = one(&c.startup_probe, false);
        ContainerProbes {
            started: startup.is_none(),
            startup,
            liveness: one(&c.liveness_probe, true),
            readiness: one(&c.readiness_probe, false),
            done: false,
        }
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// Ready as far as probes go: started, and the readiness probe (if any) passing.
    pub fn ready(&self) -> bool {
        self.started && !self.done && self.readiness.as_ref().map_or(true, |r| r.ok)
    }

    fn get(&mut self, k: Kind) -> Option<&mut One> {
        match k {
            Kind::Startup => self.startup.as_mut(),
            Kind::Liveness => self.liveness.as_mut(),
            Kind::Readiness => self.readiness.as_mut(),
        }
    }

    /// The probes to launch now, each with its timeout; they are marked in
    /// flight and their next run scheduled one period later.
    pub fn due(&mut self, now: Instant) -> Vec<(Kind, Duration)> {
        if self.done {
            return vec![];
        }
        let kinds: &[Kind] = if self.started { &[Kind::Liveness, Kind::Readiness] } else { &[Kind::Startup] };
        let mut out = Vec::new();
        for &k in kinds {
            if let Some(p) = self.get(k) {
                if !p.in_flight && now >= p.next_due {
                    p.in_flight = true;
                    p.next_due = now + p.timing.period;
                    out.push((k, p.timing.timeout));
                }
            }
        }
        out
    }

    /// Counts one result of probe `k`.
    pub fn record(&mut self, k: Kind, ok: bool, now: Instant) -> Verdict {
        if self.done {
            return Verdict::Nothing;
        }
        let Some(p) = self.get(k) else { return Verdict::Nothing };
        let changed = p.record(ok);
        let verdict_ok = p.ok;
        match k {
            Kind::Startup if changed && verdict_ok => {
                self.started = true;
                self.startup = None;
                // Liveness and readiness begin now, each after its own initial delay.
                for q in [&mut self.liveness, &mut self.readiness].into_iter().flatten() {
                    q.next_due = now + q.timing.initial_delay;
                }
                Verdict::Nothing
            }
            Kind::Startup if !ok && p.failures >= p.timing.failure_threshold => {
                self.done = true;
                Verdict::Kill(k)
            }
            Kind::Liveness if changed && !verdict_ok => {
                self.done = true;
                Verdict::Kill(k)
            }
            _ => Verdict::Nothing,
        }
    }

    /// The earliest time a probe becomes due (for a caller that sleeps until then).
    #[allow(dead_code)]
    pub fn next_due(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let list = if self.started { [&self.liveness, &self.readiness] } else { [&self.startup, &None] };
        list.into_iter().flatten().filter(|p| !p.in_flight).map(|p| p.next_due).min()
    }

    /// Failures counted so far for probe `k`.
    #[allow(dead_code)]
    pub fn failures(&self, k: Kind) -> u32 {
        let p = match k {
            Kind::Startup => &self.startup,
            Kind::Liveness => &self.liveness,
            Kind::Readiness => &self.readiness,
        };
        p.as_ref().map_or(0, |p| p.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ExecAction, ProbeHandler};

    fn probe(delay: i32, period: i32, success: i32, failure: i32) -> Option<Probe> {
        Some(Probe {
            handler: ProbeHandler { exec: Some(ExecAction { command: vec!["true".into()] }), ..Default::default() },
            initial_delay_seconds: Some(delay),
            period_seconds: Some(period),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        })
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_and_zeros() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t, Timing { initial_delay: s(0), timeout: s(1), period: s(10), success_threshold: 1, failure_threshold: 3 });
    }

    #[test]
    fn no_probes_means_started_and_ready() {
        let mut p = ContainerProbes::new(&Container::default(), Instant::now());
        assert!(p.started() && p.ready());
        assert!(p.due(Instant::now() + s(100)).is_empty());
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn readiness_flips_at_thresholds_both_ways() {
        let t0 = Instant::now();
        let c = Container { readiness_probe: probe(5, 2, 2, 3), ..Default::default() };
        let mut p = ContainerProbes::new(&c, t0);
        assert!(!p.ready(), "not ready before the first success");
        assert!(p.due(t0 + s(4)).is_empty(), "initial delay");
        assert_eq!(p.next_due(), Some(t0 + s(5)));
        assert_eq!(p.due(t0 + s(5)), [(Kind::Readiness, s(1))]);
        assert!(p.due(t0 + s(6)).is_empty(), "one in flight at a time");
        assert_eq!(p.record(Kind::Readiness, true, t0 + s(6)), Verdict::Nothing);
        assert!(!p.ready(), "successThreshold 2");
        assert!(p.due(t0 + s(6)).is_empty(), "next one a period after the launch");
        assert_eq!(p.due(t0 + s(7)).len(), 1);
        p.record(Kind::Readiness, true, t0 + s(7));
        assert!(p.ready());
        for i in 0..2 {
            p.due(t0 + s(9 + 2 * i));
            p.record(Kind::Readiness, false, t0 + s(9 + 2 * i));
            assert!(p.ready(), "{} failures < 3", i + 1);
        }
        p.due(t0 + s(13));
        assert_eq!(p.record(Kind::Readiness, false, t0 + s(13)), Verdict::Nothing, "readiness never kills");
        assert!(!p.ready());
        p.due(t0 + s(15));
        p.record(Kind::Readiness, true, t0 + s(15));
        p.due(t0 + s(17));
        p.record(Kind::Readiness, true, t0 + s(17));
        assert!(p.ready(), "recovers");
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let c = Container { liveness_probe: probe(0, 1, 1, 2), ..Default::default() };
        let mut p = ContainerProbes::new(&c, t0);
        let mut at = 0;
        let mut step = |p: &mut ContainerProbes, ok: bool| {
            assert_eq!(p.due(t0 + s(at)), [(Kind::Liveness, s(1))]);
            let v = p.record(Kind::Liveness, ok, t0 + s(at));
            at += 1;
            v
        };
        assert_eq!(step(&mut p, false), Verdict::Nothing);
        assert_eq!(step(&mut p, true), Verdict::Nothing);
        assert_eq!(step(&mut p, false), Verdict::Nothing);
        assert_eq!(p.failures(Kind::Liveness), 1);
        assert_eq!(step(&mut p, false), Verdict::Kill(Kind::Liveness));
        assert!(p.due(t0 + s(100)).is_empty(), "nothing more once the kill is decided");
        assert!(!p.ready());
    }

    #[test]
    fn startup_holds_back_liveness_and_readiness() {
        let t0 = Instant::now();
        let c = Container {
            startup_probe: probe(0, 1, 1, 5),
            liveness_probe: probe(3, 10, 1, 1),
            readiness_probe: probe(0, 10, 1, 1),
            ..Default::default()
        };
        let mut p = ContainerProbes::new(&c, t0);
        assert!(!p.started() && !p.ready());
        assert_eq!(p.due(t0), [(Kind::Startup, s(1))]);
        p.record(Kind::Startup, false, t0);
        assert!(p.due(t0 + s(1)).iter().all(|(k, _)| *k == Kind::Startup));
        p.record(Kind::Startup, true, t0 + s(1));
        assert!(p.started());
        assert!(!p.ready(), "readiness has not passed yet");
        // Readiness at once, liveness after its initial delay counted from the start-up success.
        assert_eq!(p.due(t0 + s(1)), [(Kind::Readiness, s(1))]);
        assert!(p.due(t0 + s(3)).is_empty());
        assert_eq!(p.due(t0 + s(4)), [(Kind::Liveness, s(1))]);
        p.record(Kind::Readiness, true, t0 + s(4));
        assert!(p.ready());
        assert_eq!(p.due(t0 + s(100)), [(Kind::Readiness, s(1))], "liveness is still in flight");
    }

    #[test]
    fn startup_failing_kills() {
        let t0 = Instant::now();
        let c = Container { startup_probe: probe(0, 1, 1, 2), liveness_probe: probe(0, 1, 1, 1), ..Default::default() };
        let mut p = ContainerProbes::new(&c, t0);
        p.due(t0);
        assert_eq!(p.record(Kind::Startup, false, t0), Verdict::Nothing);
        p.due(t0 + s(1));
        assert_eq!(p.record(Kind::Startup, false, t0 + s(1)), Verdict::Kill(Kind::Startup));
        assert!(!p.started());
    }
}
