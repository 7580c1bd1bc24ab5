//! Hocuspocus stateless messages (SPEC §5b): a member's payload relayed to the document's
//! other members — on this replica directly, on the others through the document's channel
//! (`log_side`), best effort like awareness.

use std::sync::Arc;

use actix::prelude::*;

use super::{DocRoom, MemberId, Outbound};
use crate::log::EventKind;
use crate::supervisor::Publish;
use bytes::Bytes;

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
        self.shared.supervisor.do_send(Publish {
            doc: self.doc.clone(),
            kind: EventKind::Stateless,
            payload: Bytes::copy_from_slice(msg.payload.as_bytes()),
        });
        self.broadcast(Some(msg.from), Outbound::Stateless(msg.payload));
        self.drop_lagging(ctx);
    }
}
