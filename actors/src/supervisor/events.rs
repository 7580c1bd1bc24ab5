//! Events (awareness, stateless, relayed Yjs updates) for the other replicas' rooms: published on
//! the document's channel while Redis is in use, dropped otherwise. Best effort by design (SPEC
//! §5b: they may be lost on a fault, edits never), but a failure still counts for the breaker.

use actix::prelude::*;
use bytes::Bytes;
use tracing::debug;

use super::{CacheSupervisor, Outcome};
use crate::doc::DocId;
use crate::log::EventKind;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub doc: DocId,
    pub kind: EventKind,
    pub payload: Bytes,
}

impl Handler<Publish> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        if !self.allows_redis() {
            return Box::pin(fut::ready(()));
        }
        let cache = self.stores.cache.clone();
        let fut = async move { cache.publish(&msg.doc, msg.kind, &msg.payload).await };
        Box::pin(fut.into_actor(self).map(|res, act, ctx| {
            if let Err(e) = &res {
                debug!(error = %e, "publishing an event failed");
            }
            act.account(Outcome::from(&res), ctx);
        }))
    }
}
