//! Builds docroom's actors and wires them, in the order they depend on each other: the cache
//! supervisor (over the stores), the flusher (which reports to the supervisor), the log reader
//! (over the cache), then the room registry (whose rooms save through the supervisor, flush
//! through the flusher and follow their document's log through the reader). Every actor
//! gets what it talks to when it is built; nothing is connected later.
//!
//! The service calls [`Core::start`] once; unit tests call it with in-memory stores.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::dev::channel;
use actix::prelude::*;

use crate::clock::Clock;
use crate::flusher::{Flusher, FlusherSettings};
use crate::ledger::Ledger;
use crate::log_reader::LogReader;
use crate::refusal_log::RefusalLog;
use crate::registry::RoomRegistry;
use crate::room::{Changed, CutVersion, RoomContext, RoomLimits};
use crate::supervisor::{CacheSupervisor, SaveInbox, Stores, SupervisorSettings};

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
    /// Where the supervisor and the log reader (with the Redis connections they drive) run:
    /// `false`, a thread of their own; `true`, the first thread that calls
    /// [`Core::storage_starter`]'s function (an HTTP worker's), so rooms on that thread reach
    /// Redis, and other replicas' entries reach them, without a hop between threads. Messages
    /// sent to them before then wait in their mailboxes.
    pub storage_on_worker: bool,
    /// What rooms and the registry refuse past.
    pub limits: RoomLimits,
    /// Where rooms report landed changes (the service's webhooks); `None`: webhooks off.
    pub changes: Option<Recipient<Changed>>,
    /// Where rooms propose versions (the service's history); `None`: history off.
    pub history: Option<Recipient<CutVersion>>,
    /// How often a room being edited proposes a version (`history.interval_ms`).
    pub history_interval: Duration,
}

/// The running actors. Dropping it stops the threads they run on.
pub struct Core {
    pub registry: Addr<RoomRegistry>,
    pub supervisor: Addr<CacheSupervisor>,
    pub flusher: Addr<Flusher>,
    pub ledger: Ledger,
    /// Shared by the rooms and the sessions.
    pub refusals: RefusalLog,
    storage: StorageStart,
    _arbiters: Vec<Arbiter>,
}

/// actix's default mailbox capacity (what `Actor::start` uses).
const MAILBOX: usize = 16;

/// Starts the supervisor and the log reader on the calling thread, once.
type StorageStart = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

impl Core {
    /// Starts the supervisor and the log reader on a thread of their own (next to the Redis
    /// connection's driver) or on an HTTP worker's (`storage_on_worker`), the flusher on
    /// another (a flush's reads and writes are large: saves must not wait behind them), and the
    /// registry on the caller's. Needs a running actix `System`.
    pub fn start(stores: Stores, settings: CoreSettings) -> Core {
        let ledger = stores.ledger.clone();
        let (cache, replica, poll) = (
            stores.cache.clone(),
            settings.replica.clone(),
            settings.log_poll,
        );
        // The flusher's thread also runs its reads of Redis (see `with_flush_thread`).
        let flushing = Arbiter::new();
        let (store, sup_settings) = (stores.store.clone(), settings.supervisor.clone());
        let flush_thread = flushing.handle();
        // Addresses first (the mailboxes' senders): the actors start where `start_storage` is
        // called, and take their mailboxes' receivers with them.
        let (sup_tx, sup_rx) = channel::channel(MAILBOX);
        let (log_tx, log_rx) = channel::channel(MAILBOX);
        let (supervisor, log) = (Addr::new(sup_tx), Addr::new(log_tx));
        let saves = SaveInbox::new(supervisor.clone());
        let inbox = saves.clone();
        let start_storage = move || {
            let reader = LogReader::new(cache, &replica, poll);
            Context::with_receiver(log_rx).run(reader);
            let sup = CacheSupervisor::new(stores, sup_settings)
                .with_flush_thread(flush_thread)
                .with_inbox(&inbox);
            Context::with_receiver(sup_rx).run(sup);
        };
        let start_storage: StorageStart = Arc::new(Mutex::new(Some(Box::new(start_storage))));
        let storage = (!settings.storage_on_worker).then(|| {
            let thread = Arbiter::new();
            let start = start_storage.clone();
            thread.spawn_fn(move || start_here(&start));
            thread
        });
        let (fl_ledger, fl_supervisor, fl_settings) =
            (ledger.clone(), supervisor.clone(), settings.flusher.clone());
        let flusher = Flusher::start_in_arbiter(&flushing.handle(), move |_| {
            Flusher::new(store, fl_ledger, fl_supervisor, fl_settings)
        });
        let refusals = RefusalLog::default();
        let room_arbiters: Vec<Arbiter> = (0..settings.room_arbiters)
            .map(|_| Arbiter::new())
            .collect();
        let shared = RoomContext {
            supervisor: supervisor.clone(),
            saves,
            flusher: flusher.clone(),
            log,
            clock: Clock::new(settings.replica.as_str()),
            yjs_save_interval: settings.yjs_save_interval,
            limits: settings.limits,
            refusals: refusals.clone(),
            changes: settings.changes.clone(),
            history: settings.history.clone(),
            history_interval: settings.history_interval,
        };
        let handles = room_arbiters.iter().map(Arbiter::handle).collect();
        let registry = RoomRegistry::new(handles, shared, ledger.clone()).start();
        let mut arbiters = room_arbiters;
        arbiters.extend(storage);
        arbiters.push(flushing);
        Core {
            registry,
            supervisor,
            flusher,
            ledger,
            refusals,
            storage: start_storage,
            _arbiters: arbiters,
        }
    }

    /// With `storage_on_worker`, a function whose first call starts the supervisor and the log
    /// reader on the calling thread's arbiter (an HTTP worker's: the service calls it from each
    /// worker as it starts); any other call does nothing.
    pub fn storage_starter(&self) -> impl Fn() + Send + Sync + Clone + 'static {
        let start = self.storage.clone();
        move || start_here(&start)
    }
}

fn start_here(start: &StorageStart) {
    let start = start
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(start) = start {
        start();
    }
}
