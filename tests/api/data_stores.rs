//! Production data stores: Redis behind Sentinel failing over under traffic, a Redis that runs
//! out of memory, and (in `data_stores_tls`) Redis and PostgreSQL over TLS with passwords.
//! Every store here is private to the test: the shared ones are never touched.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;

use crate::harness::redis_nodes::{private_redis, SentinelSet, TempDir, SENTINEL_MASTER};
use crate::harness::storage::redis_connect;
use crate::harness::traffic::Traffic;
use crate::harness::{assert_fields, ensure, eventually, TestApp, TestOptions};

const WITHIN: Duration = Duration::from_secs(30);
/// The brief's bound for the whole failover story: promotion, probe, breaker closed.
const FAILOVER_WITHIN: Duration = Duration::from_secs(45);

/// How the primary stops being the primary.
#[derive(Clone, Copy, Debug)]
enum Failover {
    /// SIGKILL: connections fail until the sentinels promote the replica.
    Killed,
    /// `SENTINEL FAILOVER`: the old primary lives on as a replica and answers writes with
    /// `READONLY`, which must count as failures until the probe finds the new primary.
    Switched,
}

#[tokio::test]
async fn a_sentinel_failover_under_traffic_loses_nothing_and_ends_back_on_redis() {
    failover_story(Failover::Killed).await;
}

#[tokio::test]
async fn a_sentinel_switchover_is_followed_through_readonly_replies() {
    failover_story(Failover::Switched).await;
}

async fn failover_story(how: Failover) {
    let mut set = SentinelSet::start().await;
    let options = TestOptions::new()
        .flusher_paused()
        .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
        .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300)
        .env("DOCROOM__CACHE__SENTINELS", set.addresses())
        .env("DOCROOM__CACHE__SENTINEL_MASTER", SENTINEL_MASTER)
        // The URL's host is not used with sentinels; the test's own checks and cleanup go to
        // the node that will be promoted.
        .redis_url("redis://127.0.0.1:1")
        .redis_check_url(set.replica.url());
    let app = TestApp::spawn(options).await;
    // `parked` is acknowledged once, then idles: its content sits in Redis when the primary goes.
    let (mut steady, mut parked) = Traffic::steady_and_parked(&app, WITHIN).await;
    assert_eq!(app.admin().breaker().await["state"], "closed");
    assert!(
        steady.tally().cache > 0 && parked.tally().cache > 0,
        "no save reached the sentinels' primary before the failover: {}",
        steady.summary()
    );

    match how {
        Failover::Killed => set.primary.kill(),
        Failover::Switched => set.switch_over().await,
    }
    let promoted = set.replica.port;
    eventually(
        FAILOVER_WITHIN,
        "the sentinels to promote the replica",
        async || {
            let named = set.named_primary().await?;
            ensure!(named == promoted, "sentinels still name port {named}");
            Ok(())
        },
    )
    .await;
    if let Failover::Switched = how {
        // From here on a save sent to the old primary is refused with READONLY.
        set.await_role(set.primary.port, "slave").await;
    }
    eventually(
        FAILOVER_WITHIN,
        "the breaker closed with saves landing on the promoted replica",
        async || {
            let breaker = app.admin().breaker().await;
            ensure!(breaker["state"] == "closed", "breaker {breaker}");
            let since = steady.tally();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = steady.tally();
            ensure!(now.cache > since.cache, "no cache acks lately: {now:?}");
            // The old primary is dead or a replica now: a save it took would be refused or
            // lost. Saves are landing on the promoted node, and it holds the parked content.
            ensure!(
                set.holds_on(promoted, &app.prefix, parked.docs()).await,
                "the promoted replica lacks a parked document"
            );
            Ok(())
        },
    )
    .await;

    for traffic in [&mut steady, &mut parked] {
        traffic.stop().await;
        assert_eq!(
            traffic.tally().errors,
            0,
            "an update got an error reply during the failover: {}",
            traffic.summary()
        );
        traffic.flush_and_verify(&app).await;
    }
}

/// Fills a private Redis with filler keys until it refuses writes (OOM); returns the keys.
/// The refused command's own buffer counted towards the limit, and Redis shrinks idle client
/// buffers by itself, so the limit is then pulled 1 MB below what the data uses: the Redis
/// stays full whatever its buffers do, until the filler is deleted.
async fn fill_until_oom(url: &str) -> Vec<String> {
    let mut con = redis_connect(url)
        .await
        .expect("connect to the private redis");
    let chunk = "x".repeat(256 * 1024);
    let mut keys = Vec::new();
    for n in 0..400 {
        let key = format!("filler:{n}");
        match con.set::<_, _, ()>(&key, &chunk).await {
            Ok(()) => keys.push(key),
            Err(e) => {
                assert!(e.to_string().contains("OOM"), "not an OOM refusal: {e}");
                let info: String = redis::cmd("INFO")
                    .arg("memory")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                let used: u64 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("used_memory in INFO");
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory")
                    .arg(used - 1024 * 1024)
                    .query_async::<()>(&mut con)
                    .await
                    .unwrap();
                return keys;
            }
        }
    }
    panic!("redis never refused a write: maxmemory not in force");
}

#[tokio::test]
async fn a_full_noeviction_redis_sends_saves_to_the_journal_and_the_breaker_closes_once_freed() {
    let dir = TempDir::new("oom");
    let redis = private_redis(
        &dir,
        "small",
        "maxmemory 8mb\nmaxmemory-policy noeviction\n",
    )
    .await;
    let app = TestApp::spawn(TestOptions::new().flusher_paused().redis_url(redis.url())).await;
    app.wait_for_log("redis memory policy", WITHIN).await;
    let before = app.put_doc("full-a", &json!({"n": 0})).await;
    assert_fields(&before.body, json!({"stored": "cache"}));

    let filler = fill_until_oom(&redis.url()).await;
    let mut last = 0;
    for n in 1..=5 {
        for doc in ["full-a", "full-b"] {
            let put = app.put_doc(doc, &json!({ "n": n })).await;
            assert_eq!(put.status, 200, "{}", put.text);
            assert_fields(&put.body, json!({"stored": "fallback"}));
        }
        last = n;
    }
    // (The breaker may be open or briefly closed here: PING, its probe, works on a full Redis;
    // either way every save above went to the journal.)

    let mut con = redis_connect(&redis.url()).await.unwrap();
    con.del::<_, ()>(&filler).await.unwrap();
    eventually(
        WITHIN,
        "the breaker to close once memory is freed",
        async || {
            let breaker = app.admin().breaker().await;
            ensure!(breaker["state"] == "closed", "breaker {breaker}");
            Ok(())
        },
    )
    .await;
    let after = app.put_doc("full-c", &json!({"n": 1})).await;
    assert_fields(&after.body, json!({"stored": "cache"}));

    eventually(
        WITHIN,
        "every acknowledged save in PostgreSQL",
        async || {
            let report = app.admin().flush_now().await;
            ensure!(report["failed"] == 0, "flush report {report}");
            for (doc, n) in [("full-a", last), ("full-b", last), ("full-c", 1)] {
                let held = app.pg_content(doc).await;
                ensure!(held == Some(json!({ "n": n })), "{doc}: {held:?}");
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_evicting_memory_policy_is_warned_about_at_start() {
    let dir = TempDir::new("lru");
    let redis = private_redis(&dir, "lru", "maxmemory-policy allkeys-lru\n").await;
    let app = TestApp::spawn(TestOptions::new().redis_url(redis.url())).await;
    let line = app
        .wait_for_log("maxmemory-policy is not noeviction", WITHIN)
        .await;
    assert!(line.contains("allkeys-lru"), "{line}");
}
