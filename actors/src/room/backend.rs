//! Writes from a backend (SPEC §9): a Yjs update posted over HTTP is a change like a member's,
//! handed to the room's core (`core/yjs_answers.rs`), and answered only once the save that
//! carries it has landed.

use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Ack, DocRoom, Reply, RoomError};

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
        let (tx, rx) = oneshot::channel();
        let waiter = self.park(Reply::Ack(tx));
        let applied = self
            .core
            .backend_update(&msg.update, &msg.by, waiter, Instant::now());
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
