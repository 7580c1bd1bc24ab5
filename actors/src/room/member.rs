//! A room's members: joining and leaving, where each one's frames go, and how much of them its
//! session has not taken yet.
//!
//! Rooms send with `do_send`, which ignores mailbox limits, and a session whose client stopped
//! reading is not polled at all (actix-web-actors stops polling it while its socket is full):
//! every frame sent to it would wait in memory for good. So the bound sits on the sending side.
//! The room charges each frame to the member's [`Backlog`], the session credits it when it
//! handles the frame, and a member over its budget is dropped from the room as if it had left;
//! its session, once it runs again, sees [`Backlog::overflowed`] and closes with 1008.
//!
//! A member's answer to its own sync step 1 is not a frame it failed to read: it is the document
//! it asked for, as large as the document, and it is sent as the member's connection drains. So
//! one such answer at a time is outside the budget; the member is dropped for what piles up
//! behind it, not for it. A second answer requested while one is in flight is charged.
//!
//! A member whose session is gone without a `Leave` (the connection dropped while the answer
//! to its `Join` was on its way) is dropped too, on a timer: joins and leaves stay symmetric.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::core::Joining;
use super::{DocRoom, Kind, MemberId, Outbound, RoomError, RoomLimits};

/// How often a room looks for members whose session stopped without a `Leave`.
pub(super) const MEMBER_SWEEP: Duration = Duration::from_secs(1);

/// What a room queued for one session and the session has not handled yet. The room adds, the
/// session subtracts; both sides may run on different threads, hence the atomics (the counts
/// are a budget, not an invariant: relaxed ordering is enough). Cloning is shallow.
#[derive(Clone, Debug, Default)]
pub struct Backlog(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    overflowed: AtomicBool,
    /// An uncharged sync step 2 answer is on its way to the member.
    syncing: AtomicBool,
}

impl Backlog {
    /// Session side: `frame` was handled (written to the connection's buffer; a sync step 2 or
    /// a frame queued behind one: its last byte handed to the connection).
    pub fn taken(&self, frame: &Outbound) {
        let c = &self.0;
        if let Outbound::SyncStep2 { charged: false, .. } = frame {
            c.syncing.store(false, Ordering::Relaxed);
            return;
        }
        let _ = c
            .messages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let _ = c
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(frame.cost()))
            });
    }

    /// Whether the room dropped this member for going over its budget.
    pub fn overflowed(&self) -> bool {
        self.0.overflowed.load(Ordering::Relaxed)
    }

    /// Room side: counts `frame` in, or marks the member overflowed and answers false if it
    /// would go over a limit. A member with nothing queued always gets its frame, so a single
    /// frame larger than the byte budget still reaches a member that keeps up.
    pub(super) fn charge(&self, frame: &Outbound, limits: &RoomLimits) -> bool {
        let c = &self.0;
        let (messages, bytes) = (
            c.messages.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
        );
        let over = messages >= limits.member_backlog_messages
            || bytes.saturating_add(frame.cost()) > limits.member_backlog_bytes;
        if messages > 0 && over {
            c.overflowed.store(true, Ordering::Relaxed);
            return false;
        }
        c.messages.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(frame.cost(), Ordering::Relaxed);
        true
    }

    /// Room side: whether a sync step 2 answer may go uncharged (none is in flight; it is then).
    pub(super) fn free_sync(&self) -> bool {
        self.0
            .syncing
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl Outbound {
    /// What a frame counts against a member's byte budget.
    pub fn cost(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Binary(bytes) => bytes.len(),
            Outbound::SyncStep2 { update, .. } => update.len(),
            Outbound::Stateless(payload) => payload.len(),
            Outbound::Close { .. } => 0,
        }
    }
}

/// Joins a member; answers the frames to send it first (JSON snapshot, or Yjs sync step 1 and
/// awareness).
#[derive(Message)]
#[rtype(result = "Result<Vec<Outbound>, RoomError>")]
pub struct Join {
    pub member: MemberId,
    pub kind: Kind,
    pub outbound: Recipient<Outbound>,
    /// Charged by the room for every frame it queues to `outbound`; the session credits it for
    /// every frame it handles (see [`Backlog`]).
    pub backlog: Backlog,
    /// The connection's token `sub` (none without tokens or without the claim): who its
    /// changes are by, in the `document.changed` webhook.
    pub subject: Option<String>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub member: MemberId,
}

impl Handler<Join> for DocRoom {
    type Result = Result<Vec<Outbound>, RoomError>;

    /// Adds a member and answers the snapshot it starts from.
    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        let joining = Joining {
            member: msg.member,
            kind: msg.kind,
            backlog: msg.backlog,
            subject: msg.subject,
            connected: msg.outbound.connected(),
        };
        let joined = self.core.join(joining, Instant::now());
        if joined.is_ok() {
            self.members.insert(msg.member, msg.outbound);
        }
        self.carry_out(ctx);
        joined
    }
}

impl Handler<Leave> for DocRoom {
    type Result = ();

    /// Removes a member; the last one out triggers the leave flush.
    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        self.core.leave(msg.member, Instant::now());
        self.carry_out(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn limits(messages: usize, bytes: usize) -> RoomLimits {
        RoomLimits {
            member_backlog_messages: messages,
            member_backlog_bytes: bytes,
            ..RoomLimits::unlimited()
        }
    }

    fn frame(len: usize) -> Outbound {
        Outbound::Binary(Bytes::from(vec![0u8; len]))
    }

    #[test]
    fn a_backlog_takes_frames_up_to_its_budget_and_frees_what_the_session_took() {
        let backlog = Backlog::default();
        let limits = limits(3, 100);
        assert!(backlog.charge(&frame(40), &limits));
        assert!(backlog.charge(&frame(40), &limits));
        assert!(
            !backlog.charge(&frame(40), &limits),
            "120 bytes is over 100"
        );
        assert!(backlog.overflowed());

        let fresh = Backlog::default();
        for _ in 0..3 {
            assert!(fresh.charge(&frame(1), &limits));
        }
        assert!(
            !fresh.charge(&frame(1), &limits),
            "a fourth message is over 3"
        );
        let fresh = Backlog::default();
        assert!(fresh.charge(&frame(60), &limits));
        fresh.taken(&frame(60));
        assert!(fresh.charge(&frame(60), &limits));
        assert!(fresh.charge(&frame(40), &limits));
        assert!(!fresh.overflowed());
    }

    fn sync(len: usize, charged: bool) -> Outbound {
        let update = Bytes::from(vec![0u8; len]);
        Outbound::SyncStep2 { update, charged }
    }

    #[test]
    fn a_members_own_sync_is_outside_its_budget_and_frames_behind_it_are_not() {
        let backlog = Backlog::default();
        let limits = limits(3, 100);
        // A document ten times the budget is on its way while the member reads it.
        assert!(backlog.free_sync());
        assert!(backlog.charge(&frame(60), &limits));
        assert!(
            backlog.charge(&frame(30), &limits),
            "the sync counts nothing"
        );
        assert!(
            !backlog.charge(&frame(20), &limits),
            "what piles up behind it counts"
        );

        let fresh = Backlog::default();
        assert!(fresh.free_sync());
        assert!(!fresh.free_sync(), "one at a time");
        assert!(fresh.charge(&frame(60), &limits));
        fresh.taken(&sync(1_000, false));
        assert!(fresh.free_sync(), "free again once the first is out");
        assert!(
            !fresh.charge(&frame(60), &limits),
            "its being out credits nothing else"
        );
    }

    #[test]
    fn a_second_sync_in_flight_is_charged_and_credited_as_any_frame() {
        let backlog = Backlog::default();
        let limits = limits(3, 100);
        assert!(backlog.free_sync());
        assert!(backlog.charge(&sync(80, true), &limits));
        assert!(!backlog.charge(&frame(40), &limits), "80 + 40 is over 100");

        let fresh = Backlog::default();
        assert!(fresh.charge(&sync(80, true), &limits));
        fresh.taken(&sync(80, true));
        assert!(fresh.charge(&frame(60), &limits));
        assert!(fresh.charge(&frame(30), &limits), "the 80 were credited");
        assert!(!fresh.overflowed());
    }

    #[test]
    fn a_frame_larger_than_the_byte_budget_still_reaches_a_member_that_keeps_up() {
        let backlog = Backlog::default();
        assert!(backlog.charge(&frame(500), &limits(10, 100)));
        assert!(!backlog.overflowed());
    }
}
