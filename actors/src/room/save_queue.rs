//! A room's saves as a pure state machine: at most one save in flight per document, and
//! updates that arrive meanwhile collapse into one queued save of the newest content. The
//! waiters of every update that queued save carries are answered when it lands ("that content,
//! or a later one" is what SPEC §1 promises), so a busy document costs one store round trip per
//! round trip, not one per update.
//!
//! The room owns the IO: it starts the version this hands back, and reports how it went.

use crate::doc::{later, Version};

struct Pending<W> {
    version: Version,
    waiters: Vec<W>,
}

/// `W` is whatever the room answers a waiter with (an ack channel).
pub struct SaveQueue<W> {
    /// Waiters of the save in flight; `None` when no save is in flight.
    in_flight: Option<Vec<W>>,
    queued: Option<Pending<W>>,
    /// Hash of the content whose last save failed: the same content sent again is then not a
    /// duplicate (it was never stored) but a retry.
    unstored: Option<String>,
}

impl<W> Default for SaveQueue<W> {
    fn default() -> Self {
        SaveQueue {
            in_flight: None,
            queued: None,
            unstored: None,
        }
    }
}

impl<W> SaveQueue<W> {
    /// `version` is the newest content to save: it joins what is queued by the version rule
    /// (JSON: it replaces it, being later; Yjs: the updates merge), and `waiter` rides with it.
    /// Returns the version to start now, if no save is in flight.
    pub fn push(&mut self, version: Version, waiter: Option<W>) -> Option<Version> {
        let pending = self.queued.get_or_insert_with(|| Pending {
            version: version.clone(),
            waiters: Vec::new(),
        });
        if pending.version.hash != version.hash {
            let held = std::mem::replace(&mut pending.version, version.clone());
            pending.version = later(version.clone(), held).unwrap_or(version);
        }
        pending.waiters.extend(waiter);
        self.next()
    }

    /// A waiter for content that is already the newest (a duplicate): it rides the save that
    /// carries that content; returned when nothing is saving, to be answered at once.
    pub fn attach(&mut self, waiter: W) -> Option<W> {
        match (&mut self.queued, &mut self.in_flight) {
            (Some(q), _) => q.waiters.push(waiter),
            (None, Some(in_flight)) => in_flight.push(waiter),
            (None, None) => return Some(waiter),
        }
        None
    }

    /// The save in flight of the version with `hash` landed (`ok`) or failed. Returns its
    /// waiters, and the next version to start.
    pub fn finish(&mut self, hash: &str, ok: bool) -> (Vec<W>, Option<Version>) {
        match ok {
            true if self.unstored.as_deref() == Some(hash) => self.unstored = None,
            true => {}
            false => self.unstored = Some(hash.to_owned()),
        }
        let waiters = self.in_flight.take().unwrap_or_default();
        (waiters, self.next())
    }

    /// Whether content with `hash` failed to save last time (so sending it again is a retry).
    pub fn is_unstored(&self, hash: &str) -> bool {
        self.unstored.as_deref() == Some(hash)
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.queued.is_none()
    }

    fn next(&mut self) -> Option<Version> {
        if self.in_flight.is_some() {
            return None;
        }
        let next = self.queued.take()?;
        self.in_flight = Some(next.waiters);
        Some(next.version)
    }
}

/// How often a Yjs room may save: a token bucket of [`SaveBudget::BURST`] saves, refilled one
/// per interval. A room whose updates come no faster than that on average saves each at once
/// (the bucket never runs dry); a busy one, once it has spent the burst, gathers what arrives
/// into one save per interval, so a hot document costs the log one entry per interval, not
/// one per update. A zero interval never runs dry.
#[derive(Clone, Copy, Debug)]
pub struct SaveBudget {
    interval: std::time::Duration,
    tokens: f64,
    at: std::time::Instant,
}

impl SaveBudget {
    pub const BURST: f64 = 8.0;

    pub fn new(interval: std::time::Duration, now: std::time::Instant) -> Self {
        SaveBudget {
            interval,
            tokens: Self::BURST,
            at: now,
        }
    }

    /// Spends a save now (`Ok`), or says how long until one may start.
    pub fn take(&mut self, now: std::time::Instant) -> Result<(), std::time::Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let refill =
            now.saturating_duration_since(self.at).as_secs_f64() / self.interval.as_secs_f64();
        self.tokens = (self.tokens + refill).min(Self::BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(self.interval.mul_f64(1.0 - self.tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{DocId, Kind};
    use bytes::Bytes;

    fn v(content: &'static str) -> Version {
        Version::new(DocId::parse("d").unwrap(), Kind::Json, Bytes::from(content))
    }

    #[test]
    fn the_first_save_starts_at_once_and_later_ones_collapse_into_the_newest() {
        let mut q = SaveQueue::default();
        assert_eq!(q.push(v("1"), Some(1)), Some(v("1")));
        assert_eq!(q.push(v("2"), Some(2)), None);
        assert_eq!(q.push(v("3"), Some(3)), None);

        let (done, next) = q.finish(&v("1").hash, true);

        assert_eq!(done, vec![1]);
        assert_eq!(next, Some(v("3")), "2 is superseded by 3");
        let (done, next) = q.finish(&v("3").hash, true);
        assert_eq!(done, vec![2, 3], "2 and 3 are answered by the save of 3");
        assert_eq!(next, None);
        assert!(q.is_idle());
    }

    #[test]
    fn a_duplicate_rides_the_save_that_carries_its_content_or_is_answered_at_once() {
        let mut q = SaveQueue::default();
        assert_eq!(q.attach(7), Some(7), "nothing saving: answer now");
        q.push(v("1"), Some(1));
        assert_eq!(q.attach(8), None);
        let (done, _) = q.finish(&v("1").hash, true);
        assert_eq!(done, vec![1, 8]);
    }

    #[test]
    fn a_failed_save_makes_the_same_content_a_retry_until_a_save_of_it_lands() {
        let mut q: SaveQueue<u8> = SaveQueue::default();
        q.push(v("1"), None);
        let (_, next) = q.finish(&v("1").hash, false);
        assert_eq!(next, None);
        assert!(q.is_unstored(&v("1").hash));

        assert_eq!(q.push(v("1"), None), Some(v("1")));
        q.finish(&v("1").hash, true);
        assert!(!q.is_unstored(&v("1").hash));
    }

    #[test]
    fn a_save_budget_lets_a_burst_through_then_one_save_per_interval() {
        use std::time::{Duration, Instant};
        let (t0, ms) = (Instant::now(), Duration::from_millis);
        let mut b = SaveBudget::new(ms(20), t0);
        for _ in 0..8 {
            assert_eq!(b.take(t0), Ok(()));
        }
        assert_eq!(
            b.take(t0),
            Err(ms(20)),
            "spent: the next save in one interval"
        );
        assert_eq!(b.take(t0 + ms(10)), Err(ms(10)));
        assert_eq!(b.take(t0 + ms(20)), Ok(()));
        assert!(b.take(t0 + ms(20)).is_err());
        assert_eq!(
            b.take(t0 + ms(1000)),
            Ok(()),
            "a quiet room gets its burst back"
        );
        for _ in 0..7 {
            assert_eq!(b.take(t0 + ms(1000)), Ok(()));
        }
        let mut never = SaveBudget::new(Duration::ZERO, t0);
        assert!((0..100).all(|_| never.take(t0).is_ok()));
    }
}
