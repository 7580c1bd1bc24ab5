//! Versions past `history.retention_days` deleted. Versions of a document are cut in time
//! order, so those past retention are the oldest ones; the oldest version kept is made a
//! checkpoint first (when it is a change), so every later one can still be read.

use chrono::{DateTime, Utc};
use tracing::warn;

use super::{blocking, chain, sql, History, HistoryError};
use docroom_actors::doc::DocId;

impl History {
    /// Deletes versions past retention_days, keeping every remaining version readable. Answers
    /// how many were deleted. Every replica may run it at once: each document is pruned under
    /// the lock its cuts take.
    pub async fn prune(&self) -> Result<u64, HistoryError> {
        let mut client = self.pool.get().await?;
        let cutoff: DateTime<Utc> = client
            .query_one(sql::CUTOFF, &[&self.retention_days()])
            .await?
            .get(0);
        let docs: Vec<String> = client
            .query(sql::EXPIRED_DOCS, &[&cutoff])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut deleted = 0;
        for doc in docs {
            match prune_doc(&mut client, &doc, cutoff).await {
                Ok(n) => deleted += n,
                // One document whose versions cannot be read keeps them; the others go on.
                Err(e @ (HistoryError::BadRow(_) | HistoryError::BadContent(_))) => {
                    warn!(doc_id = %doc, error = %e, "history of a document not pruned")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

/// Prunes one document in one transaction.
async fn prune_doc(
    client: &mut deadpool_postgres::Object,
    doc: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, HistoryError> {
    let tx = client.transaction().await?;
    tx.execute(sql::LOCK_DOC, &[&doc]).await?;
    let kept = tx.query_opt(sql::OLDEST_KEPT, &[&doc, &cutoff]).await?;
    let before = match kept {
        Some(row) => {
            let (version, checkpoint): (i64, bool) = (row.get(0), row.get(1));
            if !checkpoint {
                let id = DocId::parse(doc)
                    .map_err(|_| HistoryError::BadRow(format!("document id {doc:?}")))?;
                let (kind, links) = chain(&tx, &id, version).await?;
                let whole = blocking(HistoryError::BadRow, move || {
                    super::content::rebuild(kind, links)
                })
                .await?;
                tx.execute(sql::MAKE_CHECKPOINT, &[&doc, &version, &&whole[..]])
                    .await?;
            }
            version
        }
        // Every version is past retention. `document_version_heads` keeps the last number.
        None => i64::MAX,
    };
    let deleted = tx.execute(sql::DELETE_BEFORE, &[&doc, &before]).await?;
    tx.commit().await?;
    Ok(deleted)
}
