//! `DocRoom`: one actor per open document. It holds the members and the current version,
//! broadcasts each update to the other members (the frame is built once and shared), stamps JSON
//! updates (SPEC §6) and saves through the cache supervisor, one save at a time
//! ([`SaveQueue`]).
//!
//! Joining and leaving, and the per-member budget that keeps a member who stopped reading from
//! growing the server without bound, are in `member.rs`; the limits it enforces in
//! [`RoomLimits`].
//!
//! When its last member leaves, the room asks the flusher to persist what the ledger still holds
//! for its document, then stops. The room is never the only copy of anything acknowledged: every
//! save it made is in the ledger (and Redis or the journal) until PostgreSQL commits it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::oneshot;
use tracing::warn;

use crate::clock::Clock;
use crate::doc::{DocId, Kind, Version};
use crate::flusher::{Flusher, Fold};
use crate::log_reader::LogReader;
use crate::metrics as m;
use crate::protocol::json;
use crate::refusal_log::RefusalLog;
use crate::supervisor::{CacheSupervisor, Load, Save, Stored};

mod backend;
mod changes;
mod history;
mod json_side;
mod limits;
mod log_side;
mod member;
mod retiring;
mod save_queue;
mod stateless;
mod sync_status;
#[cfg(test)]
mod tests;
mod yjs;
pub use backend::BackendUpdate;
pub use changes::Changed;
pub use history::{history_user, CutReason, CutVersion};
pub use json_side::Update;
pub use limits::RoomLimits;
use member::Member;
pub use member::{Backlog, Join, Leave};
pub use save_queue::{SaveBudget, SaveQueue};
pub use stateless::Stateless;
pub use yjs::YjsFrame;

/// How long a freshly loaded room waits for its first member before it may retire.
const IDLE_GRACE: Duration = Duration::from_secs(1);

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

struct Waiter {
    hash: String,
    duplicate: bool,
    tx: oneshot::Sender<Result<Ack, RoomError>>,
}

pub struct DocRoom {
    doc: DocId,
    kind: Kind,
    /// Entered while the room handles members' messages, so every log line names the document.
    span: tracing::Span,
    shared: RoomContext,
    members: HashMap<MemberId, Member>,
    /// Members that went over their backlog while a handler was sending; dropped at its end.
    lagging: Vec<MemberId>,
    current: Option<Version>,
    saves: SaveQueue<Waiter>,
    persisting: bool,
    closing: bool,
    /// yrs broke the document (see [`YjsError::Broken`](crate::protocol::yjs::YjsError)): the
    /// members are gone, joins are refused, and the room retires once its saves are done.
    broken: bool,
    /// Why the document could not be loaded; the room then refuses everything and stops.
    load_error: Option<String>,
    /// The live Yjs document, for rooms of kind Yjs.
    yjs: Option<yjs::YjsRoom>,
    /// The `sub`s of who changed the document since the last save started; taken (emptied) by
    /// that save and reported as [`Changed`] once it lands (see `changes.rs`).
    authors: BTreeSet<String>,
    /// A change was applied since the last save started, with or without a `sub`.
    unreported: bool,
    /// Changes since the room last proposed a version (see `history.rs`).
    unversioned: history::Unversioned,
}

impl DocRoom {
    pub fn new(doc: DocId, kind: Kind, shared: RoomContext) -> Self {
        DocRoom {
            span: tracing::info_span!("room", doc = %doc),
            doc,
            kind,
            shared,
            members: HashMap::new(),
            lagging: Vec::new(),
            current: None,
            saves: SaveQueue::default(),
            persisting: false,
            closing: false,
            broken: false,
            load_error: None,
            yjs: None,
            authors: BTreeSet::new(),
            unreported: false,
            unversioned: history::Unversioned::default(),
        }
    }

    /// Sends `frame` to every member but `from`; those over their backlog are noted in
    /// `lagging`, for the handler to drop ([`DocRoom::drop_lagging`]).
    fn broadcast(&mut self, from: Option<MemberId>, frame: Outbound) {
        let others = self.members.len().saturating_sub(from.is_some() as usize);
        metrics::histogram!(m::BROADCAST_FANOUT).record(others as f64);
        for (id, member) in &self.members {
            if Some(*id) != from && !member.send(frame.clone(), &self.shared.limits) {
                self.lagging.push(*id);
            }
        }
    }

    /// Queues a save of `version` (the room's newest content); starts it if none is in flight.
    fn save(&mut self, version: Version, waiter: Option<Waiter>, ctx: &mut Context<Self>) {
        if let Some(next) = self.saves.push(version, waiter) {
            self.start_save(next, ctx);
        }
    }

    fn start_save(&mut self, version: Version, ctx: &mut Context<Self>) {
        let hash = version.hash.clone();
        // A Yjs save carries updates only it holds: if it fails, they go into the next one.
        let increment = (version.kind == Kind::Yjs).then(|| version.content.clone());
        let started = std::time::Instant::now();
        let changes = self.take_changes();
        self.shared
            .supervisor
            .send(Save { version })
            .into_actor(self)
            .map(move |res, act, ctx| {
                metrics::histogram!(m::SAVE_DURATION).record(started.elapsed().as_secs_f64());
                let (res, foreign) = match res {
                    Ok(Ok(answer)) => (Ok(answer.stored), answer.foreign),
                    Ok(Err(e)) => (Err(RoomError::Unavailable(e.to_string())), None),
                    Err(e) => (
                        Err(RoomError::Unavailable(format!("cache supervisor: {e}"))),
                        None,
                    ),
                };
                if let Err(e) = &res {
                    warn!(doc = %act.doc, error = %e, "save failed, update not acknowledged");
                }
                match (&res, increment) {
                    (Err(_), Some(update)) => act.retry_yjs(update, ctx),
                    (Err(_), None) => {}
                    (Ok(_), _) => act.saved(foreign, ctx),
                }
                match &res {
                    Ok(_) => act.report_changes(changes),
                    Err(_) => act.restore_changes(changes),
                }
                let (waiters, next) = act.saves.finish(&hash, res.is_ok());
                for w in waiters {
                    let answer = res.clone().map(|stored| Ack {
                        hash: w.hash,
                        stored: if w.duplicate {
                            Stored::Duplicate
                        } else {
                            stored
                        },
                    });
                    if let Ok(ack) = &answer {
                        metrics::counter!(m::ACKS, "stored" => ack.stored.as_str()).increment(1);
                    }
                    let _ = w.tx.send(answer);
                }
                match next {
                    Some(next) => act.start_save(next, ctx),
                    // Updates applied while it was in flight: their save starts now.
                    None if act.save_yjs_soon(ctx) => {}
                    None => act.check_idle(ctx),
                }
            })
            .spawn(ctx);
    }

    /// A save landed: the retry of a failed one, if it was, is over; and content the ledger
    /// holds from elsewhere, which the save's answer carries, comes in.
    fn saved(&mut self, foreign: Option<Vec<Version>>, ctx: &mut Context<Self>) {
        if let Some(y) = self.yjs.as_mut() {
            y.retrying = false;
        }
        if let Some(parts) = foreign {
            self.absorb_foreign(parts, ctx);
        }
    }

    /// Content from elsewhere that the ledger's entry for the document holds (SPEC §6: a
    /// journaled or cached version merged in), merged here, on the room's thread: the room
    /// takes it in — Yjs merged, JSON if its stamp is larger — and tells its members.
    fn absorb_foreign(&mut self, parts: Vec<Version>, ctx: &mut Context<Self>) {
        let held = match crate::doc::combine(parts) {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(e) => {
                warn!(doc = %self.doc, error = %e, "content from elsewhere could not be merged");
                return;
            }
        };
        if self.current.as_ref().is_some_and(|c| c.hash == held.hash) {
            return;
        }
        match self.kind {
            Kind::Yjs => self.absorb_yjs(&held.content, ctx),
            Kind::Json => self.absorb_json(held),
        }
    }

    /// The document cannot be served: answer with the reason and stop at once (the next request
    /// starts a fresh room that tries again).
    fn fail(&mut self, why: String, ctx: &mut Context<Self>) {
        self.load_error = Some(why);
        ctx.stop();
    }

    fn refusal(&self) -> Option<RoomError> {
        if self.closing {
            return Some(RoomError::Closing);
        }
        if self.broken {
            return Some(RoomError::Unavailable(
                "the document is being reloaded; connect again".into(),
            ));
        }
        self.load_error
            .as_ref()
            .map(|why| RoomError::Unavailable(format!("document could not be loaded: {why}")))
    }
}

impl Actor for DocRoom {
    type Context = Context<Self>;

    /// The log reader stops handing this room entries; the document, at rest, gets its stored
    /// state folded (not at shutdown: the drain has the deadline).
    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.unfollow(ctx);
        self.propose_version(CutReason::Left);
        if !self.closing && self.yjs.is_some() {
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
                    if let Some(v) = &loaded.version {
                        act.kind = v.kind;
                    }
                    act.current = loaded.version;
                    act.follow(loaded.position, ctx);
                    // A room nobody joins (the joiner went away, or was refused) must not
                    // linger: look again once the joins in flight have arrived.
                    ctx.run_later(IDLE_GRACE, |act, ctx| act.check_idle(ctx));
                    ctx.run_interval(member::MEMBER_SWEEP, |act, ctx| act.prune_gone(ctx));
                    act.start_versioning(act.shared.history_interval, ctx);
                    if let Err(e) = act.open_yjs() {
                        warn!(doc = %act.doc, error = %e, "stored yjs state unreadable");
                        act.fail(e.to_string(), ctx);
                    }
                }),
        );
    }
}

impl Handler<Current> for DocRoom {
    type Result = Result<Option<Version>, RoomError>;

    /// The room's current version.
    fn handle(&mut self, _: Current, _: &mut Context<Self>) -> Self::Result {
        if let Some(RoomError::Unavailable(why)) = self.refusal() {
            return Err(RoomError::Unavailable(why));
        }
        if let Some(y) = self.yjs.as_mut() {
            return Ok(Some(y.version(&self.doc)));
        }
        Ok(self.current.clone())
    }
}

impl Handler<Describe> for DocRoom {
    type Result = MessageResult<Describe>;

    /// A line of `GET /admin/rooms`.
    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        let unsaved = !self.saves.is_idle() || self.yjs.as_ref().is_some_and(|y| y.unsaved());
        MessageResult(RoomSummary {
            doc: self.doc.clone(),
            kind: self.kind.as_str(),
            members: self.members.len(),
            dirty: unsaved,
        })
    }
}
