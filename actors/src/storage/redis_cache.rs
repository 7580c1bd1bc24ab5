//! Redis as docroom's cache: `doc:{id}:temp`, `doc:{id}:lastSavedHash`, the `modifiedDocs` set
//! and `lock:{id}`, every key behind a configurable prefix.
//!
//! Only the cache supervisor calls this, so the breaker sees every success and failure. The
//! connection is made lazily: a Redis that is down at start must not stop docroom from serving.
//! The log reader's reads of the document logs are in `streams`, the document channels (events,
//! the listening connection) in `channels`, a flush's claim and reads and the decoding of a
//! room's load in `documents`, heartbeats in `heartbeat`. `doc:{id}:stamp` holds a JSON
//! version's stamp beside its content, so a save can refuse to replace a later version (SPEC §6
//! "Versions").

mod channels;
mod documents;
mod heartbeat;
mod streams;
use documents::ClaimRead;
use streams::Side;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use async_trait::async_trait;

use super::redis_connect::RedisTarget;
use super::redis_scripts::{encode, BATCH, COMMIT, FILL, KEEP, LOAD, SAVE};
use super::{Cache, CacheResult, Cached, Claimed, Commit, Listener, ReplicaBeat, Saved, Written};
use crate::doc::{DocId, Stamp, Version};
use crate::log::notice::CARRY_MAX_BYTES;
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
}

/// The connection, the attempt to make one in progress, or when the next attempt is allowed.
#[derive(Default)]
struct Link {
    conn: Option<ConnectionManager>,
    attempt: Option<Attempt>,
    failed_attempts: u32,
    retry_at: Option<Instant>,
}

/// One connection attempt, run as a task of its own and awaited by every caller that needs it.
type Attempt = Shared<BoxFuture<'static, Result<ConnectionManager, String>>>;

/// Cloning is shallow: clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisCache {
    settings: Arc<CacheSettings>,
    link: Arc<Mutex<Link>>,
    /// The log reader's connection for its reads (see [`RedisCache::side_connection`]).
    reader: Side,
    /// The flush's connection for its claims and reads.
    bulk: Side,
}

impl RedisCache {
    pub fn new(settings: CacheSettings) -> Self {
        RedisCache {
            settings: Arc::new(settings),
            link: Arc::new(Mutex::new(Link::default())),
            reader: Side::default(),
            bulk: Side::default(),
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

    /// An invocation of a script that takes, per document, its keys and its flush claim
    /// (CLAIM, KEEP).
    fn per_document<'a>(
        &self,
        script: &'a redis::Script,
        docs: &[DocId],
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for doc in docs {
            for key in self.keys(doc) {
                invocation.key(key);
            }
            invocation.key(self.key(doc, "flushing"));
        }
        invocation
    }

    fn key_modified(&self) -> String {
        format!("{}modifiedDocs", self.settings.key_prefix)
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        self.link
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shared connection. Making the first one is retried with exponential backoff plus
    /// jitter; between attempts callers fail at once instead of each waiting for a timeout.
    /// (Once made, `ConnectionManager` reconnects by itself with the same backoff settings.)
    ///
    /// The attempt runs as a task of its own and no lock is held while it is awaited: a caller
    /// whose future stops being polled (an actor paused by `ctx.wait`) can never hold up
    /// another caller, and the connection's driver lives on the thread that first asked.
    async fn connection(&self) -> CacheResult<ConnectionManager> {
        let attempt = {
            let mut link = self.link();
            if let Some(conn) = link.conn.as_ref() {
                return Ok(conn.clone());
            }
            let now = Instant::now();
            if let Some(at) = link.retry_at.filter(|at| *at > now) {
                return Err(CacheError::Backoff(at - now));
            }
            match &link.attempt {
                Some(attempt) => attempt.clone(),
                None => {
                    let this = self.clone();
                    let task = tokio::spawn(async move { this.connect().await });
                    let attempt = async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("connection attempt failed: {e}")))
                    }
                    .boxed()
                    .shared();
                    link.attempt = Some(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await.map_err(CacheError::Unreachable)
    }

    /// One attempt to make a connection, whatever backoff the link is in; records the outcome
    /// in the link, where a connection made replaces the old one. The breaker's probe calls it
    /// directly: it must try Redis for real, not fail on a backoff left from the outage.
    async fn connect(&self) -> Result<ConnectionManager, String> {
        let s = &self.settings;
        let made = async {
            // With sentinels, this asks them for the primary: after a failover the next
            // attempt (the breaker's probe) finds the promoted replica.
            let client = self.bounded(s.target.client()).await??;
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(s.response_timeout))
                .set_connection_timeout(Some(s.connection_timeout))
                .set_min_delay(s.retry_base)
                .set_max_delay(s.retry_max)
                .set_exponent_base(2.0)
                .set_number_of_retries(2);
            self.bounded(ConnectionManager::new_with_config(client, config))
                .await
                .and_then(|r| r.map_err(CacheError::from))
        }
        .await;
        let mut link = self.link();
        link.attempt = None;
        match made {
            Ok(conn) => {
                link.conn = Some(conn.clone());
                link.failed_attempts = 0;
                link.retry_at = None;
                Ok(conn)
            }
            Err(e) => {
                link.failed_attempts = link.failed_attempts.saturating_add(1);
                link.retry_at = Some(Instant::now() + backoff(link.failed_attempts, s));
                Err(e.to_string())
            }
        }
    }

    /// Bounds any call so a stalled Redis (SIGSTOP, cut network) is a failure, not a hang.
    async fn bounded<T>(&self, fut: impl std::future::Future<Output = T>) -> CacheResult<T> {
        let limit = self.settings.response_timeout + self.settings.connection_timeout;
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| CacheError::Timeout(limit))
    }

    /// Runs `script` (SAVE or FILL) with a document's keys and the version's fields; `content`
    /// is what goes into `doc:{id}:temp` (FILL) or the log (SAVE: the version as it is).
    /// `notice` (SAVE) is where the append's notice goes, and its `head` key.
    async fn write(
        &self,
        script: &redis::Script,
        v: &Version,
        content: &[u8],
        notice: Option<(String, String)>,
    ) -> CacheResult<redis::Value> {
        let mut conn = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        for key in self.keys(&v.doc) {
            invocation.key(key);
        }
        invocation.key(self.key_modified());
        if let Some((head, _)) = &notice {
            invocation.key(head);
        }
        invocation
            .arg(content)
            .arg(&v.hash)
            .arg(v.stamp.as_ref().map(Stamp::encode).unwrap_or_default())
            .arg(self.settings.ttl_secs)
            .arg(v.doc.as_str())
            .arg(v.kind.as_str())
            .arg(&*self.settings.replica);
        if let Some((_, channel)) = notice {
            invocation.arg(channel).arg(CARRY_MAX_BYTES);
        }
        Ok(self.bounded(invocation.invoke_async(&mut conn)).await??)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn ping(&self) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        self.bounded(redis::cmd("PING").query_async::<String>(&mut conn))
            .await??;
        Ok(())
    }

    async fn probe(&self) -> CacheResult<()> {
        let mut conn = self.connect().await.map_err(CacheError::Unreachable)?;
        self.bounded(redis::cmd("PING").query_async::<String>(&mut conn))
            .await??;
        Ok(())
    }

    async fn save(&self, v: &Version) -> CacheResult<Saved> {
        let (code, id): (i64, String) = redis::from_redis_value(
            self.write(
                &SAVE,
                v,
                &v.content,
                Some((self.key(&v.doc, "head"), self.channel(&v.doc))),
            )
            .await?,
        )?;
        let written = match code {
            1 => Written::Stored,
            2 => Written::Duplicate,
            _ => Written::Superseded,
        };
        Ok(Saved {
            written,
            position: LogPos::parse(&id),
        })
    }

    async fn fill(&self, v: &Version) -> CacheResult<()> {
        self.write(&FILL, v, &encode(v), None).await.map(drop)
    }

    async fn load(&self, doc: &DocId) -> CacheResult<Option<Cached>> {
        let mut conn = self.connection().await?;
        let [temp, _, stamp, pos, log, ..] = self.keys(doc);
        let mut invocation = LOAD.prepare_invoke();
        for key in [temp, stamp, pos, log, self.key_modified()] {
            invocation.key(key);
        }
        invocation.arg(doc.as_str());
        let raw: redis::Value = self.bounded(invocation.invoke_async(&mut conn)).await??;
        documents::parse_loaded(doc, raw)
    }

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
            let mut invocation = self.per_document(&KEEP, batch);
            invocation
                .arg(&*self.settings.replica)
                .arg(self.settings.ttl_secs);
            self.bounded(invocation.invoke_async::<i64>(&mut conn))
                .await??;
        }
        Ok(())
    }

    async fn committed(&self, done: &[Commit]) -> CacheResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        for batch in done.chunks(BATCH) {
            let mut invocation = COMMIT.prepare_invoke();
            for c in batch {
                let [temp, hash, _, pos, log, persisted, tail] = self.keys(&c.doc);
                let (flushing, trimmed) =
                    (self.key(&c.doc, "flushing"), self.key(&c.doc, "trimmed"));
                for key in [temp, hash, pos, log, persisted, tail, flushing, trimmed] {
                    invocation.key(key);
                }
            }
            invocation
                .key(self.key_modified())
                .arg(&*self.settings.replica)
                .arg(self.settings.ttl_secs)
                .arg(self.settings.log_retention_ms);
            for c in batch {
                let position = c.position.map(|p| p.to_string()).unwrap_or_default();
                let compacted = c.compacted.as_ref();
                invocation
                    .arg(c.doc.as_str())
                    .arg(&c.hash)
                    .arg(position)
                    .arg(
                        compacted
                            .map(|v| encode(v).into_owned())
                            .unwrap_or_default(),
                    )
                    .arg(compacted.map(|v| v.hash.as_str()).unwrap_or_default())
                    .arg(c.folded);
            }
            self.bounded(invocation.invoke_async::<i64>(&mut conn))
                .await??;
        }
        Ok(())
    }

    async fn read_logs(&self, from: &[(DocId, LogPos)]) -> CacheResult<Vec<(DocId, LogRead)>> {
        self.read_streams(from).await
    }

    async fn publish(&self, doc: &DocId, kind: EventKind, payload: &[u8]) -> CacheResult<()> {
        self.publish_event(doc, kind, payload).await
    }

    async fn listen(&self) -> CacheResult<Listener> {
        self.listener().await
    }

    async fn try_lock(&self, doc: &DocId) -> CacheResult<bool> {
        let mut conn = self.connection().await?;
        let got: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(self.key_lock(doc))
                    .arg("1")
                    .arg("NX")
                    .arg("EX")
                    .arg(self.settings.lock_ttl_secs)
                    .query_async(&mut conn),
            )
            .await??;
        Ok(got.is_some())
    }

    async fn is_locked(&self, doc: &DocId) -> CacheResult<bool> {
        let mut conn = self.connection().await?;
        Ok(self.bounded(conn.exists(self.key_lock(doc))).await??)
    }

    async fn unlock(&self, doc: &DocId) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        self.bounded(conn.del::<_, ()>(self.key_lock(doc)))
            .await??;
        Ok(())
    }

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

/// `retry_base * 2^(attempt-1)`, capped at `retry_max`, plus `0..=retry_jitter`.
fn backoff(attempt: u32, s: &CacheSettings) -> Duration {
    let exp = s
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
    let jitter_ms = s.retry_jitter.as_millis() as u64;
    exp.min(s.retry_max) + Duration::from_millis(rand::random_range(0..=jitter_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_plus_jitter() {
        let ms = Duration::from_millis;
        let s = CacheSettings {
            target: RedisTarget::plain(""),
            key_prefix: String::new(),
            replica: "r".into(),
            ttl_secs: 125,
            claim_ms: 30_000,
            log_retention_ms: 10_000,
            lock_ttl_secs: 10,
            response_timeout: ms(500),
            connection_timeout: ms(1000),
            retry_base: ms(100),
            retry_max: ms(10_000),
            retry_jitter: ms(100),
        };
        for (attempt, base) in [(1, 100), (2, 200), (3, 400), (8, 10_000), (40, 10_000)] {
            let d = backoff(attempt, &s);
            assert!(
                d >= ms(base) && d <= ms(base + 100),
                "attempt {attempt}: {d:?}"
            );
        }
    }
}
