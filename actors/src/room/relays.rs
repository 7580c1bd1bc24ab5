//! Yjs updates another replica relayed ahead of its save (SPEC §8). Members here see them at
//! once; whose save makes them durable is the question. The sending replica's coalesced save
//! appends them to the log, so this room only holds each one until the sender's log entry that
//! contains it arrives (by content: the entry inserts and deletes everything the update does).
//! One not confirmed within [`CONFIRM_WITHIN`] — its sender died or could not save — is saved
//! here: an edit members here were shown survives its sender's replica dying, and in the normal
//! case an update is appended once, not once per replica that shows it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::DocRoom;
use crate::protocol::yjs::Footprint;

/// How long a relayed update waits for its sender's log entry before this room saves it: many
/// save intervals (200 ms) and log reads, so it is saved twice only when something went wrong.
pub(super) const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

struct Held {
    replica: Arc<str>,
    update: Bytes,
    footprint: Footprint,
    at: Instant,
}

/// The relayed updates not confirmed yet, oldest first.
#[derive(Default)]
pub(super) struct Relays {
    held: Vec<Held>,
    timer: Option<SpawnHandle>,
}

impl Relays {
    /// Holds `update` from `replica` until confirmed; `false` (not held) if it is no update,
    /// which the caller then saves at once.
    fn hold(&mut self, replica: Arc<str>, update: Bytes) -> bool {
        let Some(footprint) = Footprint::of(&update) else {
            return false;
        };
        self.held.push(Held {
            replica,
            update,
            footprint,
            at: Instant::now(),
        });
        true
    }

    /// `replica`'s log entry `entry` arrived: what it contains is durable. True if the entry
    /// holds nothing beyond the relayed updates it confirmed, which the document has already.
    fn confirm(&mut self, replica: &str, entry: &[u8]) -> bool {
        if !self.held.iter().any(|h| &*h.replica == replica) {
            return false;
        }
        let Some(entry) = Footprint::of(entry) else {
            return false;
        };
        let mut confirmed = Footprint::default();
        self.held.retain(|h| {
            let done = &*h.replica == replica && h.footprint.within(&entry);
            if done {
                confirmed.merge(&h.footprint);
            }
            !done
        });
        entry.within(&confirmed)
    }

    /// Takes the updates held since before `before` (all of them with `None`).
    fn take(&mut self, before: Option<Instant>) -> Vec<Bytes> {
        let due = self
            .held
            .iter()
            .take_while(|h| before.is_none_or(|b| h.at <= b))
            .count();
        self.held.drain(..due).map(|h| h.update).collect()
    }
}

impl DocRoom {
    /// Another replica's relayed update, applied here: held until its sender's log entry
    /// confirms it (saved at once if it cannot be held).
    pub(super) fn hold_relayed(
        &mut self,
        replica: Arc<str>,
        update: Bytes,
        ctx: &mut Context<Self>,
    ) {
        let Some(y) = self.yjs.as_mut() else { return };
        if !y.relays.hold(replica, update.clone()) {
            y.pending.push(update);
            self.mark_unsaved(ctx);
            return;
        }
        self.arm_relays(ctx);
    }

    /// A log entry of `replica` arrived; true if the document has everything it holds
    /// already (the updates it confirmed were applied when they were relayed).
    pub(super) fn confirm_relayed(&mut self, replica: &str, entry: &[u8]) -> bool {
        self.yjs
            .as_mut()
            .is_some_and(|y| y.relays.confirm(replica, entry))
    }

    /// The held updates become this room's own to save: those unconfirmed for
    /// [`CONFIRM_WITHIN`], or all of them (the room retires or shuts down).
    pub(super) fn adopt_relayed(&mut self, all: bool, ctx: &mut Context<Self>) {
        let Some(y) = self.yjs.as_mut() else { return };
        let before = (!all).then(|| Instant::now() - CONFIRM_WITHIN);
        let due = y.relays.take(before);
        if !due.is_empty() {
            y.pending.extend(due);
            self.mark_unsaved(ctx);
        }
    }

    /// Looks at the held updates again once the oldest is due.
    fn arm_relays(&mut self, ctx: &mut Context<Self>) {
        let Some(y) = self.yjs.as_mut() else { return };
        let Some(oldest) = y.relays.held.first() else {
            return;
        };
        if y.relays.timer.is_some() {
            return;
        }
        let wait = (oldest.at + CONFIRM_WITHIN).saturating_duration_since(Instant::now());
        y.relays.timer = Some(ctx.run_later(wait, |act, ctx| {
            if let Some(y) = act.yjs.as_mut() {
                y.relays.timer = None;
            }
            act.adopt_relayed(false, ctx);
            act.arm_relays(ctx);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{ReadTxn, StateVector, Text, Transact};

    fn typed(doc: &yrs::Doc, text: &str) -> Bytes {
        let before = doc.transact().state_vector();
        doc.get_or_insert_text("t")
            .insert(&mut doc.transact_mut(), 0, text);
        Bytes::from(doc.transact().encode_state_as_update_v1(&before))
    }

    #[test]
    fn an_entry_of_the_sender_confirms_what_it_contains_and_nothing_else() {
        let doc = yrs::Doc::with_client_id(7);
        let (one, two) = (typed(&doc, "one"), typed(&doc, "two"));
        let mut relays = Relays::default();
        assert!(relays.hold("a".into(), one.clone()));
        assert!(relays.hold("a".into(), two.clone()));
        assert!(!relays.hold("a".into(), Bytes::from_static(b"garbage")));

        relays.confirm("b", &one);
        assert_eq!(
            relays.held.len(),
            2,
            "another replica's entry confirms nothing of a's"
        );
        relays.confirm("a", &one);
        assert_eq!(relays.take(None), vec![two.clone()]);

        let both = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        relays.hold("a".into(), one);
        relays.hold("a".into(), two);
        relays.confirm("a", &both);
        assert!(
            relays.held.is_empty(),
            "a merged entry confirms each of its parts"
        );
    }

    #[test]
    fn only_updates_held_long_enough_are_taken() {
        let doc = yrs::Doc::with_client_id(7);
        let mut relays = Relays::default();
        relays.hold("a".into(), typed(&doc, "old"));
        let cut = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        relays.hold("a".into(), typed(&doc, "new"));
        assert_eq!(relays.take(Some(cut)).len(), 1);
        assert_eq!(relays.held.len(), 1);
    }
}
