//! The circuit breaker as a pure state machine: no IO, time passed in.
//!
//! closed --(threshold consecutive failures)--> open --(open_for elapsed)--> half-open
//! half-open --(probe succeeds)--> closed, half-open --(probe fails)--> open (timer restarts).
//!
//! While not closed, the cache supervisor answers from the fallback without touching Redis, so an
//! ack is never delayed by a Redis that is known to be down. An operator may force the breaker
//! open (Redis maintenance) or closed; `auto` hands it back to the state machine.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What an operator asked for through `POST /admin/breaker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceMode {
    Open,
    Closed,
    Auto,
}

/// A change of state worth telling others about (and logging once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: BreakerState,
    forced: Option<BreakerState>,
    consecutive_failures: u32,
    /// Every failure so far: a count that only grows.
    failures: u64,
    opened_at: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: BreakerState::Closed,
            forced: None,
            consecutive_failures: 0,
            failures: 0,
            opened_at: None,
        }
    }

    /// The state the outside world sees: a forced state wins over the automatic one.
    pub fn state(&self) -> BreakerState {
        self.forced.unwrap_or(self.state)
    }

    pub fn forced(&self) -> bool {
        self.forced.is_some()
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Failures so far. A call answered after the count moved past what it was when the call
    /// was sent may have landed in a Redis that has lost it since.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    pub fn opened_at(&self) -> Option<Instant> {
        match self.state() {
            BreakerState::Closed => None,
            _ => self.opened_at,
        }
    }

    /// Whether ordinary traffic may go to Redis now.
    pub fn allows_redis(&self) -> bool {
        self.state() == BreakerState::Closed
    }

    /// Moves open → half-open once the open period is over; the caller then runs one probe.
    pub fn probe_due(&mut self, now: Instant) -> Option<Transition> {
        if self.forced.is_some() || self.state != BreakerState::Open {
            return None;
        }
        let opened = self.opened_at.unwrap_or(now);
        if now.duration_since(opened) >= self.open_for {
            return self.set(BreakerState::HalfOpen, now);
        }
        None
    }

    pub fn on_success(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = 0;
        match self.state {
            BreakerState::HalfOpen => self.set(BreakerState::Closed, now),
            _ => None,
        }
    }

    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failures += 1;
        match self.state {
            BreakerState::Closed if self.consecutive_failures >= self.threshold => {
                self.set(BreakerState::Open, now)
            }
            BreakerState::HalfOpen => self.set(BreakerState::Open, now),
            // A failure while open (a late answer) restarts nothing: the probe decides.
            _ => None,
        }
    }

    /// Forces a state, or (`Auto`) hands control back starting from closed with a clean count,
    /// so the next real failures decide.
    pub fn force(&mut self, mode: ForceMode, now: Instant) -> Option<Transition> {
        let before = self.state();
        match mode {
            ForceMode::Open => {
                self.forced = Some(BreakerState::Open);
                if before != BreakerState::Open {
                    self.opened_at = Some(now);
                }
            }
            ForceMode::Closed => self.forced = Some(BreakerState::Closed),
            ForceMode::Auto => {
                self.forced = None;
                self.state = BreakerState::Closed;
                self.consecutive_failures = 0;
                self.opened_at = None;
            }
        }
        let after = self.state();
        (before != after).then_some(Transition {
            from: before,
            to: after,
        })
    }

    fn set(&mut self, to: BreakerState, now: Instant) -> Option<Transition> {
        let before = self.state();
        self.state = to;
        match to {
            BreakerState::Open => self.opened_at = Some(now),
            BreakerState::Closed => self.opened_at = None,
            BreakerState::HalfOpen => {}
        }
        let after = self.state();
        (before != after).then_some(Transition {
            from: before,
            to: after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BreakerState::*;

    const OPEN_FOR: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, OPEN_FOR);
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(
            b.on_failure(t0),
            Some(Transition {
                from: Closed,
                to: Open
            })
        );
        assert!(!b.allows_redis());
        assert_eq!(b.opened_at(), Some(t0));
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, OPEN_FOR);
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success(t0);
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.state(), Closed);
    }

    #[test]
    fn half_open_probe_closes_on_success_and_reopens_on_failure() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, OPEN_FOR);
        b.on_failure(t0);
        assert_eq!(b.probe_due(t0 + Duration::from_secs(29)), None);
        let t1 = t0 + OPEN_FOR;
        assert_eq!(
            b.probe_due(t1),
            Some(Transition {
                from: Open,
                to: HalfOpen
            })
        );
        assert!(
            !b.allows_redis(),
            "only the probe touches redis while half-open"
        );
        assert_eq!(
            b.on_failure(t1),
            Some(Transition {
                from: HalfOpen,
                to: Open
            })
        );
        assert_eq!(b.opened_at(), Some(t1), "the open period restarts");
        let t2 = t1 + OPEN_FOR;
        b.probe_due(t2);
        assert_eq!(
            b.on_success(t2),
            Some(Transition {
                from: HalfOpen,
                to: Closed
            })
        );
        assert!(b.allows_redis());
        assert_eq!(b.opened_at(), None);
    }

    #[test]
    fn forcing_overrides_and_auto_hands_back() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, OPEN_FOR);
        assert_eq!(
            b.force(ForceMode::Open, t0),
            Some(Transition {
                from: Closed,
                to: Open
            })
        );
        assert!(b.forced());
        assert_eq!(
            b.probe_due(t0 + OPEN_FOR * 2),
            None,
            "a forced breaker is not probed"
        );
        assert_eq!(
            b.force(ForceMode::Closed, t0),
            Some(Transition {
                from: Open,
                to: Closed
            })
        );
        for _ in 0..5 {
            b.on_failure(t0);
        }
        assert_eq!(b.state(), Closed, "forced closed stays closed");
        assert_eq!(b.force(ForceMode::Auto, t0), None);
        assert!(!b.forced());
        assert_eq!(b.consecutive_failures(), 0);
    }
}
