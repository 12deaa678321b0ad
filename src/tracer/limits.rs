//! The ends the clock and --pid call for, pure and tested.

use std::time::{Duration, Instant};

use super::outcome::Outcome;
use crate::config::Config;

/// Longest wait between polls: bounds how late a line and a stop request can be.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// The ends the clock and --pid call for: --duration, --pid's processes gone
/// (with nothing else to trace), --timeout, checked in that order.
pub(super) struct Limits {
    duration_end: Option<Instant>,
    timeout_end: Option<Instant>,
    /// Only --pid: once they are gone, nothing more can come.
    only_pids: Option<Vec<u32>>,
}

impl Limits {
    pub(super) fn new(cfg: &Config, start: Instant) -> Limits {
        let only_pids = !cfg.pids.is_empty()
            && cfg.names.is_empty()
            && cfg.command.is_empty()
            && cfg.cgroup.is_none()
            && !cfg.follow;
        Limits {
            duration_end: cfg.duration.map(|d| start + d),
            timeout_end: cfg.timeout.map(|d| start + d),
            only_pids: only_pids.then(|| cfg.pids.clone()),
        }
    }

    /// The end reached at `now`; `alive` says whether a pid still runs.
    pub(super) fn reached(&self, now: Instant, alive: impl Fn(u32) -> bool) -> Option<Outcome> {
        if self.duration_end.is_some_and(|t| now >= t) {
            Some(Outcome::DurationElapsed)
        } else if self
            .only_pids
            .as_ref()
            .is_some_and(|p| !p.iter().any(|&p| alive(p)))
        {
            Some(Outcome::PidsExited)
        } else if self.timeout_end.is_some_and(|t| now >= t) {
            Some(Outcome::TimedOut)
        } else {
            None
        }
    }

    /// How long the next poll may wait: `POLL` at most, and not past an end.
    pub(super) fn wait(&self, now: Instant) -> Duration {
        [self.duration_end, self.timeout_end]
            .into_iter()
            .flatten()
            .map(|t| t.saturating_duration_since(now))
            .fold(POLL, Duration::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_end_the_run_in_order_and_bound_the_wait() {
        let start = Instant::now();
        let limits = Limits {
            duration_end: Some(start + Duration::from_secs(2)),
            timeout_end: Some(start + Duration::from_secs(1)),
            only_pids: Some(vec![7, 8]),
        };
        let alive = |p: u32| p == 8;
        let dead = |_: u32| false;
        assert_eq!(limits.reached(start, alive), None);
        assert_eq!(limits.reached(start, dead), Some(Outcome::PidsExited));
        let later = start + Duration::from_millis(1500);
        assert_eq!(limits.reached(later, alive), Some(Outcome::TimedOut));
        let last = start + Duration::from_secs(3);
        assert_eq!(limits.reached(last, dead), Some(Outcome::DurationElapsed));
        assert_eq!(limits.wait(start), POLL);
        let near = start + Duration::from_millis(950);
        assert_eq!(limits.wait(near), Duration::from_millis(50));
        assert_eq!(limits.wait(last), Duration::ZERO);
        let none = Limits {
            duration_end: None,
            timeout_end: None,
            only_pids: None,
        };
        assert_eq!(none.reached(last, dead), None);
    }
}
