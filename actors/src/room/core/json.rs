//! The JSON side of the core: whole-document updates, each stamped (SPEC §6), broadcast at once
//! and acknowledged once stored.

use std::time::Instant;

use super::saves::SaveWaiter;
use super::{duplicate, Held, RoomCore, WaiterId};
use crate::doc::Version;
use crate::metrics as m;
use crate::protocol::json;
use crate::room::{MemberId, Outbound, RoomError};

/// New content from a member (or from `PUT`, with no member).
pub struct JsonUpdate {
    pub from: Option<MemberId>,
    pub version: Version,
    /// Who wrote it when no member did (`PUT`: the token's `sub`); a member's own is known.
    pub by: Option<String>,
    /// Answered once the content is stored (or at once if it is already).
    pub waiter: WaiterId,
    /// The wall clock's milliseconds: what the update is stamped after.
    pub wall_ms: u64,
}

impl RoomCore {
    /// Applies new content: broadcast at once, acknowledged once stored (or `duplicate`).
    /// Err: refused at once (nothing is answered to the waiter).
    pub fn json_update(&mut self, u: JsonUpdate, now: Instant) -> Result<(), RoomError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        if u.version.kind != self.held.kind() {
            self.check_idle(now);
            return Err(self.wrong_kind());
        }
        self.series.json_updates.increment(1);
        let hash = u.version.hash.clone();
        let same = self.held.json().filter(|c| c.hash == hash).cloned();
        let duplicate_content = same.is_some() && !self.saves.is_unstored(&hash);
        let waiter = SaveWaiter::Ack {
            waiter: u.waiter,
            hash: hash.clone(),
            duplicate: duplicate_content,
        };
        match same {
            _ if duplicate_content => {
                // Answered with the save that carries this content, or at once if it landed.
                if let Some(SaveWaiter::Ack { waiter, .. }) = self.saves.attach(waiter) {
                    metrics::counter!(m::ACKS, "stored" => "duplicate").increment(1);
                    self.answer(waiter, duplicate(hash));
                }
            }
            // A retry of content whose save failed: save it again, nothing new to broadcast.
            Some(current) => self.save(current, Some(waiter)),
            None => {
                let previous = self.held.json().and_then(|c| c.stamp.as_ref());
                let stamp = self.cfg.clock.stamp_at(u.wall_ms, previous);
                let version = u.version.stamped(stamp);
                if self.members.keys().any(|id| Some(*id) != u.from) {
                    self.broadcast(u.from, Outbound::Text(json::update_frame(&version)));
                } else {
                    self.series.fanout.record(0.0);
                }
                self.held = Held::Json(Some(version.clone()));
                match u.from {
                    Some(member) => self.note_member_change(member),
                    None => self.note_change_by(u.by.as_deref()),
                }
                self.save(version, Some(waiter));
                // After the save is queued: dropping the last member looks at idleness.
                self.drop_lagging(now);
            }
        }
        Ok(())
    }

    /// A later version the ledger holds from elsewhere replaces the room's, and the members hear
    /// of it; an older one changes nothing.
    pub(super) fn absorb_json(&mut self, held: Version) {
        if held.stamp > self.held.json().and_then(|c| c.stamp.clone()) {
            self.broadcast(None, Outbound::Text(json::update_frame(&held)));
            self.held = Held::Json(Some(held));
        }
    }
}
