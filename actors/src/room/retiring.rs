//! How a room ends: it retires once idle (after the leave flush), closes every member at
//! shutdown, and starts afresh when yrs broke its document.

use actix::prelude::*;
use tracing::{debug, warn};

use super::{CloseRoom, CutReason, DocRoom, Outbound};
use crate::doc::Version;
use crate::flusher::PersistNow;

impl DocRoom {
    /// With no members and nothing in flight: the flusher persists what the ledger still holds
    /// for the document (the leave flush; it answers at once if nothing waits), then the room
    /// retires. The ledger keeps the content either way, so a failed flush does not keep the
    /// room: the flusher retries on its schedule.
    pub(super) fn check_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.members.is_empty() || !self.saves.is_idle() || self.persisting || self.closing {
            return;
        }
        if self.save_yjs_now(ctx) {
            return; // the save's completion comes back here
        }
        self.persisting = true;
        self.shared
            .flusher
            .send(PersistNow {
                doc: self.doc.clone(),
            })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.persisting = false;
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(doc = %act.doc, error = %e, "leave flush failed, the flusher retries"),
                    Err(e) => warn!(doc = %act.doc, error = %e, "flusher unreachable"),
                }
                let busy = act.yjs.as_ref().is_some_and(|y| y.unsaved());
                if act.members.is_empty() && act.saves.is_idle() && !busy && !act.closing {
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }

    /// The document may hold part of an update yrs failed on: it is not used again. Every
    /// member is closed (1011) and joins are refused; the updates applied before it are saved
    /// as they came (not from the document), then the room retires, so the next connection
    /// starts a room that loads what is stored, and the members' providers reconnect and sync
    /// what they hold.
    pub(super) fn start_afresh(&mut self, ctx: &mut Context<Self>) {
        self.broken = true;
        for (_, member) in self.members.drain() {
            member.force(Outbound::Close {
                code: 1011,
                reason: "document reloading",
            });
        }
        self.check_idle(ctx);
    }
}

impl Handler<CloseRoom> for DocRoom {
    type Result = Option<Version>;

    /// Shutdown: 1001 to every member; answers the content not known to be saved.
    fn handle(&mut self, _: CloseRoom, ctx: &mut Context<Self>) -> Self::Result {
        let captured = self.save_yjs_now(ctx);
        // Its members leave: the version of what they made (the room may not stop before the
        // process does).
        self.propose_version(CutReason::Left);
        self.closing = true;
        for (_, member) in self.members.drain() {
            member.force(Outbound::Close {
                code: 1001,
                reason: "server shutting down",
            });
        }
        if let Some(y) = self.yjs.as_mut() {
            // Saves carry updates: what is not known saved is the whole state, at worst.
            let unsaved = captured || !self.saves.is_idle() || y.retrying();
            return unsaved.then(|| y.version(&self.doc));
        }
        let current = self.current.as_ref()?;
        let unsaved = captured || !self.saves.is_idle() || self.saves.is_unstored(&current.hash);
        unsaved.then(|| current.clone())
    }
}
