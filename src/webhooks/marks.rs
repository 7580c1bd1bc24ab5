//! What the recorder does with the change marks saves leave in Redis (`webhooks:changed`), so
//! that a `document.changed` is as durable as the change: the save that stores a change also
//! marks its document, in the same script, before anything is acknowledged.
//!
//! Each sweep (every third of the debounce period) looks at every mark, as a pure decision here:
//! - A mark of this replica is cleared once its count has stood still for a sweep while
//!   nothing of the document waits to be written here: every change it counts then reached
//!   this recorder (a landed save's `Changed` takes microseconds) and its window is in
//!   PostgreSQL. A window that cannot be written (PostgreSQL away) keeps it.
//! - A mark of another replica that stood still for [`ADOPT_AFTER`] sweeps, or any mark found
//!   by this recorder's first sweep (this replica's own, before it restarted), is *adopted*:
//!   its document's window is written from here (its users unknown), then the mark cleared.
//!   A live replica clears its marks long before that, so adoption only writes what a replica
//!   killed before its write would have lost. A window written twice in its life is one event;
//!   after it closed, a second window is one event more: delivery stays at least once.

use std::collections::{HashMap, HashSet};

use docroom_actors::doc::{DocId, Kind};
use docroom_actors::storage::ChangeMark;

/// Sweeps another replica's mark must stand still before this recorder adopts it (at a
/// sweep per third of the debounce period, 15 sweeps are 10 s at the default 2 s).
pub const ADOPT_AFTER: u32 = 15;

#[derive(Default)]
pub struct Marks {
    /// Each mark's count at the last sweep, and for how many sweeps it stood still.
    seen: HashMap<(String, DocId), (i64, u32)>,
    /// Adopted marks, cleared once a write of their document taken after the adoption lands:
    /// the number of the first such write.
    adopted: HashMap<DocId, Vec<(ChangeMark, u64)>>,
    swept: bool,
}

/// What a sweep decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Clear these now.
    pub clear: Vec<ChangeMark>,
    /// Write these documents' windows (their users unknown).
    pub gather: Vec<(DocId, Kind)>,
}

impl Marks {
    /// One sweep over every mark in Redis. `replica` is this one; `waiting` holds whether a
    /// document's changes wait to be written here (gathered, or in the write in flight);
    /// `next_write` is the number the next write taken will have.
    pub fn sweep(
        &mut self,
        marks: Vec<ChangeMark>,
        replica: &str,
        waiting: impl Fn(&DocId) -> bool,
        next_write: u64,
    ) -> Swept {
        let first = !std::mem::replace(&mut self.swept, true);
        let mut seen = HashMap::with_capacity(marks.len());
        let mut out = Swept::default();
        for mark in marks {
            let key = (mark.replica.clone(), mark.doc.clone());
            let still = match self.seen.get(&key) {
                Some((count, n)) if *count == mark.count => n + 1,
                _ => 0,
            };
            seen.insert(key, (mark.count, still));
            let adopted = self
                .adopted
                .get(&mark.doc)
                .is_some_and(|held| held.iter().any(|(m, _)| *m == mark));
            if adopted {
                continue;
            }
            if mark.replica == replica && !first {
                if still >= 1 && !waiting(&mark.doc) {
                    out.clear.push(mark);
                }
            } else if first || still >= ADOPT_AFTER {
                out.gather.push((mark.doc.clone(), mark.kind));
                self.adopted
                    .entry(mark.doc.clone())
                    .or_default()
                    .push((mark, next_write));
            }
        }
        self.seen = seen;
        out
    }

    /// Write number `write` landed with these documents' windows: the adopted marks it
    /// covers, to clear.
    pub fn written<'a>(
        &mut self,
        write: u64,
        docs: impl Iterator<Item = &'a DocId>,
    ) -> Vec<ChangeMark> {
        let mut clear = Vec::new();
        let docs: HashSet<&DocId> = docs.collect();
        for doc in docs {
            if let Some(held) = self.adopted.get_mut(doc) {
                let (done, left): (Vec<_>, Vec<_>) =
                    held.drain(..).partition(|(_, at)| *at <= write);
                clear.extend(done.into_iter().map(|(m, _)| m));
                *held = left;
                if held.is_empty() {
                    self.adopted.remove(doc);
                }
            }
        }
        clear
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(replica: &str, doc: &str, count: i64) -> ChangeMark {
        ChangeMark::new(Kind::Yjs, replica, DocId::parse(doc).unwrap(), count)
    }

    #[test]
    fn own_marks_are_cleared_once_still_and_written() {
        let mut marks = Marks::default();
        // The first sweep adopts what it finds, this replica's own included (a restart).
        let first = marks.sweep(vec![], "a", |_| false, 1);
        assert_eq!(first, Swept::default());
        let moving = marks.sweep(vec![mark("a", "d", 1)], "a", |_| false, 1);
        assert!(moving.clear.is_empty(), "its count just appeared");
        let waiting = marks.sweep(vec![mark("a", "d", 1)], "a", |_| true, 1);
        assert!(waiting.clear.is_empty(), "its window is not written yet");
        let still = marks.sweep(vec![mark("a", "d", 1)], "a", |_| false, 1);
        assert_eq!(still.clear, vec![mark("a", "d", 1)]);
        assert!(still.gather.is_empty());
    }

    #[test]
    fn marks_found_at_start_and_others_left_standing_are_adopted_then_cleared_by_a_later_write() {
        let mut marks = Marks::default();
        let first = marks.sweep(vec![mark("a", "mine", 3)], "a", |_| false, 5);
        assert_eq!(
            first.gather,
            vec![(DocId::parse("mine").unwrap(), Kind::Yjs)]
        );
        assert!(
            marks
                .written(4, [DocId::parse("mine").unwrap()].iter())
                .is_empty(),
            "an older write"
        );
        assert_eq!(
            marks.written(5, [DocId::parse("mine").unwrap()].iter()),
            vec![mark("a", "mine", 3)]
        );
        let mut adopted_at = None;
        for n in 0..=ADOPT_AFTER {
            let swept = marks.sweep(vec![mark("b", "theirs", 7)], "a", |_| false, 9);
            assert!(swept.clear.is_empty());
            if !swept.gather.is_empty() {
                adopted_at = Some(n);
            }
        }
        assert_eq!(
            adopted_at,
            Some(ADOPT_AFTER),
            "adopted once it stood still long enough"
        );
        // A mark still moving (its replica is alive and saving) is never adopted.
        let mut live = Marks::default();
        live.sweep(vec![], "a", |_| false, 1);
        for n in 0..(3 * ADOPT_AFTER as i64) {
            let swept = live.sweep(vec![mark("b", "busy", n)], "a", |_| false, 1);
            assert!(swept.gather.is_empty());
        }
    }
}
