//! A room and its document's log (SPEC §8): what other replicas appended reaches this room's
//! members. The room follows the log from the position its loaded content includes; the
//! [`LogReader`](crate::log_reader::LogReader) hands it other replicas' entries, which it
//! applies — Yjs merged, JSON if its stamp is larger — and relays. Those entries are durable in
//! Redis already (their replica appended them), so applying one saves nothing. An edit reaches
//! other replicas' members once it is saved: a room saves as soon as its previous save landed
//! (`yjs.rs`), and the save's notice carries the entry to the other readers.
//!
//! Awareness and stateless messages travel through the document's channel (Redis pub/sub,
//! `doc:{id}:events`): what members here announce is published, what members elsewhere
//! announced is applied and relayed, and what was published while nobody listened is gone
//! (awareness is repeated).

use actix::prelude::*;
use bytes::Bytes;
use tracing::warn;

use super::DocRoom;
use crate::doc::{Kind, Version};
use crate::log::{Event, EventKind, LogPos};
use crate::log_reader::{Apply, Follow, Resync, Unfollow};
use crate::protocol::yjs::YjsError;
use crate::supervisor::{Load, Publish};

impl DocRoom {
    /// Follows the document's log after `from`.
    pub(super) fn follow(&self, from: LogPos, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.shared.log.do_send(Follow {
            doc: self.doc.clone(),
            from,
            room: me.clone().recipient(),
            resync: me.recipient(),
        });
    }

    pub(super) fn unfollow(&self, ctx: &mut Context<Self>) {
        self.shared.log.do_send(Unfollow {
            doc: self.doc.clone(),
            room: ctx.address().recipient(),
        });
    }

    /// Content from elsewhere that is durable there: merged (Yjs) or taken if later (JSON), and
    /// relayed to every member. A Yjs log entry is relayed as it is; a reloaded state, as what
    /// it adds.
    fn apply_durable(&mut self, v: Version, whole_state: bool, ctx: &mut Context<Self>) {
        if self.broken {
            return; // starting afresh: the next room loads it from the stores
        }
        match self.kind {
            Kind::Json => self.absorb_json(v),
            Kind::Yjs => {
                let Some(y) = self.yjs.as_mut() else { return };
                let applied = match whole_state {
                    true => y.doc.absorb(&v.content),
                    false => y.doc.absorb_update(&v.content),
                };
                match applied {
                    Ok(None) => {}
                    Ok(Some(frame)) => self.broadcast(None, super::Outbound::Binary(frame.into())),
                    // yrs failed inside the update: the document is not used again.
                    Err(e @ YjsError::Broken(_)) => {
                        warn!(doc = %self.doc, error = %e, "another replica's update broke the document, the room starts afresh");
                        self.start_afresh(ctx);
                    }
                    Err(e) => {
                        warn!(doc = %self.doc, error = %e, "another replica's update could not be applied")
                    }
                }
            }
        }
    }
}

impl DocRoom {
    /// An awareness message this room applied, for the other replicas' rooms.
    pub(super) fn publish_awareness(&self, frame: &[u8]) {
        self.shared.supervisor.do_send(Publish {
            doc: self.doc.clone(),
            kind: EventKind::Awareness,
            payload: Bytes::copy_from_slice(frame),
        });
    }

    fn apply_event(&mut self, event: Event) {
        match event.kind {
            EventKind::Awareness => {
                let Some(y) = self.yjs.as_mut() else { return };
                if let Some(frame) = y.doc.apply_remote_awareness(&event.payload) {
                    self.broadcast(None, super::Outbound::Binary(frame.into()));
                }
            }
            EventKind::Stateless => {
                // Payloads were sent as text; anything else is not a Hocuspocus payload.
                if let Ok(text) = std::str::from_utf8(&event.payload) {
                    self.broadcast(None, super::Outbound::Stateless(text.into()));
                }
            }
        }
    }
}

impl Handler<Apply> for DocRoom {
    type Result = ();

    /// Other replicas' entries of this document's log.
    fn handle(&mut self, msg: Apply, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        if self.closing {
            return;
        }
        for entry in msg.entries {
            if entry.version.kind == self.kind {
                self.apply_durable(entry.version, false, ctx);
            }
        }
        for event in msg.events {
            self.apply_event(event);
        }
        self.drop_lagging(ctx);
    }
}

impl Handler<Resync> for DocRoom {
    type Result = ();

    /// The log reader was away: reload the document (Redis's content and log, the ledger's)
    /// and merge in what is missing, then follow the log from there.
    fn handle(&mut self, _: Resync, ctx: &mut Context<Self>) {
        let load = self.shared.supervisor.send(Load {
            doc: self.doc.clone(),
        });
        ctx.spawn(load.into_actor(self).map(|res, act, ctx| {
            let Ok(Ok(loaded)) = res else { return };
            if let Some(v) = loaded.version.filter(|v| v.kind == act.kind) {
                act.apply_durable(v, true, ctx);
                act.drop_lagging(ctx);
            }
            act.follow(loaded.position, ctx);
        }));
    }
}
