//! Interleavings of faults that once lost acknowledged content (issue 11's holes), each played
//! against the real binary, a private Redis and a cuttable PostgreSQL.

use std::time::Duration;

use crate::harness::traffic::{Traffic, TrafficPlan};
use crate::harness::{
    await_breaker, ensure, eventually, PrivateRedis, Proxy, TestApp, TestOptions,
};

const WITHIN: Duration = Duration::from_secs(30);

fn options(redis: &PrivateRedis) -> TestOptions {
    TestOptions::new()
        .flusher_paused()
        .redis_url(redis.url())
        .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
        .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300)
}

async fn await_fallback_docs(app: &TestApp, at_least: u64) {
    eventually(WITHIN, "the documents journaled", async || {
        let breaker = app.admin().breaker().await;
        ensure!(
            breaker["fallback_docs"].as_u64() >= Some(at_least),
            "breaker {breaker}"
        );
        Ok(())
    })
    .await;
}

/// SPEC §1.1's ★ pair: Redis down and, once docroom has noticed, the service SIGKILLed — with
/// nobody writing, so only the health check can notice.
#[tokio::test]
async fn idle_documents_acknowledged_into_a_redis_that_dies_survive_a_sigkill_once_noticed() {
    let mut redis = PrivateRedis::start().await;
    let mut app = TestApp::spawn(options(&redis).process()).await;
    let mut idle = Traffic::start(&app, TrafficPlan::new("idle").clients(6).docs_per_client(4));
    idle.await_every_doc_acked(WITHIN).await;
    idle.park();

    redis.kill();
    // What docroom shows once it has noticed: the breaker open and every idle document's
    // content in the journal.
    await_breaker(&app, "open").await;
    await_fallback_docs(&app, idle.docs().len() as u64).await;
    idle.detach();
    app.sigkill().await;
    idle.stop().await;

    redis.restart().await;
    app.restart().await;
    idle.flush_and_verify(&app).await;
}

/// PostgreSQL down and Redis killed: content is acknowledged into the journal; the service is
/// killed and restarted (the journal replayed), Redis returns (the content moves back into it),
/// then Redis dies again before PostgreSQL is back. The journal must still hold the content: an
/// entry leaves it only once PostgreSQL has committed it.
#[tokio::test]
async fn content_moved_back_into_redis_survives_redis_dying_again_before_postgres_has_it() {
    let mut redis = PrivateRedis::start().await;
    let proxy = Proxy::to_postgres();
    let mut app = TestApp::spawn(options(&redis).process().database_through(proxy.addr)).await;
    let mut outage = Traffic::start(
        &app,
        TrafficPlan::new("outage").clients(3).docs_per_client(4),
    );
    outage.await_every_doc_acked(WITHIN).await;
    proxy.cut();
    redis.kill();
    await_breaker(&app, "open").await;
    let before = outage.tally();
    let docs = outage.docs().len() as u64;
    outage.await_acks("fallback", docs, &before, WITHIN).await;
    outage.park();

    outage.detach();
    app.sigkill().await;
    outage.stop().await;
    app.restart().await;
    redis.restart().await;
    await_breaker(&app, "closed").await;
    eventually(
        WITHIN,
        "the journaled documents moved back to redis",
        async || {
            let breaker = app.admin().breaker().await;
            ensure!(breaker["fallback_docs"] == 0, "breaker {breaker}");
            Ok(())
        },
    )
    .await;
    redis.kill();
    await_breaker(&app, "open").await;

    redis.restart().await;
    proxy.restore();
    await_breaker(&app, "closed").await;
    outage.flush_and_verify(&app).await;
}

/// The half-open probe makes a real attempt on a fresh connection: an outage ends at the first
/// probe after Redis is back, not when the old connection's reconnect backoff runs out.
#[tokio::test]
async fn the_first_probe_after_redis_returns_closes_the_breaker() {
    let mut redis = PrivateRedis::start().await;
    // The old connection would wait 30 s or more before trying to reconnect.
    let opts = options(&redis)
        .env("DOCROOM__BREAKER__OPEN_MS", 1000)
        .env("DOCROOM__BREAKER__RETRY_BASE_MS", 30_000)
        .env("DOCROOM__BREAKER__RETRY_MAX_MS", 60_000);
    let app = TestApp::spawn(opts).await;
    let put = app.put_doc("before", &serde_json::json!({"n": 1})).await;
    assert_eq!(put.body["stored"], "cache", "{}", put.text);

    redis.kill();
    await_breaker(&app, "open").await;
    redis.restart().await;

    // Well inside the old connection's backoff, a few probe periods after Redis is back.
    eventually(Duration::from_secs(10), "the breaker closed", async || {
        let breaker = app.admin().breaker().await;
        ensure!(breaker["state"] == "closed", "breaker {breaker}");
        Ok(())
    })
    .await;
    let put = app.put_doc("after", &serde_json::json!({"n": 2})).await;
    assert_eq!(put.body["stored"], "cache", "{}", put.text);
}
