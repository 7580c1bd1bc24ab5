//! The JSON side of a room: whole-document updates, each stamped (SPEC §6), broadcast at once
//! and acknowledged once stored.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Ack, DocRoom, MemberId, Outbound, RoomError, Waiter};
use crate::doc::Version;
use crate::metrics as m;
use crate::protocol::json;
use crate::supervisor::Stored;

/// New content from a member (or from `PUT`, with no member). Answers once stored.
#[derive(Message)]
#[rtype(result = "Result<Ack, RoomError>")]
pub struct Update {
    pub from: Option<MemberId>,
    pub version: Version,
    /// Who wrote it when no member did (`PUT`: the token's `sub`); a member's own is known.
    pub by: Option<String>,
}

impl DocRoom {
    /// A later version the ledger holds from elsewhere replaces the room's, and the members hear
    /// of it; an older one changes nothing.
    pub(super) fn absorb_json(&mut self, held: Version) {
        if held.stamp > self.current.as_ref().and_then(|c| c.stamp.clone()) {
            self.broadcast(None, Outbound::Text(json::update_frame(&held)));
            self.current = Some(held);
        }
    }
}

impl Handler<Update> for DocRoom {
    type Result = ResponseFuture<Result<Ack, RoomError>>;

    /// Applies new content: broadcast at once, ack once stored (or `duplicate`).
    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        if let Some(refusal) = self.refusal() {
            return Box::pin(async { Err(refusal) });
        }
        if msg.version.kind != self.kind {
            self.check_idle(ctx);
            let err = RoomError::WrongKind {
                doc: self.doc.clone(),
                actual: self.kind.as_str(),
            };
            return Box::pin(async { Err(err) });
        }
        metrics::counter!(m::UPDATES, "kind" => "json").increment(1);
        let (tx, rx) = oneshot::channel();
        let hash = msg.version.hash.clone();
        let same = self.current.as_ref().filter(|c| c.hash == hash).cloned();
        let duplicate = same.is_some() && !self.saves.is_unstored(&hash);
        let waiter = Waiter {
            hash: hash.clone(),
            duplicate,
            tx,
        };
        match same {
            _ if duplicate => {
                // Answered with the save that carries this content, or at once if it landed.
                if let Some(waiter) = self.saves.attach(waiter) {
                    let ack = Ack {
                        hash,
                        stored: Stored::Duplicate,
                    };
                    metrics::counter!(m::ACKS, "stored" => "duplicate").increment(1);
                    let _ = waiter.tx.send(Ok(ack));
                }
            }
            // A retry of content whose save failed: save it again, nothing new to broadcast.
            Some(current) => self.save(current, Some(waiter), ctx),
            None => {
                let previous = self.current.as_ref().and_then(|c| c.stamp.as_ref());
                let version = msg.version.stamped(self.shared.clock.stamp(previous));
                if self.members.keys().any(|id| Some(*id) != msg.from) {
                    self.broadcast(msg.from, Outbound::Text(json::update_frame(&version)));
                } else {
                    metrics::histogram!(m::BROADCAST_FANOUT).record(0.0);
                }
                self.current = Some(version.clone());
                match msg.from {
                    Some(member) => self.note_member_change(member),
                    None => self.note_change_by(msg.by.as_deref()),
                }
                self.save(version, Some(waiter), ctx);
                // After the save is queued: dropping the last member looks at idleness.
                self.drop_lagging(ctx);
            }
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(RoomError::Unavailable("room stopped".into())))
        })
    }
}
