//! A document's admission to a `/hocuspocus` socket, once its token passed: a place under the
//! document's connection limit, then membership in its room. Both happen while the document's
//! frames are held, so a refusal (a JSON document, a full server) is a `PermissionDenied`
//! rather than an `Authenticated` taken back.

use std::sync::Arc;

use actix::prelude::*;
use docroom_actors::doc::{DocId, Kind};
use docroom_actors::registry::{GetRoom, NoRoom};
use docroom_actors::room::{Backlog, Join, MemberId, Outbound, RoomError};

use super::link::{DocLink, FromRoom};
use super::membership::Membership;
use crate::state::AppState;

/// A send to a room can race the room retiring; the registry then starts the next one.
const JOIN_ATTEMPTS: usize = 3;

/// A document the socket is now a member of, and the frames its room greets it with.
pub struct Admitted {
    pub membership: Membership,
    pub greeting: Vec<Outbound>,
}

/// Joins `doc`'s room for `session`, whose token's `sub` is `subject`; `Err` is the reason sent
/// in `PermissionDenied`.
pub async fn admit(
    doc: DocId,
    state: AppState,
    session: Recipient<FromRoom>,
    subject: Option<String>,
) -> Result<Admitted, String> {
    let slot = state
        .connections
        .reserve_member(&doc, &state.settings.limits)
        .map_err(|e| e.to_string())?;
    let name: Arc<str> = doc.as_str().into();
    let webhooks = state
        .webhooks
        .as_ref()
        .map(|w| (w.recorder.clone(), subject.clone()));
    for _ in 0..JOIN_ATTEMPTS {
        let room = state
            .registry
            .send(GetRoom {
                doc: doc.clone(),
                kind: Kind::Yjs,
                home: Some(actix::Arbiter::current()),
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|refused| match refused {
                NoRoom::ShuttingDown => RoomError::Closing.to_string(),
                NoRoom::Full(_) => refused.to_string(),
            })?;
        let link = DocLink::new(name.clone(), session.clone()).start();
        let member = MemberId::next();
        let backlog = Backlog::default();
        let join = Join {
            member,
            kind: Kind::Yjs,
            outbound: link.clone().recipient(),
            backlog: backlog.clone(),
            subject: subject.clone(),
        };
        match room.send(join).await {
            Ok(Ok(greeting)) => {
                return Ok(Admitted {
                    membership: Membership::new(
                        doc,
                        member,
                        room,
                        link,
                        backlog,
                        slot,
                        webhooks.clone(),
                    ),
                    greeting,
                })
            }
            Ok(Err(e)) => return Err(e.to_string()),
            // The room retired between lookup and join: look it up again.
            Err(_) => continue,
        }
    }
    Err(format!("document {doc} is unavailable, try again"))
}
