//! The batched writes behind [`DocStore::write`](super::DocStore::write): JSON rows upserted
//! under the stamp rule, keeping the larger-stamped content; Yjs updates appended to
//! `document_updates`, then folded into the state of the documents whose waiting updates add up
//! to its size. Each write answers the log point its row records; with webhooks on, each also
//! records its `document.stored` events in the same transaction.

use super::fold::fold;
use super::sql::{APPEND_UPDATES, COUNT_UPDATES, FOLD_MIN_BYTES, LOCK_IDS, UPSERT_JSON};
use super::stored_events::{self, StoredEvent};
use super::{stored_json, PgStore, StoreError, Write, EMPTY_YJS};
use crate::doc::{DocId, Stamp, Version};
use crate::log::{Incarnation, LogMark, LogPos};

impl PgStore {
    /// The JSON writes, each answered its log point and, if it lost, the content kept.
    pub(super) async fn upsert_json(&self, writes: &[&Write<'_>]) -> Result<Answers, StoreError> {
        let mut ids = Vec::with_capacity(writes.len());
        let mut contents = Vec::with_capacity(writes.len());
        let mut hashes = Vec::with_capacity(writes.len());
        let mut stamps = Vec::with_capacity(writes.len());
        for w in writes {
            let v = w.version;
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
        let (incarnations, ms, seqs) = points(writes);
        let mut client = self.client().await?;
        let events = self.stored_events;
        let result = self
            .bounded(async {
                // Prepared once per pooled connection, not parsed and planned for every batch.
                let upsert = client.prepare_cached(UPSERT_JSON).await?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                    [&ids, &contents, &hashes, &stamps, &incarnations, &ms, &seqs];
                let (rows, tx) = match events {
                    true => {
                        let tx = client.transaction().await?;
                        (tx.query(&upsert, &params).await?, Some(tx))
                    }
                    false => (client.query(&upsert, &params).await?, None),
                };
                let mut answers = Answers::new();
                for row in &rows {
                    let id: String = row.try_get(0)?;
                    let kept = kept_json(row, DocId::parse(&id).ok())?;
                    let recorded = point(row, 1)?;
                    answers.insert(id, (recorded, kept));
                }
                if let Some(tx) = tx {
                    let stored: Vec<StoredEvent<'_>> = writes
                        .iter()
                        .map(|w| {
                            let doc = w.version.doc.as_str();
                            let kept = answers.get(doc).and_then(|(_, kept)| kept.as_ref());
                            StoredEvent {
                                doc,
                                kind: "json",
                                hash: Some(kept.unwrap_or(w.version).hash.clone()),
                            }
                        })
                        .collect();
                    stored_events::record(&tx, &stored).await?;
                    tx.commit().await?;
                }
                Ok(answers)
            })
            .await
            .and_then(|r| r);
        Self::release(client, &result);
        result
    }

    /// Appends Yjs updates (a flush's: what its documents' logs added since PostgreSQL last
    /// took them), then folds the documents whose waiting updates add up to their state's size.
    pub(super) async fn upsert_yjs(&self, writes: &[&Write<'_>]) -> Result<Answers, StoreError> {
        let ids: Vec<&str> = writes.iter().map(|w| w.version.doc.as_str()).collect();
        let updates: Vec<&[u8]> = writes.iter().map(|w| &w.version.content[..]).collect();
        let sizes: Vec<i64> = writes
            .iter()
            .map(|w| w.version.content.len() as i64)
            .collect();
        let (incarnations, ms, seqs) = points(writes);
        let empty = crate::doc::sha256_hex(EMPTY_YJS);
        let mut client = self.client().await?;
        let result = self
            .bounded(async {
                let tx = client.transaction().await?;
                tx.execute(LOCK_IDS, &[&ids]).await?;
                tx.execute(APPEND_UPDATES, &[&ids, &updates]).await?;
                let rows = tx
                    .query(
                        COUNT_UPDATES,
                        &[&ids, &sizes, &EMPTY_YJS, &empty, &incarnations, &ms, &seqs],
                    )
                    .await?;
                let mut due = Vec::new();
                for row in &rows {
                    let (waiting, state): (i64, i32) = (row.try_get(1)?, row.try_get(2)?);
                    let id: &str = row.try_get(0)?;
                    if waiting >= FOLD_MIN_BYTES.max(state as i64) {
                        due.extend(
                            writes
                                .iter()
                                .map(|w| &w.version.doc)
                                .find(|d| d.as_str() == id),
                        );
                    }
                }
                if !due.is_empty() {
                    fold(&tx, &due).await?;
                }
                let mut answers = Answers::new();
                for row in &rows {
                    answers.insert(row.try_get(0)?, (point(row, 3)?, None));
                }
                if self.stored_events {
                    let stored: Vec<StoredEvent<'_>> = ids
                        .iter()
                        .map(|doc| StoredEvent {
                            doc,
                            kind: "yjs",
                            hash: None,
                        })
                        .collect();
                    stored_events::record(&tx, &stored).await?;
                }
                tx.commit().await?;
                Ok(answers)
            })
            .await
            .and_then(|r| r);
        Self::release(client, &result);
        result
    }
}

/// What a statement's rows hold after it, by document id: the log point, and the content kept
/// instead of the one written.
pub(super) type Answers = std::collections::HashMap<String, (Option<LogMark>, Option<Version>)>;

/// The log point columns of `writes`, as the statements take them (NULL: none named).
#[allow(clippy::type_complexity)]
fn points(writes: &[&Write<'_>]) -> (Vec<Option<i64>>, Vec<Option<i64>>, Vec<Option<i64>>) {
    let cols = writes.iter().map(|w| {
        w.includes.map(|m| {
            (
                m.incarnation.0 as i64,
                m.position.ms as i64,
                m.position.seq as i64,
            )
        })
    });
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for c in cols {
        out.0.push(c.map(|c| c.0));
        out.1.push(c.map(|c| c.1));
        out.2.push(c.map(|c| c.2));
    }
    out
}

/// The log point a returned row holds, from column `at` on.
fn point(row: &tokio_postgres::Row, at: usize) -> Result<Option<LogMark>, StoreError> {
    let inc: Option<i64> = row.try_get(at)?;
    let (ms, seq): (Option<i64>, Option<i64>) = (row.try_get(at + 1)?, row.try_get(at + 2)?);
    Ok(match (inc, ms, seq) {
        (Some(inc), Some(ms), Some(seq)) => Some(LogMark {
            incarnation: Incarnation(inc as u64),
            position: LogPos {
                ms: ms as u64,
                seq: seq as u64,
            },
        }),
        _ => None,
    })
}

/// The content `UPSERT_JSON` returns (columns 4 and 5) when the row kept its own.
fn kept_json(row: &tokio_postgres::Row, doc: Option<DocId>) -> Result<Option<Version>, StoreError> {
    let content: Option<serde_json::Value> = row.try_get(4)?;
    let stamp: Option<String> = row.try_get(5)?;
    let (Some(content), Some(doc)) = (content, doc) else {
        return Ok(None);
    };
    Ok(Some(stored_json(doc, &content, stamp)))
}
