//! The hybrid logical clock that stamps JSON versions (SPEC §6 "Versions").
//!
//! A stamp is the wall clock's milliseconds, unless that is behind a stamp this clock already
//! gave or the one it must follow; then it takes that time and counts up. So stamps from one
//! replica always grow, and a room's next stamp is always later than its current content's,
//! even when that content came from a replica whose clock runs ahead.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::doc::Stamp;

/// Cloning is shallow: every room of a replica shares one clock.
#[derive(Clone)]
pub struct Clock {
    replica: Arc<str>,
    /// The last stamp given (millis, counter).
    last: Arc<Mutex<(u64, u32)>>,
}

impl Clock {
    pub fn new(replica: impl Into<Arc<str>>) -> Self {
        Clock {
            replica: replica.into(),
            last: Arc::new(Mutex::new((0, 0))),
        }
    }

    pub fn replica(&self) -> &Arc<str> {
        &self.replica
    }

    /// A stamp later than every stamp this clock gave and than `after`.
    pub fn stamp(&self, after: Option<&Stamp>) -> Stamp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.stamp_at(now, after)
    }

    /// [`Clock::stamp`] at wall-clock time `now` (ms): the simulation's clocks run on its own time.
    pub(crate) fn stamp_at(&self, now: u64, after: Option<&Stamp>) -> Stamp {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let floor = after.map_or(0, |s| s.millis);
        let millis = now.max(last.0).max(floor);
        let mut counter = if millis == last.0 { last.1 + 1 } else { 0 };
        if let Some(after) = after.filter(|s| s.millis == millis) {
            counter = counter.max(after.counter + 1);
        }
        *last = (millis, counter);
        Stamp {
            millis,
            counter,
            replica: self.replica.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_grow_even_when_the_wall_clock_stands_still_or_goes_back() {
        let clock = Clock::new("a");
        let first = clock.stamp_at(100, None);
        let same_ms = clock.stamp_at(100, None);
        let earlier = clock.stamp_at(50, None);
        assert!(same_ms > first && earlier > same_ms);
        assert_eq!(clock.stamp_at(200, None).counter, 0);
    }

    #[test]
    fn a_stamp_follows_content_stamped_by_a_clock_that_runs_ahead() {
        let clock = Clock::new("a");
        let ahead = Stamp {
            millis: 10_000,
            counter: 4,
            replica: "z".into(),
        };
        let next = clock.stamp_at(100, Some(&ahead));
        assert!(next > ahead, "{next} must follow {ahead}");
        assert!(clock.stamp_at(100, None) > next);
    }
}
