-- One row per document: its kind, its content (JSON documents as jsonb, Yjs documents as the
-- v1-encoded state in bytea) and the SHA-256 of that content as docroom hashes it.
CREATE TABLE IF NOT EXISTS documents (
    doc_id       text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('json', 'yjs')),
    content      jsonb,
    state        bytea,
    content_hash text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
