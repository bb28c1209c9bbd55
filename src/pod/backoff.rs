//! Restart back-off for crashing containers, as upstream: the first restart
//! is immediate, then 10 s doubling up to 300 s; a container that ran for
//! 10 minutes before exiting starts over.

use std::collections::HashMap;
use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Keyed by `<pod uid>/<container name>`.
#[derive(Default)]
pub struct Backoff {
    delays: HashMap<String, Duration>,
}

pub enum Decision {
    /// Restart now.
    Restart,
    /// Still backing off: wait this much longer; `delay` is the whole period.
    Wait { delay: Duration },
}

impl Backoff {
    /// `since_exit` is how long ago the container exited, `ran` how long it ran.
    pub fn check(&mut self, key: &str, since_exit: Duration, ran: Duration) -> Decision {
        if ran >= RESET_AFTER {
            self.delays.remove(key);
        }
        match self.delays.get(key).copied() {
            Some(delay) if since_exit < delay => Decision::Wait { delay },
            Some(delay) => {
                self.delays.insert(key.to_string(), (delay * 2).min(MAX));
                Decision::Restart
            }
            None => {
                self.delays.insert(key.to_string(), INITIAL);
                Decision::Restart
            }
        }
    }

    /// Forgets a pod's containers (pod removed).
    pub fn forget_pod(&mut self, uid: &str) {
        let prefix = format!("{uid}/");
        self.delays.retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn doubles_to_cap_and_resets() {
        let mut b = Backoff::default();
        assert!(matches!(b.check("p/c", s(0), s(1)), Decision::Restart));
        match b.check("p/c", s(3), s(1)) {
            Decision::Wait { delay } => assert_eq!(delay, s(10)),
            Decision::Restart => panic!("expected back-off"),
        }
        let mut expected = 10;
        for _ in 0..8 {
            assert!(matches!(b.check("p/c", s(expected), s(1)), Decision::Restart));
            expected = (expected * 2).min(300);
            assert!(matches!(b.check("p/c", s(expected - 1), s(1)), Decision::Wait { .. }));
        }
        assert_eq!(expected, 300);
        // ran ten minutes: immediate restart again
        assert!(matches!(b.check("p/c", s(0), s(600)), Decision::Restart));
        b.forget_pod("p");
        assert!(b.delays.is_empty());
    }
}
