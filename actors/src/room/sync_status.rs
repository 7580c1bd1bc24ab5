//! Answers that wait for a Yjs save: Hocuspocus's SyncStatus made durable (SPEC §5b), and a
//! backend's posted update (SPEC §9). A member's content message is answered `true` only once
//! the save that captures it has landed (Redis or the journal), so a provider with no unsynced
//! changes holds nothing that a fault could lose; a posted update is answered its [`Ack`] then.
//!
//! The answers ride the room's Yjs saves: they wait in `YjsRoom::stored_waiters` until the next
//! capture, whose save carries one [`Waiter`] for all of them.

use tokio::sync::oneshot;

use super::{Ack, DocRoom, RoomError, Waiter};
use crate::protocol::yjs::Handled;
use crate::supervisor::Stored;

/// One answer due when the save capturing what was applied so far lands.
pub(super) enum StoredAnswer {
    /// Hocuspocus's SyncStatus: `true` once stored, `false` if the save failed.
    Status(oneshot::Sender<bool>),
    /// A posted update's acknowledgement: `hash` is the update's, `duplicate` that it added
    /// nothing (it is answered once what it repeats is stored).
    Ack {
        hash: String,
        duplicate: bool,
        tx: oneshot::Sender<Result<Ack, RoomError>>,
    },
}

impl StoredAnswer {
    /// Answers how the save went: `Ok(stored)` where it landed, or why it failed.
    fn answer(self, landed: &Result<Stored, RoomError>) {
        // The asker may be gone already: nobody left to tell.
        match self {
            StoredAnswer::Status(tx) => {
                let _ = tx.send(landed.is_ok());
            }
            StoredAnswer::Ack {
                hash,
                duplicate,
                tx,
            } => {
                let answer = landed.clone().map(|stored| Ack {
                    hash,
                    stored: if duplicate { Stored::Duplicate } else { stored },
                });
                let _ = tx.send(answer);
            }
        }
    }
}

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
            (true, true) => y.stored_waiters.push(StoredAnswer::Status(stored)),
        }
    }

    /// Files an answer that waits for what the document holds now to be stored: it rides the
    /// next capture if updates wait for one, else the save in flight, else it is due now.
    pub(super) fn answer_once_stored(&mut self, waiting: StoredAnswer) {
        let Some(y) = self.yjs.as_mut() else { return };
        y.stored_waiters.push(waiting);
        if !y.unsaved() {
            self.release_stored_waiters();
        }
    }

    /// The waiter for the save of `hash`, standing for every answer filed since the last
    /// capture: each is answered once the save lands, or fails (a SyncStatus provider then
    /// keeps counting the update unsynced; the content stays in the room and the next save
    /// carries it).
    pub(super) fn stored_waiter(&mut self, hash: &str) -> Option<Waiter> {
        let pending = std::mem::take(&mut self.yjs.as_mut()?.stored_waiters);
        if pending.is_empty() {
            return None;
        }
        let (tx, rx) = oneshot::channel::<Result<Ack, RoomError>>();
        actix::spawn(async move {
            let landed = match rx.await {
                Ok(Ok(ack)) => Ok(ack.stored),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(RoomError::Unavailable("room stopped".into())),
            };
            for waiting in pending {
                waiting.answer(&landed);
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
