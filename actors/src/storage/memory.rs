//! In-memory [`Cache`] and [`DocStore`] for unit tests of the actors' logic — never for the
//! integration tests, which use the real Redis and PostgreSQL.
//!
//! Each can be told, through its [`Faults`], to fail every call, to hold every call until
//! released, or to answer slowly, so a test can stop a store in the middle of a flush or a save
//! and play out a race step by step. Both follow the same version rules as the real stores
//! (JSON by stamp, Yjs merged; see SPEC §6). The cache's document channels are modelled in
//! [`listen`].

mod claims;
mod faults;
mod listen;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::pending::FlushRead;
use super::redis_scripts::{COMPACT_MAX_ENTRIES, COMPACT_MIN_BYTES};
use super::{
    CacheError, CacheResult, Cached, DocumentLog, FillLock, Health, Heartbeats, Listener,
    ReplicaBeat, Saved, Written,
};
use crate::doc::{combine, DocId, Kind, Version};
use crate::log::notice::CARRY_MAX_BYTES;
use crate::log::{
    Event, EventKind, Heard, Incarnation, LogEntry, LogPos, LogRead, Notice, READ_COUNT,
};
pub use faults::Faults;
pub use store::MemoryStore;

/// One document as the cache holds it.
#[derive(Default)]
struct CachedDoc {
    temp: Option<Version>,
    /// The last log entry `temp` includes.
    pos: LogPos,
    /// The last log entry PostgreSQL holds (`None`: not known, as `pos`).
    persisted: Option<LogPos>,
    /// When a commit last moved `persisted` (for a claim's `fresh` window).
    persisted_at: Option<Instant>,
    /// Bytes of Yjs updates after `temp` that PostgreSQL recorded (counted by commits, as
    /// `doc:{id}:tail`): with the log after `persisted`, what waits for a compaction.
    tail: u64,
    /// Entries before this position may have been trimmed.
    trimmed: LogPos,
    log: Vec<LogEntry>,
    /// The last entry appended (the log itself may be trimmed past it).
    head: Option<LogPos>,
    /// The replica whose flush claimed the document, until when (`PX`, as `claim.lua`).
    claim: Option<(Arc<str>, Instant)>,
}

impl CachedDoc {
    /// The replica whose claim holds at `now`.
    fn claimant(&self, now: Instant) -> Option<&Arc<str>> {
        self.claim
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(replica, _)| replica)
    }
}

/// How long a flush claim holds unless released: the service's default (`claim_ms`).
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct CacheState {
    /// The log's incarnation: a wipe (Redis restarted empty) starts the next one.
    incarnation: Incarnation,
    docs: HashMap<DocId, CachedDoc>,
    modified: HashSet<DocId>,
    locks: HashSet<DocId>,
    next_id: u64,
    /// Heartbeats with the instant they expire at.
    replicas: HashMap<String, (ReplicaBeat, Instant)>,
    /// The listening connections, by a number of their own.
    ears: HashMap<u64, listen::Ear>,
    next_ear: u64,
    /// Notices and events are dropped instead of announced (see `lose_notices`).
    deaf: bool,
    /// The model's clock: the wall clock unless a simulation sets it
    /// ([`MemoryCache::set_now`]); claims, the `fresh` window and heartbeats expire by it.
    clock: Option<Instant>,
}

impl CacheState {
    fn now(&self) -> Instant {
        self.clock.unwrap_or_else(Instant::now)
    }

    /// A flush's read, as the CLAIM script makes it.
    fn flush_read(&self, doc: &DocId) -> FlushRead {
        let Some(held) = self.docs.get(doc) else {
            return FlushRead {
                temp: None,
                pos: LogPos::ZERO,
                persisted: LogPos::ZERO,
                incarnation: self.incarnation,
                entries: Vec::new(),
                dirty: self.modified.contains(doc),
                compact: false,
                log_len: 0,
                has_temp: false,
            };
        };
        let persisted = held.persisted.unwrap_or(LogPos::ZERO);
        let json = held.temp.as_ref().is_some_and(|t| t.kind == Kind::Json);
        let (temp, from, compact) = match json {
            true => (held.temp.clone(), held.pos, false),
            false => {
                let size = held.temp.as_ref().map_or(0, |t| t.content.len() as u64);
                let unrecorded: u64 = held
                    .log
                    .iter()
                    .filter(|e| e.pos > persisted)
                    .map(|e| e.version.content.len() as u64)
                    .sum();
                let due = held.tail + unrecorded >= (COMPACT_MIN_BYTES as u64).max(size)
                    || held.log.len() >= COMPACT_MAX_ENTRIES;
                match due {
                    true => (held.temp.clone(), held.pos.min(persisted), true),
                    false => (None, persisted, false),
                }
            }
        };
        FlushRead {
            temp,
            pos: held.pos,
            persisted,
            incarnation: self.incarnation,
            entries: held.log.iter().filter(|e| e.pos > from).cloned().collect(),
            dirty: self.modified.contains(doc),
            compact,
            log_len: held.log.len(),
            has_temp: held.temp.is_some(),
        }
    }

    fn read(&self, doc: &DocId) -> Option<Cached> {
        let held = self.docs.get(doc)?;
        let tail = held.log.iter().filter(|e| e.pos > held.pos);
        let position = tail.clone().last().map_or(held.pos, |e| e.pos);
        let tail_len = tail.clone().count();
        let parts = held
            .temp
            .iter()
            .cloned()
            .chain(tail.map(|e| e.version.clone()));
        let version = combine(parts).ok()??;
        Some(Cached {
            version,
            position,
            whole: held.temp.is_some(),
            dirty: self.modified.contains(doc),
            tail: tail_len,
        })
    }
}

/// An in-memory cache, which several replicas may share. Cloning is shallow.
#[derive(Clone)]
pub struct MemoryCache {
    state: Arc<Mutex<CacheState>>,
    replica: Arc<str>,
    pub faults: Faults,
    /// The documents of each `read_logs` call through this replica's view, for tests to check.
    reads: Arc<Mutex<Vec<Vec<DocId>>>>,
    /// What [`DocumentLog::others_may_follow`] says: set by tests (it keeps no followers).
    others_follow: Arc<AtomicBool>,
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache {
            state: Arc::default(),
            replica: "r1".into(),
            faults: Faults::default(),
            reads: Arc::default(),
            others_follow: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl MemoryCache {
    fn state(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn enter(&self) -> CacheResult<MutexGuard<'_, CacheState>> {
        self.faults.enter().await.map_err(CacheError::Unreachable)?;
        Ok(self.state())
    }

    /// The same cache as another replica sees it (its own faults, its own name).
    pub fn for_replica(&self, replica: &str) -> MemoryCache {
        MemoryCache {
            state: self.state.clone(),
            replica: replica.into(),
            faults: Faults::default(),
            reads: Arc::default(),
            others_follow: self.others_follow.clone(),
        }
    }

    /// Whether [`DocumentLog::others_may_follow`] says another replica may follow a document
    /// (it does until told otherwise; this cache keeps no followers).
    pub fn set_others_follow(&self, others: bool) {
        self.others_follow.store(others, Ordering::Relaxed);
    }

    /// What a Redis restarted empty would hold: nothing (and no listening connection), in the
    /// log's next incarnation. Entry ids go on growing, as a real Redis's do (they are its
    /// clock's time), so a position of the new log is after every one of the old.
    pub fn wipe(&self) {
        let mut state = self.state();
        let (next, ids, clock) = (
            Incarnation(state.incarnation.0 + 1),
            state.next_id,
            state.clock,
        );
        *state = CacheState::default();
        state.incarnation = next;
        state.next_id = ids;
        state.clock = clock;
    }

    /// Sets the model's clock (a simulation's time) for every replica's view.
    pub fn set_now(&self, now: Instant) {
        self.state().clock = Some(now);
    }

    /// The cached content of `doc` (compacted content and log combined), read without any
    /// fault.
    pub fn peek(&self, doc: &DocId) -> Option<Version> {
        self.state().read(doc).map(|c| c.version)
    }

    /// Entries in `doc`'s log.
    pub fn log_len(&self, doc: &DocId) -> usize {
        self.state().docs.get(doc).map_or(0, |d| d.log.len())
    }

    pub fn is_dirty(&self, doc: &DocId) -> bool {
        self.state().modified.contains(doc)
    }

    /// The SAVE script's model: an append, or a restore (see [`DocumentLog::restore`]).
    async fn append(&self, v: &Version, restore: bool) -> CacheResult<Saved> {
        let mut state = self.enter().await?;
        let refused = |written| {
            Ok(Saved {
                written,
                position: None,
            })
        };
        let held = state.docs.get(&v.doc).and_then(|d| d.temp.as_ref());
        if let (Kind::Json, Some(held)) = (v.kind, held) {
            let later = v.stamp.is_some() && held.stamp < v.stamp;
            if held.hash == v.hash && !(restore && later) {
                return refused(Written::Duplicate);
            }
            // As the Redis script: only a stamped JSON entry can refuse a write.
            if held.stamp.is_some() && !later {
                return refused(Written::Superseded);
            }
        }
        state.next_id += 1;
        let pos = LogPos {
            ms: state.next_id,
            seq: 0,
        };
        let held = state.docs.entry(v.doc.clone()).or_default();
        let replica: Arc<str> = match restore {
            true => crate::log::RESTORED.into(),
            false => self.replica.clone(),
        };
        let entry = LogEntry {
            pos,
            replica: replica.clone(),
            version: v.clone(),
        };
        held.log.push(entry.clone());
        let prev = held.head.replace(pos);
        if v.kind == Kind::Json {
            held.temp = Some(v.clone());
            held.pos = pos;
        }
        state.modified.insert(v.doc.clone());
        let notice = match v.content.len() <= CARRY_MAX_BYTES {
            true => Notice::Entry { prev, entry },
            false => Notice::Appended { replica, pos },
        };
        state.announce(Heard {
            doc: v.doc.clone(),
            notice,
        });
        Ok(Saved {
            written: Written::Stored,
            position: Some(pos),
        })
    }
}

#[async_trait]
impl Health for MemoryCache {
    async fn ping(&self) -> CacheResult<()> {
        self.enter().await.map(drop)
    }

    async fn probe(&self) -> CacheResult<()> {
        self.enter().await.map(drop)
    }
}

#[async_trait]
impl DocumentLog for MemoryCache {
    async fn save(&self, v: &Version) -> CacheResult<Saved> {
        self.append(v, false).await
    }

    async fn restore(&self, v: &Version) -> CacheResult<Saved> {
        self.append(v, true).await
    }

    async fn load(&self, doc: &DocId) -> CacheResult<Option<Cached>> {
        Ok(self.enter().await?.read(doc))
    }

    async fn read_logs(&self, from: &[(DocId, LogPos)]) -> CacheResult<Vec<(DocId, LogRead)>> {
        let docs = from.iter().map(|(doc, _)| doc.clone()).collect();
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(docs);
        let state = self.enter().await?;
        Ok(from
            .iter()
            .filter_map(|(doc, pos)| {
                let held = state.docs.get(doc)?;
                let after = held.log.iter().filter(|e| e.pos > *pos);
                let read = LogRead {
                    entries: after.take(READ_COUNT).cloned().collect(),
                    behind: pos.next() < held.trimmed,
                };
                (!read.entries.is_empty() || read.behind).then(|| (doc.clone(), read))
            })
            .collect())
    }

    async fn publish(&self, doc: &DocId, kind: EventKind, payload: &[u8]) -> CacheResult<()> {
        let event = Event {
            replica: self.replica.clone(),
            kind,
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        self.enter().await?.announce(Heard {
            doc: doc.clone(),
            notice: Notice::Event(event),
        });
        Ok(())
    }

    fn others_may_follow(&self) -> bool {
        self.others_follow.load(Ordering::Relaxed)
    }

    async fn listen(&self) -> CacheResult<Listener> {
        drop(self.enter().await?);
        Ok(self.new_listener())
    }
}

#[async_trait]
impl FillLock for MemoryCache {
    async fn fill(&self, v: &Version) -> CacheResult<()> {
        let mut state = self.enter().await?;
        if state.modified.contains(&v.doc) {
            return Ok(());
        }
        let held = state.docs.entry(v.doc.clone()).or_default();
        if held.temp.is_none() {
            held.pos = held.log.last().map_or(LogPos::ZERO, |e| e.pos);
            held.tail = 0;
            held.temp = Some(v.clone());
        }
        Ok(())
    }

    async fn try_lock(&self, doc: &DocId) -> CacheResult<bool> {
        Ok(self.enter().await?.locks.insert(doc.clone()))
    }

    async fn is_locked(&self, doc: &DocId) -> CacheResult<bool> {
        Ok(self.enter().await?.locks.contains(doc))
    }

    async fn unlock(&self, doc: &DocId) -> CacheResult<()> {
        self.enter().await?.locks.remove(doc);
        Ok(())
    }
}

#[async_trait]
impl Heartbeats for MemoryCache {
    async fn beat(&self, beat: &ReplicaBeat, ttl: Duration) -> CacheResult<()> {
        let mut state = self.enter().await?;
        let expires = state.now() + ttl;
        state
            .replicas
            .insert(beat.replica.clone(), (beat.clone(), expires));
        Ok(())
    }

    async fn replicas(&self) -> CacheResult<Vec<ReplicaBeat>> {
        let mut state = self.enter().await?;
        let now = state.now();
        state.replicas.retain(|_, (_, expires)| *expires > now);
        Ok(state.replicas.values().map(|(b, _)| b.clone()).collect())
    }

    async fn retire(&self, replica: &str) -> CacheResult<()> {
        self.enter().await?.replicas.remove(replica);
        Ok(())
    }
}
