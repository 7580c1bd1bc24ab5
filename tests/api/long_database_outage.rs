//! PostgreSQL unreachable under live traffic for longer than the cache TTL: editing goes on
//! through Redis, the flusher backs off, and once the database is back every acknowledged update
//! lands, including content whose cached copy expired during the outage.

use std::time::{Duration, Instant};

use crate::harness::traffic::{Traffic, TrafficPlan};
use crate::harness::{ensure, eventually, Proxy, TestApp, TestOptions};

const WITHIN: Duration = Duration::from_secs(30);
/// The harness's flusher periods after zero errors and after two or more.
const BASE_MS: u64 = 200;
const MAX_MS: u64 = 1200;
/// The shrunken cache TTL, in seconds.
const TTL_SECS: u64 = 1;

#[tokio::test]
async fn a_database_outage_longer_than_the_cache_ttl_loses_no_acknowledged_update() {
    let proxy = Proxy::to_postgres();
    // Two documents per statement: every flush is several upserts in flight at once, so the cut
    // can land between batches of one flush (some committed, some not).
    let options = TestOptions::new()
        .database_through(proxy.addr)
        .env("DOCROOM__CACHE__TTL_SECS", TTL_SECS)
        .env("DOCROOM__FLUSHER__BATCH_SIZE", 2);
    let app = TestApp::spawn(options).await;
    // `steady` writes throughout; `parked` and `leaving` write during the outage, then
    // `parked` idles with its connections open and `leaving` disconnects, so their last
    // content is in no database and, once the TTL passes, in no cache either.
    let mut steady = Traffic::start(&app, TrafficPlan::new("steady"));
    let mut parked = Traffic::start(
        &app,
        TrafficPlan::new("parked").clients(2).docs_per_client(2),
    );
    let mut leaving = Traffic::start(
        &app,
        TrafficPlan::new("leaving").clients(2).docs_per_client(2),
    );
    for traffic in [&steady, &parked, &leaving] {
        traffic.await_every_doc_acked(WITHIN).await;
    }

    proxy.cut();
    let cut_at = Instant::now();
    for traffic in [&steady, &parked, &leaving] {
        traffic.await_progress(&traffic.marks(), WITHIN).await;
    }
    parked.park();
    leaving.stop().await;

    // The flusher backs off: one error, then two or more, each with its longer period.
    let mut schedule = Vec::new();
    eventually(WITHIN, "the flusher at its longest period", async || {
        let flusher = app.admin().flusher().await;
        let errors = flusher["consecutive_errors"].as_u64().unwrap_or(0);
        let period = flusher["period_ms"].as_u64().unwrap_or(0);
        if schedule.last() != Some(&(errors, period)) {
            schedule.push((errors, period));
        }
        ensure!(
            errors >= 2 && period == MAX_MS,
            "flusher {flusher}; so far {schedule:?}"
        );
        ensure!(
            flusher["pending_docs"].as_u64() >= Some(steady.docs().len() as u64),
            "pending_docs in {flusher}"
        );
        Ok(())
    })
    .await;
    // The outage outlasts the cache TTL twice over: this sleep is the fault, not a wait.
    let outage = Duration::from_secs(2 * TTL_SECS) + Duration::from_millis(500);
    tokio::time::sleep(outage.saturating_sub(cut_at.elapsed())).await;
    let during = steady.marks();
    steady.await_progress(&during, WITHIN).await;

    proxy.restore();
    eventually(WITHIN, "the flusher back to its base period", async || {
        let flusher = app.admin().flusher().await;
        ensure!(
            flusher["consecutive_errors"] == 0 && flusher["period_ms"] == BASE_MS,
            "flusher {flusher}"
        );
        Ok(())
    })
    .await;
    steady.stop().await;
    parked.stop().await;

    let tally = steady.tally();
    assert_eq!(tally.errors, 0, "updates refused: {}", steady.summary());
    for traffic in [&steady, &parked, &leaving] {
        traffic.flush_and_verify(&app).await;
    }
}
