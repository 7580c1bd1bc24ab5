//! `RefusalLog`: frames refused with their connection closed are counted every time and logged
//! once per document and reason.
//!
//! A refused client usually comes back: y-websocket and Hocuspocus providers reconnect at once
//! and send the same unsynced state again, and are refused again, several times a second for as
//! long as the user keeps the tab open. One log line per refusal would bury everything else in
//! the log; the count (`docroom_refused_frames_total`) says it goes on. The memory outlives
//! rooms: a lone client's room retires between its attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::REFUSED_FRAMES;

/// Why a frame was refused with its connection (or, on `/hocuspocus`, its document) closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The WebSocket frame was longer than the route's frame limit (1009).
    FrameSize,
    /// A Yjs update would have grown the document past `limits.max_yjs_state_bytes` (1009).
    StateLimit,
    /// A Yjs update nests deeper than `limits.max_yjs_depth` (1009).
    NestingLimit,
    /// Awareness beyond the per-connection bounds (1008).
    AwarenessLimit,
    /// A y-protocols frame that does not decode or apply (1007).
    Malformed,
    /// yrs failed inside an update's transaction (an internal panic, caught): the room starts
    /// afresh from what is stored, its members reconnecting (1011).
    Broken,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::FrameSize,
        Refusal::StateLimit,
        Refusal::NestingLimit,
        Refusal::AwarenessLimit,
        Refusal::Malformed,
        Refusal::Broken,
    ];

    /// The `reason` label of `docroom_refused_frames_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::FrameSize => "frame_size",
            Refusal::StateLimit => "state_limit",
            Refusal::NestingLimit => "nesting_limit",
            Refusal::AwarenessLimit => "awareness_limit",
            Refusal::Malformed => "malformed",
            Refusal::Broken => "broken",
        }
    }
}

/// A document still refusing an hour later is logged again, so an operator reading today's log
/// learns of it without the line repeating for every attempt.
pub const RELOG_AFTER: Duration = Duration::from_secs(3600);

/// Documents (and reasons) remembered at most; past it, those logged longer than `RELOG_AFTER`
/// ago are forgotten, and if that is not enough, all are (they may be logged once more).
const REMEMBERED: usize = 10_000;

/// Shared by every room and session of the process; cloning is shallow.
#[derive(Clone, Debug, Default)]
pub struct RefusalLog(Arc<Mutex<HashMap<(String, Refusal), Instant>>>);

impl RefusalLog {
    /// Counts a refusal of a frame for `scope` (a document id, or a route where the document is
    /// not known) and answers whether to log it: the first time for this scope and reason, and
    /// again once `RELOG_AFTER` has passed.
    pub fn note(&self, scope: &str, why: Refusal) -> bool {
        metrics::counter!(REFUSED_FRAMES, "reason" => why.as_str()).increment(1);
        self.first(scope, why, Instant::now())
    }

    /// [`note`](Self::note)'s decision, time passed in.
    pub fn first(&self, scope: &str, why: Refusal, now: Instant) -> bool {
        let mut logged = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (scope.to_owned(), why);
        if let Some(at) = logged.get(&key) {
            if now.saturating_duration_since(*at) < RELOG_AFTER {
                return false;
            }
        }
        if logged.len() >= REMEMBERED {
            logged.retain(|_, at| now.saturating_duration_since(*at) < RELOG_AFTER);
            if logged.len() >= REMEMBERED {
                logged.clear();
            }
        }
        logged.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_repeated_is_logged_once_per_document_and_reason_then_again_an_hour_later() {
        let log = RefusalLog::default();
        let start = Instant::now();
        assert!(log.first("big-doc", Refusal::StateLimit, start));
        for retry in 1..100 {
            let now = start + Duration::from_millis(100 * retry);
            assert!(
                !log.first("big-doc", Refusal::StateLimit, now),
                "retry {retry}"
            );
        }
        assert!(log.first("other-doc", Refusal::StateLimit, start));
        assert!(log.first("big-doc", Refusal::FrameSize, start));
        assert!(log.first("big-doc", Refusal::StateLimit, start + RELOG_AFTER));
    }

    #[test]
    fn the_memory_stays_bounded_however_many_documents_are_refused() {
        let log = RefusalLog::default();
        let now = Instant::now();
        for i in 0..REMEMBERED + 10 {
            assert!(log.first(&format!("doc-{i}"), Refusal::Malformed, now));
        }
        assert!(log.0.lock().unwrap().len() <= REMEMBERED);
    }
}
