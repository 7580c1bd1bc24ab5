//! One replica as the simulation carries it: what survives a crash (its journal's bytes, its
//! clock, its view of Redis) and what does not ([`Life`]: the replica's [`Durability`], the
//! supervisor's and the flusher's flags, every call in flight).
//!
//! The pieces that decide are the real ones: [`Durability`] (ledger and breaker included),
//! [`Fallback`] on a [`MemoryIo`] (reopened and replayed at restart, as a StatefulSet volume
//! keeps it, SPEC §8), the HLC [`Clock`]. The supervisor's timer and its accounting of Redis
//! calls (`supervisor/recovery.rs`, `CacheSupervisor::account`) call them here, one call a
//! step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::flush::Flush;
use super::recovery::{MoveBack, Ping, Probe, Spill};
use super::world::{Task, World};
use crate::breaker::{Breaker, BreakerState};
use crate::clock::Clock;
use crate::doc::{DocId, Stamp};
use crate::durability::state::Durability;
use crate::fallback::{Fallback, MemoryIo};
use crate::ledger::Ledger;
use crate::storage::memory::MemoryCache;
use crate::supervisor::Stores;

pub(super) struct Replica {
    /// The shared Redis as this replica reaches it.
    pub cache: MemoryCache,
    /// The journal's bytes: they outlive the process.
    pub io: MemoryIo,
    /// Wall-clock time runs on through a crash; this replica's runs `skew` ms ahead.
    pub clock: Clock,
    pub skew: u64,
    pub life: Option<Life>,
    /// Its breaker opened since Redis last restarted empty (it noticed, SPEC §1.1 ★).
    pub noticed: bool,
}

/// What a crash takes.
pub(super) struct Life {
    pub stores: Stores,
    /// The ledger, the breaker, the debts to Redis and the move back's backoff: the
    /// supervisor's own [`Durability`].
    pub durability: Durability,
    /// The flusher's gate.
    pub flushing: bool,
    pub moving: bool,
    pub probing: bool,
    pub checking: bool,
    pub spilling: u32,
    /// Documents with a save in flight (a room saves one at a time).
    pub saving: BTreeSet<DocId>,
    pub last_check: u64,
    /// The newest stamp each room has seen: its next stamp is later (SPEC §6).
    pub seen: BTreeMap<DocId, Stamp>,
}

impl Life {
    pub fn ledger(&self) -> &Ledger {
        &self.stores.ledger
    }

    pub fn fallback(&self) -> &Fallback {
        &self.stores.fallback
    }

    pub fn allows_redis(&self) -> bool {
        self.durability.breaker().allows_redis()
    }
}

impl Replica {
    pub fn new(redis: &MemoryCache, index: usize, skew: u64) -> Replica {
        let name: Arc<str> = format!("r{index}").into();
        Replica {
            cache: redis.for_replica(&name),
            io: MemoryIo::new(),
            clock: Clock::new(name),
            skew,
            life: None,
            noticed: true,
        }
    }
}

/// Starts (or restarts) replica `r`: its journal replayed into a new ledger, as
/// `CacheSupervisor::new` does, then the first ping.
pub(super) fn start(w: &mut World, r: usize) {
    let (threshold, open_for) = (w.settings.threshold, w.settings.open_for);
    let ms = std::time::Duration::from_millis;
    let retry = (ms(w.settings.retry_base), ms(w.settings.retry_max));
    let replica = &mut w.replicas[r];
    let fallback = Fallback::open_with(replica.io.clone()).expect("a journal in memory opens");
    let ledger = Ledger::default();
    let breaker = Breaker::new(threshold, ms(open_for));
    let durability = Durability::new(ledger.clone(), breaker, &fallback, retry);
    let stores = Stores {
        cache: Arc::new(replica.cache.clone()),
        store: Arc::new(w.pg.clone()),
        fallback,
        ledger,
    };
    replica.life = Some(Life {
        stores,
        durability,
        flushing: false,
        moving: false,
        probing: false,
        checking: true,
        spilling: 0,
        saving: BTreeSet::new(),
        last_check: w.now,
        seen: BTreeMap::new(),
    });
    w.spawn(r, Task::Ping(Ping));
}

/// SIGKILL: the ledger, the breaker and every call in flight are gone; the journal stays.
pub(super) fn crash(w: &mut World, r: usize) {
    let replica = &w.replicas[r];
    let life = replica.life.as_ref().expect("only a live replica crashes");
    let noticed = replica.noticed && life.spilling == 0;
    if !w.oracle.may_crash(r, noticed, life.fallback()) {
        w.note(Some(r), || {
            "fault: crash deferred (redis lost its updates and it has not noticed)".into()
        });
        return;
    }
    w.jobs.retain(|j| j.replica != r);
    // Dropping the fallback joins its writer thread: nothing it answered is undone.
    w.replicas[r].life = None;
    w.oracle.crashed(r);
    w.note(Some(r), || "fault: crash (SIGKILL)".into());
}

pub(super) fn restart(w: &mut World, r: usize) {
    start(w, r);
    let journaled = w.life(r).ledger().len();
    w.note(Some(r), || {
        format!("restart: journal replayed, {journaled} ledger entries")
    });
}

/// The breaker learns how a Redis call went (`CacheSupervisor::account`): the first failure
/// of a streak spills the ledger's Redis-only entries to the journal.
pub(super) fn account(w: &mut World, r: usize, ok: bool) {
    let at = w.instant();
    let accounted = w.life(r).durability.account(Some(ok), at);
    if let Some(t) = accounted.transition {
        if t.to == BreakerState::Open {
            w.replicas[r].noticed = true;
        }
        w.note(Some(r), || format!("breaker {:?} -> {:?}", t.from, t.to));
    }
    if accounted.spill {
        spill(w, r);
    }
}

/// Journals every ledger entry durable only in Redis (`CacheSupervisor::spill`).
pub(super) fn spill(w: &mut World, r: usize) {
    let life = w.life(r);
    let cached = life.durability.spill();
    if cached.is_empty() {
        return;
    }
    life.spilling += 1;
    let docs: Vec<String> = cached.iter().map(|v| v.doc.to_string()).collect();
    w.note(Some(r), || format!("spill: journaling {docs:?}"));
    w.spawn(r, Task::Spill(Spill::new(cached)));
}

/// The supervisor's timer (`CacheSupervisor::tick`): the half-open probe when due, the health
/// check, the move back.
pub(super) fn tick(w: &mut World, r: usize) {
    let (at, now, health) = (w.instant(), w.now, w.settings.health_check);
    let life = w.life(r);
    let due = life.durability.breaker_mut().probe_due(at);
    if let Some(t) = due {
        w.note(Some(r), || format!("breaker {:?} -> {:?}", t.from, t.to));
    }
    let life = w.life(r);
    match life.durability.breaker().state() {
        BreakerState::HalfOpen if !life.probing => {
            life.probing = true;
            w.spawn(r, Task::Probe(Probe::Call));
        }
        BreakerState::Closed => {
            if now >= life.last_check + health && !life.checking {
                life.checking = true;
                life.last_check = now;
                w.spawn(r, Task::Ping(Ping));
            }
            move_back(w, r);
        }
        _ => {}
    }
}

/// Starts moving the journaled entries back into Redis (`CacheSupervisor::move_back`).
pub(super) fn move_back(w: &mut World, r: usize) {
    let life = w.life(r);
    if life.moving {
        return;
    }
    let at = w.instant();
    let life = w.life(r);
    let Some(moves) = life.durability.move_back(at) else {
        return;
    };
    let (announce, journaled) = (moves.announce, moves.journaled);
    life.moving = true;
    let docs: Vec<String> = journaled.iter().map(|v| v.doc.to_string()).collect();
    w.note(Some(r), || {
        format!("move back: {docs:?}, {} owed", announce.len())
    });
    let mut moves = journaled;
    shuffle(w, &mut moves);
    w.spawn(r, Task::Move(Box::new(MoveBack::new(announce, moves))));
}

/// A flush (`Flusher::run`), unless one is running: `fresh` for the periodic one.
pub(super) fn flush(w: &mut World, r: usize, fresh: bool) {
    let life = w.life(r);
    if life.flushing {
        return;
    }
    life.flushing = true;
    w.spawn(r, Task::Flush(Box::new(Flush::new(fresh))));
}

/// The order in which concurrent calls (`buffer_unordered`) happen to land.
fn shuffle<T>(w: &mut World, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = w.rng.index(i + 1);
        items.swap(i, j);
    }
}
