-- Document history (SPEC §10): each document's versions, kept for history.retention_days.
--
-- A version is stored as what changed since the version before it (`data`: for Yjs the update
-- from that version's state vector to this state, for JSON a JSON Patch, RFC 6902, as text), or
-- whole (`checkpoint`: a Yjs state, a JSON document's canonical text): a document's first
-- version, one whose changes since the last checkpoint would add up to more than its content,
-- every 50th, and the oldest version kept once older ones are pruned. Reading a version applies
-- the last checkpoint at or before it, then each change after it, in order; so history grows
-- with what changed, not with versions times the document's size.
--
-- Versions of one document are cut one at a time under an advisory lock on the document
-- (pg_advisory_xact_lock(hashtextextended(doc_id, 7178))), so replicas cutting at once never
-- take the same number; pruning takes the same lock.
CREATE TABLE IF NOT EXISTS document_versions (
    doc_id       text        NOT NULL,
    version      bigint      NOT NULL,
    -- Never before the previous version's, so versions past retention are a prefix.
    at           timestamptz NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('json', 'yjs')),
    users        text[]      NOT NULL DEFAULT '{}',
    hash         text        NOT NULL,
    -- The content's size at this version, not what is stored for it.
    bytes        bigint      NOT NULL,
    checkpoint   boolean     NOT NULL,
    data         bytea       NOT NULL,
    -- Yjs: this version's state vector, where the next version's change starts.
    state_vector bytea,
    -- Changes stored since the last checkpoint, this one included, and their bytes: what
    -- decides the next checkpoint.
    chain_len    integer     NOT NULL,
    chain_bytes  bigint      NOT NULL,
    PRIMARY KEY (doc_id, version)
);
-- What pruning looks for: versions past retention.
CREATE INDEX IF NOT EXISTS document_versions_at ON document_versions (at);

-- Each document's last version: its number, kept when pruning deletes every version of the
-- document so that a number is never given twice; and, for Yjs, its delete set, so that the next
-- version's change carries only the deletions since (a state's delete set holds every deletion
-- ever made, and would otherwise be stored again with every version).
CREATE TABLE IF NOT EXISTS document_version_heads (
    doc_id     text   PRIMARY KEY,
    last       bigint NOT NULL,
    delete_set bytea
);
