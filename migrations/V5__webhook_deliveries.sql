-- The webhook outbox (SPEC §9): every event waits here until its receiver answered 2xx, so
-- delivery survives a receiver that is down, a replica killed mid-delivery and a PostgreSQL
-- outage (the event is written again once PostgreSQL is back). Every replica's worker delivers
-- from it; a lease, not a held transaction, marks the row one of them is sending.
--
-- state: 'window' — a document.changed still gathering changes: every replica that takes a
--   change of the document extends it (due_at: debounce_ms after the last change, at most
--   window_ends, max_wait_ms after the first); once due it becomes 'pending'.
--   'pending' — waiting for a 2xx (due_at: the next attempt); 'delivered'; 'failed' (retried
--   for webhooks.retry_for_ms without a 2xx; kept and counted).
-- seq orders one document's events: only its pending row of the smallest seq is sent, so a
-- receiver gets them in order. A window takes its seq when it closes.
-- body is built at the first attempt (with the hash and content as they are then) and sent
-- unchanged by every retry, with the same delivery id.
CREATE SEQUENCE IF NOT EXISTS webhook_delivery_seq;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery     text NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    event        text NOT NULL,
    doc_id       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('json', 'yjs')),
    hash         text,
    users        text[] NOT NULL DEFAULT '{}',
    replica      text,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('window', 'pending', 'delivered', 'failed')),
    seq          bigint NOT NULL DEFAULT nextval('webhook_delivery_seq'),
    at           timestamptz NOT NULL DEFAULT now(),
    due_at       timestamptz NOT NULL DEFAULT now(),
    window_ends  timestamptz,
    leased_until timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    body         text,
    delivered_at timestamptz
);
-- At most one open window per document: the row every replica's upsert extends.
CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_window
    ON webhook_deliveries (doc_id) WHERE state = 'window';
-- What the workers look at: rows not yet final, by document and order, and by due time.
CREATE INDEX IF NOT EXISTS webhook_deliveries_open
    ON webhook_deliveries (doc_id, seq) WHERE state IN ('window', 'pending');
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (due_at) WHERE state IN ('window', 'pending');
-- The admin view's last deliveries.
CREATE INDEX IF NOT EXISTS webhook_deliveries_recent ON webhook_deliveries (id DESC);
