//! What reaches the core from elsewhere than its members' frames: other replicas' entries of
//! the document's log (SPEC §8), durable there already, so applying one saves nothing; the
//! document's events (awareness, stateless payloads), best effort; and a reload's content after
//! the log reader was away. Also a member's Hocuspocus stateless payload, which goes out the
//! same way others' come in.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::warn;

use super::{Effect, RoomCore};
use crate::doc::{Kind, Version};
use crate::log::{Event, EventKind};
use crate::protocol::yjs::YjsError;
use crate::room::{MemberId, Outbound};

impl RoomCore {
    /// Other replicas' entries of this document's log, and the document's events.
    pub fn remote(&mut self, entries: Vec<Version>, events: Vec<Event>, now: Instant) {
        if self.closing {
            return;
        }
        for version in entries {
            if version.kind == self.held.kind() {
                self.apply_durable(version, false, now);
            }
        }
        for event in events {
            self.apply_event(event);
        }
        self.drop_lagging(now);
    }

    /// The document as reloaded after the log reader was away: what is missing is merged in.
    pub fn resynced(&mut self, version: Option<Version>, now: Instant) {
        if let Some(v) = version.filter(|v| v.kind == self.held.kind()) {
            self.apply_durable(v, true, now);
            self.drop_lagging(now);
        }
    }

    /// A member's Hocuspocus stateless payload: relayed to every other member, here and (the
    /// document's channel) on the other replicas.
    pub fn stateless(&mut self, from: MemberId, payload: Arc<str>, now: Instant) {
        if self.closing || !self.members.contains_key(&from) {
            return;
        }
        self.effects.push(Effect::Publish {
            kind: EventKind::Stateless,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        });
        self.broadcast(Some(from), Outbound::Stateless(payload));
        self.drop_lagging(now);
    }

    /// Content from elsewhere that is durable there: merged (Yjs) or taken if later (JSON), and
    /// relayed to every member. A Yjs log entry is relayed as it is; a reloaded state, as what
    /// it adds.
    fn apply_durable(&mut self, v: Version, whole_state: bool, now: Instant) {
        if self.broken {
            return; // starting afresh: the next room loads it from the stores
        }
        match self.held.kind() {
            Kind::Json => self.absorb_json(v),
            Kind::Yjs => {
                let Some(y) = self.held.yjs_mut() else { return };
                let applied = match whole_state {
                    true => y.doc.absorb(&v.content),
                    false => y.doc.absorb_update(&v.content),
                };
                match applied {
                    Ok(None) => {}
                    Ok(Some(frame)) => self.broadcast(None, Outbound::Binary(frame.into())),
                    // yrs failed inside the update: the document is not used again.
                    Err(e @ YjsError::Broken(_)) => {
                        warn!(doc = %self.cfg.doc, error = %e, "another replica's update broke the document, the room starts afresh");
                        self.start_afresh(now);
                    }
                    Err(e) => {
                        warn!(doc = %self.cfg.doc, error = %e, "another replica's update could not be applied")
                    }
                }
            }
        }
    }

    fn apply_event(&mut self, event: Event) {
        match event.kind {
            EventKind::Awareness => {
                let Some(y) = self.held.yjs_mut() else { return };
                if let Some(frame) = y.doc.apply_remote_awareness(&event.payload) {
                    self.broadcast(None, Outbound::Binary(frame.into()));
                }
            }
            EventKind::Stateless => {
                // Payloads were sent as text; anything else is not a Hocuspocus payload.
                if let Ok(text) = std::str::from_utf8(&event.payload) {
                    self.broadcast(None, Outbound::Stateless(text.into()));
                }
            }
        }
    }
}
