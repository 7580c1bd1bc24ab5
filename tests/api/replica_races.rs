//! Interleavings between replicas that once lost an acknowledged write, played with real
//! replicas on one Redis key prefix and one database, one replica reaching Redis through a proxy
//! that makes it distant.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::harness::redis_server::PrivateRedis;
use crate::harness::{
    await_breaker, ensure, eventually, random_suffix, Proxy, TestApp, TestOptions, WsClient,
};

/// A flush claims a document (reading whether it is dirty) and reads its content in a second
/// round trip. Replica B flushes v1 (written on A), so the document is clean; A's own flush then
/// claims it clean, and B acknowledges v2 while A's read is on its way. A settled at what it
/// read, marking v2 persisted unwritten: PostgreSQL kept v1 and `modifiedDocs` forgot v2. Found
/// with A's Redis 15 ms away for 17 of 60 documents; here every document's v2 lands somewhere in
/// A's flush, over a few rounds.
#[tokio::test]
async fn a_save_landing_between_a_flushs_claim_and_its_read_still_reaches_postgres() {
    let b = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let distant = Proxy::start("127.0.0.1:6379".parse().unwrap());
    distant.delay(Duration::from_millis(15));
    let a = TestApp::spawn(
        b.replica_options()
            .flusher_paused()
            .redis_url(format!("redis://{}", distant.addr))
            .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 5_000),
    )
    .await;

    for round in 0..3 {
        let docs: Vec<String> = (0..30)
            .map(|i| format!("race-{round}-{i}-{}", random_suffix()))
            .collect();
        // A member on A keeps each room open, so no leave flush of A's persists v1 first.
        let mut members = Vec::new();
        for doc in &docs {
            members.push(WsClient::connect(&a, doc).await);
            let put = a.put_doc(doc, &json!({"v": 1})).await;
            assert_eq!(put.status, 200, "{}", put.text);
        }
        b.admin().flush_now().await;

        // A's flush, and B's second versions spread over the next 0-114 ms.
        let writes = docs.iter().enumerate().map(|(i, doc)| {
            let b = &b;
            async move {
                tokio::time::sleep(Duration::from_millis((i as u64 * 11) % 330)).await;
                let put = b.put_doc(doc, &json!({"v": 2})).await;
                assert_eq!(put.body["stored"], "cache", "{doc}: {}", put.text);
            }
        });
        let admin = a.admin();
        let (flushed, _) = tokio::join!(admin.flush_now(), join_all(writes));
        assert_eq!(flushed["failed"], 0, "{flushed}");
        for _ in 0..2 {
            a.admin().flush_now().await;
            b.admin().flush_now().await;
        }

        let mut lost = Vec::new();
        for doc in &docs {
            let held = a.pg_content(doc).await;
            if held != Some(json!({"v": 2})) {
                lost.push(format!("{doc}: {held:?}"));
            }
        }
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged v2 lost: {lost:#?}"
        );
        drop(members);
    }
}

/// SPEC §6: "a JSON store that already holds the same content under a smaller stamp takes the
/// larger stamp". PostgreSQL holds X; replica A, cut from Redis, journals W; replica B then
/// acknowledges Z and X again (stamped after W). B's flush finds X already in PostgreSQL: left
/// under its old stamp, A's later flush of W (stamped in between) replaced it, and PostgreSQL
/// ended on W while every replica and Redis showed X.
#[tokio::test]
async fn equal_content_written_again_takes_its_newer_stamp_so_an_older_journaled_write_loses() {
    let b = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let cut = Proxy::start("127.0.0.1:6379".parse().unwrap());
    let a = TestApp::spawn(
        b.replica_options()
            .flusher_paused()
            .redis_url(format!("redis://{}", cut.addr))
            .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
            .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300),
    )
    .await;
    let doc = format!("stamped-{}", random_suffix());
    let (x, w, z) = (json!({"v": "x"}), json!({"v": "w"}), json!({"v": "z"}));
    // Members keep both rooms open: no leave flush reorders the story.
    let mut on_a = WsClient::connect(&a, &doc).await;
    let mut on_b = WsClient::connect(&b, &doc).await;

    on_a.update(x.clone(), "x").await;
    a.admin().flush_now().await;
    assert_eq!(a.pg_content(&doc).await, Some(x.clone()));

    cut.cut();
    a.admin().set_breaker("open").await;
    let journaled = on_a.update(w.clone(), "w").await;
    assert_eq!(journaled["stored"], "fallback", "{journaled}");

    on_b.update(z.clone(), "z").await;
    let again = on_b.update(x.clone(), "x again").await;
    assert_eq!(again["stored"], "cache", "{again}");
    b.admin().flush_now().await;
    a.admin().flush_now().await;

    assert_eq!(
        a.pg_content(&doc).await,
        Some(x.clone()),
        "PostgreSQL went back to the journaled W"
    );

    // Redis returns to A: W is older than X everywhere, and everyone agrees on X.
    cut.restore();
    a.admin().set_breaker("auto").await;
    await_breaker(&a, "closed").await;
    eventually(
        Duration::from_secs(20),
        "replicas, Redis and PostgreSQL on X",
        async || {
            for (name, app) in [("a", &a), ("b", &b)] {
                let view = app.get_doc(&doc).await.body["content"].clone();
                ensure!(view == x, "replica {name} shows {view}");
            }
            a.admin().flush_now().await;
            let pg = b.pg_content(&doc).await;
            ensure!(pg.as_ref() == Some(&x), "postgres holds {pg:?}");
            Ok(())
        },
    )
    .await;
}

/// A journaled version moved back into Redis is ordered by its stamp, even when Redis holds the
/// same content. Redis holds C (saved on B). Cut from Redis, replica A journals A and then
/// replica Z journals C again, stamped after A. Z's move back found C in Redis and answered
/// `duplicate`, so Redis kept C's old stamp; A's move back then put A over it. Z's flush wrote
/// C to PostgreSQL under its new stamp, which A's could not replace: PostgreSQL held C while
/// every replica and Redis showed A.
#[tokio::test]
async fn a_journaled_version_equal_to_the_cached_one_moves_back_under_its_own_stamp() {
    let b = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let cut_a = Proxy::start("127.0.0.1:6379".parse().unwrap());
    let cut_z = Proxy::start("127.0.0.1:6379".parse().unwrap());
    let through = |proxy: &Proxy| {
        b.replica_options()
            .flusher_paused()
            .redis_url(format!("redis://{}", proxy.addr))
            .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
            .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300)
    };
    let a = TestApp::spawn(through(&cut_a)).await;
    let z = TestApp::spawn(through(&cut_z)).await;
    let doc = format!("moved-stamp-{}", random_suffix());
    let (c, v_a, d) = (json!({"v": "c"}), json!({"v": "a"}), json!({"v": "d"}));
    let mut on_a = WsClient::connect(&a, &doc).await;
    let mut on_b = WsClient::connect(&b, &doc).await;
    let mut on_z = WsClient::connect(&z, &doc).await;

    on_b.update(c.clone(), "c").await;
    for (app, name) in [(&a, "a"), (&z, "z")] {
        eventually(Duration::from_secs(10), "C reaches the room", async || {
            let view = app.get_doc(&doc).await.body["content"].clone();
            ensure!(view == c, "replica {name} shows {view}");
            Ok(())
        })
        .await;
    }

    for (proxy, app) in [(&cut_a, &a), (&cut_z, &z)] {
        proxy.cut();
        app.admin().set_breaker("open").await;
    }
    // Z's room holds C: it takes D first, so that C is a change there.
    let stored = on_z.update(d.clone(), "d").await;
    assert_eq!(stored["stored"], "fallback", "{stored}");
    let stored = on_a.update(v_a.clone(), "a").await;
    assert_eq!(stored["stored"], "fallback", "{stored}");
    // Stamps of two replicas within one millisecond are ordered by replica id: C again must be
    // stamped in a later one than A for A to be the older version.
    tokio::time::sleep(Duration::from_millis(3)).await;
    let stored = on_z.update(c.clone(), "c again").await;
    assert_eq!(stored["stored"], "fallback", "{stored}");

    // Z moves C back first, then A moves A back: A is stamped before C.
    for (proxy, app) in [(&cut_z, &z), (&cut_a, &a)] {
        proxy.restore();
        app.admin().set_breaker("auto").await;
        await_breaker(app, "closed").await;
        eventually(
            Duration::from_secs(10),
            "the journal moved back",
            async || {
                let fallback_docs = app.admin().breaker().await["fallback_docs"].clone();
                ensure!(
                    fallback_docs == 0,
                    "{fallback_docs} documents still journaled"
                );
                Ok(())
            },
        )
        .await;
    }

    eventually(
        Duration::from_secs(20),
        "replicas, Redis and PostgreSQL on C",
        async || {
            for (name, app) in [("a", &a), ("b", &b), ("z", &z)] {
                let view = app.get_doc(&doc).await.body["content"].clone();
                ensure!(view == c, "replica {name} shows {view}");
                app.admin().flush_now().await;
            }
            let pg = b.pg_content(&doc).await;
            ensure!(pg.as_ref() == Some(&c), "postgres holds {pg:?}");
            Ok(())
        },
    )
    .await;
}

/// A journaled version PostgreSQL refuses for a larger stamp: A journals W while cut off from
/// Redis; B writes X after it and flushes it; Redis restarts empty; A's flush then writes W,
/// which loses to X. What follows the commit puts PostgreSQL's X into Redis and into A's room.
/// It once wrote W, the content written: Redis served W over PostgreSQL's X, and A's room
/// stayed on W (the simulator's seeds 1713, 6858, 8542 and 9958).
#[tokio::test]
async fn a_journaled_version_postgres_refused_leaves_redis_and_the_rooms_on_what_it_kept() {
    let mut redis = PrivateRedis::start().await;
    let (b, cut_a, a) = b_and_a_behind_a_cut(&redis, |o| o).await;
    let doc = format!("kept-{}", random_suffix());
    let (w, x) = (json!({"v": "w"}), json!({"v": "x"}));
    let mut on_a = WsClient::connect(&a, &doc).await;
    let mut on_b = WsClient::connect(&b, &doc).await;

    cut_a.cut();
    a.admin().set_breaker("open").await;
    let stored = on_a.update(w.clone(), "w").await;
    assert_eq!(stored["stored"], "fallback", "{stored}");
    // X is stamped in a later millisecond than W (one millisecond orders by replica id).
    tokio::time::sleep(Duration::from_millis(3)).await;
    let stored = on_b.update(x.clone(), "x").await;
    assert_eq!(stored["stored"], "cache", "{stored}");
    b.admin().flush_now().await;
    assert_eq!(b.pg_content(&doc).await, Some(x.clone()));
    // No room on B: nothing fills the emptied Redis from PostgreSQL before A's flush.
    on_b.close().await;

    redis.restart().await;
    a.admin().flush_now().await;
    assert_eq!(
        b.pg_content(&doc).await,
        Some(x.clone()),
        "PostgreSQL keeps the larger stamp"
    );

    cut_a.restore();
    a.admin().set_breaker("auto").await;
    await_breaker(&a, "closed").await;
    eventually(Duration::from_secs(20), "the announcement", async || {
        let fallback_docs = a.admin().breaker().await["fallback_docs"].clone();
        ensure!(fallback_docs == 0, "{fallback_docs} documents wait");
        Ok(())
    })
    .await;
    let temp = b.redis_get(&format!("doc:{doc}:temp")).await;
    let cached: Option<serde_json::Value> = temp.map(|t| serde_json::from_str(&t).unwrap());
    assert_eq!(cached, Some(x.clone()), "Redis holds what PostgreSQL kept");
    eventually(Duration::from_secs(10), "A's room on X", async || {
        let view = a.get_doc(&doc).await.body["content"].clone();
        ensure!(view == x, "replica a shows {view}");
        Ok(())
    })
    .await;
    let fresh = b.get_doc(&doc).await.body["content"].clone();
    assert_eq!(fresh, x, "a read on B, which has no room");
}

/// A journaled version PostgreSQL takes while Redis is out of use: the journal lets go of it
/// (Redis may stay away for good), and a crash follows before Redis is back. Redis held X,
/// older than the journaled W; nothing announced W, so Redis and B's room served X until the
/// TTL ran out (the simulator's seeds 216288, 224805 and four more). The journal now records
/// that Redis is owed the document, and the restarted replica's move back announces
/// PostgreSQL's W.
#[tokio::test]
async fn a_journaled_version_committed_while_redis_is_away_reaches_it_after_a_crash() {
    let redis = PrivateRedis::start().await;
    let (b, cut_a, mut a) = b_and_a_behind_a_cut(&redis, TestOptions::process).await;
    let doc = format!("owed-{}", random_suffix());
    let (x, w) = (json!({"v": "x"}), json!({"v": "journaled-w"}));
    let mut on_b = WsClient::connect(&b, &doc).await;
    let stored = on_b.update(x.clone(), "x").await;
    assert_eq!(stored["stored"], "cache", "{stored}");
    b.admin().flush_now().await;
    assert_eq!(b.pg_content(&doc).await, Some(x.clone()));

    cut_a.cut();
    a.admin().set_breaker("open").await;
    let mut on_a = WsClient::connect(&a, &doc).await;
    let stored = on_a.update(w.clone(), "w").await;
    assert_eq!(stored["stored"], "fallback", "{stored}");
    a.admin().flush_now().await;
    assert_eq!(b.pg_content(&doc).await, Some(w.clone()));
    let journal = a.data_dir.join("journal.log");
    eventually(
        Duration::from_secs(10),
        "the journal to let W go",
        async || {
            let held = std::fs::read(&journal).map_err(|e| e.to_string())?;
            let has_w = held.windows(11).any(|b| b == b"journaled-w");
            ensure!(
                !has_w && !held.is_empty(),
                "{} bytes, W {has_w}",
                held.len()
            );
            Ok(())
        },
    )
    .await;
    assert_eq!(b.get_doc(&doc).await.body["content"], x, "B has not heard");

    drop(on_a);
    a.sigkill().await;
    cut_a.restore();
    a.restart().await;

    eventually(
        Duration::from_secs(20),
        "Redis and B's room on W",
        async || {
            let temp = b.redis_get(&format!("doc:{doc}:temp")).await;
            let cached: Option<serde_json::Value> = temp.map(|t| serde_json::from_str(&t).unwrap());
            ensure!(cached.as_ref() == Some(&w), "Redis holds {cached:?}");
            let view = b.get_doc(&doc).await.body["content"].clone();
            ensure!(view == w, "replica b shows {view}");
            Ok(())
        },
    )
    .await;
    eventually(Duration::from_secs(10), "the debt paid", async || {
        let fallback_docs = a.admin().breaker().await["fallback_docs"].clone();
        ensure!(fallback_docs == 0, "{fallback_docs} documents wait");
        Ok(())
    })
    .await;
}

/// Replica B on `redis`, and replica A (with `a_options`) reaching it through a proxy a story
/// cuts; both with their flushers paused, and quick to give up on a Redis that does not answer.
async fn b_and_a_behind_a_cut(
    redis: &PrivateRedis,
    a_options: impl FnOnce(TestOptions) -> TestOptions,
) -> (TestApp, Proxy, TestApp) {
    let quick = |o: TestOptions| {
        o.flusher_paused()
            .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
            .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300)
    };
    let b = TestApp::spawn(quick(TestOptions::new().redis_url(redis.url()))).await;
    let cut_a = Proxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    let a_options = a_options(quick(b.replica_options()));
    let a = TestApp::spawn(a_options.redis_url(format!("redis://{}", cut_a.addr))).await;
    (b, cut_a, a)
}
