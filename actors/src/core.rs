//! Builds docroom's actors and wires them, in the order they depend on each other: the cache
//! supervisor (over the stores), the flusher (which reports to the supervisor), the log reader
//! (over the cache), then the room registry (whose rooms save through the supervisor, flush
//! through the flusher and follow their document's log through the reader). Every actor
//! gets what it talks to when it is built; nothing is connected later.
//!
//! The service calls [`Core::start`] once; unit tests call it with in-memory stores.

use std::time::Duration;

use actix::prelude::*;

use crate::clock::Clock;
use crate::flusher::{Flusher, FlusherSettings};
use crate::ledger::Ledger;
use crate::log::reader::LogReader;
use crate::registry::RoomRegistry;
use crate::room::{RoomContext, RoomLimits};
use crate::supervisor::{CacheSupervisor, Stores, SupervisorSettings};

#[derive(Clone, Debug)]
pub struct CoreSettings {
    pub supervisor: SupervisorSettings,
    pub flusher: FlusherSettings,
    /// 0: rooms run on the thread of the connection that opened them; N: on N threads of their
    /// own.
    pub room_arbiters: usize,
    pub yjs_save_interval: Duration,
    /// How often every followed document log is read whatever the notices said.
    pub log_poll: Duration,
    /// This replica's name, part of every stamp it gives (SPEC §6).
    pub replica: String,
    /// What rooms and the registry refuse past.
    pub limits: RoomLimits,
}

/// The running actors. Dropping it stops the threads they run on.
pub struct Core {
    pub registry: Addr<RoomRegistry>,
    pub supervisor: Addr<CacheSupervisor>,
    pub flusher: Addr<Flusher>,
    pub ledger: Ledger,
    _arbiters: Vec<Arbiter>,
}

impl Core {
    /// Starts the supervisor and the log reader on a thread of their own (next to the Redis
    /// connection's driver), the flusher on another (a flush's reads and writes are large: saves
    /// must not wait behind them), and the registry on the caller's. Needs a running actix
    /// `System`.
    pub fn start(stores: Stores, settings: CoreSettings) -> Core {
        let storage = Arbiter::new();
        let ledger = stores.ledger.clone();
        let (cache, replica, poll) = (
            stores.cache.clone(),
            settings.replica.clone(),
            settings.log_poll,
        );
        let log = LogReader::start_in_arbiter(&storage.handle(), move |_| {
            LogReader::new(cache, &replica, poll)
        });
        // The flusher's thread also runs its reads of Redis (see `with_flush_thread`).
        let flushing = Arbiter::new();
        let (store, sup_settings) = (stores.store.clone(), settings.supervisor.clone());
        let flush_thread = flushing.handle();
        let supervisor = CacheSupervisor::start_in_arbiter(&storage.handle(), move |_| {
            CacheSupervisor::new(stores, sup_settings).with_flush_thread(flush_thread)
        });
        let (fl_ledger, fl_supervisor, fl_settings) =
            (ledger.clone(), supervisor.clone(), settings.flusher.clone());
        let flusher = Flusher::start_in_arbiter(&flushing.handle(), move |_| {
            Flusher::new(store, fl_ledger, fl_supervisor, fl_settings)
        });
        let room_arbiters: Vec<Arbiter> = (0..settings.room_arbiters)
            .map(|_| Arbiter::new())
            .collect();
        let shared = RoomContext {
            supervisor: supervisor.clone(),
            flusher: flusher.clone(),
            log,
            ledger: ledger.clone(),
            clock: Clock::new(settings.replica.as_str()),
            yjs_save_interval: settings.yjs_save_interval,
            limits: settings.limits,
        };
        let handles = room_arbiters.iter().map(Arbiter::handle).collect();
        let registry = RoomRegistry::new(handles, shared).start();
        let mut arbiters = room_arbiters;
        arbiters.push(storage);
        arbiters.push(flushing);
        Core {
            registry,
            supervisor,
            flusher,
            ledger,
            _arbiters: arbiters,
        }
    }
}
