//! Answers that wait for a Yjs save: Hocuspocus's SyncStatus made durable (SPEC §5b), and a
//! backend's posted update (SPEC §9). A member's content message is answered `true` only once
//! the save that captures it has landed (Redis or the journal), so a provider with no unsynced
//! changes holds nothing that a fault could lose; a posted update is answered its ack then.
//!
//! The answers ride the room's Yjs saves: they wait in `YjsRoom::stored_waiters` until the next
//! capture, whose save carries them all as one [`SaveWaiter::Stored`].
//!
//! A posted update is a change like a member's: checked as a member's frame is (limits
//! included), merged, broadcast, saved with the room's next save, and answered once that save
//! has landed. An update that adds nothing is a `duplicate`, answered once what it repeats is
//! stored.

use std::time::Instant;

use bytes::Bytes;
use tracing::warn;

use super::saves::{SaveWaiter, StoredAnswer};
use super::{Answer, RoomCore, WaiterId};
use crate::protocol::yjs::{step2, Handled, YjsError};
use crate::room::{Outbound, RoomError};
use crate::supervisor::Stored;

impl RoomCore {
    /// Files the SyncStatus answer for one frame the room just handled from a member.
    pub(super) fn answer_when_stored(&mut self, stored: WaiterId, may_write: bool, h: &Handled) {
        let Some(y) = self.held.yjs_mut() else { return };
        match (may_write, h.added) {
            // Dropped: refused if it would have changed the document, fine if not.
            (false, _) => self.answer(stored, Answer::Status(!h.refused_change)),
            (true, false) => self.answer(stored, Answer::Status(h.error.is_none())),
            (true, true) => y.stored_waiters.push(StoredAnswer::Status(stored)),
        }
    }

    /// Files an answer that waits for what the document holds now to be stored: it rides the
    /// next capture if updates wait for one, else the save in flight, else it is due now.
    fn answer_once_stored(&mut self, waiting: StoredAnswer) {
        let Some(y) = self.held.yjs_mut() else { return };
        y.stored_waiters.push(waiting);
        if !y.unsaved() {
            self.release_stored_waiters();
        }
    }

    /// The waiter for a capture's save, standing for every answer filed since the last
    /// capture: each is answered once the save lands, or fails (a SyncStatus provider then
    /// keeps counting the update unsynced; the content stays in the room and the next save
    /// carries it).
    pub(super) fn stored_waiter(&mut self) -> Option<SaveWaiter> {
        let pending = std::mem::take(&mut self.held.yjs_mut()?.stored_waiters);
        (!pending.is_empty()).then_some(SaveWaiter::Stored(pending))
    }

    /// A capture found nothing new to save (the updates repeated what the last capture held):
    /// the waiting answers ride the save in flight, or are due now.
    pub(super) fn release_stored_waiters(&mut self) {
        let Some(y) = self.held.yjs() else { return };
        if y.stored_waiters.is_empty() {
            return;
        }
        // A Yjs save's content is its updates: what waits for one is stored unless the last
        // save failed (its updates then wait for the next capture).
        let stored = !y.retrying;
        let Some(waiter) = self.stored_waiter() else {
            return;
        };
        if let Some(SaveWaiter::Stored(due)) = self.saves.attach(waiter) {
            let res = match stored {
                true => Ok(Stored::Duplicate),
                false => Err(RoomError::Unavailable("its last save failed".into())),
            };
            self.answer_stored(due, &res);
        }
    }

    /// One Yjs update (v1) posted by a backend, by `by`: applied, answered to `waiter` once
    /// stored. Err: refused at once (nothing is answered to `waiter`).
    pub fn backend_update(
        &mut self,
        update: &[u8],
        by: &str,
        waiter: WaiterId,
        now: Instant,
    ) -> Result<(), RoomError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        let Some(y) = self.held.yjs_mut() else {
            self.check_idle(now);
            return Err(self.wrong_kind());
        };
        // Sent through the same checks as a member's frame: a sync message carrying it.
        let handled = y
            .doc
            .handle(&step2::message(update), true)
            .and_then(|h| match h.error {
                Some(e) => Err(e),
                None => Ok(h),
            });
        let handled = match handled {
            Ok(handled) => handled,
            Err(e) => {
                if matches!(e, YjsError::Broken(_)) {
                    warn!(doc = %self.cfg.doc, error = %e, "posted update broke the document, the room starts afresh");
                    self.start_afresh(now);
                } else {
                    self.check_idle(now);
                }
                return Err(refused(e));
            }
        };
        // Answered with the document's hash once it holds the update, as `PUT` answers with
        // its content's (the state's encoding is shared with readers until the next change).
        let waiting = StoredAnswer::Ack {
            waiter,
            hash: y.version(&self.cfg.doc).hash,
            duplicate: !handled.added,
        };
        if !handled.changed {
            self.answer_once_stored(waiting);
            return Ok(());
        }
        self.series.yjs_updates.increment(1);
        y.pending
            .extend(handled.applied.into_iter().map(Bytes::from));
        y.stored_waiters.push(waiting);
        for frame in handled.broadcast {
            self.broadcast(None, Outbound::Binary(frame.into()));
        }
        self.note_change_by(Some(by));
        self.mark_unsaved(now);
        self.drop_lagging(now);
        Ok(())
    }
}

/// Why a posted update was refused, as the HTTP answer tells it.
fn refused(e: YjsError) -> RoomError {
    match e {
        YjsError::StateLimit(_) => RoomError::TooLarge(e.to_string()),
        YjsError::Broken(_) => RoomError::Unavailable(e.to_string()),
        _ => RoomError::BadUpdate(e.to_string()),
    }
}
