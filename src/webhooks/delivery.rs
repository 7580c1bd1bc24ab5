//! The delivery worker, one per replica: closes the windows that are due, claims due events
//! (each the oldest pending one of its document, under a lease), sends them at once (they are
//! of different documents) and records each outcome. Any answer but a 2xx, or none within
//! `timeout_ms`, is retried 1 s later, doubling up to 10 min apart, until `retry_for_ms` has
//! passed since the event; then it is `failed`. A replica that dies mid-attempt leaves the
//! lease to lapse, and another replica sends the event again, with the same body.

use std::time::{Duration, Instant};

use docroom_actors::storage::PgStore;
use futures_util::future::join_all;
use tracing::{debug, info, warn};

use super::outbox::{Claimed, Outbox};
use super::{payload, DELIVERED, DELIVERY_SECONDS, FAILED, PENDING};
use crate::state::AppState;

/// Events one claim takes (so one pass sends at most this many requests at once).
const CLAIM_BATCH: i64 = 32;
/// The first retry's delay, doubling per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How often the pending gauge is refreshed and old deliveries pruned.
const GAUGE_EVERY: Duration = Duration::from_secs(2);
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The delay before attempt `attempts + 1`.
pub fn backoff(attempts: i32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    FIRST_BACKOFF
        .saturating_mul(2u32.pow(doublings))
        .min(MAX_BACKOFF)
}

struct Worker {
    state: AppState,
    store: PgStore,
    outbox: Outbox,
    http: reqwest::Client,
}

/// Starts the worker on the current actix runtime; it runs as long as the runtime does (a
/// delivery cut short by the process stopping is sent again after its lease).
pub fn spawn(state: AppState, store: PgStore) -> anyhow::Result<()> {
    let w = &state.settings.webhooks;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(w.timeout_ms))
        .user_agent(concat!("docroom/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let outbox = Outbox {
        pool: store.pool().clone(),
        timeout: Duration::from_millis(state.settings.database.statement_timeout_ms),
    };
    let worker = Worker {
        state,
        store,
        outbox,
        http,
    };
    actix_web::rt::spawn(worker.run());
    Ok(())
}

impl Worker {
    async fn run(self) {
        let w = &self.state.settings.webhooks;
        let (poll, lease) = (Duration::from_millis(w.poll_ms), super::lease(w));
        let (mut gauged, mut pruned) = (Instant::now() - GAUGE_EVERY, Instant::now());
        let mut failing = false;
        loop {
            if self.state.is_shutting_down() {
                return;
            }
            let sent = match self.outbox.claim(CLAIM_BATCH, lease).await {
                Ok(claimed) => {
                    if std::mem::take(&mut failing) {
                        info!("webhook outbox readable again");
                    }
                    let n = claimed.len();
                    let bodied = self.with_bodies(claimed).await;
                    let attempts = bodied.into_iter().map(|(e, body)| self.deliver(e, body));
                    let delivered: Vec<i64> =
                        join_all(attempts).await.into_iter().flatten().collect();
                    // One statement for the batch's deliveries: an outcome PostgreSQL did not
                    // take is left to the lease (the events are sent again).
                    if let Err(err) = self.outbox.delivered(&delivered).await {
                        debug!(error = %err, "webhook deliveries not recorded, the lease decides");
                    }
                    n
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        warn!(error = %e, "webhook outbox unreadable, retrying");
                    }
                    0
                }
            };
            if gauged.elapsed() >= GAUGE_EVERY {
                gauged = Instant::now();
                if let Ok(n) = self.outbox.count_pending().await {
                    metrics::gauge!(PENDING).set(n as f64);
                }
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                let keep = Duration::from_millis(w.retry_for_ms);
                if let Err(e) = self.outbox.prune(keep).await {
                    debug!(error = %e, "pruning delivered webhooks failed");
                }
            }
            if sent < CLAIM_BATCH as usize {
                tokio::time::sleep(poll).await;
            }
        }
    }

    /// The body of each claimed event: the one stored at its first attempt, or one built now
    /// and stored (for the whole batch in one statement) before it is sent, so every retry
    /// sends the same body.
    async fn with_bodies(&self, claimed: Vec<Claimed>) -> Vec<(Claimed, Result<String, String>)> {
        let built = join_all(claimed.iter().map(|e| async move {
            match &e.body {
                Some(body) => Ok(body.clone()),
                None => payload::build(&self.state, &self.store, e)
                    .await
                    .map_err(|why| format!("building the payload: {why}")),
            }
        }))
        .await;
        let fresh: Vec<(i64, String)> = claimed
            .iter()
            .zip(&built)
            .filter_map(|(e, body)| match (&e.body, body) {
                (None, Ok(body)) => Some((e.id, body.clone())),
                _ => None,
            })
            .collect();
        let kept = match self.outbox.keep_bodies(&fresh).await {
            Ok(kept) => kept,
            Err(e) => {
                // Not sent without its body stored: the lease brings them back.
                debug!(error = %e, "webhook bodies not stored, the lease decides");
                return Vec::new();
            }
        };
        claimed
            .into_iter()
            .zip(built)
            .map(|(e, body)| {
                let body = body.map(|b| kept.get(&e.id).cloned().unwrap_or(b));
                (e, body)
            })
            .collect()
    }

    /// One attempt at `e` with `body`: answers its id if it was delivered (the caller records
    /// the batch's); a failure is recorded here (one PostgreSQL did not take is left to the
    /// lease: the event is sent again).
    async fn deliver(&self, e: Claimed, body: Result<String, String>) -> Option<i64> {
        let w = &self.state.settings.webhooks;
        let outcome = match body {
            Ok(body) => self.post(&e, body).await,
            Err(why) => Err(why),
        };
        let recorded = match &outcome {
            Ok(()) => {
                metrics::counter!(DELIVERED).increment(1);
                let age = (chrono::Utc::now() - e.at).to_std().unwrap_or_default();
                metrics::histogram!(DELIVERY_SECONDS).record(age.as_secs_f64());
                return Some(e.id);
            }
            Err(why) => {
                let retry_for = Duration::from_millis(w.retry_for_ms);
                let res = self
                    .outbox
                    .attempt_failed(e.id, why, backoff(e.attempts), retry_for)
                    .await;
                match res {
                    Ok(true) => {
                        metrics::counter!(FAILED).increment(1);
                        warn!(delivery = %e.delivery, doc = %e.doc, event = %e.event, error = %why, "webhook failed for good");
                    }
                    Ok(false) => {
                        debug!(delivery = %e.delivery, attempts = e.attempts, error = %why, "webhook attempt failed")
                    }
                    Err(_) => {}
                }
                res.map(drop)
            }
        };
        if let Err(err) = recorded {
            debug!(delivery = %e.delivery, error = %err, "webhook outcome not recorded, the lease decides");
        }
        None
    }

    async fn post(&self, e: &Claimed, body: String) -> Result<(), String> {
        let w = &self.state.settings.webhooks;
        let signature = payload::signature(&w.secret, &body);
        let answer = self
            .http
            .post(&w.url)
            .header("content-type", "application/json")
            .header("x-docroom-event", &e.event)
            .header("x-docroom-delivery", &e.delivery)
            .header("x-docroom-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|err| format!("no answer: {err}"))?;
        match answer.status() {
            s if s.is_success() => Ok(()),
            s => Err(format!("answered {s}")),
        }
    }
}
