//! The statements on `webhook_deliveries` (see `migrations/V5__webhook_deliveries.sql` for the
//! states). Every replica runs them; they are safe to run at once: windows are extended under
//! the row's lock, claims skip rows another replica holds and take a lease, so a claim never
//! holds a transaction open across an HTTP request.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;

/// Opens or extends each document's window: users unioned, the due time pushed to `due` ms from
/// now but never past the window's end (`max_wait_ms` after its first change, `ends` ms from now
/// for a new window). A window being closed meanwhile no longer conflicts: the changes open a
/// new one.
const UPSERT_WINDOWS: &str = "
    INSERT INTO webhook_deliveries (event, doc_id, kind, users, state, due_at, window_ends, at)
    SELECT 'document.changed', d, k, ARRAY(SELECT jsonb_array_elements_text(u::jsonb)), 'window',
           now() + LEAST(due, ends) * interval '1 millisecond',
           now() + ends * interval '1 millisecond', now()
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
         AS t(d, k, u, due, ends)
    ON CONFLICT (doc_id) WHERE state = 'window' DO UPDATE SET
        kind = excluded.kind,
        users = ARRAY(SELECT DISTINCT x FROM unnest(webhook_deliveries.users || excluded.users)
                      AS x ORDER BY x),
        due_at = LEAST(GREATEST(webhook_deliveries.due_at, excluded.due_at),
                       webhook_deliveries.window_ends)";

/// Client events, in the order given (each takes the next `seq` as it is inserted).
const INSERT_EVENTS: &str = "
    INSERT INTO webhook_deliveries (event, doc_id, kind, users, replica, at)
    SELECT e, d, k, ARRAY(SELECT jsonb_array_elements_text(u::jsonb)), r,
           to_timestamp(ms / 1000.0)
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[])
         WITH ORDINALITY AS t(e, d, k, u, r, ms, n)
    ORDER BY n";

/// Windows past their due time become pending events, ordered after everything already
/// pending for their document; `at` is when the window ended.
const CLOSE_WINDOWS: &str = "
    UPDATE webhook_deliveries
    SET state = 'pending', seq = nextval('webhook_delivery_seq'), at = due_at, due_at = now()
    WHERE state = 'window' AND due_at <= now()";

/// Takes up to `$2` due events, each the oldest pending one of its document (so a document's
/// events go out one at a time, in order), and leases them for `$1` ms.
const CLAIM: &str = "
    UPDATE webhook_deliveries
    SET leased_until = now() + $1 * interval '1 millisecond', attempts = attempts + 1
    WHERE id IN (
        SELECT h.id FROM webhook_deliveries h
        WHERE h.state = 'pending' AND h.due_at <= now()
          AND (h.leased_until IS NULL OR h.leased_until < now())
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                          WHERE e.doc_id = h.doc_id AND e.state = 'pending' AND e.seq < h.seq)
        ORDER BY h.seq LIMIT $2
        FOR UPDATE SKIP LOCKED)
    RETURNING id, delivery, event, doc_id, kind, hash, users, replica, at, attempts, body";

/// Keeps the first body built for an event (two replicas may build one after a lease lapsed).
const KEEP_BODIES: &str = "
    UPDATE webhook_deliveries w SET body = COALESCE(w.body, t.b)
    FROM UNNEST($1::bigint[], $2::text[]) AS t(i, b)
    WHERE w.id = t.i RETURNING w.id, w.body";
const DELIVERED: &str = "
    UPDATE webhook_deliveries
    SET state = 'delivered', delivered_at = now(), leased_until = NULL, last_error = NULL
    WHERE id = ANY($1) AND state = 'pending'";
/// A failed attempt: retried after `$3` ms, or `failed` once `$4` ms have passed since the
/// event. Answers the state it is left in.
const ATTEMPT_FAILED: &str = "
    UPDATE webhook_deliveries
    SET leased_until = NULL, last_error = $2, due_at = now() + $3 * interval '1 millisecond',
        state = CASE WHEN now() >= at + $4 * interval '1 millisecond' THEN 'failed'
                     ELSE 'pending' END
    WHERE id = $1 AND state = 'pending' RETURNING state";
/// Delivered events are kept for the admin view, then dropped.
const PRUNE: &str = "
    DELETE FROM webhook_deliveries
    WHERE state = 'delivered' AND delivered_at < now() - $1 * interval '1 millisecond'";
const COUNT_PENDING: &str =
    "SELECT count(*) FROM webhook_deliveries WHERE state IN ('window', 'pending')";
const STATS: &str = "
    SELECT count(*) FILTER (WHERE state IN ('window', 'pending')),
           count(*) FILTER (WHERE state = 'delivered'),
           count(*) FILTER (WHERE state = 'failed'),
           EXTRACT(EPOCH FROM now() - min(at) FILTER (WHERE state = 'pending'))::float8,
           min(at) FILTER (WHERE state = 'pending'),
           (SELECT last_error FROM webhook_deliveries
            WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
    FROM webhook_deliveries";
const RECENT: &str = "
    SELECT delivery, event, doc_id, state, attempts, last_error, at, delivered_at
    FROM webhook_deliveries ORDER BY id DESC LIMIT $1";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres did not answer within {0:?}")]
    Timeout(Duration),
}

/// The outbox over the service's pool; every call bounded by `timeout`. Cloning is shallow.
#[derive(Clone)]
pub struct Outbox {
    pub pool: Pool,
    pub timeout: Duration,
}

/// A window's changes as one replica gathered them.
pub struct WindowRow {
    pub doc: String,
    pub kind: &'static str,
    pub users: Vec<String>,
    /// Milliseconds from now to the window's end by debounce (its last change + debounce_ms).
    pub due_ms: i64,
    /// Milliseconds from now to its end at the latest (its first change + max_wait_ms).
    pub ends_ms: i64,
}

/// A client event waiting to be written.
#[derive(Clone, Debug)]
pub struct EventRow {
    pub event: &'static str,
    pub doc: String,
    pub kind: &'static str,
    pub users: Vec<String>,
    pub replica: String,
    pub at: DateTime<Utc>,
}

/// An event claimed for delivery.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i64,
    pub delivery: String,
    pub event: String,
    pub doc: String,
    pub kind: String,
    pub hash: Option<String>,
    pub users: Vec<String>,
    pub replica: Option<String>,
    pub at: DateTime<Utc>,
    pub attempts: i32,
    pub body: Option<String>,
}

/// `GET /admin/webhooks`.
#[derive(Debug, Serialize)]
pub struct OutboxView {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub oldest_pending_seconds: Option<f64>,
    /// SPEC §3: when the oldest pending event happened, and the last error any attempt met.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub recent: Vec<RecentDelivery>,
}

#[derive(Debug, Serialize)]
pub struct RecentDelivery {
    pub delivery: String,
    pub event: String,
    pub doc: String,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

fn users_json(users: &[String]) -> String {
    serde_json::to_string(users).unwrap_or_else(|_| "[]".into())
}

impl Outbox {
    async fn client(&self) -> Result<deadpool_postgres::Object, OutboxError> {
        self.bounded(self.pool.get()).await?.map_err(Into::into)
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, OutboxError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| OutboxError::Timeout(self.timeout))
    }

    /// Runs `statement` with `params` on a pooled connection; answers its rows.
    async fn query(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, OutboxError> {
        let client = self.client().await?;
        // Prepared once per pooled connection: a statement sent as text is parsed, described
        // and closed again on every call (each replica runs these every poll).
        let rows = self
            .bounded(async {
                let prepared = client.prepare_cached(statement).await?;
                client.query(&prepared, params).await
            })
            .await?;
        if rows.is_err() {
            // A connection that saw an error is not given back to the pool.
            drop(deadpool_postgres::Object::take(client));
        }
        Ok(rows?)
    }

    pub async fn upsert_windows(&self, rows: &[WindowRow]) -> Result<(), OutboxError> {
        let docs: Vec<&str> = rows.iter().map(|r| r.doc.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
        let users: Vec<String> = rows.iter().map(|r| users_json(&r.users)).collect();
        let due: Vec<i64> = rows.iter().map(|r| r.due_ms).collect();
        let ends: Vec<i64> = rows.iter().map(|r| r.ends_ms).collect();
        self.query(UPSERT_WINDOWS, &[&docs, &kinds, &users, &due, &ends])
            .await
            .map(drop)
    }

    pub async fn insert_events(&self, rows: &[EventRow]) -> Result<(), OutboxError> {
        let events: Vec<&str> = rows.iter().map(|r| r.event).collect();
        let docs: Vec<&str> = rows.iter().map(|r| r.doc.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
        let users: Vec<String> = rows.iter().map(|r| users_json(&r.users)).collect();
        let replicas: Vec<&str> = rows.iter().map(|r| r.replica.as_str()).collect();
        let at: Vec<f64> = rows
            .iter()
            .map(|r| r.at.timestamp_micros() as f64 / 1000.0)
            .collect();
        self.query(
            INSERT_EVENTS,
            &[&events, &docs, &kinds, &users, &replicas, &at],
        )
        .await
        .map(drop)
    }

    /// Closes due windows, then claims up to `n` due events under a lease of `lease`.
    pub async fn claim(&self, n: i64, lease: Duration) -> Result<Vec<Claimed>, OutboxError> {
        self.query(CLOSE_WINDOWS, &[]).await?;
        let lease_ms = lease.as_millis() as f64;
        let rows = self.query(CLAIM, &[&lease_ms, &n]).await?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.try_get(0)?,
                    delivery: r.try_get(1)?,
                    event: r.try_get(2)?,
                    doc: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    hash: r.try_get(5)?,
                    users: r.try_get(6)?,
                    replica: r.try_get(7)?,
                    at: r.try_get(8)?,
                    attempts: r.try_get(9)?,
                    body: r.try_get(10)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(Into::into)
    }

    /// Stores each body as its event's body unless one was stored first (one statement for a
    /// batch); answers the ones kept, by event id.
    pub async fn keep_bodies(
        &self,
        bodies: &[(i64, String)],
    ) -> Result<HashMap<i64, String>, OutboxError> {
        if bodies.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<i64> = bodies.iter().map(|(id, _)| *id).collect();
        let texts: Vec<&str> = bodies.iter().map(|(_, b)| b.as_str()).collect();
        let rows = self.query(KEEP_BODIES, &[&ids, &texts]).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(Into::into)
    }

    /// Records these events delivered (one statement for a batch).
    pub async fn delivered(&self, ids: &[i64]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.query(DELIVERED, &[&ids]).await.map(drop)
    }

    /// Records a failed attempt; answers true if the event is now `failed` for good.
    pub async fn attempt_failed(
        &self,
        id: i64,
        error: &str,
        retry_in: Duration,
        retry_for: Duration,
    ) -> Result<bool, OutboxError> {
        let (retry_ms, for_ms) = (retry_in.as_millis() as f64, retry_for.as_millis() as f64);
        let rows = self
            .query(ATTEMPT_FAILED, &[&id, &error, &retry_ms, &for_ms])
            .await?;
        Ok(rows
            .first()
            .is_some_and(|r| r.try_get::<_, &str>(0).ok() == Some("failed")))
    }

    pub async fn prune(&self, older_than: Duration) -> Result<(), OutboxError> {
        let ms = older_than.as_millis() as f64;
        self.query(PRUNE, &[&ms]).await.map(drop)
    }

    pub async fn count_pending(&self) -> Result<i64, OutboxError> {
        let rows = self.query(COUNT_PENDING, &[]).await?;
        Ok(rows.first().map_or(Ok(0), |r| r.try_get(0))?)
    }

    /// The admin view, with the last `recent` events.
    pub async fn view(&self, recent: i64) -> Result<OutboxView, OutboxError> {
        let stats = self.query(STATS, &[]).await?;
        let s = stats.first();
        let get = |i| s.map_or(Ok(0), |r| r.try_get::<_, i64>(i));
        let rows = self.query(RECENT, &[&recent]).await?;
        let recent = rows
            .iter()
            .map(|r| {
                Ok(RecentDelivery {
                    delivery: r.try_get(0)?,
                    event: r.try_get(1)?,
                    doc: r.try_get(2)?,
                    state: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                    at: r.try_get(6)?,
                    delivered_at: r.try_get(7)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        Ok(OutboxView {
            pending: get(0)?,
            delivered: get(1)?,
            failed: get(2)?,
            oldest_pending_seconds: match s {
                Some(r) => r.try_get(3)?,
                None => None,
            },
            oldest_pending_at: match s {
                Some(r) => r.try_get(4)?,
                None => None,
            },
            last_error: match s {
                Some(r) => r.try_get(5)?,
                None => None,
            },
            recent,
        })
    }
}
