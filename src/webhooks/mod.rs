//! Webhooks (SPEC §9): docroom POSTs `document.changed`, `document.stored`,
//! `client.connected` and `client.disconnected` to `webhooks.url`, signed, at least once and in
//! order per document.
//!
//! # Layout
//!
//! - [`recorder`]: `Recorder`, the actor that writes events into the outbox (the PostgreSQL
//!   table `webhook_deliveries`): it gathers a document's changes in memory and upserts the
//!   deployment's one open window per document at most a few times per debounce period, and
//!   keeps everything it could not write (PostgreSQL down) to write it again.
//! - `document.stored` is written by the store itself, in the transaction that commits the
//!   content ([`PgStore::with_stored_events`](docroom_actors::storage::PgStore)).
//! - [`outbox`]: the statements on `webhook_deliveries`: windows, claims under a lease,
//!   outcomes, the admin view.
//! - [`delivery`]: the worker every replica runs: closes due windows, claims due events (the
//!   oldest pending one of each document), sends them and records the outcome with backoff.
//! - [`payload`]: the JSON body and its signature, built at an event's first attempt and sent
//!   unchanged by every retry.

pub mod delivery;
pub mod marks;
pub mod outbox;
pub mod payload;
pub mod recorder;

use std::time::Duration;

use actix::Addr;
use docroom_actors::storage::{PgStore, RedisCache};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::settings::{Settings, WebhookSettings};
pub use recorder::{ClientEvent, Recorder};

pub const PENDING: &str = "docroom_webhooks_pending";
pub const DELIVERED: &str = "docroom_webhooks_delivered_total";
pub const FAILED: &str = "docroom_webhooks_failed_total";
pub const WINDOW_WRITES: &str = "docroom_webhooks_window_writes_total";
pub const DELIVERY_SECONDS: &str = "docroom_webhook_delivery_seconds";
/// Seconds from an event to its 2xx: a `document.changed` waits out its debounce window (2 s by
/// default) and a receiver that was down is retried for up to a day.
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0,
];

/// Describes the webhook series and creates them at 0, so the first scrape has them.
pub fn register_metrics() {
    describe_gauge!(
        PENDING,
        "webhook events in the outbox not yet delivered (open windows included), deployment-wide"
    );
    describe_counter!(DELIVERED, "webhook events this replica delivered (2xx)");
    describe_counter!(
        FAILED,
        "webhook events this replica gave up on after webhooks.retry_for_ms"
    );
    describe_counter!(
        WINDOW_WRITES,
        "document.changed windows this replica opened or extended in the outbox"
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        metrics::Unit::Seconds,
        "from a webhook event to its receiver's 2xx"
    );
    gauge!(PENDING).increment(0.0);
    counter!(DELIVERED).increment(0);
    counter!(FAILED).increment(0);
    counter!(WINDOW_WRITES).increment(0);
    let _ = histogram!(DELIVERY_SECONDS);
}

/// The running webhooks of this replica: the recorder sessions and rooms report to.
#[derive(Clone)]
pub struct Webhooks {
    pub recorder: Addr<Recorder>,
    /// For `GET /admin/webhooks`.
    pub outbox: outbox::Outbox,
}

impl Webhooks {
    /// Starts the recorder when `webhooks.url` is set (`None`: webhooks off).
    pub fn start(
        settings: &Settings,
        store: &PgStore,
        redis: &RedisCache,
        replica: &str,
    ) -> Option<Webhooks> {
        let w = &settings.webhooks;
        if !w.enabled() {
            return None;
        }
        let outbox = outbox::Outbox {
            pool: store.pool().clone(),
            timeout: Settings::ms(settings.database.statement_timeout_ms),
        };
        let recorder = Recorder::start_with(outbox.clone(), Some(redis.clone()), w, replica);
        Some(Webhooks { recorder, outbox })
    }

    /// Writes what the recorder still holds, within `within` (shutdown: the sessions' last
    /// `client.disconnected` events and the rooms' last changes).
    pub async fn flush(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.recorder.send(recorder::FlushEvents)).await;
    }
}

/// The lease a replica takes on an event it sends: the attempt's timeout and some slack, so a
/// replica that died mid-attempt leaves the event to another within about this.
pub fn lease(w: &WebhookSettings) -> Duration {
    Duration::from_millis(w.timeout_ms + 5000)
}
