//! One document of a `/hocuspocus` socket that is a member of its room, and what its
//! provider's frames become there.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use docroom_actors::doc::{DocId, Kind};
use docroom_actors::protocol::hocuspocus::{Frame, Scope};
use docroom_actors::room::{Backlog, DocRoom, Leave, MemberId, Outbound, Stateless, YjsFrame};
use tokio::sync::oneshot;

use super::link::DocLink;
use crate::limits::ConnectionSlot;
use crate::webhooks::{ClientEvent, Recorder};

/// y-protocols sync sub-message types: step 1 carries a state vector, step 2 and update carry
/// content (and each gets a SyncStatus).
const SYNC_STEP_2: u8 = 1;
const SYNC_UPDATE: u8 = 2;

pub struct Membership {
    pub doc: DocId,
    pub member: MemberId,
    room: Addr<DocRoom>,
    /// Kept so the link lives as long as the membership (the room holds it too).
    _link: Addr<DocLink>,
    /// Shared with the room: what it queued for this document and the session has not written.
    pub backlog: Backlog,
    /// This document's place under its connection limit.
    _slot: ConnectionSlot,
    /// What the room sent before the provider was told `Authenticated`: written right after.
    pub early: Option<Vec<Outbound>>,
    /// Ends the document when its token expires.
    pub expiry: Option<SpawnHandle>,
    /// Told `client.connected` now and `client.disconnected` when the membership ends, with
    /// the token's `sub` (`None`: webhooks off).
    webhooks: Option<(Addr<Recorder>, Option<String>)>,
}

impl Membership {
    pub fn new(
        doc: DocId,
        member: MemberId,
        room: Addr<DocRoom>,
        link: Addr<DocLink>,
        backlog: Backlog,
        slot: ConnectionSlot,
        webhooks: Option<(Addr<Recorder>, Option<String>)>,
    ) -> Self {
        let membership = Membership {
            doc,
            member,
            room,
            _link: link,
            backlog,
            _slot: slot,
            early: Some(Vec::new()),
            expiry: None,
            webhooks,
        };
        membership.client_event(true);
        membership
    }

    /// `client.connected` / `client.disconnected` for the webhooks: a document of a
    /// `/hocuspocus` socket is a client of that document, as a `/yjs` connection is.
    fn client_event(&self, connected: bool) {
        if let Some((recorder, user)) = &self.webhooks {
            ClientEvent::tell(
                Some(recorder),
                connected,
                &self.doc,
                Kind::Yjs,
                user.as_deref(),
            );
        }
    }

    /// Hands a provider's frame to the room. For a content-carrying Sync message, answers the
    /// receiver of its SyncStatus (SPEC §5b).
    pub fn deliver(&self, frame: Frame, scope: Scope) -> Option<oneshot::Receiver<bool>> {
        let may_write = scope.may_write();
        if let Frame::Stateless { payload, .. } = frame {
            self.room.do_send(Stateless {
                from: self.member,
                payload: Arc::from(payload),
            });
            return None;
        }
        let carries_content = matches!(
            &frame,
            Frame::Sync { payload, .. } if matches!(payload.first(), Some(&(SYNC_STEP_2 | SYNC_UPDATE)))
        );
        let data = Bytes::from(frame.to_yjs_message()?);
        let (stored, answer) = match carries_content {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        self.room.do_send(YjsFrame {
            from: self.member,
            data,
            may_write,
            stored,
        });
        answer
    }

    /// Leaves the room (the session stopped, the provider closed the document, or the server
    /// ended it).
    pub fn leave(self) {
        self.room.do_send(Leave {
            member: self.member,
        });
    }
}

impl Drop for Membership {
    /// However the membership ends (left, closed, or the session stopped), the client left.
    fn drop(&mut self) {
        self.client_event(false);
    }
}
