//! The statements that write `documents` and `document_updates` under the version rule of SPEC
//! §6, and record each document's log point with its content.

/// A row's content is replaced (JSON): the incoming stamp is larger (an unstamped row, written
/// before stamps, is the smallest). The same content under a larger stamp takes the stamp: left
/// under its old one, it would lose to any write stamped in between (a replica's journal
/// flushed later), though every replica acknowledged it after that write.
macro_rules! newer_content {
    () => {
        "(documents.stamp IS NULL OR (excluded.stamp IS NOT NULL AND excluded.stamp > documents.stamp))"
    };
}
/// A row's log point moves (SPEC §6): only forward, by incarnation, then position; a write that
/// names none leaves it.
macro_rules! later_point {
    () => {
        "(excluded.log_incarnation IS NOT NULL AND (documents.log_incarnation IS NULL OR \
          (excluded.log_incarnation, excluded.log_ms, excluded.log_seq) > \
          (documents.log_incarnation, documents.log_ms, documents.log_seq)))"
    };
}
/// Assigns `column` from the incoming row when `cond` holds, else keeps the row's.
macro_rules! take_if {
    ($cond:tt, $column:literal) => {
        concat!(
            $column,
            " = CASE WHEN ",
            $cond!(),
            " THEN excluded.",
            $column,
            " ELSE documents.",
            $column,
            " END"
        )
    };
}

/// JSON rows: content by stamp, log point forward, each on its own (a flush whose content lost
/// to a larger stamp still includes the log up to its point: what it read is superseded). Every
/// row is returned, changed or not, so the answer is the point recorded: a write that changes
/// neither (a retry, two replicas writing one read) is rare, and costs one row version. A row
/// whose content is not what was written (it lost to a larger stamp) returns that content and
/// its stamp, for Redis and the rooms to take.
pub(super) const UPSERT_JSON: &str = concat!(
    "WITH t AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                   $5::bigint[], $6::bigint[], $7::bigint[]) AS t(d, c, h, st, li, lm, ls)),
     up AS (INSERT INTO documents (doc_id, kind, content, content_hash, stamp, updated_at, \
       log_incarnation, log_ms, log_seq)
     SELECT d, 'json', c::jsonb, h, st, now(), li, lm, ls FROM t
     ON CONFLICT (doc_id) DO UPDATE SET ",
    take_if!(newer_content, "kind"),
    ", ",
    take_if!(newer_content, "content"),
    ", ",
    "state = CASE WHEN ",
    newer_content!(),
    " THEN NULL ELSE documents.state END, ",
    take_if!(newer_content, "content_hash"),
    ", ",
    take_if!(newer_content, "stamp"),
    ", ",
    take_if!(newer_content, "updated_at"),
    ", ",
    take_if!(later_point, "log_incarnation"),
    ", ",
    take_if!(later_point, "log_ms"),
    ", ",
    take_if!(later_point, "log_seq"),
    " RETURNING doc_id, log_incarnation, log_ms, log_seq, content, content_hash, stamp)
     SELECT up.doc_id, up.log_incarnation, up.log_ms, up.log_seq,
            CASE WHEN up.content_hash IS DISTINCT FROM t.h THEN up.content END,
            CASE WHEN up.content_hash IS DISTINCT FROM t.h THEN up.stamp END
     FROM up JOIN t ON t.d = up.doc_id"
);

/// Yjs rows are merged, never replaced: a flush appends its updates to `document_updates` and
/// counts their bytes on the row (a new document gets a row with an empty state; a JSON row of
/// the same id becomes a Yjs one, as a merge would have made it). Inside one transaction the
/// rows are locked (an advisory lock per id, in id order, covers rows that do not exist yet), so
/// a fold never races an append.
pub(super) const LOCK_IDS: &str = "
    SELECT pg_advisory_xact_lock(hashtextextended(d, 7177))
    FROM (SELECT d FROM UNNEST($1::text[]) AS t(d) ORDER BY d) AS ids";
pub(super) const APPEND_UPDATES: &str = "
    INSERT INTO document_updates (doc_id, update)
    SELECT d, u FROM UNNEST($1::text[], $2::bytea[]) AS t(d, u)";
pub(super) const COUNT_UPDATES: &str = concat!(
    "INSERT INTO documents (doc_id, kind, state, content_hash, updates_bytes, updated_at, \
       log_incarnation, log_ms, log_seq)
     SELECT d, 'yjs', $3::bytea, $4::text, n, now(), li, lm, ls
     FROM UNNEST($1::text[], $2::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) \
       AS t(d, n, li, lm, ls)
     ON CONFLICT (doc_id) DO UPDATE
        SET updates_bytes = documents.updates_bytes + excluded.updates_bytes,
            updated_at = excluded.updated_at,
            kind = 'yjs', content = NULL,
            state = CASE WHEN documents.kind = 'yjs' THEN documents.state ELSE excluded.state END,
            content_hash = CASE WHEN documents.kind = 'yjs' THEN documents.content_hash
                                ELSE excluded.content_hash END, ",
    take_if!(later_point, "log_incarnation"),
    ", ",
    take_if!(later_point, "log_ms"),
    ", ",
    take_if!(later_point, "log_seq"),
    " RETURNING doc_id, updates_bytes, octet_length(state), log_incarnation, log_ms, log_seq"
);
pub(super) const READ_ONE: &str = "SELECT kind, state FROM documents WHERE doc_id = $1";
/// Updates waiting in `document_updates` are folded into the state once they add up to the
/// state's size, and at least this much: the fold costs the document, so it happens once per
/// about a document's worth of updates (amortized, a flush costs what it appends).
pub(super) const FOLD_MIN_BYTES: i64 = 64 * 1024;
