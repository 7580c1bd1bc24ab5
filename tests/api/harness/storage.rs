//! Looking at Redis and PostgreSQL directly, not through the service's answers, and cleaning up
//! exactly what one test created there.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde_json::Value;

use super::app::{TestApp, SHARED_PG_ADDR};
use super::{ensure, eventually};

/// One row of `documents`, as the test reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct PgDoc {
    pub kind: String,
    pub content: Option<Value>,
    pub content_hash: String,
    /// `updated_at` as PostgreSQL prints it: compared, never parsed.
    pub updated_at: String,
}

impl TestApp {
    /// The full Redis key for `suffix` (`doc:x:temp` → `t1234:doc:x:temp`).
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    pub async fn redis(&self) -> MultiplexedConnection {
        redis_connect(&self.redis_check_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.redis_check_url))
    }

    /// A subscription to the Redis channel `suffix` (behind the key prefix): each message's
    /// payload, as it is published.
    pub async fn redis_listen(
        &self,
        suffix: &str,
    ) -> futures_util::stream::BoxStream<'static, Vec<u8>> {
        use futures_util::StreamExt;
        let client = redis::Client::open(self.redis_check_url.as_str()).expect("redis url");
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .unwrap_or_else(|e| panic!("pub/sub connection to {}: {e}", self.redis_check_url));
        pubsub
            .subscribe(self.key(suffix))
            .await
            .unwrap_or_else(|e| panic!("SUBSCRIBE {suffix}: {e}"));
        pubsub
            .into_on_message()
            .map(|m| m.get_payload_bytes().to_vec())
            .boxed()
    }

    pub async fn redis_get(&self, suffix: &str) -> Option<String> {
        let key = self.key(suffix);
        redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.redis().await)
            .await
            .unwrap_or_else(|e| panic!("GET {key}: {e}"))
    }

    /// Seconds to live: -2 when the key is missing, -1 when it has no expiry.
    pub async fn redis_ttl(&self, suffix: &str) -> i64 {
        self.redis_int("TTL", suffix).await
    }

    /// Milliseconds to live: -2 when the key is missing, -1 when it has no expiry.
    pub async fn redis_pttl(&self, suffix: &str) -> i64 {
        self.redis_int("PTTL", suffix).await
    }

    /// Members of a set, sorted.
    pub async fn redis_smembers(&self, suffix: &str) -> Vec<String> {
        let key = self.key(suffix);
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&key)
            .query_async(&mut self.redis().await)
            .await
            .unwrap_or_else(|e| panic!("SMEMBERS {key}: {e}"));
        members.sort();
        members
    }

    /// Whether `doc` is in `modifiedDocs`.
    pub async fn is_modified(&self, doc: &str) -> bool {
        self.redis_smembers("modifiedDocs")
            .await
            .iter()
            .any(|d| d == doc)
    }

    /// Every key of this test, without the prefix, sorted.
    pub async fn redis_keys(&self) -> Vec<String> {
        let keys = scan_prefix(&mut self.redis().await, &self.prefix)
            .await
            .expect("SCAN the test's keys");
        let mut keys: Vec<String> = keys
            .into_iter()
            .map(|k| k[self.prefix.len()..].to_owned())
            .collect();
        keys.sort();
        keys
    }

    /// Empties this test's part of Redis (as if Redis had lost its data); returns how many keys.
    pub async fn redis_delete_all(&self) -> usize {
        delete_keys(&self.redis_check_url, &self.prefix)
            .await
            .expect("delete the test's keys")
    }

    async fn redis_int(&self, command: &str, suffix: &str) -> i64 {
        let key = self.key(suffix);
        redis::cmd(command)
            .arg(&key)
            .query_async(&mut self.redis().await)
            .await
            .unwrap_or_else(|e| panic!("{command} {key}: {e}"))
    }

    /// A fresh connection to this test's database, straight to the shared server.
    pub async fn pg(&self) -> tokio_postgres::Client {
        pg_connect(&self.db_name)
            .await
            .unwrap_or_else(|e| panic!("connect to database {}: {e}", self.db_name))
    }

    pub async fn pg_row(&self, doc: &str) -> Option<PgDoc> {
        let row = self
            .pg()
            .await
            .query_opt(
                "SELECT kind, content, content_hash, updated_at::text FROM documents \
                 WHERE doc_id = $1",
                &[&doc],
            )
            .await
            .unwrap_or_else(|e| panic!("read document {doc}: {e}"))?;
        Some(PgDoc {
            kind: row.get(0),
            content: row.get(1),
            content_hash: row.get(2),
            updated_at: row.get(3),
        })
    }

    /// The JSON content PostgreSQL holds for `doc`, if any.
    pub async fn pg_content(&self, doc: &str) -> Option<Value> {
        self.pg_row(doc).await.and_then(|row| row.content)
    }

    /// Waits (at most `within`) until PostgreSQL holds `content` for `doc`.
    pub async fn await_pg_content(&self, doc: &str, content: &Value, within: Duration) {
        eventually(
            within,
            &format!("PostgreSQL to hold {doc}'s content"),
            async || {
                let held = self.pg_content(doc).await;
                ensure!(held.as_ref() == Some(content), "PostgreSQL holds {held:?}");
                Ok(())
            },
        )
        .await
    }

    /// The Yjs state PostgreSQL holds for `doc`: the row's state merged with the updates
    /// flushes appended after it (`document_updates`, SPEC §6), as docroom loads it.
    pub async fn pg_yjs_state(&self, doc: &str) -> Option<Vec<u8>> {
        let row = self
            .pg()
            .await
            .query_opt(
                "SELECT state, ARRAY(SELECT update FROM document_updates u \
                 WHERE u.doc_id = d.doc_id ORDER BY seq) FROM documents d \
                 WHERE doc_id = $1 AND kind = 'yjs'",
                &[&doc],
            )
            .await
            .unwrap_or_else(|e| panic!("read document {doc}: {e}"))?;
        let state: Vec<u8> = row.get::<_, Option<Vec<u8>>>(0)?;
        let updates: Vec<Vec<u8>> = row.get(1);
        if updates.is_empty() {
            return Some(state);
        }
        let parts: Vec<&[u8]> = std::iter::once(&state[..])
            .chain(updates.iter().map(|u| &u[..]))
            .collect();
        Some(yrs::merge_updates_v1(&parts).expect("stored updates merge"))
    }
}

pub async fn redis_connect(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

async fn scan_prefix(
    con: &mut MultiplexedConnection,
    prefix: &str,
) -> redis::RedisResult<Vec<String>> {
    // The prefix is `t<hex>:`, so it holds no glob characters to escape.
    let pattern = format!("{prefix}*");
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Deletes every key under `prefix` (SCAN + DEL: never FLUSHALL, never another test's keys).
pub async fn delete_keys(url: &str, prefix: &str) -> redis::RedisResult<usize> {
    assert!(
        prefix.len() > 2 && prefix.starts_with('t'),
        "refusing to delete keys under {prefix:?}"
    );
    let mut con = redis_connect(url).await?;
    let keys = scan_prefix(&mut con, prefix).await?;
    for chunk in keys.chunks(500) {
        redis::cmd("DEL")
            .arg(chunk)
            .query_async::<()>(&mut con)
            .await?;
    }
    Ok(keys.len())
}

pub async fn pg_connect(db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!("postgres://postgres@{SHARED_PG_ADDR}/{db}");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Drops one test database, disconnecting whoever still uses it.
pub async fn drop_database(db: &str) -> Result<(), tokio_postgres::Error> {
    assert!(db.starts_with("docroom_t_"), "refusing to drop {db:?}");
    pg_connect("postgres")
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
        .await
}

/// docroom's own Redis client on the shared Redis, as replica `replica` with key prefix
/// `prefix`: for tests of what the scripts do inside Redis.
pub fn redis_cache(prefix: &str, replica: &str) -> docroom_actors::storage::RedisCache {
    use docroom_actors::storage::{CacheSettings, RedisCache, RedisTarget};
    RedisCache::new(CacheSettings::standalone(
        RedisTarget::plain(super::app::SHARED_REDIS_URL),
        prefix,
        replica,
    ))
}
