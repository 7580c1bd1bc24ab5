//! Writes from a backend (SPEC §9): a Yjs update posted over HTTP is a change like a member's.
//! It is checked as a member's frame is (limits included), merged, broadcast to this room's
//! members (and through the log to every replica's), saved with the room's next save, and
//! answered only once that save has landed. An update that adds nothing is a `duplicate`,
//! answered once what it repeats is stored.

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::warn;

use super::sync_status::StoredAnswer;
use super::{Ack, DocRoom, RoomError};
use crate::metrics as m;
use crate::protocol::yjs::{step2, YjsError};

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
        let answer = self.apply_backend_update(msg, ctx);
        Box::pin(async move {
            match answer {
                Ok(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(RoomError::Unavailable("room stopped".into()))),
                Err(e) => Err(e),
            }
        })
    }
}

impl DocRoom {
    /// Applies the update; answers where its acknowledgement will come from.
    fn apply_backend_update(
        &mut self,
        msg: BackendUpdate,
        ctx: &mut Context<Self>,
    ) -> Result<oneshot::Receiver<Result<Ack, RoomError>>, RoomError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        let Some(y) = self.yjs.as_mut() else {
            self.check_idle(ctx);
            return Err(RoomError::WrongKind {
                doc: self.doc.clone(),
                actual: self.kind.as_str(),
            });
        };
        // Sent through the same checks as a member's frame: a sync message carrying it.
        let handled = y
            .doc
            .handle(&step2::message(&msg.update), true)
            .and_then(|h| match h.error {
                Some(e) => Err(e),
                None => Ok(h),
            });
        let handled = match handled {
            Ok(handled) => handled,
            Err(e) => {
                if matches!(e, YjsError::Broken(_)) {
                    warn!(doc = %self.doc, error = %e, "posted update broke the document, the room starts afresh");
                    self.start_afresh(ctx);
                } else {
                    self.check_idle(ctx);
                }
                return Err(refused(e));
            }
        };
        // Answered with the document's hash once it holds the update, as `PUT` answers with
        // its content's (the state's encoding is shared with readers until the next change).
        let (tx, rx) = oneshot::channel();
        let waiting = StoredAnswer::Ack {
            hash: y.version(&self.doc).hash,
            duplicate: !handled.added,
            tx,
        };
        if !handled.changed {
            self.answer_once_stored(waiting);
            return Ok(rx);
        }
        metrics::counter!(m::UPDATES, "kind" => "yjs").increment(1);
        y.pending
            .extend(handled.applied.into_iter().map(Bytes::from));
        y.stored_waiters.push(waiting);
        for frame in handled.broadcast {
            self.broadcast_binary(None, frame.into());
        }
        self.note_change_by(Some(&msg.by));
        self.mark_unsaved(ctx);
        self.drop_lagging(ctx);
        Ok(rx)
    }
}

/// Why a posted update was refused, as the HTTP answer tells it.
fn refused(e: YjsError) -> RoomError {
    match e {
        YjsError::StateLimit(_) => RoomError::TooLarge(e.to_string()),
        YjsError::Broken(_) => RoomError::Unavailable(e.to_string()),
        _ => RoomError::BadUpdate(e.to_string()),
    }
}
