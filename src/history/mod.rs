//! Document history (SPEC §10): versions of every document in PostgreSQL, kept for
//! `history.retention_days`.
//!
//! # Layout
//!
//! - [`History`] (here): cuts, lists, reads and prunes versions. Rooms propose versions
//!   ([`CutVersion`]); whether one is kept (at most one per `history.interval_ms` of editing,
//!   none for content equal to the last version's) is decided here, under a per-document
//!   advisory lock, so replicas proposing at once never take the same number.
//! - `content`: what a version stores, sans IO: the change since the version before it (a Yjs
//!   update, a JSON Patch) or, now and then, the whole content (a checkpoint); and a version
//!   rebuilt from the last checkpoint before it. History grows with what changed.
//! - `prune`: versions past retention deleted, the oldest one kept made a checkpoint first.
//! - [`writer`]: `HistoryWriter`, the actor rooms send their proposals to: it writes them one
//!   document at a time, retries what PostgreSQL refused for a while, and prunes hourly.
//! - `sql`: the statements (tables in `migrations/V6__document_versions.sql`).

mod content;
mod prune;
mod sql;
pub mod writer;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::{GenericClient, Pool};
use docroom_actors::doc::{DocId, Kind};
use tokio_postgres::IsolationLevel;

use crate::settings::HistorySettings;
use content::{Last, Link, Stored};
pub use docroom_actors::room::{CutReason, CutVersion};
pub use writer::{FlushVersions, HistoryWriter};

/// Cloning is shallow: the pool is reference counted.
#[derive(Clone)]
pub struct History {
    pool: Pool,
    settings: HistorySettings,
}

/// One version, as `GET /docs/{id}/versions` lists it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct VersionInfo {
    pub version: i64,
    /// RFC 3339, in UTC, to the millisecond.
    pub at: String,
    pub users: Vec<String>,
    pub hash: String,
    /// The content's size at this version.
    pub bytes: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history: no postgres connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("history: postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A stored version that cannot be read back (a broken chain of changes).
    #[error("history: stored version unreadable: {0}")]
    BadRow(String),
    /// A proposed version whose content cannot be read (not a Yjs state, not JSON).
    #[error("history: content unreadable: {0}")]
    BadContent(String),
}

impl HistoryError {
    /// Whether trying again later may succeed: PostgreSQL away, not data that cannot be read.
    pub fn is_transient(&self) -> bool {
        matches!(self, HistoryError::Pool(_) | HistoryError::Postgres(_))
    }
}

/// The document's last version, as a cut reads it.
struct LastRow {
    last: Last,
    version: i64,
    hash: String,
    at: DateTime<Utc>,
    /// Younger than `history.interval_ms`.
    young: bool,
    /// Within retention.
    live: bool,
}

impl History {
    pub fn new(pool: Pool, settings: HistorySettings) -> Self {
        History { pool, settings }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled()
    }

    fn retention_days(&self) -> i64 {
        i64::try_from(self.settings.retention_days).unwrap_or(i64::MAX)
    }

    /// Records a version unless: history is off; content equals the last version's hash; or
    /// why == Interval and the last version is younger than interval_ms. Answers the number cut.
    pub async fn cut(&self, v: &CutVersion) -> Result<Option<i64>, HistoryError> {
        if !self.enabled() {
            return Ok(None);
        }
        let doc = v.doc.as_str();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(sql::LOCK_DOC, &[&doc]).await?;
        let interval_ms = i64::try_from(self.settings.interval_ms).unwrap_or(i64::MAX);
        let last = match tx
            .query_opt(sql::LAST, &[&doc, &interval_ms, &self.retention_days()])
            .await?
        {
            Some(row) => Some(last_row(&row)?),
            None => None,
        };
        if let Some(l) = &last {
            // An expired last version does not count: the history shows none.
            let unchanged = l.live && l.hash == v.hash;
            if unchanged || (v.why == CutReason::Interval && l.young) {
                // Not cut: the last version (another replica's, moments ago) holds these changes
                // or the next one will; its users name whoever made them.
                if l.live && !v.users.is_empty() {
                    tx.execute(sql::ADD_USERS, &[&doc, &l.version, &v.users])
                        .await?;
                }
                tx.commit().await?;
                return Ok(None);
            }
        }
        let stored = self.stored(&tx, v, last.as_ref()).await?;
        let number: i64 = tx
            .query_one(sql::NEXT_NUMBER, &[&doc, &stored.delete_set])
            .await?
            .get(0);
        let prev_at = last.as_ref().map(|l| l.at);
        tx.execute(
            sql::INSERT,
            &[
                &doc,
                &number,
                &v.kind.as_str(),
                &v.users,
                &v.hash,
                &(v.content.len() as i64),
                &stored.checkpoint,
                &&stored.data[..],
                &stored.state_vector,
                &stored.chain_len,
                &stored.chain_bytes,
                &prev_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(number))
    }

    /// What `v` stores after the document's last version (off the async threads: a large
    /// document's state takes milliseconds to decode).
    async fn stored(
        &self,
        client: &impl GenericClient,
        v: &CutVersion,
        last: Option<&LastRow>,
    ) -> Result<Stored, HistoryError> {
        let content = v.content.clone();
        match v.kind {
            Kind::Yjs => {
                let last = last.map(|l| l.last.clone());
                blocking(HistoryError::BadContent, move || {
                    content::store_yjs(&content, last.as_ref())
                })
                .await
            }
            Kind::Json => {
                let prev = match last {
                    Some(l) if l.last.may_follow(Kind::Json) => {
                        let text = rebuilt(client, &v.doc, l.version).await?;
                        let value: serde_json::Value = serde_json::from_slice(&text)
                            .map_err(|e| HistoryError::BadRow(e.to_string()))?;
                        Some((l.last.clone(), value))
                    }
                    _ => None,
                };
                blocking(HistoryError::BadContent, move || {
                    content::store_json(&content, prev.as_ref().map(|(l, v)| (l, v)))
                })
                .await
            }
        }
    }

    /// Newest first; versions older than retention excluded.
    pub async fn list(
        &self,
        doc: &DocId,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<VersionInfo>, HistoryError> {
        if !self.enabled() {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await?;
        let rows = client
            .query(
                sql::LIST,
                &[
                    &doc.as_str(),
                    &before,
                    &self.retention_days(),
                    &limit.max(0),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| VersionInfo {
                version: row.get(0),
                at: row
                    .get::<_, DateTime<Utc>>(1)
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
                users: row.get(2),
                hash: row.get(3),
                bytes: row.get(4),
            })
            .collect())
    }

    /// The content at `version`: (kind, content) with content a Yjs v1 state, or a JSON
    /// document's canonical text; None if it does not exist or expired.
    pub async fn read(
        &self,
        doc: &DocId,
        version: i64,
    ) -> Result<Option<(Kind, Bytes)>, HistoryError> {
        if !self.enabled() {
            return Ok(None);
        }
        let mut client = self.pool.get().await?;
        // One snapshot for both statements: a prune committing in between could otherwise
        // delete the checkpoint the chain starts at.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let live = tx
            .query_opt(
                sql::LIVE,
                &[&doc.as_str(), &version, &self.retention_days()],
            )
            .await?;
        if live.is_none() {
            return Ok(None);
        }
        let (kind, chain) = chain(&tx, doc, version).await?;
        let content = blocking(HistoryError::BadRow, move || content::rebuild(kind, chain)).await?;
        tx.commit().await?;
        Ok(Some((kind, content)))
    }
}

/// The stored versions that make version `version`: its last checkpoint, then the changes
/// after it. The version must exist.
async fn chain(
    client: &impl GenericClient,
    doc: &DocId,
    version: i64,
) -> Result<(Kind, Vec<Link>), HistoryError> {
    let rows = client.query(sql::CHAIN, &[&doc.as_str(), &version]).await?;
    let bad = |what: &str| HistoryError::BadRow(format!("{what} (doc {doc}, version {version})"));
    let Some(last) = rows.last() else {
        return Err(bad("no checkpoint at or before the version"));
    };
    if last.get::<_, i64>(0) != version {
        return Err(bad("version missing"));
    }
    let kind = Kind::parse(last.get(1)).ok_or_else(|| bad("unknown kind"))?;
    let links = rows
        .iter()
        .map(|row| Link {
            checkpoint: row.get(2),
            data: row.get(3),
        })
        .collect();
    Ok((kind, links))
}

/// The content at `version`, rebuilt (expired or not).
async fn rebuilt(
    client: &impl GenericClient,
    doc: &DocId,
    version: i64,
) -> Result<Bytes, HistoryError> {
    let (kind, chain) = chain(client, doc, version).await?;
    blocking(HistoryError::BadRow, move || content::rebuild(kind, chain)).await
}

fn last_row(row: &tokio_postgres::Row) -> Result<LastRow, HistoryError> {
    let kind: &str = row.get(1);
    let kind = Kind::parse(kind).ok_or_else(|| HistoryError::BadRow(format!("kind {kind:?}")))?;
    Ok(LastRow {
        version: row.get(0),
        hash: row.get(2),
        at: row.get(3),
        last: Last {
            kind,
            state_vector: row.get(4),
            delete_set: row.get(9),
            chain_len: row.get(5),
            chain_bytes: row.get(6),
        },
        young: row.get(7),
        live: row.get(8),
    })
}

/// Runs `f` on tokio's blocking threads; its error (or panic) becomes `err`.
async fn blocking<T: Send + 'static>(
    err: fn(String) -> HistoryError,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, HistoryError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(err),
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
