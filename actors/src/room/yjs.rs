//! Yjs frames from members, handed to the room's core (`core/yjs.rs` decides what they do).

use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::{DocRoom, MemberId, Reply};

/// A binary y-protocols frame from a member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct YjsFrame {
    pub from: MemberId,
    pub data: Bytes,
    /// False for read-only tokens: their document updates are dropped, not applied or relayed.
    pub may_write: bool,
    /// Hocuspocus's SyncStatus for a frame carrying one content message (SPEC §5b): answered
    /// `true` once that content is stored (at once if it added nothing), `false` if it was
    /// refused or its save failed.
    pub stored: Option<oneshot::Sender<bool>>,
}

impl Handler<YjsFrame> for DocRoom {
    type Result = ();

    /// Applies a member's frame: replies to it, relays to the others, schedules a save.
    fn handle(&mut self, msg: YjsFrame, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        let stored = msg.stored.map(|tx| self.park(Reply::Status(tx)));
        let now = Instant::now();
        self.core
            .yjs_frame(msg.from, &msg.data, msg.may_write, stored, now);
        self.carry_out(ctx);
    }
}
