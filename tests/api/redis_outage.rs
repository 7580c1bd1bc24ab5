//! Redis fails under live traffic — killed and restarted empty, frozen (SIGSTOP), or cut off by
//! a stalled network — for longer than the breaker's open period: the breaker opens, editing
//! goes on from the journaled fallback, the breaker closes after a successful probe, acks return
//! to the cache, and every acknowledged update reaches PostgreSQL.
//!
//! The flusher only runs when asked, so until the final flush the acknowledged content lives
//! nowhere but in Redis, the rooms and the fallback: exactly what the fault attacks. Once the
//! breaker has closed again the service is SIGKILLed and restarted before that flush: the open
//! rooms would otherwise hold (and hide the loss of) everything, while after the kill only what
//! the recovery put back into Redis, or left in the journal, can reach PostgreSQL.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::traffic::{Traffic, TrafficPlan};
use crate::harness::{ensure, eventually, PrivateRedis, Proxy, TestApp, TestOptions};

const WITHIN: Duration = Duration::from_secs(30);

/// How Redis goes away, and how it comes back.
#[derive(Clone, Copy, Debug)]
enum RedisFault {
    /// SIGKILL; back as a new, empty process.
    Killed,
    /// SIGSTOP: connections stay open, nothing answers; SIGCONT, data intact.
    Frozen,
    /// A stalled proxy between the service and Redis: a network partition.
    Partitioned,
}

#[tokio::test]
async fn a_killed_redis_restarted_empty_loses_no_acknowledged_update() {
    redis_outage_story(RedisFault::Killed).await;
}

#[tokio::test]
async fn a_frozen_redis_loses_no_acknowledged_update() {
    redis_outage_story(RedisFault::Frozen).await;
}

#[tokio::test]
async fn a_redis_behind_a_stalled_network_loses_no_acknowledged_update() {
    redis_outage_story(RedisFault::Partitioned).await;
}

async fn redis_outage_story(fault: RedisFault) {
    let mut redis = PrivateRedis::start().await;
    let proxy = matches!(fault, RedisFault::Partitioned).then(|| {
        let upstream: SocketAddr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
        Proxy::start(upstream)
    });
    let service_redis = match &proxy {
        Some(proxy) => format!("redis://{}", proxy.addr),
        None => redis.url(),
    };
    let options = TestOptions::new()
        .flusher_paused()
        .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
        .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300)
        .redis_url(service_redis)
        .redis_check_url(redis.url());
    let mut app = TestApp::spawn(options.process()).await;
    // `steady` writes throughout. `parked` writes before the fault only, then idles with its
    // connections open: its last content was acknowledged as `cache`. `outage` writes during
    // the fault only: its last content was acknowledged as `fallback`.
    let mut steady = Traffic::start(&app, TrafficPlan::new("steady"));
    let small = |label| TrafficPlan::new(label).clients(2).docs_per_client(2);
    let mut parked = Traffic::start(&app, small("parked"));
    let mut outage = Traffic::start(&app, small("outage"));
    for traffic in [&steady, &parked, &outage] {
        traffic.await_every_doc_acked(WITHIN).await;
    }
    parked.park();
    outage.park();
    assert_eq!(app.admin().breaker().await["state"], "closed");

    match fault {
        RedisFault::Killed => redis.kill(),
        RedisFault::Frozen => redis.pause(),
        RedisFault::Partitioned => proxy.as_ref().unwrap().stall(),
    }
    let breaker = await_breaker(&app, &["open"]).await;
    let first_opened_at = breaker["opened_at"].clone();
    assert!(
        first_opened_at.is_string(),
        "open without opened_at: {breaker}"
    );
    // Editing goes on: every document gets new acks, from the fallback.
    outage.resume();
    for traffic in [&steady, &outage] {
        let (opened, marks) = (traffic.tally(), traffic.marks());
        traffic.await_progress(&marks, WITHIN).await;
        let docs = traffic.docs().len() as u64;
        traffic.await_acks("fallback", docs, &opened, WITHIN).await;
    }
    // Down past the open period: a half-open probe failed and the breaker opened again.
    eventually(
        WITHIN,
        "a failed probe re-opening the breaker",
        async || {
            let breaker = app.admin().breaker().await;
            ensure!(
                breaker["state"] == "open" && breaker["opened_at"] != first_opened_at,
                "breaker {breaker}"
            );
            Ok(())
        },
    )
    .await;

    outage.park();
    match fault {
        RedisFault::Killed => redis.restart().await,
        RedisFault::Frozen => redis.resume(),
        RedisFault::Partitioned => proxy.as_ref().unwrap().restore(),
    }
    await_breaker(&app, &["closed"]).await;
    let closed = steady.tally();
    steady
        .await_acks("cache", steady.docs().len() as u64, &closed, WITHIN)
        .await;
    eventually(WITHIN, "the fallback moved back to redis", async || {
        let breaker = app.admin().breaker().await;
        ensure!(breaker["fallback_docs"] == 0, "breaker {breaker}");
        Ok(())
    })
    .await;
    // Editing never stopped: no update refused or left unanswered.
    let tally = steady.tally();
    assert_eq!(tally.errors, 0, "updates refused: {}", steady.summary());
    assert_eq!(
        tally.unanswered,
        0,
        "updates unanswered: {}",
        steady.summary()
    );

    for traffic in [&steady, &parked, &outage] {
        traffic.detach();
    }
    app.sigkill().await;
    for traffic in [&mut steady, &mut parked, &mut outage] {
        traffic.stop().await;
    }
    app.restart().await;
    for traffic in [&steady, &parked, &outage] {
        traffic.flush_and_verify(&app).await;
    }
}

/// Waits until the breaker is in one of `states`; returns its view.
async fn await_breaker(app: &TestApp, states: &[&str]) -> serde_json::Value {
    let what = format!("the breaker {states:?}");
    eventually(WITHIN, &what, async || {
        let breaker = app.admin().breaker().await;
        ensure!(
            states.iter().any(|s| breaker["state"] == *s),
            "breaker {breaker}"
        );
        Ok(breaker)
    })
    .await
}
