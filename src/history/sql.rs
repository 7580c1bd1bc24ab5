//! The statements on `document_versions` and `document_version_heads` (see
//! `migrations/V6__document_versions.sql`).

/// One document's versions are cut and pruned one at a time: an advisory lock per document,
/// held to the end of the transaction. The flusher's lock on the same document uses another
/// seed, so history never waits for a flush.
pub(super) const LOCK_DOC: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7178))";

/// The document's last version, whether it is younger than `$2` ms and still within the
/// retention of `$3` days, and its delete set.
pub(super) const LAST: &str = "
    SELECT v.version, v.kind, v.hash, v.at, v.state_vector, v.chain_len, v.chain_bytes,
           clock_timestamp() - v.at < $2::bigint * interval '1 millisecond' AS young,
           v.at >= clock_timestamp() - $3::bigint * interval '1 day' AS live,
           h.delete_set
    FROM document_versions v
    LEFT JOIN document_version_heads h ON h.doc_id = v.doc_id AND h.last = v.version
    WHERE v.doc_id = $1 ORDER BY v.version DESC LIMIT 1";

/// Adds users `$3` to version `$2` (a proposal not cut for the interval or as unchanged).
pub(super) const ADD_USERS: &str = "
    UPDATE document_versions
    SET users = ARRAY(SELECT DISTINCT u FROM unnest(users || $3::text[]) AS u ORDER BY u)
    WHERE doc_id = $1 AND version = $2";

/// The document's next number, its delete set `$2` noted.
pub(super) const NEXT_NUMBER: &str = "
    INSERT INTO document_version_heads (doc_id, last, delete_set) VALUES ($1, 1, $2)
    ON CONFLICT (doc_id) DO UPDATE
    SET last = document_version_heads.last + 1, delete_set = excluded.delete_set
    RETURNING last";

/// A version; its time never before the previous version's (`$13`, NULL for the first).
pub(super) const INSERT: &str = "
    INSERT INTO document_versions (doc_id, version, at, kind, users, hash, bytes, checkpoint,
                                   data, state_vector, chain_len, chain_bytes)
    VALUES ($1, $2, GREATEST(clock_timestamp(), $12::timestamptz), $3, $4, $5, $6, $7, $8, $9,
            $10, $11)";

/// Newest first, from before `$2` (NULL: from the last), within the retention of `$3` days.
pub(super) const LIST: &str = "
    SELECT version, at, users, hash, bytes FROM document_versions
    WHERE doc_id = $1 AND ($2::bigint IS NULL OR version < $2)
      AND at >= now() - $3::bigint * interval '1 day'
    ORDER BY version DESC LIMIT $4";

/// Whether version `$2` exists within the retention of `$3` days.
pub(super) const LIVE: &str = "
    SELECT 1 FROM document_versions
    WHERE doc_id = $1 AND version = $2 AND at >= now() - $3::bigint * interval '1 day'";

/// What reading version `$2` takes: the last checkpoint at or before it, then every change
/// after that up to it, in order.
pub(super) const CHAIN: &str = "
    SELECT version, kind, checkpoint, data FROM document_versions
    WHERE doc_id = $1 AND version <= $2
      AND version >= (SELECT max(version) FROM document_versions
                      WHERE doc_id = $1 AND version <= $2 AND checkpoint)
    ORDER BY version";

/// The time before which versions are past a retention of `$1` days.
pub(super) const CUTOFF: &str = "SELECT now() - $1::bigint * interval '1 day'";

/// Documents with versions from before `$1`.
pub(super) const EXPIRED_DOCS: &str = "SELECT DISTINCT doc_id FROM document_versions WHERE at < $1";

/// The document's oldest version from `$2` on: the oldest one pruning keeps.
pub(super) const OLDEST_KEPT: &str = "
    SELECT version, checkpoint FROM document_versions
    WHERE doc_id = $1 AND at >= $2 ORDER BY version LIMIT 1";

/// Version `$2` becomes a checkpoint holding `$3`, its whole content.
pub(super) const MAKE_CHECKPOINT: &str = "
    UPDATE document_versions SET checkpoint = true, data = $3, chain_len = 0, chain_bytes = 0
    WHERE doc_id = $1 AND version = $2";

/// Every version of the document before `$2`.
pub(super) const DELETE_BEFORE: &str =
    "DELETE FROM document_versions WHERE doc_id = $1 AND version < $2";
