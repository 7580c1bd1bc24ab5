-- What "persisted" means (SPEC §6): the last entry of a document's Redis log that the row's
-- content includes, recorded in the same transaction as the content, with the incarnation of
-- the log it belongs to (a Redis restarted empty starts a new incarnation, whose positions say
-- nothing about the old one's). A flush writes every entry after it; only what a transaction
-- recorded here may be marked persisted in Redis. (incarnation, ms, seq) only moves forward.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS log_incarnation bigint;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS log_ms bigint;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS log_seq bigint;
