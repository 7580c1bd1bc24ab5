//! Hocuspocus stateless messages (SPEC §5b): a member's payload relayed to the document's
//! other members — on this replica directly, on the others through the document's channel
//! (`core/remote.rs`), best effort like awareness.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::{DocRoom, MemberId};

#[derive(Message)]
#[rtype(result = "()")]
pub struct Stateless {
    pub from: MemberId,
    pub payload: Arc<str>,
}

impl Handler<Stateless> for DocRoom {
    type Result = ();

    /// Relays the payload to every other member.
    fn handle(&mut self, msg: Stateless, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        self.core.stateless(msg.from, msg.payload, Instant::now());
        self.carry_out(ctx);
    }
}
