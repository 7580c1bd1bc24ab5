//! The storage the actors drive, behind two small traits: [`Cache`] (Redis, the shared,
//! short-lived cache) and [`DocStore`] (PostgreSQL, the durable store). The local journal lives
//! in [`crate::fallback`].
//!
//! The real implementations are [`RedisCache`] and [`PgStore`]; [`memory`] has in-memory ones
//! for unit tests, which can be told to fail, pause or slow down, so the races between saves,
//! flushes and faults can be played out deterministically in process.

pub mod memory;
mod pending;
mod postgres;
mod redis_cache;
mod redis_connect;
mod redis_scripts;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

use crate::doc::{DocId, Version};
use crate::log::{EventKind, Heard, Incarnation, LogMark, LogPos, LogRead};

pub use postgres::{Held, PgStore, StoreError};
pub use redis_cache::{CacheError, CacheSettings, RedisCache};
pub use redis_connect::{MemoryPolicy, RedisTarget, SentinelSettings};

pub type CacheResult<T> = Result<T, CacheError>;
pub type StoreResult<T> = Result<T, StoreError>;

/// What a cache write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The version is appended to the document's log (and, for JSON, is the cached content).
    Stored,
    /// The cache already held a later version (a larger stamp, SPEC §6): nothing was written.
    /// Counts as stored: something at least as new is there.
    Superseded,
    /// JSON content whose hash is the document's `lastSavedHash` (SPEC §1.3): nothing written.
    Duplicate,
}

/// A save's outcome, and where in the document's log it landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub written: Written,
    /// The log entry appended (`Stored` only).
    pub position: Option<LogPos>,
}

/// A document as the cache holds it: the compacted content (`doc:{id}:temp`) combined with the
/// log entries after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub version: Version,
    /// The last log entry `version` includes.
    pub position: LogPos,
    /// `version` is the whole document (`temp` existed). Otherwise it is only the log's updates
    /// (Yjs), which the content PostgreSQL holds completes.
    pub whole: bool,
    /// The document is in `modifiedDocs`.
    pub dirty: bool,
    /// Log entries after the compacted content: a compaction has something to fold in.
    pub tail: usize,
}

/// What a flush reads of a document it claimed: what PostgreSQL lacks, and whether the log has
/// grown enough to compact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// JSON: the latest content. Yjs: the log entries after what PostgreSQL holds, merged into
    /// one update (a flush costs what was appended, not the document). `None`: PostgreSQL holds
    /// everything (another replica flushed it).
    pub version: Option<Version>,
    /// The last log entry read: a commit of this read covers the log up to it.
    pub position: LogPos,
    /// The last log entry PostgreSQL had recorded (as far as Redis knows) when the flush claimed
    /// the document: everything after it is written, whatever the dirty mark says.
    pub persisted: LogPos,
    /// The incarnation of the log the claim read: the positions above belong to it.
    pub incarnation: Incarnation,
    /// The document was in `modifiedDocs` when the flush claimed it.
    pub dirty: bool,
    /// Entries in the document's log.
    pub log_len: usize,
    /// The log after the compacted content has grown to about its size: fold it in.
    pub compaction: Option<Compaction>,
}

/// A Yjs document's compacted content and the log entries after it, up to the read's position,
/// merged: the new compacted content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compaction {
    pub version: Version,
    /// `version` is the whole document. Otherwise the cache had no compacted content and it is
    /// only the log's entries, which PostgreSQL's content completes.
    pub whole: bool,
    /// Bytes of the log entries folded in.
    pub folded: u64,
}

/// A dirty document as a flush finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    Found(Box<Pending>),
    /// Another replica is flushing it now.
    Busy,
    /// PostgreSQL took its log up to `persisted` moments ago (within the `fresh` window the
    /// claim was asked with): another replica flushes it, and this one leaves it alone.
    Fresh {
        persisted: LogMark,
    },
    /// Marked dirty but nothing is cached: its content expired.
    Missing,
}

/// PostgreSQL committed `hash` of `doc`. `recorded` is the log point PostgreSQL records for
/// the document after that transaction (see [`DocStore::write`]): the only source of what
/// Redis marks persisted, trims and cleans, and of which of this replica's saves leave the
/// ledger. `compacted`, the whole document at the `read` position, replaces the cached
/// content if that includes less; it folded `folded` bytes of log entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub doc: DocId,
    pub hash: String,
    pub recorded: Option<LogMark>,
    /// The last log entry the flush read (when the version was read from the cache): where a
    /// compaction's content ends. Says nothing of what PostgreSQL holds.
    pub read: Option<LogMark>,
    pub compacted: Option<Version>,
    pub folded: u64,
}

impl Commit {
    /// A commit of content that was not read from the cache (the ledger's, the journal's).
    pub fn of(doc: DocId, hash: String) -> Commit {
        Commit {
            doc,
            hash,
            recorded: None,
            read: None,
            compacted: None,
            folded: 0,
        }
    }
}

/// One replica's heartbeat, the value of `replica:{id}` (SPEC §6) and a row of
/// `GET /admin/replicas` (SPEC §3). The id travels in the value, so a key prefix or an id with
/// odd characters never has to be parsed back out of a key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaBeat {
    pub replica: String,
    pub rooms: usize,
    pub connections: usize,
    pub last_seen: DateTime<Utc>,
}

/// The shared cache (SPEC §6 keys `doc:{id}:temp`, `doc:{id}:lastSavedHash`, `modifiedDocs`,
/// `lock:{id}`). Only the cache supervisor calls it, so the breaker sees every outcome.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// One round trip on the current connection: the health check.
    async fn ping(&self) -> CacheResult<()>;

    /// A real attempt on a fresh connection (the breaker's half-open probe): whatever backoff
    /// the connection was in is skipped, and the old connection is replaced if this one works.
    async fn probe(&self) -> CacheResult<()>;

    /// Appends `v` to the document's log (a Yjs update, or JSON content that then is the cached
    /// content), marks it dirty, refreshes the TTLs and publishes a notice of the append on the
    /// document's channel, atomically. A JSON version whose stamp
    /// is not larger than the cached one's, or whose hash is the last saved one, is not written.
    async fn save(&self, v: &Version) -> CacheResult<Saved>;

    /// Puts content PostgreSQL already holds into the cache, only if the cache holds nothing
    /// for the document and it is not dirty: a fill never replaces what a save wrote.
    async fn fill(&self, v: &Version) -> CacheResult<()>;

    /// The compacted content and the log after it, combined; `None` if neither exists.
    async fn load(&self, doc: &DocId) -> CacheResult<Option<Cached>>;

    /// Documents in `modifiedDocs`.
    async fn dirty_docs(&self) -> CacheResult<Vec<DocId>>;

    /// Claims `docs` for this replica's flush (one replica flushes a document at a time) and
    /// reads what PostgreSQL lacks of each one claimed (see [`Pending`]), refreshing its TTLs
    /// in the same round trip. With `fresh`, a document whose log PostgreSQL took within that
    /// long is not claimed but answered [`Claimed::Fresh`]: with several replicas each flushing
    /// every period, a document is then written once per period, not once per replica.
    async fn claim(&self, docs: &[DocId], fresh: Option<Duration>) -> CacheResult<Vec<Claimed>>;

    /// Refreshes the TTLs of `docs` (a flush could not persist them yet) and releases this
    /// replica's flush claims on them.
    async fn touch(&self, docs: &[DocId]) -> CacheResult<()>;

    /// PostgreSQL committed these: compact (write `compacted` if it includes more than the
    /// cached content), trim the log entries PostgreSQL and the cached content both include,
    /// clear `modifiedDocs` unless something was appended meanwhile, and release the claim.
    async fn committed(&self, done: &[Commit]) -> CacheResult<()>;

    /// Entries appended to each given document's log after its position, at most
    /// [`READ_COUNT`](crate::log::READ_COUNT) per document, without waiting, and whether some
    /// after the position were trimmed already: the log reader's call, on a connection of its
    /// own. Documents with nothing new (and nothing missed) are left out.
    async fn read_logs(&self, from: &[(DocId, LogPos)]) -> CacheResult<Vec<(DocId, LogRead)>>;

    /// Publishes an event (awareness, stateless, a relayed Yjs update) on the document's
    /// channel for the other replicas' rooms: it reaches whoever listens now, and is kept
    /// nowhere.
    async fn publish(&self, doc: &DocId, kind: EventKind, payload: &[u8]) -> CacheResult<()>;

    /// A connection of its own listening to document channels (`doc:{id}:events`): the notices
    /// saves publish, and the events. It subscribes to nothing yet.
    async fn listen(&self) -> CacheResult<Listener>;

    /// `lock:{id}` with `NX EX`: true if this caller fills the cache.
    async fn try_lock(&self, doc: &DocId) -> CacheResult<bool>;
    async fn is_locked(&self, doc: &DocId) -> CacheResult<bool>;
    async fn unlock(&self, doc: &DocId) -> CacheResult<()>;

    /// Writes `replica:{id}` with `beat`, expiring after `ttl` unless written again.
    async fn beat(&self, beat: &ReplicaBeat, ttl: Duration) -> CacheResult<()>;

    /// Every heartbeat that has not expired: the live replicas (SCAN, never KEYS).
    async fn replicas(&self) -> CacheResult<Vec<ReplicaBeat>>;

    /// Deletes `replica:{id}`: that replica is leaving.
    async fn retire(&self, replica: &str) -> CacheResult<()>;
}

/// One listening connection (see [`Cache::listen`]).
pub struct Listener {
    /// Subscribes and unsubscribes the connection's channels.
    pub channels: Arc<dyn Channels>,
    /// What the subscribed channels carry, in the order it was published; it ends when the
    /// connection is lost, and whatever was published meanwhile is lost with it.
    pub heard: BoxStream<'static, Heard>,
}

/// The channels of one listening connection.
#[async_trait]
pub trait Channels: Send + Sync + 'static {
    /// Subscribes to the channels of `docs`; returns once every subscription is in effect, so
    /// what is published from then on is heard.
    async fn subscribe(&self, docs: &[DocId]) -> CacheResult<()>;

    async fn unsubscribe(&self, docs: &[DocId]) -> CacheResult<()>;

    /// One round trip on the connection. A stalled one (Redis frozen, the network cut) neither
    /// delivers nor ends: this is how it is found.
    async fn ping(&self) -> CacheResult<()>;
}

/// One document's write: its content, and the log point that content includes when it was
/// read from the log (a flush's), which PostgreSQL records in the same transaction.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    pub version: &'a Version,
    pub includes: Option<LogMark>,
}

/// The durable store (SPEC §6 table `documents`). A Yjs write appends the update it is (the
/// log entries PostgreSQL lacked) and costs that update, not the document.
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    async fn load(&self, doc: &DocId) -> StoreResult<Option<Version>>;

    /// Writes `writes` (distinct documents) in one transaction, under the version rule of SPEC
    /// §6: JSON content is replaced only by a larger stamp (equal content takes the larger
    /// stamp), Yjs content is merged; a version refused as older counts as committed. With
    /// each document's content it records the log point the content includes, which only moves
    /// forward (by incarnation, then position). Answers, per write that named a log point, the
    /// point recorded after the transaction if it is of the same incarnation (`None` otherwise:
    /// a later incarnation's flush recorded it, and this write's log is gone).
    async fn write(&self, writes: &[Write<'_>]) -> StoreResult<Vec<Option<LogMark>>>;

    /// Writes content that was not read from the log (a journal, an import): no log point.
    async fn upsert(&self, versions: &[Version]) -> StoreResult<()> {
        let writes: Vec<Write<'_>> = versions
            .iter()
            .map(|version| Write {
                version,
                includes: None,
            })
            .collect();
        self.write(&writes).await.map(drop)
    }

    /// Yjs: folds the updates appended since the last fold into the stored state now, so the
    /// row holds the whole document (a store that merges at once has nothing to do).
    async fn fold(&self, _docs: &[DocId]) -> StoreResult<()> {
        Ok(())
    }

    /// Opens connections ahead of the first flush; best effort.
    async fn warm(&self, _connections: usize) {}
}
