//! The room registry: maps document id → `DocRoom`, creating rooms on demand.
//!
//! Where a room lives decides how many thread hops an update costs. By default a room starts on
//! the thread of the caller that opened it (an HTTP worker: the session of the first member),
//! so a document edited through one connection never crosses threads between session and room,
//! and rooms spread over the workers as connections do. With dedicated arbiters configured,
//! rooms are dealt over those instead.
//!
//! A room stops by itself and tells nobody: the registry only ever hands out a room whose
//! address is still connected, and forgets stopped ones on lookup and on a timer. Whoever holds
//! a stale address finds out from a failed send and asks again.

use foldhash::{HashMap, HashMapExt};
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use tracing::{debug, warn};

use crate::doc::{DocId, Kind, Version};
use crate::ledger::Ledger;
use crate::metrics as m;
use crate::room::{CloseRoom, Describe, DocRoom, RoomContext, RoomSummary};

/// How often stopped rooms are forgotten (for the rooms gauge and the admin list).
const SWEEP: Duration = Duration::from_secs(1);

/// The room for `doc`, created (as `kind`, if the document is new) when there is none.
#[derive(Message)]
#[rtype(result = "Result<Addr<DocRoom>, NoRoom>")]
pub struct GetRoom {
    pub doc: DocId,
    pub kind: Kind,
    /// The caller's arbiter (`Arbiter::current()`): where a new room starts unless the registry
    /// has arbiters of its own.
    pub home: Option<ArbiterHandle>,
}

/// The room for `doc` if one is open; never creates one.
#[derive(Message)]
#[rtype(result = "Option<Addr<DocRoom>>")]
pub struct PeekRoom {
    pub doc: DocId,
}

#[derive(Message)]
#[rtype(result = "Vec<RoomSummary>")]
pub struct ListRooms;

/// How many rooms are open (for the replica heartbeat): cheaper than [`ListRooms`], which
/// asks every room.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountRooms;

/// Shutdown: close every room; answers the versions the rooms could not save.
#[derive(Message)]
#[rtype(result = "Vec<Version>")]
pub struct CloseAll;

/// Why no room was handed out.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum NoRoom {
    #[error("the server is shutting down")]
    ShuttingDown,
    /// `limits.max_rooms` rooms are open on this replica.
    #[error("this server has reached its room limit ({0} open documents)")]
    Full(usize),
}

pub struct RoomRegistry {
    rooms: HashMap<DocId, Addr<DocRoom>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    shared: RoomContext,
    /// What PostgreSQL lacks: a room with nothing unsaved may still be waiting for a flush.
    ledger: Ledger,
    closing: bool,
}

impl RoomRegistry {
    pub fn new(arbiters: Vec<ArbiterHandle>, shared: RoomContext, ledger: Ledger) -> Self {
        RoomRegistry {
            rooms: HashMap::new(),
            arbiters,
            next_arbiter: 0,
            shared,
            ledger,
            closing: false,
        }
    }

    fn open(&self, doc: &DocId) -> Option<Addr<DocRoom>> {
        self.rooms.get(doc).filter(|room| room.connected()).cloned()
    }

    fn sweep(&mut self) {
        self.rooms.retain(|_, room| room.connected());
        metrics::gauge!(m::ROOMS).set(self.rooms.len() as f64);
    }
}

impl Actor for RoomRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP, |act, _| act.sweep());
    }
}

impl Handler<GetRoom> for RoomRegistry {
    type Result = Result<Addr<DocRoom>, NoRoom>;

    /// Finds or starts the room: on the next dedicated arbiter in turn if there are any, else on
    /// the caller's arbiter, else on the registry's own. A new room past `max_rooms` is refused.
    fn handle(&mut self, msg: GetRoom, _: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Err(NoRoom::ShuttingDown);
        }
        if let Some(room) = self.open(&msg.doc) {
            return Ok(room);
        }
        let max_rooms = self.shared.limits.max_rooms;
        if self.rooms.len() >= max_rooms {
            self.sweep(); // stopped rooms do not count
            if self.rooms.len() >= max_rooms {
                warn!(doc = %msg.doc, max_rooms, "room limit reached, document refused");
                return Err(NoRoom::Full(max_rooms));
            }
        }
        let (doc, kind, shared) = (msg.doc.clone(), msg.kind, self.shared.clone());
        let make = move |_: &mut Context<DocRoom>| DocRoom::new(doc, kind, shared);
        let room = if !self.arbiters.is_empty() {
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            DocRoom::start_in_arbiter(arbiter, make)
        } else if let Some(home) = &msg.home {
            DocRoom::start_in_arbiter(home, make)
        } else {
            DocRoom::create(make)
        };
        debug!(doc = %msg.doc, "room opened");
        self.rooms.insert(msg.doc, room.clone());
        metrics::gauge!(m::ROOMS).set(self.rooms.len() as f64);
        Ok(room)
    }
}

impl Handler<PeekRoom> for RoomRegistry {
    type Result = Option<Addr<DocRoom>>;

    /// An open room's address, if any.
    fn handle(&mut self, msg: PeekRoom, _: &mut Context<Self>) -> Self::Result {
        self.open(&msg.doc)
    }
}

impl Handler<ListRooms> for RoomRegistry {
    type Result = ResponseFuture<Vec<RoomSummary>>;

    /// Every open room's summary.
    fn handle(&mut self, _: ListRooms, _: &mut Context<Self>) -> Self::Result {
        self.sweep();
        let asks: Vec<_> = self.rooms.values().map(|r| r.send(Describe)).collect();
        let ledger = self.ledger.clone();
        Box::pin(async move {
            let mut rooms: Vec<RoomSummary> = join_all(asks)
                .await
                .into_iter()
                .filter_map(Result::ok)
                .map(|mut room| {
                    room.dirty |= ledger.lacks(&room.doc);
                    room
                })
                .collect();
            rooms.sort_by(|a, b| a.doc.cmp(&b.doc));
            rooms
        })
    }
}

impl Handler<CountRooms> for RoomRegistry {
    type Result = usize;

    /// Open rooms, stopped ones forgotten first.
    fn handle(&mut self, _: CountRooms, _: &mut Context<Self>) -> Self::Result {
        self.sweep();
        self.rooms.len()
    }
}

impl Handler<CloseAll> for RoomRegistry {
    type Result = ResponseFuture<Vec<Version>>;

    /// Closes every room for shutdown and collects what they could not save.
    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        let asks: Vec<_> = self.rooms.values().map(|r| r.send(CloseRoom)).collect();
        Box::pin(async move {
            join_all(asks)
                .await
                .into_iter()
                .filter_map(|r| r.ok().flatten())
                .collect()
        })
    }
}
