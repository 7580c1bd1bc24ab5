//! Folding a Yjs document's waiting updates (`document_updates`) into its stored state, inside
//! the caller's transaction: read the state and the updates, merge them, write the state and
//! drop the updates.

use std::collections::HashMap;

use bytes::Bytes;

use super::{StoreError, EMPTY_YJS};
use crate::doc::{combine, DocId, Kind, Version};

const READ_STATES: &str =
    "SELECT doc_id, state FROM documents WHERE doc_id = ANY($1::text[]) AND kind = 'yjs'";
const READ_UPDATES: &str = "
    SELECT doc_id, update FROM document_updates WHERE doc_id = ANY($1::text[])
    ORDER BY doc_id, seq";
const WRITE_STATES: &str = "
    INSERT INTO documents (doc_id, kind, state, content_hash, updates_bytes, updated_at)
    SELECT d, 'yjs', s, h, 0, now()
    FROM UNNEST($1::text[], $2::bytea[], $3::text[]) AS t(d, s, h)
    ON CONFLICT (doc_id) DO UPDATE
       SET kind = excluded.kind, content = NULL, state = excluded.state,
           content_hash = excluded.content_hash, updates_bytes = 0,
           updated_at = CASE WHEN documents.content_hash IS DISTINCT FROM excluded.content_hash
                             THEN excluded.updated_at ELSE documents.updated_at END";
const DROP_UPDATES: &str = "DELETE FROM document_updates WHERE doc_id = ANY($1::text[])";

/// Each Yjs document of `ids` as PostgreSQL holds it: its state with its waiting updates merged
/// in. Documents without a Yjs row are left out.
pub(super) async fn folded(
    tx: &deadpool_postgres::Transaction<'_>,
    docs: &[&DocId],
) -> Result<HashMap<String, Version>, StoreError> {
    let ids: Vec<&str> = docs.iter().map(|d| d.as_str()).collect();
    let mut parts: HashMap<String, Vec<Bytes>> = HashMap::new();
    for row in tx.query(READ_STATES, &[&ids]).await? {
        let state: Option<Vec<u8>> = row.try_get(1)?;
        parts.insert(
            row.try_get(0)?,
            vec![Bytes::from(state.unwrap_or_default())],
        );
    }
    for row in tx.query(READ_UPDATES, &[&ids]).await? {
        if let Some(held) = parts.get_mut(row.try_get::<_, &str>(0)?) {
            held.push(Bytes::from(row.try_get::<_, Vec<u8>>(1)?));
        }
    }
    let mut out = HashMap::with_capacity(parts.len());
    for doc in docs {
        if let Some(held) = parts.remove(doc.as_str()) {
            out.insert(doc.to_string(), merged_state(doc, held)?);
        }
    }
    Ok(out)
}

/// A stored state and the updates after it, as one state.
pub(super) fn merged_state(doc: &DocId, parts: Vec<Bytes>) -> Result<Version, StoreError> {
    let parts = parts
        .into_iter()
        .map(|p| Version::new(doc.clone(), Kind::Yjs, p));
    combine(parts)
        .map_err(|e| StoreError::BadRow {
            doc: doc.clone(),
            why: e.to_string(),
        })
        .map(|v| {
            v.unwrap_or_else(|| Version::new(doc.clone(), Kind::Yjs, Bytes::from_static(EMPTY_YJS)))
        })
}

/// Folds the waiting updates of `ids` into their states.
pub(super) async fn fold(
    tx: &deadpool_postgres::Transaction<'_>,
    docs: &[&DocId],
) -> Result<(), StoreError> {
    let states: Vec<Version> = folded(tx, docs).await?.into_values().collect();
    write_states(tx, &states).await
}

/// Writes whole Yjs states (their waiting updates included) and drops those updates.
pub(super) async fn write_states(
    tx: &deadpool_postgres::Transaction<'_>,
    states: &[Version],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = states.iter().map(|v| v.doc.as_str()).collect();
    let contents: Vec<&[u8]> = states.iter().map(|v| &v.content[..]).collect();
    let hashes: Vec<&str> = states.iter().map(|v| v.hash.as_str()).collect();
    tx.execute(WRITE_STATES, &[&ids, &contents, &hashes])
        .await?;
    tx.execute(DROP_UPDATES, &[&ids]).await?;
    Ok(())
}
