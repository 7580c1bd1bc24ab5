//! Hocuspocus stateless messages (SPEC §5b): a member's payload relayed to the document's
//! other members. A room message, not a session-to-session shortcut, so it reaches every member
//! whatever session holds it (and, later, other replicas' members through the room).

use std::sync::Arc;

use actix::prelude::*;

use super::{DocRoom, MemberId, Outbound};

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
        if self.closing || !self.members.contains_key(&msg.from) {
            return;
        }
        self.broadcast(Some(msg.from), Outbound::Stateless(msg.payload));
        self.drop_lagging(ctx);
    }
}
