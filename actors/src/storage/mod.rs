//! The storage the actors drive: Redis, the shared, short-lived cache, behind ports named for
//! what they do ([`DocumentLog`], [`FlushClaims`], [`FillLock`], [`Heartbeats`], [`Health`];
//! [`Cache`] is all of them), and PostgreSQL, the durable store, behind [`DocStore`]. The local
//! journal lives in [`crate::fallback`].
//!
//! The real implementations are [`RedisCache`] and [`PgStore`]; [`memory`] has in-memory ones
//! for unit tests, which can be told to fail, pause or slow down, so the races between saves,
//! flushes and faults can be played out deterministically in process.

pub mod memory;
mod pending;
mod ports;
mod postgres;
mod redis_cache;
mod redis_connect;
mod redis_scripts;
pub mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

use crate::doc::{DocId, Version};
use crate::log::{Heard, Incarnation, LogMark, LogPos};

pub use ports::{Cache, DocumentLog, FillLock, FlushClaims, Health, Heartbeats};
pub use postgres::{Held, PgStore, StoreError};
pub use redis_cache::{CacheError, CacheSettings, ChangeMark, RedisCache};
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
    /// Yjs: bytes of the log entries after `persisted` (what `version` merges). A commit that
    /// records them adds them to the bytes waiting for a compaction (`doc:{id}:tail`).
    pub added: u64,
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
    /// The stamp of the content written (JSON): equal content under a larger stamp is a later
    /// version, which this commit does not settle.
    pub stamp: Option<crate::doc::Stamp>,
    pub recorded: Option<LogMark>,
    /// The last log entry the flush read (when the version was read from the cache): where a
    /// compaction's content ends. Says nothing of what PostgreSQL holds.
    pub read: Option<LogMark>,
    pub compacted: Option<Version>,
    pub folded: u64,
    /// Bytes of Yjs log entries this commit records that PostgreSQL had not (see
    /// [`Pending::added`]): counted towards the next compaction once `recorded` is taken.
    pub added: u64,
    /// What PostgreSQL holds instead of the content written (JSON that lost to a larger
    /// stamp, see [`StoreAnswer::kept`]): Redis and the rooms take it, or they would stay on the
    /// older content PostgreSQL refused.
    pub kept: Option<Version>,
}

impl Commit {
    /// A commit of `v` written whole (the ledger's, the journal's): its hash and stamp.
    pub fn written(v: &Version) -> Commit {
        Commit {
            stamp: v.stamp.clone(),
            ..Commit::of(v.doc.clone(), v.hash.clone())
        }
    }

    /// This write's commit as PostgreSQL answered it.
    pub fn answered(&self, written: StoreAnswer) -> Commit {
        Commit {
            recorded: written.recorded,
            kept: written.kept,
            ..self.clone()
        }
    }

    /// A commit of content that was not read from the cache (the ledger's, the journal's).
    pub fn of(doc: DocId, hash: String) -> Commit {
        Commit {
            doc,
            hash,
            stamp: None,
            recorded: None,
            read: None,
            compacted: None,
            folded: 0,
            added: 0,
            kept: None,
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

    /// Renews this replica's place among the followers of the documents it is `following`
    /// (which a subscription registers, and which lapses unless renewed). A failed renewal
    /// costs nothing while the place has not lapsed; after that, other replicas' entries reach
    /// this one at the next poll instead of by notice.
    async fn renew(&self, following: &[DocId]) -> CacheResult<()>;
}

/// One document's write: its content, and the log point that content includes when it was
/// read from the log (a flush's), which PostgreSQL records in the same transaction.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    pub version: &'a Version,
    pub includes: Option<LogMark>,
}

/// What PostgreSQL answered for one write (see [`DocStore::write`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreAnswer {
    /// The log point the row records after the transaction, if of the write's incarnation.
    pub recorded: Option<LogMark>,
    /// The row's content when it is not what was written: JSON under a larger stamp, which
    /// the write lost to.
    pub kept: Option<Version>,
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
    /// forward (by incarnation, then position). Answers, per write, the point recorded after
    /// the transaction if the write named one of the same incarnation (`None` otherwise: a
    /// later incarnation's flush recorded it, and this write's log is gone), and the content
    /// the row kept if the write lost to it.
    async fn write(&self, writes: &[Write<'_>]) -> StoreResult<Vec<StoreAnswer>>;

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
