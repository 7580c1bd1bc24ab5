//! PostgreSQL as the durable store: the `documents` table (see `migrations/`), written under the
//! version rule of SPEC §6 (JSON by stamp, Yjs merged).
//!
//! Every call is bounded by a timeout as well as the server-side `statement_timeout`, because a
//! cut network stalls a socket without closing it, and a connection that saw an error is dropped
//! instead of going back to the pool. The batched writes (JSON upserts, Yjs appends) are in
//! `upsert`; folding a Yjs document's waiting updates into its state is in `fold`.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};

mod fold;
mod sql;
mod stored_events;
mod upsert;

use fold::{fold, folded, merged_state, write_states};
use sql::{LOCK_IDS, READ_ONE, UPSERT_JSON};
use upsert::Answers;

use super::{tls, DocStore, StoreAnswer, Write};
use crate::doc::{canonical_json, DocId, Kind, Stamp, Version};
use crate::log::LogMark;

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
    /// Webhooks are on: every write also records a `document.stored` event per document in
    /// the same transaction (see `stored_events`).
    stored_events: bool,
}

/// A Yjs state holding nothing (no structs, no deletions): a new document's row before a fold.
const EMPTY_YJS: &[u8] = &[0, 0];

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
        Ok(PgStore {
            pool,
            timeout,
            stored_events: false,
        })
    }

    /// With `on`, every write records a `document.stored` webhook event per document in the
    /// transaction that commits it (the service's store when `webhooks.url` is set).
    pub fn with_stored_events(self, on: bool) -> Self {
        PgStore {
            stored_events: on,
            ..self
        }
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

    /// Reads what `documents` holds for `doc` (a Yjs state with its waiting updates folded in)
    /// and writes the Yjs state `decide` answers for it (`None`: leave the row as it is), in one
    /// transaction under the flusher's advisory lock, so no flush can slip in between the read
    /// and the write. For one-off writers such as the Hocuspocus import, which must see the kind
    /// and the stored state before it merges.
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
                        "yjs" => Held::Yjs(
                            folded(&tx, &[doc])
                                .await?
                                .remove(doc.as_str())
                                .map(|v| v.content.to_vec())
                                .unwrap_or_default(),
                        ),
                        _ => Held::Json,
                    },
                };
                let (state, answer) = decide(held);
                if let Some(state) = state {
                    write_states(&tx, &[Version::new(doc.clone(), Kind::Yjs, state)]).await?;
                }
                tx.commit().await?;
                Ok(answer)
            })
            .await
            .and_then(|r| r);
        Self::release(client, &result);
        result
    }
}

/// A JSON row's content under its stamp (a row written before stamps has none).
fn stored_json(doc: DocId, content: &serde_json::Value, stamp: Option<String>) -> Version {
    let v = Version::new(doc, Kind::Json, Bytes::from(canonical_json(content)));
    match stamp.as_deref().and_then(Stamp::decode) {
        Some(stamp) => v.stamped(stamp),
        None => v,
    }
}

/// What a write answers (see [`DocStore::write`]): the point recorded, if of its incarnation.
pub(crate) fn answer(includes: Option<LogMark>, recorded: Option<&LogMark>) -> Option<LogMark> {
    let ours = includes?;
    recorded
        .filter(|r| r.incarnation == ours.incarnation)
        .map(|r| *r.max(&ours))
}

#[async_trait]
impl DocStore for PgStore {
    async fn load(&self, doc: &DocId) -> Result<Option<Version>, StoreError> {
        let client = self.client().await?;
        let result = self
            .bounded(client.query_opt(
                "SELECT kind, content, state, stamp, ARRAY(SELECT update FROM document_updates u \
                 WHERE u.doc_id = d.doc_id ORDER BY seq) FROM documents d WHERE doc_id = $1",
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
                Ok(Some(stored_json(doc.clone(), &value, row.try_get(3)?)))
            }
            Kind::Yjs => {
                let state: Option<Vec<u8>> = row.try_get(2)?;
                let state = state.ok_or_else(|| bad("yjs document without state"))?;
                let updates: Vec<Vec<u8>> = row.try_get(4)?;
                let parts = std::iter::once(state).chain(updates).map(Bytes::from);
                merged_state(doc, parts.collect()).map(Some)
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

    /// Folds the waiting Yjs updates of `docs` into their states now (a document its last
    /// editor left, the shutdown drain), so `documents.state` is whole while nobody edits.
    async fn fold(&self, docs: &[DocId]) -> Result<(), StoreError> {
        if docs.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = docs.iter().map(DocId::as_str).collect();
        let mut client = self.client().await?;
        let result = self
            .bounded(async {
                let tx = client.transaction().await?;
                tx.execute(LOCK_IDS, &[&ids]).await?;
                let waiting: Vec<&DocId> = {
                    let rows = tx
                        .query(
                            "SELECT doc_id FROM documents WHERE doc_id = ANY($1::text[]) \
                             AND kind = 'yjs' AND updates_bytes > 0",
                            &[&ids],
                        )
                        .await?;
                    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                    docs.iter()
                        .filter(|d| ids.iter().any(|i| i == d.as_str()))
                        .collect()
                };
                if !waiting.is_empty() {
                    fold(&tx, &waiting).await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await
            .and_then(|r| r);
        Self::release(client, &result);
        result
    }

    async fn write(&self, writes: &[Write<'_>]) -> Result<Vec<StoreAnswer>, StoreError> {
        let (json, yjs): (Vec<&Write<'_>>, Vec<&Write<'_>>) =
            writes.iter().partition(|w| w.version.kind == Kind::Json);
        let mut answers = Answers::new();
        if !json.is_empty() {
            answers.extend(self.upsert_json(&json).await?);
        }
        if !yjs.is_empty() {
            answers.extend(self.upsert_yjs(&yjs).await?);
        }
        Ok(writes
            .iter()
            .map(|w| {
                let (recorded, kept) = answers.remove(w.version.doc.as_str()).unwrap_or_default();
                StoreAnswer {
                    recorded: answer(w.includes, recorded.as_ref()),
                    kept,
                }
            })
            .collect())
    }
}
