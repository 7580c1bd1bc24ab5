//! `DocRoom`: one actor per open document, a thin shell around its [`RoomCore`]. The core
//! decides — who hears what, when to save, what to answer, when to retire (`core/`); the actor
//! carries it out: it sends members' frames to their sessions, saves through the cache
//! supervisor, follows the document's log, runs the core's timer, and feeds every result back.
//!
//! The handlers are beside what they handle: members' joins and leaves and their backlogs in
//! `member.rs`, Yjs frames in `yjs.rs`, JSON updates in `json_side.rs`, the log in
//! `log_side.rs`, backend writes in `backend.rs`, shutdown in `retiring.rs`; carrying out the
//! core's effects in `effects.rs`.
//!
//! When its last member leaves, the room asks the flusher to persist what the ledger still holds
//! for its document, then stops. The room is never the only copy of anything acknowledged: every
//! save it made is in the ledger (and Redis or the journal) until PostgreSQL commits it.

use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::oneshot;
use tracing::warn;

use crate::clock::Clock;
use crate::doc::{DocId, Kind, Version};
use crate::flusher::{Flusher, Fold};
use crate::log_reader::LogReader;
use crate::refusal_log::RefusalLog;
use crate::supervisor::{CacheSupervisor, Load, SaveInbox, Stored};

mod backend;
mod changes;
pub mod core;
mod effects;
mod history;
mod json_side;
mod limits;
mod log_side;
mod member;
mod retiring;
mod save_queue;
mod stateless;
#[cfg(test)]
mod tests;
mod yjs;
use self::core::{CoreConfig, RoomCore, WaiterId};
pub use backend::BackendUpdate;
pub use changes::Changed;
pub use history::{history_user, CutReason, CutVersion};
pub use json_side::Update;
pub use limits::RoomLimits;
pub use member::{Backlog, Join, Leave};
pub use save_queue::{SaveBudget, SaveQueue};
pub use stateless::Stateless;
pub use yjs::YjsFrame;

/// Identifies one connection inside a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberId(u64);

impl MemberId {
    pub fn get(self) -> u64 {
        self.0
    }

    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        MemberId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a room sends to a member's session.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub enum Outbound {
    Text(ByteString),
    Binary(Bytes),
    /// A member's answer to its own sync step 1: the update it lacks, shared with every member
    /// that asked with the same state vector ([`step2`](crate::protocol::yjs::step2)). The
    /// session writes the message's header (and on `/hocuspocus` the document's name) in front
    /// of it and sends it as its connection drains. `charged` is false for the one answer a
    /// member may have in flight outside its backlog (see [`Backlog`]).
    SyncStep2 {
        update: Bytes,
        charged: bool,
    },
    /// A Hocuspocus stateless payload from another member ([`Stateless`]); sessions of
    /// protocols that have no such message ignore it.
    Stateless(Arc<str>),
    Close {
        code: u16,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RoomError {
    #[error("document {doc} is a {actual} document")]
    WrongKind { doc: DocId, actual: &'static str },
    #[error("the server is shutting down")]
    Closing,
    #[error("{0}")]
    Unavailable(String),
    /// A posted update that is not one, or is over a limit but the state's (SPEC §9: 400).
    #[error("{0}")]
    BadUpdate(String),
    /// A posted update that would take the document over its state limit (413).
    #[error("{0}")]
    TooLarge(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub hash: String,
    pub stored: Stored,
}

/// The room's current version (`GET /docs/{id}` while the room is open).
#[derive(Message)]
#[rtype(result = "Result<Option<Version>, RoomError>")]
pub struct Current;

#[derive(Message)]
#[rtype(result = "RoomSummary")]
pub struct Describe;

#[derive(Clone, Debug, serde::Serialize)]
pub struct RoomSummary {
    pub doc: DocId,
    pub kind: &'static str,
    pub members: usize,
    pub dirty: bool,
}

/// Shutdown: close every member with 1001, refuse further work, answer the content that is not
/// known to be saved yet (the drain persists it).
#[derive(Message)]
#[rtype(result = "Option<Version>")]
pub struct CloseRoom;

impl serde::Serialize for DocId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What every room of a process shares; handed to each room when it is built. Cloning is
/// shallow.
#[derive(Clone)]
pub struct RoomContext {
    pub supervisor: Addr<CacheSupervisor>,
    /// Where the room's saves go (the supervisor's, drained once per linger).
    pub saves: SaveInbox,
    pub flusher: Addr<Flusher>,
    /// This replica's reader of the document logs, which rooms follow.
    pub log: Addr<LogReader>,
    pub clock: Clock,
    pub yjs_save_interval: Duration,
    pub limits: RoomLimits,
    /// Which refusals were logged (shared with the sessions, which refuse oversized frames).
    pub refusals: RefusalLog,
    /// Told of every landed save that carried changes (see [`Changed`]): the service's
    /// webhooks. `None` (webhooks off): rooms note nothing.
    pub changes: Option<Recipient<Changed>>,
    /// Told of each version a room proposes (see [`CutVersion`]): the service's history.
    /// `None` (history off): rooms note nothing.
    pub history: Option<Recipient<CutVersion>>,
    /// How often a room that is being edited proposes a version.
    pub history_interval: Duration,
}

/// Where an answer the core decided goes: the channel of whoever waits for it.
enum Reply {
    Ack(oneshot::Sender<Result<Ack, RoomError>>),
    Status(oneshot::Sender<bool>),
}

/// The actor around a [`RoomCore`]: it feeds the core what arrives (members' messages, save
/// results, log entries, timers) and carries out the effects the core decides.
pub struct DocRoom {
    doc: DocId,
    /// Entered while the room handles members' messages, so every log line names the document.
    span: tracing::Span,
    shared: RoomContext,
    core: RoomCore,
    /// Where each member's frames go; the core holds the members themselves. Kept in step with
    /// the core's: added when the core takes a join, removed on [`Effect::Remove`].
    members: HashMap<MemberId, Recipient<Outbound>>,
    /// The channels of the answers the core owes. Dropped with the room: whoever still waits
    /// then hears that the room stopped.
    waiters: HashMap<WaiterId, Reply>,
    next_waiter: u64,
    /// The timer armed for the core's next deadline, and that deadline.
    timer: Option<(Instant, SpawnHandle)>,
}

impl DocRoom {
    pub fn new(doc: DocId, kind: Kind, shared: RoomContext) -> Self {
        let core = RoomCore::new(CoreConfig {
            doc: doc.clone(),
            kind,
            clock: shared.clock.clone(),
            yjs_save_interval: shared.yjs_save_interval,
            limits: shared.limits,
            refusals: shared.refusals.clone(),
            changes: shared.changes.is_some(),
            history: shared.history.is_some(),
            history_interval: shared.history_interval,
        });
        DocRoom {
            span: tracing::info_span!("room", doc = %doc),
            doc,
            shared,
            core,
            members: HashMap::new(),
            waiters: HashMap::new(),
            next_waiter: 0,
            timer: None,
        }
    }
}

impl Actor for DocRoom {
    type Context = Context<Self>;

    /// The log reader stops handing this room entries; the document, at rest, gets its stored
    /// state folded (not at shutdown: the drain has the deadline).
    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.unfollow(ctx);
        let fold = self.core.stopped();
        self.run_effects(ctx);
        if fold {
            self.shared.flusher.do_send(Fold {
                doc: self.doc.clone(),
            });
        }
    }

    fn started(&mut self, ctx: &mut Self::Context) {
        let _span = self.span.clone().entered();
        // Joins wait in the mailbox until the content is known.
        ctx.wait(
            self.shared
                .supervisor
                .send(Load {
                    doc: self.doc.clone(),
                })
                .into_actor(self)
                .map(|res, act, ctx| {
                    let loaded = match res {
                        Ok(Ok(loaded)) => loaded,
                        Ok(Err(e)) => return act.fail(e.to_string(), ctx),
                        Err(e) => return act.fail(format!("cache supervisor: {e}"), ctx),
                    };
                    act.follow(loaded.position, ctx);
                    ctx.run_interval(member::MEMBER_SWEEP, |act, ctx| act.prune_gone(ctx));
                    if let Err(e) = act.core.loaded(loaded.version, Instant::now()) {
                        warn!(doc = %act.doc, error = %e, "stored yjs state unreadable");
                        return act.fail(e, ctx);
                    }
                    act.carry_out(ctx);
                }),
        );
    }
}

impl DocRoom {
    /// The document cannot be served: the core refuses everything with the reason, and the
    /// room stops.
    fn fail(&mut self, why: String, ctx: &mut Context<Self>) {
        self.core.fail(why);
        self.run_effects(ctx);
    }
}

impl Handler<Current> for DocRoom {
    type Result = Result<Option<Version>, RoomError>;

    /// The room's current version.
    fn handle(&mut self, _: Current, _: &mut Context<Self>) -> Self::Result {
        self.core.current()
    }
}

impl Handler<Describe> for DocRoom {
    type Result = MessageResult<Describe>;

    /// A line of `GET /admin/rooms`.
    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.describe())
    }
}
