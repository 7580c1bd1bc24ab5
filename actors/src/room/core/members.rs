//! A room's members as the core sees them: their ids, their backlogs and their token `sub`s.
//! Where their frames go is the actor's business; what they may be sent is decided here, each
//! frame charged to the member's [`Backlog`] before the effect that queues it goes out (see
//! `member.rs` for why the bound sits on the sending side).

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use super::{Effect, RoomCore};
use crate::doc::Kind;
use crate::protocol::json;
use crate::room::{Backlog, MemberId, Outbound, RoomError, RoomLimits};

pub(super) struct CoreMember {
    backlog: Backlog,
    /// The member's token `sub`: who its changes are by.
    pub(super) subject: Option<String>,
}

/// A member who wants in (see [`Join`](crate::room::Join)).
pub struct Joining {
    pub member: MemberId,
    pub kind: Kind,
    pub backlog: Backlog,
    pub subject: Option<String>,
    /// The session is still there (it may have gone while its join waited).
    pub connected: bool,
}

impl Joining {
    /// A new member of `kind` whose session is there, with a fresh backlog and no token
    /// subject: a join as tests, benches and simulations make it.
    pub fn new(kind: Kind) -> Joining {
        Joining {
            member: MemberId::next(),
            kind,
            backlog: Backlog::default(),
            subject: None,
            connected: true,
        }
    }
}

impl RoomCore {
    /// Adds a member; answers the frames it starts from (a JSON snapshot, or Yjs sync step 1
    /// and awareness).
    pub fn join(&mut self, j: Joining, now: Instant) -> Result<Vec<Outbound>, RoomError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        if j.kind != self.held.kind() {
            // The room may have been opened for this refused join alone.
            self.check_idle(now);
            return Err(self.wrong_kind());
        }
        if !j.connected {
            // The session is gone already: no member would ever leave.
            self.check_idle(now);
            return Err(RoomError::Unavailable("the connection is gone".into()));
        }
        let member = CoreMember {
            backlog: j.backlog,
            subject: j.subject,
        };
        self.members.insert(j.member, member);
        Ok(match self.held.yjs() {
            Some(y) => y
                .doc
                .greeting()
                .into_iter()
                .map(|f| Outbound::Binary(f.into()))
                .collect(),
            None => vec![Outbound::Text(json::snapshot_frame(
                &self.cfg.doc,
                self.held.json(),
            ))],
        })
    }

    /// A member left; the last one out starts the leave flush.
    pub fn leave(&mut self, member: MemberId, now: Instant) {
        if self.remove(member) {
            self.forget_awareness(member);
            self.drop_lagging(now);
            self.check_idle(now);
        }
    }

    /// Members whose session stopped without a `Leave`.
    pub fn gone(&mut self, gone: &[MemberId], now: Instant) {
        if gone.is_empty() {
            return;
        }
        for id in gone {
            debug!(doc = %self.cfg.doc, member = id.get(), "session gone without leaving, member dropped");
            self.remove(*id);
            self.forget_awareness(*id);
        }
        self.drop_lagging(now);
        self.check_idle(now);
    }

    fn remove(&mut self, member: MemberId) -> bool {
        let removed = self.members.remove(&member).is_some();
        if removed {
            self.effects.push(Effect::Remove(member));
        }
        removed
    }

    /// Every member leaves at once, each sent `close` first (shutdown, a broken document).
    pub(super) fn close_all(&mut self, code: u16, reason: &'static str) {
        let mut ids: Vec<MemberId> = self.members.keys().copied().collect();
        ids.sort_by_key(|id| id.get());
        for id in ids {
            self.close_member(id, code, reason);
            self.remove(id);
        }
    }

    /// Sends `frame` to one member; one over its budget is noted for removal.
    pub(super) fn send_to(&mut self, id: MemberId, frame: Outbound) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if !member.backlog.charge(&frame, &self.cfg.limits) {
            self.lagging.push(id);
            return;
        }
        self.effects.push(Effect::Send { to: id, frame });
    }

    /// Sends a member the answer to its own sync step 1: outside its budget if it has no other
    /// in flight, else charged as any frame.
    pub(super) fn sync_to(&mut self, id: MemberId, update: Bytes) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let charged = !member.backlog.free_sync();
        let frame = Outbound::SyncStep2 { update, charged };
        if charged {
            return self.send_to(id, frame);
        }
        self.effects.push(Effect::Send { to: id, frame });
    }

    /// Sends `frame` to every member but `from` (built once, shared); those over their backlog
    /// are skipped and noted for removal.
    pub(super) fn broadcast(&mut self, from: Option<MemberId>, frame: Outbound) {
        let others = self.members.len().saturating_sub(from.is_some() as usize);
        self.series.fanout.record(others as f64);
        let mut skip = Vec::new();
        for (id, member) in &self.members {
            if Some(*id) != from && !member.backlog.charge(&frame, &self.cfg.limits) {
                skip.push(*id);
            }
        }
        self.lagging.extend_from_slice(&skip);
        let except = from;
        self.effects.push(Effect::Broadcast {
            except,
            skip,
            frame,
        });
    }

    /// Refuses one member's connection: its last frame, whatever its budget; the session
    /// closes and then leaves.
    pub(super) fn close_member(&mut self, id: MemberId, code: u16, reason: &'static str) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let frame = Outbound::Close { code, reason };
        member.backlog.charge(&frame, &RoomLimits::unlimited());
        self.effects.push(Effect::Send { to: id, frame });
    }

    /// Removes the members that went over their budget (each as if it had left: its awareness
    /// states are removed, which may in turn leave others behind), then looks at idleness.
    pub(super) fn drop_lagging(&mut self, now: Instant) {
        if self.lagging.is_empty() {
            return;
        }
        while let Some(id) = self.lagging.pop() {
            if self.remove(id) {
                warn!(doc = %self.cfg.doc, member = id.get(), "member not reading, dropped from the room");
                self.forget_awareness(id);
            }
        }
        self.check_idle(now);
    }
}
