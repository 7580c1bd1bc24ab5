//! How a room ends: it retires once idle (after the leave flush), closes every member at
//! shutdown, and starts afresh when yrs broke its document. And the versions it proposes for
//! the history (SPEC §10) as it is edited and as it ends.

use std::time::Instant;

use super::{Effect, Held, RoomCore};
use crate::doc::Version;
use crate::room::{CutReason, CutVersion};

impl RoomCore {
    /// With no members and nothing in flight: the flusher persists what the ledger still holds
    /// for the document (the leave flush), then the room retires. The ledger keeps the content
    /// either way, so a failed flush does not keep the room: the flusher retries on its
    /// schedule.
    pub(super) fn check_idle(&mut self, now: Instant) {
        if !self.members.is_empty() || !self.saves.is_idle() || self.persisting || self.closing {
            return;
        }
        if self.save_yjs_now(now) {
            return; // the save's result comes back here
        }
        self.persisting = true;
        self.effects.push(Effect::Persist);
    }

    /// The leave flush is done (landed or not: the flusher retries): the room retires if it is
    /// still idle.
    pub fn persisted(&mut self) {
        self.persisting = false;
        if self.members.is_empty() && self.is_saved() && !self.closing {
            self.effects.push(Effect::Stop);
        }
    }

    /// The document may hold part of an update yrs failed on: it is not used again. Every
    /// member is closed (1011) and joins are refused; the updates applied before it are saved
    /// as they came (not from the document), then the room retires, so the next connection
    /// starts a room that loads what is stored, and the members' providers reconnect and sync
    /// what they hold.
    pub(super) fn start_afresh(&mut self, now: Instant) {
        self.broken = true;
        self.close_all(1011, "document reloading");
        self.check_idle(now);
    }

    /// Shutdown: 1001 to every member, further work refused; answers the content not known to
    /// be saved (the drain persists it).
    pub fn close(&mut self, now: Instant) -> Option<Version> {
        let captured = self.save_yjs_now(now);
        // Its members leave: the version of what they made (the room may not stop before the
        // process does).
        self.propose_version(CutReason::Left);
        self.closing = true;
        self.close_all(1001, "server shutting down");
        if let Some(y) = self.held.yjs_mut() {
            // Saves carry updates: what is not known saved is the whole state, at worst.
            let unsaved = captured || !self.saves.is_idle() || y.retrying;
            return unsaved.then(|| y.version(&self.cfg.doc));
        }
        let current = self.held.json()?;
        let unsaved = captured || !self.saves.is_idle() || self.saves.is_unstored(&current.hash);
        unsaved.then(|| current.clone())
    }

    /// The room stopped: the version of what its members made. True if the document, at rest,
    /// should get its stored state folded (not at shutdown: the drain has the deadline).
    pub fn stopped(&mut self) -> bool {
        self.propose_version(CutReason::Left);
        !self.closing && self.held.yjs().is_some()
    }

    /// Proposes a version now if the document changed since the last one.
    pub(super) fn propose_version(&mut self, why: CutReason) {
        if !self.cfg.history || !self.unversioned.changed {
            return;
        }
        let version = match &mut self.held {
            Held::Yjs(y) => y.version(&self.cfg.doc),
            Held::Json(Some(v)) => v.clone(),
            Held::Json(None) | Held::Unloaded(_) => return,
        };
        let noted = std::mem::take(&mut self.unversioned);
        self.effects.push(Effect::Cut(CutVersion {
            doc: self.cfg.doc.clone(),
            kind: self.held.kind(),
            content: version.content,
            hash: version.hash,
            users: noted.users.into_iter().collect(),
            why,
        }));
    }
}
