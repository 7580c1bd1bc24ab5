//! The flusher's schedule as a pure state machine: the period after a run depends only on how
//! many runs in a row have failed. Defaults (SPEC §7): 10 s; 30 s after one failure; 60 s after
//! two or more; back to 10 s after a success.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct FlushSchedule {
    base: Duration,
    after_one_error: Duration,
    after_more_errors: Duration,
    consecutive_errors: u32,
}

impl FlushSchedule {
    pub fn new(base: Duration, after_one_error: Duration, after_more_errors: Duration) -> Self {
        FlushSchedule {
            base,
            after_one_error,
            after_more_errors,
            consecutive_errors: 0,
        }
    }

    /// The period while runs succeed.
    pub fn base_period(&self) -> Duration {
        self.base
    }

    pub fn period(&self) -> Duration {
        match self.consecutive_errors {
            0 => self.base,
            1 => self.after_one_error,
            _ => self.after_more_errors,
        }
    }

    pub fn consecutive_errors(&self) -> u32 {
        self.consecutive_errors
    }

    /// Records a successful run; returns the new period if it changed.
    pub fn on_success(&mut self) -> Option<Duration> {
        self.record(0)
    }

    /// Records a failed run; returns the new period if it changed.
    pub fn on_error(&mut self) -> Option<Duration> {
        self.record(self.consecutive_errors.saturating_add(1))
    }

    fn record(&mut self, errors: u32) -> Option<Duration> {
        let before = self.period();
        self.consecutive_errors = errors;
        let after = self.period();
        (before != after).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_10_30_60_and_resets_on_success() {
        let s = Duration::from_secs;
        let mut f = FlushSchedule::new(s(10), s(30), s(60));
        assert_eq!(f.period(), s(10));
        assert_eq!(f.on_error(), Some(s(30)));
        assert_eq!(f.on_error(), Some(s(60)));
        assert_eq!(f.on_error(), None);
        assert_eq!(f.consecutive_errors(), 3);
        assert_eq!(f.on_success(), Some(s(10)));
        assert_eq!(f.on_success(), None);
        assert_eq!(f.consecutive_errors(), 0);
    }
}
