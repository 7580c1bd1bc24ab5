//! SIGTERM (or SIGINT) under live traffic: every session gets close code 1001, everything acknowledged is
//! drained (to PostgreSQL, or to the journal when PostgreSQL does not answer), and the process
//! exits 0 within the drain deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::traffic::{Tally, Traffic, TrafficPlan};
use crate::harness::{ensure, eventually, Proxy, TestApp, TestOptions, WsClient};

const WITHIN: Duration = Duration::from_secs(30);
/// What a process may take past its drain deadline to tear down and be reaped on a busy machine.
const EXIT_SLACK: Duration = Duration::from_secs(5);

#[tokio::test]
async fn sigterm_under_traffic_closes_sessions_with_1001_and_drains_everything_to_postgres() {
    shutdown_under_traffic_story("TERM").await;
}

#[tokio::test]
async fn sigint_under_traffic_drains_like_sigterm() {
    shutdown_under_traffic_story("INT").await;
}

async fn shutdown_under_traffic_story(signal: &str) {
    let deadline = Duration::from_secs(8);
    // The flusher never runs by itself: only the drain can put this content in PostgreSQL.
    let options = TestOptions::new().flusher_paused().env(
        "DOCROOM__SERVER__SHUTDOWN_DRAIN_DEADLINE_MS",
        deadline.as_millis(),
    );
    let mut app = TestApp::spawn(options.process()).await;
    let (mut steady, mut parked) = Traffic::steady_and_parked(&app, WITHIN).await;
    steady.await_progress(&steady.marks(), WITHIN).await;

    let before = [steady.tally(), parked.tally()];
    steady.detach();
    parked.detach();
    app.signal(signal);
    let status = app.wait_exit(deadline + EXIT_SLACK).await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    steady.stop().await;
    parked.stop().await;

    for (traffic, before) in [(&steady, &before[0]), (&parked, &before[1])] {
        assert_eq!(
            endings_since(before, &traffic.tally()),
            BTreeMap::from([("close 1001".to_owned(), traffic.docs().len() as u64)]),
            "every connection closed with 1001: {}",
            traffic.summary()
        );
        traffic.verify_in_postgres(&app).await;
    }
}

#[tokio::test]
async fn sigterm_with_postgres_unresponsive_journals_everything_within_the_deadline() {
    let deadline = Duration::from_secs(4);
    let proxy = Proxy::to_postgres();
    let options = TestOptions::new()
        .flusher_paused()
        .database_through(proxy.addr)
        .env(
            "DOCROOM__SERVER__SHUTDOWN_DRAIN_DEADLINE_MS",
            deadline.as_millis(),
        )
        // One document per statement: the drain is many upserts in flight, all stalled.
        .env("DOCROOM__FLUSHER__BATCH_SIZE", 1);
    let mut app = TestApp::spawn(options.process()).await;
    let mut traffic = Traffic::start(&app, TrafficPlan::new("doc"));
    traffic.await_every_doc_acked(WITHIN).await;

    // A partition, not a refusal: the drain waits on PostgreSQL until its share of the deadline
    // is spent, then journals.
    proxy.stall();
    traffic.await_progress(&traffic.marks(), WITHIN).await;
    let before = traffic.tally();
    traffic.detach();
    app.signal("TERM");
    eventually(WITHIN, "/readyz to answer 503", async || {
        let ready = app.get("/readyz").await;
        ensure!(
            ready.status == 503,
            "/readyz {} {}",
            ready.status,
            ready.text
        );
        Ok(())
    })
    .await;
    // While it drains, nobody new gets in.
    match WsClient::open(&app, "/docs/latecomer/ws", &[]).await {
        Err(refused) => assert_eq!(refused.status, 503, "{}", refused.body),
        Ok(_) => panic!("a websocket upgrade was accepted during the drain"),
    }
    let status = app.wait_exit(deadline + EXIT_SLACK).await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    traffic.stop().await;
    assert_eq!(
        endings_since(&before, &traffic.tally()),
        BTreeMap::from([("close 1001".to_owned(), traffic.docs().len() as u64)]),
        "every connection closed with 1001: {}",
        traffic.summary()
    );
    let journal = std::fs::metadata(app.data_dir.join("journal.log")).map(|m| m.len());
    assert!(
        matches!(journal, Ok(n) if n > 0),
        "no journal left for the next start: {journal:?}"
    );

    // Only the journal counts: Redis loses its copy too before the next start.
    assert!(app.redis_delete_all().await > 0, "nothing was cached");
    proxy.restore();
    app.restart().await;
    traffic.flush_and_verify(&app).await;
}

/// How many connections ended each way between two tallies.
fn endings_since(before: &Tally, after: &Tally) -> BTreeMap<String, u64> {
    after
        .endings
        .iter()
        .map(|(how, n)| {
            (
                how.clone(),
                n - before.endings.get(how).copied().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}
