//! The storage the actors drive, behind two small traits: [`Cache`] (Redis, the shared,
//! short-lived cache) and [`DocStore`] (PostgreSQL, the durable store). The local journal lives
//! in [`crate::fallback`].
//!
//! The real implementations are [`RedisCache`] and [`PgStore`]; [`memory`] has in-memory ones
//! for unit tests, which can be told to fail, pause or slow down, so the races between saves,
//! flushes and faults can be played out deterministically in process.

pub mod memory;
mod postgres;
mod redis_cache;
mod redis_connect;
mod redis_scripts;
pub mod tls;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::doc::{DocId, Version};

pub use postgres::{PgStore, StoreError};
pub use redis_cache::{CacheError, CacheSettings, RedisCache};
pub use redis_connect::{MemoryPolicy, RedisTarget, SentinelSettings};

pub type CacheResult<T> = Result<T, CacheError>;
pub type StoreResult<T> = Result<T, StoreError>;

/// What a cache write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The version is now the cached one.
    Stored,
    /// The cache already held a later version (a larger stamp, SPEC §6): nothing was written.
    /// Counts as stored: something at least as new is there.
    Superseded,
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

    /// Stores `v` as the document's cached content with the TTL and marks it dirty, atomically.
    /// A JSON version whose stamp is not larger than the cached one's is not written.
    async fn save(&self, v: &Version) -> CacheResult<Written>;

    /// Puts content PostgreSQL already holds into the cache, only if the cache holds nothing
    /// for the document and it is not dirty: a fill never replaces what a save wrote.
    async fn fill(&self, v: &Version) -> CacheResult<()>;

    async fn load(&self, doc: &DocId) -> CacheResult<Option<Version>>;

    /// Documents in `modifiedDocs`.
    async fn dirty_docs(&self) -> CacheResult<Vec<DocId>>;

    /// The cached content of `docs`, refreshing its TTL in the same round trip.
    async fn load_dirty(&self, docs: &[DocId]) -> CacheResult<Vec<Option<Version>>>;

    /// Refreshes the TTL of the cached entries of `docs`.
    async fn touch(&self, docs: &[DocId]) -> CacheResult<()>;

    /// PostgreSQL committed these versions: clear each from `modifiedDocs` unless a later save
    /// replaced it meanwhile.
    async fn mark_clean(&self, done: &[(DocId, String)]) -> CacheResult<()>;

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

/// The durable store (SPEC §6 table `documents`).
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    async fn load(&self, doc: &DocId) -> StoreResult<Option<Version>>;

    /// Writes `versions` (distinct documents) in one statement, under the version rule of SPEC
    /// §6: JSON content is replaced only by a larger stamp, Yjs content is merged. A version
    /// refused as older counts as committed.
    async fn upsert(&self, versions: &[Version]) -> StoreResult<()>;

    /// Opens connections ahead of the first flush; best effort.
    async fn warm(&self, _connections: usize) {}
}
