//! The room registry: maps document id → `DocRoom`, creating rooms on demand.
//!
//! Where a room lives decides how many thread hops an update costs. By default a room starts on
//! the thread of the caller that opened it (an HTTP worker: the session of the first member),
//! so a document edited through one connection never crosses threads between session and room,
//! and rooms spread over the workers as connections do. With dedicated arbiters configured,
//! rooms are dealt over those instead.
//!
//! A room retires itself (it tells the registry, then stops). Whoever holds a stale address
//! finds out from a failed send and asks the registry again; `connected()` is checked on lookup
//! as well, so a retiring room is never handed out twice.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use tracing::debug;

use crate::doc::{DocId, Kind, Version};
use crate::flusher::{DirtyRooms, DocsPersisted, Flusher};
use crate::metrics as m;
use crate::room::{
    CloseRoom, Describe, DocRoom, RoomPersisted, RoomSummary, SpillToFallback, Unpersisted,
};
use crate::supervisor::{CacheSupervisor, CacheSuspect};

/// The room for `doc`, created (as `kind`, if the document is new) when there is none.
#[derive(Message)]
#[rtype(result = "Result<Addr<DocRoom>, ShuttingDown>")]
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

/// Sent by a room that is stopping.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retired {
    pub doc: DocId,
    pub room: Addr<DocRoom>,
}

#[derive(Message)]
#[rtype(result = "Vec<RoomSummary>")]
pub struct ListRooms;

/// Shutdown: close every room; answers the versions PostgreSQL does not have yet.
#[derive(Message)]
#[rtype(result = "Vec<Version>")]
pub struct CloseAll;

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server is shutting down")]
pub struct ShuttingDown;

pub struct RoomRegistry {
    rooms: HashMap<DocId, Addr<DocRoom>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    supervisor: Addr<CacheSupervisor>,
    flusher: Addr<Flusher>,
    yjs_save_interval: Duration,
    unpersisted: Unpersisted,
    closing: bool,
}

impl RoomRegistry {
    pub fn new(
        arbiters: Vec<ArbiterHandle>,
        supervisor: Addr<CacheSupervisor>,
        flusher: Addr<Flusher>,
        yjs_save_interval: Duration,
    ) -> Self {
        RoomRegistry {
            yjs_save_interval,
            rooms: HashMap::new(),
            arbiters,
            next_arbiter: 0,
            supervisor,
            flusher,
            unpersisted: Unpersisted::default(),
            closing: false,
        }
    }

    /// Asks every open room the same question; answers the versions they gave (a room that
    /// stopped meanwhile has nothing to give).
    fn ask_every_room<M>(&self, ask: impl Fn() -> M) -> ResponseFuture<Vec<Version>>
    where
        M: Message<Result = Option<Version>> + Send + 'static,
        DocRoom: Handler<M>,
    {
        let asks: Vec<_> = self.rooms.values().map(|r| r.send(ask())).collect();
        Box::pin(async move {
            join_all(asks)
                .await
                .into_iter()
                .filter_map(|r| r.ok().flatten())
                .collect()
        })
    }

    fn open(&self, doc: &DocId) -> Option<Addr<DocRoom>> {
        self.rooms.get(doc).filter(|room| room.connected()).cloned()
    }
}

impl Actor for RoomRegistry {
    type Context = Context<Self>;
}

impl Handler<GetRoom> for RoomRegistry {
    type Result = Result<Addr<DocRoom>, ShuttingDown>;

    /// Finds or starts the room: on the next dedicated arbiter in turn if there are any, else on
    /// the caller's arbiter, else on the registry's own.
    fn handle(&mut self, msg: GetRoom, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Err(ShuttingDown);
        }
        if let Some(room) = self.open(&msg.doc) {
            return Ok(room);
        }
        let (doc, kind) = (msg.doc.clone(), msg.kind);
        let (supervisor, flusher, registry) =
            (self.supervisor.clone(), self.flusher.clone(), ctx.address());
        let (interval, unpersisted) = (self.yjs_save_interval, self.unpersisted.clone());
        let make = move |_: &mut Context<DocRoom>| {
            DocRoom::new(
                doc,
                kind,
                supervisor,
                flusher,
                registry,
                unpersisted,
                interval,
            )
        };
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

impl Handler<Retired> for RoomRegistry {
    type Result = ();

    /// Forgets a stopping room (unless a newer one already took its place).
    fn handle(&mut self, msg: Retired, _: &mut Context<Self>) {
        if self.rooms.get(&msg.doc) == Some(&msg.room) {
            self.rooms.remove(&msg.doc);
            metrics::gauge!(m::ROOMS).set(self.rooms.len() as f64);
            debug!(doc = %msg.doc, "room retired");
        }
    }
}

impl Handler<ListRooms> for RoomRegistry {
    type Result = ResponseFuture<Vec<RoomSummary>>;

    /// Every open room's summary.
    fn handle(&mut self, _: ListRooms, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.rooms.values().map(|r| r.send(Describe)).collect();
        Box::pin(async move {
            let mut rooms: Vec<RoomSummary> = join_all(asks)
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect();
            rooms.sort_by(|a, b| a.doc.cmp(&b.doc));
            rooms
        })
    }
}

impl Handler<CloseAll> for RoomRegistry {
    type Result = ResponseFuture<Vec<Version>>;

    /// Closes every room for shutdown and collects what still needs persisting.
    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        self.ask_every_room(|| CloseRoom)
    }
}

impl Handler<DirtyRooms> for RoomRegistry {
    type Result = MessageResult<DirtyRooms>;

    /// Every open room's content that PostgreSQL does not have yet.
    fn handle(&mut self, _: DirtyRooms, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.unpersisted.versions())
    }
}

impl Handler<CacheSuspect> for RoomRegistry {
    type Result = ();

    /// Redis may have lost data: every room re-saves unpersisted content into the journal.
    fn handle(&mut self, _: CacheSuspect, _: &mut Context<Self>) {
        for room in self.rooms.values() {
            room.do_send(SpillToFallback);
        }
    }
}

impl Handler<DocsPersisted> for RoomRegistry {
    type Result = ();

    /// Tells each open room which of its versions PostgreSQL now holds.
    fn handle(&mut self, msg: DocsPersisted, _: &mut Context<Self>) {
        self.unpersisted.committed(&msg.done);
        for (doc, hash) in msg.done.iter() {
            if let Some(room) = self.rooms.get(doc) {
                room.do_send(RoomPersisted { hash: hash.clone() });
            }
        }
    }
}
