//! [`RoomCore`]: a room's decisions as a pure state machine, sans IO (y-sweet's core, quickwit's
//! state machines with time passed in). Inputs are plain values — a member's frame, a JSON
//! update, a save's result, other replicas' log entries, a join or a leave, `tick(now)` — and
//! every decision comes out as an [`Effect`] for the actor to carry out: a frame for one member,
//! one frame for all the others (built once, shared), a save, a publish, an answer to a waiter,
//! a close, the room's end. The core never reads a clock (`now`, and the wall clock's
//! milliseconds for JSON stamps, come in with the inputs), never sends a message and never
//! spawns: [`DocRoom`](super::DocRoom) does, so the same calls run in the actor, in unit tests,
//! in the fuzzer and in the bench.
//!
//! What the room holds is an enum of its kinds (`Held`): nothing yet (before the load), a JSON
//! room's current version, or a Yjs room's live document with what rides its saves; the
//! members, the save queue and the waiters are the same for both.
//!
//! # Layout
//! - `mod.rs`: the state, the effects, the queries and `tick`;
//! - `members.rs`: joins and leaves, what each member is sent and its backlog charged;
//! - `saves.rs`: saves one at a time ([`SaveQueue`]), their results, the waiters they answer,
//!   and the changes they report (webhooks);
//! - `yjs.rs`: Yjs frames, awareness, captures of what is unsaved and when to save them;
//! - `yjs_answers.rs`: answers that wait for a Yjs save (SyncStatus, backend writes);
//! - `json.rs`: stamped JSON updates;
//! - `remote.rs`: other replicas' log entries and events, stateless payloads;
//! - `lifecycle.rs`: idleness and retiring, shutdown, starting afresh, history versions;
//! - `sim.rs`: a simulator that runs scripts of inputs through the core and checks its rules
//!   (the seeded test and the fuzzer drive it; feature `sim` outside the unit tests).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};

use super::history::{CutVersion, Unversioned};
use super::save_queue::SaveQueue;
use super::{MemberId, Outbound, RoomError, RoomLimits, RoomSummary};
use crate::clock::Clock;
use crate::doc::{DocId, Kind, Version};
use crate::log::EventKind;
use crate::metrics::RoomSeries;
use crate::refusal_log::RefusalLog;
use crate::supervisor::Stored;

mod json;
mod lifecycle;
mod members;
mod remote;
mod saves;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;
mod yjs;
mod yjs_answers;
pub use json::JsonUpdate;
use members::CoreMember;
pub use members::Joining;
use saves::{InFlight, SaveWaiter, Unreported};
use yjs::YjsRoom;
pub use yjs::{close_for, RETRY_AFTER};

/// How long a freshly loaded room waits for its first member before it may retire.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Names one answer the actor owes (an ack channel, a SyncStatus channel): the actor keeps the
/// channel, the core only the id, so the core stays plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(pub u64);

/// What a waiter is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Hocuspocus's SyncStatus: whether the content is stored.
    Status(bool),
    /// An update's acknowledgement (`PUT`, a JSON member's update, a backend write).
    Ack(Result<super::Ack, RoomError>),
}

/// One thing the actor must do, in the order the core decided it.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Queue `frame` for one member (its backlog is charged already).
    Send {
        to: MemberId,
        frame: Outbound,
    },
    /// Queue `frame` for every member but `except` and those in `skip` (over their backlog:
    /// they are removed at the end of the input). Charged already.
    Broadcast {
        except: Option<MemberId>,
        skip: Vec<MemberId>,
        frame: Outbound,
    },
    /// The member is no longer in the room: forget where its frames go.
    Remove(MemberId),
    /// Save `version` through the supervisor and feed the result to [`RoomCore::saved`].
    Save(Version),
    Answer {
        waiter: WaiterId,
        answer: Answer,
    },
    /// Tell the other replicas' rooms, through the document's channel.
    Publish {
        kind: EventKind,
        payload: Bytes,
    },
    /// Acknowledged changes landed (the `document.changed` webhook).
    Changed {
        users: Vec<String>,
    },
    /// A version for the history.
    Cut(CutVersion),
    /// The leave flush: have the flusher persist the document, then feed
    /// [`RoomCore::persisted`].
    Persist,
    /// The room ends (the actor stops).
    Stop,
}

/// What a room is told once, when it is built.
#[derive(Clone)]
pub struct CoreConfig {
    pub doc: DocId,
    pub kind: Kind,
    /// Stamps JSON versions; read at the wall-clock time each update carries.
    pub clock: Clock,
    pub yjs_save_interval: Duration,
    pub limits: RoomLimits,
    pub refusals: RefusalLog,
    /// Webhooks are on: changes are noted and reported.
    pub changes: bool,
    /// History is on: versions are proposed every `history_interval` of editing.
    pub history: bool,
    pub history_interval: Duration,
}

pub struct RoomCore {
    cfg: CoreConfig,
    members: HashMap<MemberId, CoreMember>,
    /// Members that went over their backlog during this input; removed at its end.
    lagging: Vec<MemberId>,
    /// What the room holds, by kind.
    held: Held,
    saves: SaveQueue<SaveWaiter>,
    /// What the save in flight carries besides its version (at most one is in flight).
    in_flight: Option<InFlight>,
    /// The leave flush is in flight.
    persisting: bool,
    closing: bool,
    /// yrs broke the document: the members are gone, joins are refused, and the room retires
    /// once its saves are done.
    broken: bool,
    /// Why the document could not be loaded; the room then refuses everything and stops.
    load_error: Option<String>,
    /// Changes since the last save started, for the webhooks (see `saves.rs`).
    unreported: Unreported,
    /// Changes since the room last proposed a version.
    unversioned: Unversioned,
    /// When a freshly loaded room looks whether anyone joined.
    idle_at: Option<Instant>,
    /// When the room next proposes a version (history on).
    version_at: Option<Instant>,
    effects: Vec<Effect>,
    series: RoomSeries,
}

impl RoomCore {
    pub fn new(cfg: CoreConfig) -> Self {
        RoomCore {
            held: Held::Unloaded(cfg.kind),
            cfg,
            members: HashMap::new(),
            lagging: Vec::new(),
            saves: SaveQueue::default(),
            in_flight: None,
            persisting: false,
            closing: false,
            broken: false,
            load_error: None,
            unreported: Unreported::default(),
            unversioned: Unversioned::default(),
            idle_at: None,
            version_at: None,
            effects: Vec::new(),
            series: RoomSeries::new(),
        }
    }

    /// The series the room records to for every update (see [`RoomSeries`]).
    pub fn series(&self) -> &RoomSeries {
        &self.series
    }

    /// The document's stored content is known (`None`: never stored). Err: the Yjs state is
    /// unreadable; the room then fails (see [`RoomCore::fail`]).
    pub fn loaded(&mut self, version: Option<Version>, now: Instant) -> Result<(), String> {
        // A room nobody joins (the joiner went away, or was refused) must not linger: look
        // again once the joins in flight have arrived.
        self.idle_at = Some(now + IDLE_GRACE);
        if self.cfg.history {
            self.version_at = Some(now + self.cfg.history_interval);
        }
        let kind = version.as_ref().map_or(self.held.kind(), |v| v.kind);
        self.held = match kind {
            Kind::Json => Held::Json(version),
            Kind::Yjs => Held::Yjs(Box::new(
                YjsRoom::open(version, &self.cfg, now).map_err(|e| e.to_string())?,
            )),
        };
        Ok(())
    }

    /// The document cannot be served: everything is refused with the reason, and the room
    /// stops at once (the next request starts a fresh room that tries again).
    pub fn fail(&mut self, why: String) {
        self.load_error = Some(why);
        self.effects.push(Effect::Stop);
    }

    /// What the actor must do, in order; the core forgets it.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The earliest time [`RoomCore::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let save_at = self.held.yjs().and_then(|y| y.save_at);
        [save_at, self.idle_at, self.version_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: a scheduled save, the idle check after loading, a history version.
    pub fn tick(&mut self, now: Instant) {
        if let Some(y) = self.held.yjs_mut() {
            if y.save_at.is_some_and(|at| at <= now) {
                y.save_at = None;
                self.save_yjs_soon(now);
            }
        }
        if self.idle_at.is_some_and(|at| at <= now) {
            self.idle_at = None;
            self.check_idle(now);
        }
        if let Some(at) = self.version_at.filter(|at| *at <= now) {
            let next = at + self.cfg.history_interval;
            self.version_at = Some(if next > now {
                next
            } else {
                now + self.cfg.history_interval
            });
            self.propose_version(super::CutReason::Interval);
        }
    }

    pub fn kind(&self) -> Kind {
        self.held.kind()
    }

    pub fn doc(&self) -> &DocId {
        &self.cfg.doc
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    pub fn has_member(&self, id: MemberId) -> bool {
        self.members.contains_key(&id)
    }

    /// No save in flight or queued, none due: what the room holds is stored.
    pub fn is_saved(&self) -> bool {
        self.saves.is_idle() && !self.held.yjs().is_some_and(|y| y.unsaved())
    }

    /// The room's current version (`GET /docs/{id}` while the room is open).
    pub fn current(&mut self) -> Result<Option<Version>, RoomError> {
        if let Some(RoomError::Unavailable(why)) = self.refusal() {
            return Err(RoomError::Unavailable(why));
        }
        match &mut self.held {
            Held::Yjs(y) => Ok(Some(y.version(&self.cfg.doc))),
            held => Ok(held.json().cloned()),
        }
    }

    /// A line of `GET /admin/rooms`.
    pub fn describe(&self) -> RoomSummary {
        RoomSummary {
            doc: self.cfg.doc.clone(),
            kind: self.held.kind().as_str(),
            members: self.members.len(),
            dirty: !self.is_saved(),
        }
    }

    /// Why the room takes no work, if it does not.
    pub fn refusal(&self) -> Option<RoomError> {
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

    fn wrong_kind(&self) -> RoomError {
        RoomError::WrongKind {
            doc: self.cfg.doc.clone(),
            actual: self.held.kind().as_str(),
        }
    }

    /// Answers `waiter` (an effect: the actor holds its channel).
    fn answer(&mut self, waiter: WaiterId, answer: Answer) {
        self.effects.push(Effect::Answer { waiter, answer });
    }
}

/// What a room holds, by kind: the core is a state machine over it.
enum Held {
    /// Before the load, or when it failed: only the kind the room was opened as.
    Unloaded(Kind),
    /// A JSON room's current version (`None`: never stored).
    Json(Option<Version>),
    /// A Yjs room's live document, and what rides its saves.
    Yjs(Box<YjsRoom>),
}

impl Held {
    fn kind(&self) -> Kind {
        match self {
            Held::Unloaded(kind) => *kind,
            Held::Json(_) => Kind::Json,
            Held::Yjs(_) => Kind::Yjs,
        }
    }

    fn yjs(&self) -> Option<&YjsRoom> {
        match self {
            Held::Yjs(y) => Some(y),
            _ => None,
        }
    }

    fn yjs_mut(&mut self) -> Option<&mut YjsRoom> {
        match self {
            Held::Yjs(y) => Some(y),
            _ => None,
        }
    }

    /// A JSON room's current version.
    fn json(&self) -> Option<&Version> {
        match self {
            Held::Json(current) => current.as_ref(),
            _ => None,
        }
    }
}

/// The authors noted since a save started, for [`Effect::Changed`].
type Authors = BTreeSet<String>;

/// An acknowledgement for content that is stored already.
fn duplicate(hash: String) -> Answer {
    Answer::Ack(Ok(super::Ack {
        hash,
        stored: Stored::Duplicate,
    }))
}
