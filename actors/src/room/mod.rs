//! `DocRoom`: one actor per open document. It holds the members, the current version and
//! whether PostgreSQL has it yet, broadcasts each update to the other members (the frame is
//! built once and shared), and saves through the cache supervisor.
//!
//! Saves are serialized per document: at most one is in flight, and updates that arrive
//! meanwhile collapse into one queued save of the newest content. Their acks are sent when that
//! save lands ("that content, or a later one" is what SPEC §1 promises), so a busy document costs
//! one Redis round trip per round trip, not one per update.
//!
//! A room lives until it has no members *and* PostgreSQL holds its content: it is the copy of
//! last resort if Redis dies and comes back empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::doc::{DocId, Kind, Version};
use crate::flusher::{Flusher, PersistNow};
use crate::metrics as m;
use crate::registry::{Retired, RoomRegistry};
use crate::supervisor::{CacheSupervisor, Load, Save, Stored};

mod unpersisted;
mod yjs;
pub use unpersisted::Unpersisted;
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
    Close { code: u16, reason: &'static str },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RoomError {
    #[error("document {doc} is a {actual} document")]
    WrongKind { doc: DocId, actual: &'static str },
    #[error("the server is shutting down")]
    Closing,
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub hash: String,
    pub stored: Stored,
}

/// Joins a member; answers the frames to send it first (JSON snapshot, or Yjs sync step 1 and
/// awareness).
#[derive(Message)]
#[rtype(result = "Result<Vec<Outbound>, RoomError>")]
pub struct Join {
    pub member: MemberId,
    pub kind: Kind,
    pub outbound: Recipient<Outbound>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub member: MemberId,
}

/// New content from a member (or from `PUT`, with no member). Answers once stored.
#[derive(Message)]
#[rtype(result = "Result<Ack, RoomError>")]
pub struct Update {
    pub from: Option<MemberId>,
    pub version: Version,
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

/// Shutdown: close every member with 1001, refuse further work, answer the content PostgreSQL
/// does not have yet.
#[derive(Message)]
#[rtype(result = "Option<Version>")]
pub struct CloseRoom;

/// PostgreSQL committed this hash of the room's document.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomPersisted {
    pub hash: String,
}

/// Redis may have lost what it held: journal the content if PostgreSQL does not have it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SpillToFallback;

impl serde::Serialize for DocId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

struct Waiter {
    hash: String,
    duplicate: bool,
    tx: oneshot::Sender<Result<Ack, RoomError>>,
}

struct Pending {
    version: Version,
    to_fallback: bool,
    waiters: Vec<Waiter>,
}

pub struct DocRoom {
    doc: DocId,
    kind: Kind,
    /// Entered while the room handles members' messages, so every log line names the document.
    span: tracing::Span,
    supervisor: Addr<CacheSupervisor>,
    flusher: Addr<Flusher>,
    registry: Addr<RoomRegistry>,
    /// Where every version PostgreSQL lacks is recorded for the flusher.
    unpersisted: Unpersisted,
    members: HashMap<MemberId, Recipient<Outbound>>,
    current: Option<Version>,
    /// PostgreSQL does not have `current` yet.
    dirty: bool,
    /// Waiters of the save in flight; `None` when no save is in flight.
    saving: Option<Vec<Waiter>>,
    /// Hash of `current` when its last save failed: the same content sent again is then not a
    /// duplicate (it was never stored) but a retry.
    unstored: Option<String>,
    queued: Option<Pending>,
    persisting: bool,
    closing: bool,
    /// Why the document could not be loaded; the room then refuses everything and stops.
    load_error: Option<String>,
    /// The live Yjs document, for rooms of kind Yjs.
    yjs: Option<yjs::YjsRoom>,
    yjs_save_interval: Duration,
}

impl DocRoom {
    pub fn new(
        doc: DocId,
        kind: Kind,
        supervisor: Addr<CacheSupervisor>,
        flusher: Addr<Flusher>,
        registry: Addr<RoomRegistry>,
        unpersisted: Unpersisted,
        yjs_save_interval: Duration,
    ) -> Self {
        DocRoom {
            span: tracing::info_span!("room", doc = %doc),
            doc,
            kind,
            supervisor,
            flusher,
            registry,
            unpersisted,
            members: HashMap::new(),
            current: None,
            dirty: false,
            saving: None,
            unstored: None,
            queued: None,
            persisting: false,
            closing: false,
            load_error: None,
            yjs: None,
            yjs_save_interval,
        }
    }

    fn snapshot_frame(&self) -> ByteString {
        match &self.current {
            Some(v) => format!(
                r#"{{"type":"snapshot","doc":"{}","content":{},"hash":"{}"}}"#,
                self.doc,
                String::from_utf8_lossy(&v.content),
                v.hash
            ),
            None => format!(
                r#"{{"type":"snapshot","doc":"{}","content":null,"hash":null}}"#,
                self.doc
            ),
        }
        .into()
    }

    fn broadcast(&self, from: Option<MemberId>, frame: ByteString) {
        metrics::histogram!(m::BROADCAST_FANOUT)
            .record(self.members.len().saturating_sub(from.is_some() as usize) as f64);
        for (id, member) in &self.members {
            if Some(*id) != from {
                member.do_send(Outbound::Text(frame.clone()));
            }
        }
    }

    fn enqueue(
        &mut self,
        version: Version,
        to_fallback: bool,
        waiter: Option<Waiter>,
        ctx: &mut Context<Self>,
    ) {
        let pending = self.queued.get_or_insert_with(|| Pending {
            version: version.clone(),
            to_fallback,
            waiters: Vec::new(),
        });
        pending.to_fallback |= to_fallback;
        if pending.version.hash != version.hash {
            pending.version = version;
        }
        pending.waiters.extend(waiter);
        self.pump(ctx);
    }

    /// Starts the queued save if none is in flight.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.saving.is_some() {
            return;
        }
        let Some(next) = self.queued.take() else {
            self.check_idle(ctx);
            return;
        };
        self.saving = Some(next.waiters);
        let saved_hash = next.version.hash.clone();
        let save = Save {
            version: next.version,
            to_fallback: next.to_fallback,
        };
        self.supervisor
            .send(save)
            .into_actor(self)
            .map(move |res, act, ctx| {
                let res = match res {
                    Ok(Ok(stored)) => Ok(stored),
                    Ok(Err(e)) => Err(RoomError::Unavailable(e.to_string())),
                    Err(e) => Err(RoomError::Unavailable(format!("cache supervisor: {e}"))),
                };
                match &res {
                    Err(e) => {
                        warn!(doc = %act.doc, error = %e, "save failed, update not acknowledged");
                        if act.current.as_ref().is_some_and(|c| c.hash == saved_hash) {
                            act.unstored = Some(saved_hash);
                        }
                    }
                    Ok(_) if act.unstored.as_ref() == Some(&saved_hash) => act.unstored = None,
                    Ok(_) => {}
                }
                for w in act.saving.take().unwrap_or_default() {
                    if let Ok(stored) = &res {
                        let stored = if w.duplicate {
                            Stored::Duplicate
                        } else {
                            *stored
                        };
                        metrics::counter!(m::ACKS, "stored" => stored.as_str()).increment(1);
                    }
                    let answer = res.clone().map(|stored| Ack {
                        hash: w.hash,
                        stored: if w.duplicate {
                            Stored::Duplicate
                        } else {
                            stored
                        },
                    });
                    let _ = w.tx.send(answer);
                }
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// The document cannot be served: answer what is already queued with the reason, leave the
    /// registry at once (the next request starts a fresh room that tries again), then stop.
    fn fail(&mut self, why: String, ctx: &mut Context<Self>) {
        self.load_error = Some(why);
        self.registry.do_send(Retired {
            doc: self.doc.clone(),
            room: ctx.address(),
        });
        ctx.run_later(Duration::from_millis(200), |_, ctx| ctx.stop());
    }

    fn refusal(&self) -> Option<RoomError> {
        if self.closing {
            return Some(RoomError::Closing);
        }
        self.load_error
            .as_ref()
            .map(|why| RoomError::Unavailable(format!("document could not be loaded: {why}")))
    }

    /// `v` is the room's content now, and PostgreSQL does not have it.
    fn take_version(&mut self, v: Version) {
        self.unpersisted.record(&v);
        self.current = Some(v);
        self.dirty = true;
    }

    /// With no members and nothing in flight: persist if PostgreSQL lacks the content, then
    /// retire.
    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.members.is_empty() || self.saving.is_some() || self.persisting || self.closing {
            return;
        }
        if self.save_yjs_now(ctx) {
            return; // the save's completion comes back here
        }
        let Some(current) = self.current.clone().filter(|_| self.dirty) else {
            self.registry.do_send(Retired {
                doc: self.doc.clone(),
                room: ctx.address(),
            });
            ctx.stop();
            return;
        };
        self.persisting = true;
        let hash = current.hash.clone();
        self.flusher
            .send(PersistNow {
                versions: vec![current],
            })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.persisting = false;
                match res {
                    Ok(Ok(())) => {
                        if act.current.as_ref().is_some_and(|c| c.hash == hash) {
                            act.dirty = false;
                        }
                        act.check_idle(ctx);
                    }
                    // Stay alive: the flusher retries on its schedule and tells us when done.
                    Ok(Err(e)) => debug!(doc = %act.doc, error = %e, "leave flush failed, room stays until persisted"),
                    Err(e) => warn!(doc = %act.doc, error = %e, "flusher unreachable"),
                }
            })
            .spawn(ctx);
    }
}

impl Actor for DocRoom {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let _span = self.span.clone().entered();
        // Joins wait in the mailbox until the content is known.
        ctx.wait(
            self.supervisor
                .send(Load {
                    doc: self.doc.clone(),
                })
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(Ok(loaded)) => {
                        if let Some(v) = &loaded {
                            act.kind = v.kind;
                        }
                        act.current = loaded;
                        // A room nobody joins (the joiner went away, or was refused) must
                        // not linger: look again once the joins in flight have arrived.
                        ctx.run_later(IDLE_GRACE, |act, ctx| act.check_idle(ctx));
                        if let Err(e) = act.open_yjs() {
                            warn!(doc = %act.doc, error = %e, "stored yjs state unreadable");
                            act.fail(e.to_string(), ctx);
                        }
                    }
                    failed => {
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => format!("cache supervisor: {e}"),
                            Ok(Ok(_)) => unreachable!("handled above"),
                        };
                        warn!(doc = %act.doc, error = %why, "room could not load its document");
                        act.fail(why, ctx);
                    }
                }),
        );
    }
}

impl Handler<Join> for DocRoom {
    type Result = Result<Vec<Outbound>, RoomError>;

    /// Adds a member and answers the snapshot it starts from.
    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        if msg.kind != self.kind {
            // The room may have been opened for this refused join alone.
            self.check_idle(ctx);
            return Err(RoomError::WrongKind {
                doc: self.doc.clone(),
                actual: self.kind.as_str(),
            });
        }
        self.members.insert(msg.member, msg.outbound);
        Ok(match &self.yjs {
            Some(y) => y
                .doc
                .greeting()
                .into_iter()
                .map(|f| Outbound::Binary(f.into()))
                .collect(),
            None => vec![Outbound::Text(self.snapshot_frame())],
        })
    }
}

impl Handler<Leave> for DocRoom {
    type Result = ();

    /// Removes a member; the last one out triggers the leave flush.
    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        if self.members.remove(&msg.member).is_some() {
            self.forget_awareness(msg.member);
            self.check_idle(ctx);
        }
    }
}

impl Handler<Update> for DocRoom {
    type Result = ResponseFuture<Result<Ack, RoomError>>;

    /// Applies new content: broadcast at once, ack once stored (or `duplicate`).
    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        if let Some(refusal) = self.refusal() {
            return Box::pin(async { Err(refusal) });
        }
        if msg.version.kind != self.kind {
            self.check_idle(ctx);
            let err = RoomError::WrongKind {
                doc: self.doc.clone(),
                actual: self.kind.as_str(),
            };
            return Box::pin(async { Err(err) });
        }
        metrics::counter!(m::UPDATES, "kind" => "json").increment(1);
        let (tx, rx) = oneshot::channel();
        let hash = msg.version.hash.clone();
        let same = self.current.as_ref().is_some_and(|c| c.hash == hash);
        let duplicate = same && self.unstored.as_ref() != Some(&hash);
        let waiter = Waiter {
            hash: hash.clone(),
            duplicate,
            tx,
        };
        if duplicate {
            // Answer with the save that carries this content, or at once if it landed.
            match (&mut self.queued, &mut self.saving) {
                (Some(q), _) => q.waiters.push(waiter),
                (None, Some(in_flight)) => in_flight.push(waiter),
                (None, None) => {
                    let _ = waiter.tx.send(Ok(Ack {
                        hash,
                        stored: Stored::Duplicate,
                    }));
                }
            }
        } else if same {
            // A retry of content whose save failed: save it again, nothing new to broadcast.
            self.enqueue(msg.version, false, Some(waiter), ctx);
        } else {
            if self.members.keys().any(|id| Some(*id) != msg.from) {
                let frame: ByteString = format!(
                    r#"{{"type":"update","content":{},"hash":"{}"}}"#,
                    String::from_utf8_lossy(&msg.version.content),
                    hash
                )
                .into();
                self.broadcast(msg.from, frame);
            } else {
                metrics::histogram!(m::BROADCAST_FANOUT).record(0.0);
            }
            self.take_version(msg.version.clone());
            self.enqueue(msg.version, false, Some(waiter), ctx);
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(RoomError::Unavailable("room stopped".into())))
        })
    }
}

impl Handler<Current> for DocRoom {
    type Result = Result<Option<Version>, RoomError>;

    /// The room's current version.
    fn handle(&mut self, _: Current, _: &mut Context<Self>) -> Self::Result {
        if let Some(RoomError::Unavailable(why)) = self.refusal() {
            return Err(RoomError::Unavailable(why));
        }
        if let Some(y) = &self.yjs {
            return Ok(Some(y.version(&self.doc)));
        }
        Ok(self.current.clone())
    }
}

impl Handler<Describe> for DocRoom {
    type Result = MessageResult<Describe>;

    /// A line of `GET /admin/rooms`.
    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RoomSummary {
            doc: self.doc.clone(),
            kind: self.kind.as_str(),
            members: self.members.len(),
            dirty: self.dirty || self.yjs.as_ref().is_some_and(|y| y.unsaved()),
        })
    }
}

impl Handler<CloseRoom> for DocRoom {
    type Result = Option<Version>;

    /// Shutdown: 1001 to every member; answers what PostgreSQL still needs.
    fn handle(&mut self, _: CloseRoom, ctx: &mut Context<Self>) -> Self::Result {
        let _ = self.capture_yjs(ctx);
        self.closing = true;
        for (_, member) in self.members.drain() {
            member.do_send(Outbound::Close {
                code: 1001,
                reason: "server shutting down",
            });
        }
        self.current.clone().filter(|_| self.dirty)
    }
}

impl Handler<RoomPersisted> for DocRoom {
    type Result = ();

    /// The flusher committed a version; clean if it is still the current one.
    fn handle(&mut self, msg: RoomPersisted, ctx: &mut Context<Self>) {
        if self.current.as_ref().is_some_and(|c| c.hash == msg.hash) {
            self.dirty = false;
            self.check_idle(ctx);
        }
    }
}

impl Handler<SpillToFallback> for DocRoom {
    type Result = ();

    /// Re-saves unpersisted content into the journaled fallback.
    fn handle(&mut self, _: SpillToFallback, ctx: &mut Context<Self>) {
        if let Some(current) = self.current.clone().filter(|_| self.dirty) {
            self.enqueue(current, true, None, ctx);
        }
    }
}
