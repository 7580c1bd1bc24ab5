//! PostgreSQL as the durable store: the `documents` table (see `migrations/`), written under the
//! version rule of SPEC §6 (JSON by stamp, Yjs merged).
//!
//! Every call is bounded by a timeout as well as the server-side `statement_timeout`, because a
//! cut network stalls a socket without closing it, and a connection that saw an error is dropped
//! instead of going back to the pool.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};

use super::{tls, DocStore};
use crate::doc::{canonical_json, later, DocId, Kind, Stamp, Version};

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
    #[error("postgres unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// What `documents` holds for one id, as [`PgStore::merge_yjs_with`] shows it.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    Nothing,
    /// A JSON document: a Yjs state may not replace it (an id has one kind).
    Json,
    /// A Yjs document's stored state.
    Yjs(Vec<u8>),
}

/// Cloning is shallow (the pool is reference counted).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    timeout: Duration,
}

/// JSON rows: replaced only by a larger stamp (SPEC §6); identical content is left untouched.
const UPSERT_JSON: &str = "
    INSERT INTO documents (doc_id, kind, content, content_hash, stamp, updated_at)
    SELECT d, 'json', c::jsonb, h, st, now()
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS t(d, c, h, st)
    ON CONFLICT (doc_id) DO UPDATE
       SET kind = excluded.kind, content = excluded.content, state = NULL,
           content_hash = excluded.content_hash, stamp = excluded.stamp,
           updated_at = excluded.updated_at
     WHERE documents.content_hash IS DISTINCT FROM excluded.content_hash
       AND (documents.stamp IS NULL
            OR (excluded.stamp IS NOT NULL AND excluded.stamp > documents.stamp))";

/// Yjs rows are merged, never replaced: inside one transaction the rows are locked (an advisory
/// lock per id, in id order, covers rows that do not exist yet), read, merged with what is
/// flushed, and written back.
const LOCK_IDS: &str = "
    SELECT pg_advisory_xact_lock(hashtextextended(d, 7177))
    FROM (SELECT d FROM UNNEST($1::text[]) AS t(d) ORDER BY d) AS ids";
const READ_STATES: &str =
    "SELECT doc_id, state FROM documents WHERE doc_id = ANY($1::text[]) AND kind = 'yjs'";
const READ_ONE: &str = "SELECT kind, state FROM documents WHERE doc_id = $1";
const UPSERT_YJS: &str = "
    INSERT INTO documents (doc_id, kind, state, content_hash, updated_at)
    SELECT d, 'yjs', s, h, now()
    FROM UNNEST($1::text[], $2::bytea[], $3::text[]) AS t(d, s, h)
    ON CONFLICT (doc_id) DO UPDATE
       SET kind = excluded.kind, content = NULL, state = excluded.state,
           content_hash = excluded.content_hash, updated_at = excluded.updated_at
     WHERE documents.content_hash IS DISTINCT FROM excluded.content_hash";

impl PgStore {
    /// A pool for `url`, TLS as its `sslmode` says (see [`super::tls`]); `ca_file` replaces the
    /// system roots for `sslmode=require`.
    pub fn connect(
        url: &str,
        ca_file: Option<&Path>,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Config(e.to_string()))?;
        let tls = tls::postgres_connector(config.get_ssl_mode(), ca_file)?;
        config.connect_timeout(timeout);
        config.options(format!("-c statement_timeout={}", timeout.as_millis()));
        let manager = Manager::from_config(
            config,
            tls,
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

    /// A connection that saw an error is dropped instead of going back to the pool.
    fn release<T>(client: Object, result: &Result<T, StoreError>) {
        if result.is_err() {
            drop(Object::take(client));
        }
    }

    /// Reads what `documents` holds for `doc` and writes the Yjs state `decide` answers for it
    /// (`None`: leave the row as it is), in one transaction under the flusher's advisory lock,
    /// so no flush can slip in between the read and the write. For one-off writers such as the
    /// Hocuspocus import, which must see the kind and the stored state before it merges.
    pub async fn merge_yjs_with<T: Send>(
        &self,
        doc: &DocId,
        decide: impl FnOnce(Held) -> (Option<Bytes>, T) + Send,
    ) -> Result<T, StoreError> {
        let ids = [doc.as_str()];
        let mut client = self.client().await?;
        let result = self
            .bounded(async {
                let tx = client.transaction().await?;
                tx.execute(LOCK_IDS, &[&&ids[..]]).await?;
                let held = match tx.query_opt(READ_ONE, &[&doc.as_str()]).await? {
                    None => Held::Nothing,
                    Some(row) => match row.try_get::<_, String>(0)?.as_str() {
                        "yjs" => {
                            Held::Yjs(row.try_get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default())
                        }
                        _ => Held::Json,
                    },
                };
                let (state, answer) = decide(held);
                if let Some(state) = state {
                    let v = Version::new(doc.clone(), Kind::Yjs, state);
                    let contents = [&v.content[..]];
                    let hashes = [v.hash.as_str()];
                    tx.execute(UPSERT_YJS, &[&&ids[..], &&contents[..], &&hashes[..]])
                        .await?;
                }
                tx.commit().await?;
                Ok(answer)
            })
            .await
            .and_then(|r| r);
        Self::release(client, &result);
        result
    }

    async fn upsert_json(&self, versions: &[&Version]) -> Result<(), StoreError> {
        let mut ids = Vec::with_capacity(versions.len());
        let mut contents = Vec::with_capacity(versions.len());
        let mut hashes = Vec::with_capacity(versions.len());
        let mut stamps = Vec::with_capacity(versions.len());
        for v in versions {
            ids.push(v.doc.as_str());
            contents.push(
                std::str::from_utf8(&v.content).map_err(|_| StoreError::BadRow {
                    doc: v.doc.clone(),
                    why: "json content is not utf-8".into(),
                })?,
            );
            hashes.push(v.hash.as_str());
            stamps.push(v.stamp.as_ref().map(Stamp::encode));
        }
        let client = self.client().await?;
        let result = self
            .bounded(async {
                // Prepared once per pooled connection, not parsed and planned for every batch.
                let upsert = client.prepare_cached(UPSERT_JSON).await?;
                client
                    .execute(&upsert, &[&ids, &contents, &hashes, &stamps])
                    .await?;
                Ok(())
            })
            .await
            .and_then(|r| r);
        Self::release(client, &result);
        result
    }

    async fn upsert_yjs(&self, versions: &[&Version]) -> Result<(), StoreError> {
        let ids: Vec<&str> = versions.iter().map(|v| v.doc.as_str()).collect();
        let mut client = self.client().await?;
        let result = self
            .bounded(async {
                let tx = client.transaction().await?;
                tx.execute(LOCK_IDS, &[&ids]).await?;
                let mut held: HashMap<String, Vec<u8>> = HashMap::new();
                for row in tx.query(READ_STATES, &[&ids]).await? {
                    if let Some(state) = row.try_get::<_, Option<Vec<u8>>>(1)? {
                        held.insert(row.try_get(0)?, state);
                    }
                }
                let mut states = Vec::with_capacity(versions.len());
                for v in versions {
                    let merged = match held.remove(v.doc.as_str()) {
                        Some(state) => {
                            let stored = Version::new(v.doc.clone(), Kind::Yjs, Bytes::from(state));
                            later(stored, (*v).clone()).map_err(|e| StoreError::BadRow {
                                doc: v.doc.clone(),
                                why: e.to_string(),
                            })?
                        }
                        None => (*v).clone(),
                    };
                    states.push(merged);
                }
                let contents: Vec<&[u8]> = states.iter().map(|v| &v.content[..]).collect();
                let hashes: Vec<&str> = states.iter().map(|v| v.hash.as_str()).collect();
                tx.execute(UPSERT_YJS, &[&ids, &contents, &hashes]).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
            .and_then(|r| r);
        Self::release(client, &result);
        result
    }
}

#[async_trait]
impl DocStore for PgStore {
    async fn load(&self, doc: &DocId) -> Result<Option<Version>, StoreError> {
        let client = self.client().await?;
        let result = self
            .bounded(client.query_opt(
                "SELECT kind, content, state, stamp FROM documents WHERE doc_id = $1",
                &[&doc.as_str()],
            ))
            .await
            .and_then(|r| r.map_err(StoreError::from));
        Self::release(client, &result);
        let row = result?;
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
                let v = Version::new(doc.clone(), Kind::Json, Bytes::from(text));
                let stamp: Option<String> = row.try_get(3)?;
                Ok(Some(match stamp.as_deref().and_then(Stamp::decode) {
                    Some(stamp) => v.stamped(stamp),
                    None => v,
                }))
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

    /// Opens up to `n` pooled connections at once and prepares the JSON upsert on each, so the
    /// first flush does not pay for connecting. Best effort: failures are left to the real calls.
    async fn warm(&self, n: usize) {
        let clients = futures_util::future::join_all((0..n).map(|_| async {
            let client = self.client().await.ok()?;
            self.bounded(client.prepare_cached(UPSERT_JSON))
                .await
                .ok()?
                .ok()?;
            Some(client)
        }))
        .await;
        drop(clients);
    }

    async fn upsert(&self, versions: &[Version]) -> Result<(), StoreError> {
        let (json, yjs): (Vec<&Version>, Vec<&Version>) =
            versions.iter().partition(|v| v.kind == Kind::Json);
        if !json.is_empty() {
            self.upsert_json(&json).await?;
        }
        if !yjs.is_empty() {
            self.upsert_yjs(&yjs).await?;
        }
        Ok(())
    }
}
