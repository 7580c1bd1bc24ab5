//! Hocuspocus's SyncStatus, made durable (SPEC §5b): a member's content message is answered
//! `true` only once the save that captures it has landed (Redis or the journal), so a provider
//! with no unsynced changes holds nothing that a fault could lose.
//!
//! The answers ride the room's Yjs saves: they wait in `YjsRoom::stored_waiters` until the next
//! capture, whose save carries one [`Waiter`] for all of them.

use tokio::sync::oneshot;

use super::{Ack, DocRoom, RoomError, Waiter};
use crate::protocol::yjs::Handled;
use crate::supervisor::Stored;

impl DocRoom {
    /// Files the SyncStatus answer for one frame the room just handled from a member.
    pub(super) fn answer_when_stored(
        &mut self,
        stored: oneshot::Sender<bool>,
        may_write: bool,
        handled: &Handled,
    ) {
        let Some(y) = self.yjs.as_mut() else { return };
        match (may_write, handled.added) {
            // Dropped: refused if it would have changed the document, fine if not.
            (false, _) => answer(stored, !handled.refused_change),
            (true, false) => answer(stored, handled.error.is_none()),
            (true, true) => y.stored_waiters.push(stored),
        }
    }

    /// The waiter for the save of `hash`, standing for every SyncStatus answer filed since the
    /// last capture: `true` to each once the save lands, `false` if it fails (the provider then
    /// keeps counting the update unsynced; the content stays in the room and the next save
    /// carries it).
    pub(super) fn stored_waiter(&mut self, hash: &str) -> Option<Waiter> {
        let pending = std::mem::take(&mut self.yjs.as_mut()?.stored_waiters);
        if pending.is_empty() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        actix::spawn(async move {
            let landed = matches!(rx.await, Ok(Ok(_)));
            for stored in pending {
                answer(stored, landed);
            }
        });
        Some(Waiter {
            hash: hash.to_owned(),
            duplicate: false,
            tx,
        })
    }

    /// A capture found nothing new to save (the updates repeated what the last capture held):
    /// the waiting answers ride the save in flight, or are due now.
    pub(super) fn release_stored_waiters(&mut self) {
        let Some(y) = self.yjs.as_ref() else { return };
        if y.stored_waiters.is_empty() {
            return;
        }
        // A Yjs save's content is its updates: what waits for one is stored unless the last
        // save failed (its updates then wait for the next capture).
        let hash = String::new();
        let stored = !y.retrying();
        if let Some(waiter) = self.stored_waiter(&hash) {
            if let Some(now) = self.saves.attach(waiter) {
                let answer = match stored {
                    true => Ok(Ack {
                        hash: now.hash,
                        stored: Stored::Duplicate,
                    }),
                    false => Err(RoomError::Unavailable("its last save failed".into())),
                };
                let _ = now.tx.send(answer);
            }
        }
    }
}

fn answer(stored: oneshot::Sender<bool>, applied: bool) {
    // The session may be gone already: nobody left to tell.
    let _ = stored.send(applied);
}
