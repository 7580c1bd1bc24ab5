-- Yjs documents are persisted as the updates each flush adds (SPEC §6): a flush appends them
-- here, costing the update and not the document, and they are folded into `documents.state`
-- (and deleted) once they add up to about the state's size, when a document's last editor
-- leaves, and at shutdown. A document's content is its `state` merged with its rows here.
CREATE TABLE IF NOT EXISTS document_updates (
    doc_id text   NOT NULL,
    seq    bigint GENERATED ALWAYS AS IDENTITY,
    update bytea  NOT NULL,
    PRIMARY KEY (doc_id, seq)
);
-- Bytes waiting in `document_updates` for the row's document: what decides a fold.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS updates_bytes bigint NOT NULL DEFAULT 0;
