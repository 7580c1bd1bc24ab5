//! PostgreSQL as the durable store: the `documents` table (see `migrations/`).
//!
//! Every call is bounded by a timeout as well as the server-side `statement_timeout`, because a
//! cut network stalls a socket without closing it, and a connection that saw an error is dropped
//! instead of going back to the pool.

use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::doc::{canonical_json, DocId, Kind, Version};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres did not answer within {0:?}")]
    Timeout(Duration),
    #[error("stored row for {doc} is unreadable: {why}")]
    BadRow { doc: DocId, why: String },
    #[error("invalid database url: {0}")]
    Config(String),
}

/// Cloning is shallow (the pool is reference counted).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    timeout: Duration,
}

const UPSERT: &str = "
    INSERT INTO documents (doc_id, kind, content, state, content_hash, updated_at)
    SELECT d, k, c::jsonb, s, h, now()
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[]) AS t(d, k, c, s, h)
    ON CONFLICT (doc_id) DO UPDATE
       SET kind = excluded.kind, content = excluded.content, state = excluded.state,
           content_hash = excluded.content_hash, updated_at = excluded.updated_at
     WHERE documents.content_hash IS DISTINCT FROM excluded.content_hash";

impl PgStore {
    pub fn connect(url: &str, pool_size: usize, timeout: Duration) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Config(e.to_string()))?;
        config.connect_timeout(timeout);
        config.options(format!("-c statement_timeout={}", timeout.as_millis()));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(PgStore { pool, timeout })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes the pool: connections are dropped as they come back.
    pub fn close(&self) {
        self.pool.close();
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.bounded(self.pool.get())
            .await?
            .map_err(StoreError::from)
    }

    async fn bounded<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))
    }

    pub async fn load(&self, doc: &DocId) -> Result<Option<Version>, StoreError> {
        let client = self.client().await?;
        let result = self
            .bounded(client.query_opt(
                "SELECT kind, content, state FROM documents WHERE doc_id = $1",
                &[&doc.as_str()],
            ))
            .await
            .and_then(|r| r.map_err(StoreError::from));
        let row = match result {
            Ok(row) => row,
            Err(e) => {
                drop(Object::take(client));
                return Err(e);
            }
        };
        let Some(row) = row else { return Ok(None) };
        let bad = |why: &str| StoreError::BadRow {
            doc: doc.clone(),
            why: why.to_string(),
        };
        let kind: String = row.try_get(0)?;
        match Kind::parse(&kind).ok_or_else(|| bad("unknown kind"))? {
            Kind::Json => {
                let value: Option<serde_json::Value> = row.try_get(1)?;
                let value = value.ok_or_else(|| bad("json document without content"))?;
                let text = canonical_json(&value);
                Ok(Some(Version::new(
                    doc.clone(),
                    Kind::Json,
                    Bytes::from(text),
                )))
            }
            Kind::Yjs => {
                let state: Option<Vec<u8>> = row.try_get(2)?;
                let state = state.ok_or_else(|| bad("yjs document without state"))?;
                Ok(Some(Version::new(
                    doc.clone(),
                    Kind::Yjs,
                    Bytes::from(state),
                )))
            }
        }
    }

    /// Opens up to `n` pooled connections at once and prepares the upsert on each, so the first
    /// flush does not pay for connecting. Best effort: failures are left to the real calls.
    pub async fn warm(&self, n: usize) {
        let clients = futures_util::future::join_all((0..n).map(|_| async {
            let client = self.client().await.ok()?;
            self.bounded(client.prepare_cached(UPSERT))
                .await
                .ok()?
                .ok()?;
            Some(client)
        }))
        .await;
        drop(clients);
    }

    /// Upserts every version in one statement. A row whose hash is already stored is left
    /// untouched, so replaying a flush never rewrites identical content.
    pub async fn upsert(&self, versions: &[Version]) -> Result<u64, StoreError> {
        if versions.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(versions.len());
        let mut kinds = Vec::with_capacity(versions.len());
        let mut contents: Vec<Option<&str>> = Vec::with_capacity(versions.len());
        let mut states: Vec<Option<&[u8]>> = Vec::with_capacity(versions.len());
        let mut hashes = Vec::with_capacity(versions.len());
        for v in versions {
            ids.push(v.doc.as_str());
            kinds.push(v.kind.as_str());
            hashes.push(v.hash.as_str());
            match v.kind {
                Kind::Json => {
                    let text = std::str::from_utf8(&v.content).map_err(|_| StoreError::BadRow {
                        doc: v.doc.clone(),
                        why: "json content is not utf-8".into(),
                    })?;
                    contents.push(Some(text));
                    states.push(None);
                }
                Kind::Yjs => {
                    contents.push(None);
                    states.push(Some(&v.content));
                }
            }
        }
        let client = self.client().await?;
        // Prepared once per pooled connection, not parsed and planned again for every batch.
        let result = self
            .bounded(async {
                let upsert = client.prepare_cached(UPSERT).await?;
                client
                    .execute(&upsert, &[&ids, &kinds, &contents, &states, &hashes])
                    .await
            })
            .await
            .and_then(|r| r.map_err(StoreError::from));
        if result.is_err() {
            drop(Object::take(client));
        }
        result
    }
}
