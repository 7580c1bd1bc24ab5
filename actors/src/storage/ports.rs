//! Redis access as ports named for what they do. [`RedisCache`](super::RedisCache) and the
//! in-memory model ([`super::memory::MemoryCache`]) implement every one; [`Cache`] is all of
//! them, for the owner that holds the one connection and reports each outcome to the breaker.

use std::time::Duration;

use async_trait::async_trait;

use super::{CacheResult, Cached, Claimed, Commit, Listener, ReplicaBeat, Saved};
use crate::doc::{DocId, Version};
use crate::log::{EventKind, LogPos, LogRead};

/// The connection to Redis: the health check and the breaker's half-open probe.
#[async_trait]
pub trait Health: Send + Sync + 'static {
    /// One round trip on the current connection: the health check.
    async fn ping(&self) -> CacheResult<()>;

    /// A real attempt on a fresh connection (the breaker's half-open probe): whatever backoff
    /// the connection was in is skipped, and the old connection is replaced if this one works.
    async fn probe(&self) -> CacheResult<()>;
}

/// The document log (SPEC §6, §8): appends (saves), a room's read, the log reader's reads, the
/// document channels (events published, a listening connection).
#[async_trait]
pub trait DocumentLog: Send + Sync + 'static {
    /// Appends `v` to the document's log (a Yjs update, or JSON content that then is the cached
    /// content), marks it dirty, refreshes the TTLs and publishes a notice of the append on the
    /// document's channel, atomically. A JSON version whose stamp
    /// is not larger than the cached one's, or whose hash is the last saved one, is not written.
    async fn save(&self, v: &Version) -> CacheResult<Saved>;

    /// Moves a journaled version into the log: as [`DocumentLog::save`], except that JSON
    /// content equal to the cached one under a larger stamp is written, not a duplicate. The
    /// journaled version was acknowledged under its stamp, which orders it after the cached
    /// one: it must take the cached one's place, or a version moved in later with a stamp
    /// between the two would win in Redis and lose in PostgreSQL (SPEC §1.4). The entry names
    /// no replica ([`crate::log::RESTORED`]): every room, this replica's too, is handed it.
    async fn restore(&self, v: &Version) -> CacheResult<Saved>;

    /// The compacted content and the log after it, combined; `None` if neither exists.
    async fn load(&self, doc: &DocId) -> CacheResult<Option<Cached>>;

    /// Entries appended to each given document's log after its position, at most
    /// [`READ_COUNT`](crate::log::READ_COUNT) per document, without waiting, and whether some
    /// after the position were trimmed already: the log reader's call, on a connection of its
    /// own. Documents with nothing new (and nothing missed) are left out.
    async fn read_logs(&self, from: &[(DocId, LogPos)]) -> CacheResult<Vec<(DocId, LogRead)>>;

    /// Publishes an event (awareness, stateless, a relayed Yjs update) on the document's
    /// channel for the other replicas' rooms: it reaches whoever listens now, and is kept
    /// nowhere.
    async fn publish(&self, doc: &DocId, kind: EventKind, payload: &[u8]) -> CacheResult<()>;

    /// Whether a replica other than this one may follow some document now: `false` only while
    /// a recent save found none, so that nobody would hear of an append sooner for its going
    /// out sooner (the supervisor's inbox then lingers longer).
    fn others_may_follow(&self) -> bool {
        true
    }

    /// A connection of its own listening to document channels (`doc:{id}:events`): the notices
    /// saves publish, and the events. It subscribes to nothing yet.
    async fn listen(&self) -> CacheResult<Listener>;
}

/// Flush claims: which documents wait for PostgreSQL (`modifiedDocs`), one replica's claim and
/// read of what PostgreSQL lacks, and the commit of what PostgreSQL recorded.
#[async_trait]
pub trait FlushClaims: Send + Sync + 'static {
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
    /// Answers the documents whose commit named an incarnation of the log that is gone (Redis
    /// restarted empty since the flush read it): Redis may lack what PostgreSQL took of them.
    async fn committed(&self, done: &[Commit]) -> CacheResult<Vec<DocId>>;
}

/// The cache fill from PostgreSQL under `lock:{id}`: one replica fills a document at a time, and
/// a fill never replaces what a save wrote.
#[async_trait]
pub trait FillLock: Send + Sync + 'static {
    /// Puts content PostgreSQL already holds into the cache, only if the cache holds nothing
    /// for the document and it is not dirty: a fill never replaces what a save wrote.
    async fn fill(&self, v: &Version) -> CacheResult<()>;

    /// `lock:{id}` with `NX EX`: true if this caller fills the cache.
    async fn try_lock(&self, doc: &DocId) -> CacheResult<bool>;

    async fn is_locked(&self, doc: &DocId) -> CacheResult<bool>;

    async fn unlock(&self, doc: &DocId) -> CacheResult<()>;
}

/// Replica heartbeats (`replica:{id}`): who is alive, for `GET /admin/replicas`.
#[async_trait]
pub trait Heartbeats: Send + Sync + 'static {
    /// Writes `replica:{id}` with `beat`, expiring after `ttl` unless written again.
    async fn beat(&self, beat: &ReplicaBeat, ttl: Duration) -> CacheResult<()>;

    /// Every heartbeat that has not expired: the live replicas (SCAN, never KEYS).
    async fn replicas(&self) -> CacheResult<Vec<ReplicaBeat>>;

    /// Deletes `replica:{id}`: that replica is leaving.
    async fn retire(&self, replica: &str) -> CacheResult<()>;
}

/// The shared cache (SPEC §6 keys `doc:{id}:temp`, `doc:{id}:lastSavedHash`, `modifiedDocs`,
/// `lock:{id}`): every port. Only the cache supervisor calls it, so the breaker sees every
/// outcome.
pub trait Cache: Health + DocumentLog + FlushClaims + FillLock + Heartbeats {}

impl<T: Health + DocumentLog + FlushClaims + FillLock + Heartbeats> Cache for T {}
