//! Redis as docroom's cache: `doc:{id}:temp`, `doc:{id}:lastSavedHash`, the `modifiedDocs` set
//! and `lock:{id}`, every key behind a configurable prefix.
//!
//! Only the cache supervisor calls this, so the breaker sees every success and failure. The
//! connection is made lazily: a Redis that is down at start must not stop docroom from serving.
//! The log reader's reads of the document logs are in `streams`, the document channels (events,
//! the listening connection) in `channels`, a flush's claim and reads and the decoding of a
//! room's load in `documents`, heartbeats in `heartbeat`, the shared connection (made, retried
//! with backoff, every call bounded) in `link`. `doc:{id}:stamp` holds a JSON
//! version's stamp beside its content, so a save can refuse to replace a later version (SPEC §6
//! "Versions").

mod channels;
mod documents;
mod heartbeat;
mod link;
mod marks;
mod saves;
mod streams;
use documents::ClaimRead;
use link::Link;
pub use marks::ChangeMark;
use saves::Saves;
use streams::Side;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;

use async_trait::async_trait;

use super::redis_connect::RedisTarget;
use super::redis_scripts::{encode, BATCH, COMMIT, FILL, KEEP, LOAD};
use super::{
    CacheResult, Cached, Claimed, Commit, DocumentLog, FillLock, FlushClaims, Health, Heartbeats,
    Listener, ReplicaBeat, Saved,
};
use crate::doc::{DocId, Stamp, Version};
use crate::log::{EventKind, LogPos, LogRead};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer from redis: {0}")]
    Parse(#[from] redis::ParsingError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis unreachable, next connection attempt in {0:?}")]
    Backoff(Duration),
    #[error("{0}")]
    Unreachable(String),
}

#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// The URL, and the sentinels and CA that go with it.
    pub target: RedisTarget,
    pub key_prefix: String,
    /// This replica's name, on every log entry it appends and on its flush claims.
    pub replica: Arc<str>,
    pub ttl_secs: u64,
    /// How long a flush claim on a document holds if its replica never releases it.
    pub claim_ms: u64,
    /// Log entries younger than this are never trimmed (see `redis_scripts::COMMIT`).
    pub log_retention_ms: u64,
    pub lock_ttl_secs: u64,
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub retry_jitter: Duration,
    /// Every save also marks its document changed (`webhooks:changed`), in the same script:
    /// the webhooks' `document.changed` is then as durable as the change (see
    /// [`RedisCache::change_marks`]).
    pub mark_changes: bool,
}

impl CacheSettings {
    /// Settings for a program that drives the cache itself rather than through the service
    /// (whose settings come from `config/`): tests and benchmark clients. SPEC §7's TTL, no
    /// log retention, no change marks, two-second timeouts and short retries.
    pub fn standalone(target: RedisTarget, key_prefix: &str, replica: &str) -> CacheSettings {
        let ms = Duration::from_millis;
        CacheSettings {
            target,
            key_prefix: key_prefix.into(),
            replica: replica.into(),
            ttl_secs: 125,
            claim_ms: 30_000,
            log_retention_ms: 0,
            lock_ttl_secs: 10,
            response_timeout: ms(2000),
            connection_timeout: ms(2000),
            retry_base: ms(100),
            retry_max: ms(1000),
            retry_jitter: ms(10),
            mark_changes: false,
        }
    }
}

/// Cloning is shallow: clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisCache {
    settings: Arc<CacheSettings>,
    link: Arc<Mutex<Link>>,
    /// The log reader's connection for its reads (see [`RedisCache::side_connection`]).
    reader: Side,
    /// The flush's connection for its claims and reads.
    bulk: Side,
    /// Saves gathering for their call.
    saves: Arc<Saves>,
}

impl RedisCache {
    pub fn new(settings: CacheSettings) -> Self {
        RedisCache {
            settings: Arc::new(settings),
            link: Arc::new(Mutex::new(Link::default())),
            reader: Side::default(),
            bulk: Side::default(),
            saves: Arc::default(),
        }
    }

    fn key(&self, doc: &DocId, suffix: &str) -> String {
        format!("{}doc:{}:{}", self.settings.key_prefix, doc, suffix)
    }

    fn key_lock(&self, doc: &DocId) -> String {
        format!("{}lock:{}", self.settings.key_prefix, doc)
    }

    /// temp, lastSavedHash, stamp, pos, log, persisted, tail: what a save writes and a TTL
    /// refresh touches (see `redis_scripts`).
    fn keys(&self, doc: &DocId) -> [String; 7] {
        [
            "temp",
            "lastSavedHash",
            "stamp",
            "pos",
            "log",
            "persisted",
            "tail",
        ]
        .map(|k| self.key(doc, k))
    }

    fn key_modified(&self) -> String {
        format!("{}modifiedDocs", self.settings.key_prefix)
    }

    /// The log's incarnation (see [`crate::log::Incarnation`]).
    fn key_incarnation(&self) -> String {
        format!("{}incarnation", self.settings.key_prefix)
    }

    /// FILL: `content` into `doc:{id}:temp` of a document that is not dirty.
    async fn fill_temp(&self, v: &Version, content: &[u8]) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        let mut invocation = FILL.prepare_invoke();
        for key in self.keys(&v.doc) {
            invocation.key(key);
        }
        invocation.key(self.key_modified());
        invocation
            .arg(content)
            .arg(&v.hash)
            .arg(v.stamp.as_ref().map(Stamp::encode).unwrap_or_default())
            .arg(self.settings.ttl_secs)
            .arg(v.doc.as_str());
        self.call(invocation.invoke_async::<redis::Value>(&mut conn))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Health for RedisCache {
    async fn ping(&self) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        self.call(redis::cmd("PING").query_async::<String>(&mut conn))
            .await?;
        Ok(())
    }

    async fn probe(&self) -> CacheResult<()> {
        let mut conn = self.connect().await.map_err(CacheError::Unreachable)?;
        self.call(redis::cmd("PING").query_async::<String>(&mut conn))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl DocumentLog for RedisCache {
    async fn save(&self, v: &Version) -> CacheResult<Saved> {
        self.append(v, false).await
    }

    async fn restore(&self, v: &Version) -> CacheResult<Saved> {
        self.append(v, true).await
    }

    async fn load(&self, doc: &DocId) -> CacheResult<Option<Cached>> {
        let mut conn = self.connection().await?;
        let [temp, _, stamp, pos, log, ..] = self.keys(doc);
        let mut invocation = LOAD.prepare_invoke();
        for key in [temp, stamp, pos, log, self.key_modified()] {
            invocation.key(key);
        }
        invocation.arg(doc.as_str());
        let raw: redis::Value = self.call(invocation.invoke_async(&mut conn)).await?;
        documents::parse_loaded(doc, raw)
    }

    async fn read_logs(&self, from: &[(DocId, LogPos)]) -> CacheResult<Vec<(DocId, LogRead)>> {
        self.read_streams(from).await
    }

    async fn publish(&self, doc: &DocId, kind: EventKind, payload: &[u8]) -> CacheResult<()> {
        self.publish_event(doc, kind, payload).await
    }

    fn others_may_follow(&self) -> bool {
        !self.saves.alone()
    }

    async fn listen(&self) -> CacheResult<Listener> {
        self.listener().await
    }
}

#[async_trait]
impl FlushClaims for RedisCache {
    async fn dirty_docs(&self) -> CacheResult<Vec<DocId>> {
        let mut conn = self.connection().await?;
        let ids: Vec<String> = self.bounded(conn.smembers(self.key_modified())).await??;
        Ok(ids.iter().filter_map(|id| DocId::parse(id).ok()).collect())
    }

    async fn claim(&self, docs: &[DocId], fresh: Option<Duration>) -> CacheResult<Vec<Claimed>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let reads = self.claim_read(docs, fresh).await?;
        Ok(docs
            .iter()
            .zip(reads)
            .map(|(doc, read)| match read {
                ClaimRead::Busy => Claimed::Busy,
                ClaimRead::Fresh(persisted) => Claimed::Fresh { persisted },
                ClaimRead::Found(read) => match read.pending() {
                    Ok(Some(pending)) => Claimed::Found(Box::new(pending)),
                    Ok(None) => Claimed::Missing,
                    Err(e) => {
                        // Unmergeable log content: leave it for an operator, and say so.
                        tracing::error!(doc = %doc, error = %e, "cached content unreadable");
                        Claimed::Busy
                    }
                },
            })
            .collect())
    }

    async fn touch(&self, docs: &[DocId]) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        for batch in docs.chunks(BATCH) {
            let mut invocation = KEEP.prepare_invoke();
            invocation
                .arg(&*self.settings.replica)
                .arg(self.settings.ttl_secs)
                .arg(&self.settings.key_prefix);
            for doc in batch {
                invocation.arg(doc.as_str());
            }
            self.call(invocation.invoke_async::<i64>(&mut conn)).await?;
        }
        Ok(())
    }

    async fn committed(&self, done: &[Commit]) -> CacheResult<Vec<DocId>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.connection().await?;
        let calls = done
            .chunks(BATCH)
            .map(|batch| self.commit_batch(conn.clone(), batch));
        documents::in_flight(calls.collect()).await
    }
}

#[async_trait]
impl FillLock for RedisCache {
    async fn fill(&self, v: &Version) -> CacheResult<()> {
        self.fill_temp(v, &encode(v)).await
    }

    async fn try_lock(&self, doc: &DocId) -> CacheResult<bool> {
        let mut conn = self.connection().await?;
        let got: Option<String> = self
            .call(
                redis::cmd("SET")
                    .arg(self.key_lock(doc))
                    .arg("1")
                    .arg("NX")
                    .arg("EX")
                    .arg(self.settings.lock_ttl_secs)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(got.is_some())
    }

    async fn is_locked(&self, doc: &DocId) -> CacheResult<bool> {
        let mut conn = self.connection().await?;
        Ok(self.bounded(conn.exists(self.key_lock(doc))).await??)
    }

    async fn unlock(&self, doc: &DocId) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        self.call(conn.del::<_, ()>(self.key_lock(doc))).await
    }
}

#[async_trait]
impl Heartbeats for RedisCache {
    async fn beat(&self, beat: &ReplicaBeat, ttl: Duration) -> CacheResult<()> {
        self.write_beat(beat, ttl).await
    }

    async fn replicas(&self) -> CacheResult<Vec<ReplicaBeat>> {
        self.read_beats().await
    }

    async fn retire(&self, replica: &str) -> CacheResult<()> {
        self.delete_beat(replica).await
    }
}

impl RedisCache {
    /// One COMMIT call for `batch`; the documents whose commit named a log that is gone.
    async fn commit_batch(
        &self,
        mut conn: redis::aio::ConnectionManager,
        batch: &[Commit],
    ) -> CacheResult<Vec<DocId>> {
        let mut invocation = COMMIT.prepare_invoke();
        invocation
            .key(self.key_modified())
            .key(self.key_incarnation())
            .arg(&*self.settings.replica)
            .arg(self.settings.ttl_secs)
            .arg(self.settings.log_retention_ms)
            .arg(&self.settings.key_prefix);
        for c in batch {
            let text = |p: Option<LogPos>| p.map(|p| p.to_string()).unwrap_or_default();
            let incarnation = c.read.or(c.recorded).map(|m| m.incarnation.to_string());
            let compacted = c.compacted.as_ref();
            invocation
                .arg(c.doc.as_str())
                .arg(incarnation.unwrap_or_default())
                .arg(text(c.read.map(|m| m.position)))
                .arg(text(c.recorded.map(|m| m.position)))
                .arg(
                    compacted
                        .map(|v| encode(v).into_owned())
                        .unwrap_or_default(),
                )
                .arg(compacted.map(|v| v.hash.as_str()).unwrap_or_default())
                .arg(c.folded)
                .arg(c.added);
        }
        let gone: Vec<usize> = self.call(invocation.invoke_async(&mut conn)).await?;
        let named = gone
            .into_iter()
            .filter_map(|i| batch.get(i.checked_sub(1)?));
        Ok(named.map(|c| c.doc.clone()).collect())
    }
}
