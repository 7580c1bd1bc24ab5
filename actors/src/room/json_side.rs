//! JSON updates from members and `PUT`, handed to the room's core (`core/json.rs` stamps,
//! broadcasts and saves them); answered once stored.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::core::JsonUpdate;
use super::{Ack, DocRoom, MemberId, Reply, RoomError};
use crate::doc::Version;

/// New content from a member (or from `PUT`, with no member). Answers once stored.
#[derive(Message)]
#[rtype(result = "Result<Ack, RoomError>")]
pub struct Update {
    pub from: Option<MemberId>,
    pub version: Version,
    /// Who wrote it when no member did (`PUT`: the token's `sub`); a member's own is known.
    pub by: Option<String>,
}

impl Handler<Update> for DocRoom {
    type Result = ResponseFuture<Result<Ack, RoomError>>;

    /// Applies new content: broadcast at once, ack once stored (or `duplicate`).
    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        let (tx, rx) = oneshot::channel();
        let waiter = self.park(Reply::Ack(tx));
        let update = JsonUpdate {
            from: msg.from,
            version: msg.version,
            by: msg.by,
            waiter,
            wall_ms: wall_ms(),
        };
        let applied = self.core.json_update(update, Instant::now());
        self.carry_out(ctx);
        if let Err(e) = applied {
            self.waiters.remove(&waiter);
            return Box::pin(async { Err(e) });
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(RoomError::Unavailable("room stopped".into())))
        })
    }
}

/// The wall clock's milliseconds, what JSON stamps are taken at (SPEC §6).
pub(super) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
