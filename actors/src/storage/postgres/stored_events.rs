//! `document.stored` webhooks (SPEC §9), written into the outbox (`webhook_deliveries`) in the
//! transaction that commits the content, so a commit and its event exist together or not at
//! all. Only a store built [`with_stored_events`](super::PgStore::with_stored_events) writes
//! them (webhooks on).

use super::StoreError;

/// One pending `document.stored` per document. A JSON row's hash is the content the row holds
/// after the write (the written one, or the one it kept under a larger stamp); a Yjs row's is
/// left NULL, for the delivery to take from the stored state when it builds the payload (the
/// flush wrote only the updates PostgreSQL lacked, not the whole state).
const RECORD_STORED: &str = "
    INSERT INTO webhook_deliveries (event, doc_id, kind, hash)
    SELECT 'document.stored', d, k, h
    FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(d, k, h)";

/// What one written document's event says.
pub(super) struct StoredEvent<'a> {
    pub doc: &'a str,
    pub kind: &'a str,
    pub hash: Option<String>,
}

/// Writes the events inside the caller's transaction.
pub(super) async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[StoredEvent<'_>],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let docs: Vec<&str> = events.iter().map(|e| e.doc).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let hashes: Vec<Option<&str>> = events.iter().map(|e| e.hash.as_deref()).collect();
    let record = tx.prepare_cached(RECORD_STORED).await?;
    tx.execute(&record, &[&docs, &kinds, &hashes]).await?;
    Ok(())
}
