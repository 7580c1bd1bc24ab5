//! JSON updates from members and `PUT`, handed to the room's core (`core/json.rs` stamps,
//! broadcasts and saves them); answered once stored.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;

use super::core::JsonUpdate;
use super::{Ack, DocRoom, MemberId, RoomError};
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
        self.acked(ctx, |core, waiter| {
            let update = JsonUpdate {
                from: msg.from,
                version: msg.version,
                by: msg.by,
                waiter,
                wall_ms: wall_ms(),
            };
            core.json_update(update, Instant::now())
        })
    }
}

/// The wall clock's milliseconds, what JSON stamps are taken at (SPEC §6).
pub(super) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
