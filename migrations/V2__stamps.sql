-- SPEC §6 "Versions": a JSON document's hybrid-logical-clock stamp, encoded so that byte order
-- is stamp order (hence the C collation). A JSON row is replaced only by a larger stamp; rows
-- written before stamps existed have none and count as older than any stamp. Yjs rows carry
-- none: their states are merged, never replaced.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS stamp text COLLATE "C";
