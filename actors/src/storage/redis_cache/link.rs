//! The shared connection to Redis: made on first use (one attempt at a time, awaited by every
//! caller), retried with backoff between attempts, and every call bounded in time.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheError, CacheResult, CacheSettings, RedisCache};

/// The connection, the attempt to make one in progress, or when the next attempt is allowed.
#[derive(Default)]
pub(super) struct Link {
    conn: Option<ConnectionManager>,
    attempt: Option<Attempt>,
    failed_attempts: u32,
    retry_at: Option<Instant>,
}

/// One connection attempt, run as a task of its own and awaited by every caller that needs it.
type Attempt = Shared<BoxFuture<'static, Result<ConnectionManager, String>>>;

impl RedisCache {
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
    pub(super) async fn connection(&self) -> CacheResult<ConnectionManager> {
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
    pub(super) async fn connect(&self) -> Result<ConnectionManager, String> {
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

    /// A command on the shared connection, bounded (see [`RedisCache::bounded`]). A `READONLY`
    /// answer means the node this connection reaches is a replica now (a failover demoted it,
    /// and it lives on): the connection is dropped, so the next call makes a new one and asks
    /// the sentinels again where the primary is. Counting the failures alone is not enough:
    /// reads keep succeeding on a replica and would keep the breaker from ever opening.
    pub(super) async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> CacheResult<T> {
        let res = self.bounded(fut).await?;
        if let Err(e) = &res {
            if e.code() == Some("READONLY") {
                self.link().conn = None;
            }
        }
        Ok(res?)
    }

    /// Bounds any call so a stalled Redis (SIGSTOP, cut network) is a failure, not a hang.
    pub(super) async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> CacheResult<T> {
        let limit = self.settings.response_timeout + self.settings.connection_timeout;
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| CacheError::Timeout(limit))
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
    use crate::storage::redis_connect::RedisTarget;

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
            mark_changes: false,
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
