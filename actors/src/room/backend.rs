//! Writes from a backend (SPEC §9): a Yjs update posted over HTTP is a change like a member's,
//! handed to the room's core (`core/yjs_answers.rs`), and answered only once the save that
//! carries it has landed.

use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;

use super::{Ack, DocRoom, RoomError};

/// One Yjs update (v1) from a backend; `by` is who wrote it (the token's `sub`, or
/// `"server"`).
#[derive(Message)]
#[rtype(result = "Result<Ack, RoomError>")]
pub struct BackendUpdate {
    pub update: Bytes,
    pub by: String,
}

impl Handler<BackendUpdate> for DocRoom {
    type Result = ResponseFuture<Result<Ack, RoomError>>;

    fn handle(&mut self, msg: BackendUpdate, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        self.acked(ctx, |core, waiter| {
            core.backend_update(&msg.update, &msg.by, waiter, Instant::now())
        })
    }
}
