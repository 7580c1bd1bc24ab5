//! Redis as docroom's cache: `doc:{id}:temp`, `doc:{id}:lastSavedHash`, the `modifiedDocs` set
//! and `lock:{id}`, every key behind a configurable prefix.
//!
//! Only the cache supervisor calls this, so the breaker sees every success and failure. The
//! connection is made lazily: a Redis that is down at start must not stop docroom from serving.
//! `doc:{id}:stamp` holds a JSON version's stamp beside its content, so a save can refuse to
//! replace a later version (SPEC §6 "Versions").

mod heartbeat;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use async_trait::async_trait;

use super::redis_connect::RedisTarget;
use super::redis_scripts::{decode, encode, FILL, MARK_CLEAN, MARK_CLEAN_BATCH, SAVE};
use super::{Cache, CacheResult, ReplicaBeat, Written};
use crate::doc::{DocId, Stamp, Version};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
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
    pub ttl_secs: u64,
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
}

impl RedisCache {
    pub fn new(settings: CacheSettings) -> Self {
        RedisCache {
            settings: Arc::new(settings),
            link: Arc::new(Mutex::new(Link::default())),
        }
    }

    fn key_temp(&self, doc: &DocId) -> String {
        format!("{}doc:{}:temp", self.settings.key_prefix, doc)
    }

    fn key_hash(&self, doc: &DocId) -> String {
        format!("{}doc:{}:lastSavedHash", self.settings.key_prefix, doc)
    }

    fn key_lock(&self, doc: &DocId) -> String {
        format!("{}lock:{}", self.settings.key_prefix, doc)
    }

    fn key_stamp(&self, doc: &DocId) -> String {
        format!("{}doc:{}:stamp", self.settings.key_prefix, doc)
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

    fn keys(&self, doc: &DocId) -> [String; 3] {
        [self.key_temp(doc), self.key_hash(doc), self.key_stamp(doc)]
    }

    /// Runs `script` with a document's keys (temp, hash, stamp, modifiedDocs) and the version's
    /// fields (content, hash, stamp, ttl, id, kind).
    async fn write(&self, script: &redis::Script, v: &Version) -> CacheResult<bool> {
        let mut conn = self.connection().await?;
        let [temp, hash, stamp] = self.keys(&v.doc);
        let mut invocation = script.key(temp);
        invocation
            .key(hash)
            .key(stamp)
            .key(self.key_modified())
            .arg(&encode(v)[..])
            .arg(&v.hash)
            .arg(v.stamp.as_ref().map(Stamp::encode).unwrap_or_default())
            .arg(self.settings.ttl_secs)
            .arg(v.doc.as_str())
            .arg(v.kind.as_str());
        let written: i64 = self.bounded(invocation.invoke_async(&mut conn)).await??;
        Ok(written == 1)
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

    async fn save(&self, v: &Version) -> CacheResult<Written> {
        Ok(match self.write(&SAVE, v).await? {
            true => Written::Stored,
            false => Written::Superseded,
        })
    }

    async fn fill(&self, v: &Version) -> CacheResult<()> {
        self.write(&FILL, v).await.map(drop)
    }

    async fn load(&self, doc: &DocId) -> CacheResult<Option<Version>> {
        let mut conn = self.connection().await?;
        let (raw, stamp): (Option<Vec<u8>>, Option<String>) = self
            .bounded(
                redis::cmd("MGET")
                    .arg(self.key_temp(doc))
                    .arg(self.key_stamp(doc))
                    .query_async(&mut conn),
            )
            .await??;
        Ok(raw.map(|raw| decode(doc.clone(), raw, stamp)))
    }

    async fn dirty_docs(&self) -> CacheResult<Vec<DocId>> {
        let mut conn = self.connection().await?;
        let ids: Vec<String> = self.bounded(conn.smembers(self.key_modified())).await??;
        Ok(ids.iter().filter_map(|id| DocId::parse(id).ok()).collect())
    }

    async fn load_dirty(&self, docs: &[DocId]) -> CacheResult<Vec<Option<Version>>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        let ttl = self.settings.ttl_secs as i64;
        let mut pipe = redis::pipe();
        for doc in docs {
            let [temp, hash, stamp] = self.keys(doc);
            pipe.get(&temp).get(&stamp);
            for key in [temp, hash, stamp] {
                pipe.expire(key, ttl).ignore();
            }
        }
        let raws: Vec<Option<Vec<u8>>> = self.bounded(pipe.query_async(&mut conn)).await??;
        let mut raws = raws.into_iter();
        Ok(docs
            .iter()
            .map(|doc| {
                let raw = raws.next().flatten();
                let stamp = raws.next().flatten();
                let stamp = stamp.and_then(|s| String::from_utf8(s).ok());
                raw.map(|raw| decode(doc.clone(), raw, stamp))
            })
            .collect())
    }

    async fn touch(&self, docs: &[DocId]) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        let ttl = self.settings.ttl_secs as i64;
        let mut pipe = redis::pipe();
        for doc in docs {
            for key in self.keys(doc) {
                pipe.expire(key, ttl).ignore();
            }
        }
        self.bounded(pipe.query_async::<()>(&mut conn)).await??;
        Ok(())
    }

    async fn mark_clean(&self, done: &[(DocId, String)]) -> CacheResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        for batch in done.chunks(MARK_CLEAN_BATCH) {
            let eval = pipe.cmd("EVAL").arg(MARK_CLEAN).arg(batch.len() + 1);
            for (doc, _) in batch {
                eval.arg(self.key_hash(doc));
            }
            eval.arg(self.key_modified());
            for (_, hash) in batch {
                eval.arg(hash);
            }
            for (doc, _) in batch {
                eval.arg(doc.as_str());
            }
            eval.ignore();
        }
        self.bounded(pipe.query_async::<()>(&mut conn)).await??;
        Ok(())
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
            ttl_secs: 125,
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
