//! SPEC §6: what an acknowledged update leaves in Redis, read from Redis itself.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::yclient::YClient;
use crate::harness::{assert_fields, content_hash, Proxy, TestApp, TestOptions, WsClient};

#[tokio::test]
async fn cached_keys_expire_and_dirty_documents_wait_in_modified_docs_until_flushed() {
    // The flusher never runs by itself here, so whatever is dirty stays dirty until we flush.
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    // Both rooms keep a member: a room's last member leaving would persist at once.
    let mut client = WsClient::connect(&app, "alpha").await;
    let mut other = WsClient::connect(&app, "beta").await;
    let alpha = json!({"body": "first document", "tags": ["a"]});
    let beta = json!({"body": "second document", "n": 2});
    client.update(alpha.clone(), "a").await;
    other.update(beta.clone(), "b").await;

    for (doc, content) in [("alpha", &alpha), ("beta", &beta)] {
        let temp = app.redis_get(&format!("doc:{doc}:temp")).await;
        let temp: Value = serde_json::from_str(temp.as_deref().unwrap_or("missing"))
            .unwrap_or_else(|e| panic!("doc:{doc}:temp is not the JSON content ({e}): {temp:?}"));
        assert_eq!(&temp, content, "doc:{doc}:temp");
        let saved_hash = app.redis_get(&format!("doc:{doc}:lastSavedHash")).await;
        assert_eq!(
            saved_hash,
            Some(content_hash(content)),
            "doc:{doc}:lastSavedHash"
        );
        for key in [
            format!("doc:{doc}:temp"),
            format!("doc:{doc}:lastSavedHash"),
        ] {
            let ttl = app.redis_ttl(&key).await;
            assert!(
                (1..=125).contains(&ttl),
                "TTL of {key} is {ttl}, not in (0, 125]"
            );
        }
    }
    assert_eq!(app.redis_smembers("modifiedDocs").await, ["alpha", "beta"]);
    assert_fields(&app.admin().flusher().await, json!({"pending_docs": 2}));
    assert_eq!(
        app.pg_content("alpha").await,
        None,
        "persisted before any flush"
    );

    let flush = app.admin().flush_now().await;
    assert_eq!(flush, json!({"flushed": 2, "failed": 0}));

    assert!(
        app.redis_smembers("modifiedDocs").await.is_empty(),
        "flushed documents are still in modifiedDocs"
    );
    assert_eq!(app.pg_content("alpha").await, Some(alpha.clone()));
    assert_eq!(app.pg_content("beta").await, Some(beta.clone()));
    let row = app.pg_row("beta").await.unwrap();
    assert_eq!(
        (row.kind.as_str(), row.content_hash),
        ("json", content_hash(&beta))
    );
    let flusher = app.admin().flusher().await;
    assert_fields(
        &flusher,
        json!({"pending_docs": 0, "consecutive_errors": 0}),
    );
    assert!(flusher["last_success_at"].is_string(), "{flusher}");

    // A later edit marks the document dirty again.
    let alpha2 = json!({"body": "first document, edited"});
    client.update(alpha2, "a2").await;
    assert_eq!(app.redis_smembers("modifiedDocs").await, ["alpha"]);
}

#[tokio::test]
async fn a_yjs_documents_keys_live_as_long_as_saves_keep_coming_without_a_flush() {
    // A save renews the document's TTLs only once a tenth of the TTL passed since its replica
    // last did, or where Redis has no `head` for it (not seven EXPIREs per save): with no flush
    // to renew them, saves alone must keep every key of the document alive, and no key a save
    // creates may be left without a TTL.
    const TTL_SECS: u64 = 2;
    let app = TestApp::spawn(
        TestOptions::new()
            .flusher_paused()
            .env("DOCROOM__CACHE__TTL_SECS", TTL_SECS),
    )
    .await;
    let mut typist = YClient::connect(&app, "typed").await;
    typist.sync().await;
    let updates = 4 * TTL_SECS * 5;
    for i in 0..updates {
        typist.type_text(&format!("<{i}>"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    typist.sync().await;
    let keys: Vec<String> = app
        .redis_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("doc:typed:"))
        .collect();
    // No `tail`: a commit counts the bytes PostgreSQL recorded there, and nothing flushed.
    for key in ["doc:typed:log", "doc:typed:head"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing: {keys:?}");
    }
    // `followers` is not the document's: it lives by its replicas' leases (SPEC §8).
    for key in keys.iter().filter(|k| !k.ends_with(":followers")) {
        let ttl = app.redis_pttl(key).await;
        assert!(
            (1..=TTL_SECS as i64 * 1000).contains(&ttl),
            "PTTL of {key} is {ttl} ms, not in (0, {TTL_SECS} s]"
        );
    }
    // Nothing trims the log without a flush: an entry missing here expired with its log.
    let entries: u64 = redis::cmd("XLEN")
        .arg(app.key("doc:typed:log"))
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    assert!(
        entries >= updates,
        "the log holds {entries} entries of {updates} saved updates"
    );
    assert!(app.is_modified("typed").await, "no longer in modifiedDocs");
}

#[tokio::test]
async fn a_flush_stuck_on_the_database_keeps_what_it_claimed_from_expiring() {
    // A flush's claim renews a document's keys only once half their TTL has passed, not on
    // every claim. Here the flush claims a document half a TTL after its save, then its write
    // hangs on a stalled database past the moment the keys would have expired: they must not
    // (SPEC §6: `temp` and the log never expire while the document is dirty), and the content
    // reaches PostgreSQL once the database answers.
    const TTL_SECS: u64 = 4;
    let proxy = Proxy::to_postgres();
    let options = TestOptions::new()
        .flusher_paused()
        .database_through(proxy.addr)
        .env("DOCROOM__CACHE__TTL_SECS", TTL_SECS);
    let app = TestApp::spawn(options).await;
    let mut client = WsClient::connect(&app, "claimed").await;
    let content = json!({"body": "saved, then claimed by a flush that hangs"});
    let saved = Instant::now();
    client.update(content.clone(), "c").await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    proxy.stall();
    let admin = app.admin();
    let check = async {
        // Past the keys' first expiry, before the write's statement timeout (5 s).
        tokio::time::sleep_until((saved + Duration::from_millis(5_200)).into()).await;
        let ttls = (
            app.redis_pttl("doc:claimed:temp").await,
            app.redis_pttl("doc:claimed:log").await,
        );
        proxy.restore();
        ttls
    };
    let (_, (temp, log)) = tokio::join!(admin.flush_now(), check);
    assert!(
        temp > 0 && log > 0,
        "keys of a claimed dirty document expired during its flush: PTTL temp {temp}, log {log}"
    );
    app.await_pg_content("claimed", &content, Duration::from_secs(30))
        .await;
}
