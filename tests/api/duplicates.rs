//! SPEC §1.3: content equal to the last saved content is acknowledged as `duplicate` and written
//! nowhere. Checked against Redis and PostgreSQL themselves.

use std::time::Duration;

use serde_json::json;

use crate::harness::{assert_fields, content_hash, ensure, eventually, TestApp, WsClient};

#[tokio::test]
async fn identical_content_twice_is_acked_duplicate_and_written_once() {
    let app = TestApp::start().await;
    let mut client = WsClient::connect(&app, "dup").await;
    let content = json!({"text": "the same words"});
    let hash = content_hash(&content);

    let first = client.update(content.clone(), "1").await;
    assert_fields(&first, json!({"hash": hash, "stored": "cache"}));
    let saved = eventually(
        Duration::from_secs(10),
        "the first write persisted",
        async || {
            let row = app.pg_row("dup").await;
            ensure!(!app.is_modified("dup").await, "still in modifiedDocs");
            match row {
                Some(row) if row.content.as_ref() == Some(&content) => Ok(row),
                other => Err(format!("row is {other:?}")),
            }
        },
    )
    .await;
    assert_eq!(saved.content_hash, hash);
    let temp_ttl = app.redis_pttl("doc:dup:temp").await;
    let hash_ttl = app.redis_pttl("doc:dup:lastSavedHash").await;
    assert!(
        temp_ttl > 0 && hash_ttl > 0,
        "cached keys: {temp_ttl} ms, {hash_ttl} ms"
    );

    let second = client.update(content.clone(), "2").await;
    assert_fields(&second, json!({"hash": hash, "stored": "duplicate"}));

    // No cache write: not marked modified, and no SET EX restarted the keys' countdown.
    assert!(
        !app.is_modified("dup").await,
        "a duplicate re-entered modifiedDocs"
    );
    assert!(
        app.redis_pttl("doc:dup:temp").await <= temp_ttl,
        "temp was rewritten"
    );
    assert!(
        app.redis_pttl("doc:dup:lastSavedHash").await <= hash_ttl,
        "hash was rewritten"
    );
    // No database write, after a forced flush and after several periodic ones (200 ms each).
    // Waiting for something not to happen has no event to poll for: this is the one fixed wait.
    let flush = app.admin().flush_now().await;
    assert_fields(&flush, json!({"flushed": 0, "failed": 0}));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        app.pg_row("dup").await,
        Some(saved),
        "the row was written again"
    );
}

#[tokio::test]
async fn a_duplicate_is_recognised_after_the_room_has_closed() {
    let app = TestApp::start().await;
    let content = json!({"list": ["milk", "eggs"]});
    let mut first = WsClient::connect(&app, "groceries").await;
    first.update(content.clone(), "1").await;
    first.close().await;
    let saved = eventually(Duration::from_secs(10), "the room to close", async || {
        ensure!(
            app.admin().room("groceries").await.is_none(),
            "room still open"
        );
        app.pg_row("groceries").await.ok_or("no row yet".to_owned())
    })
    .await;

    // A new room learns the last saved hash from the cache (or the database), not from memory.
    let mut second = WsClient::connect(&app, "groceries").await;
    assert_fields(&second.snapshot, json!({"content": content}));
    let ack = second.update(content.clone(), "2").await;
    assert_fields(
        &ack,
        json!({"hash": content_hash(&content), "stored": "duplicate"}),
    );
    let put = app.put_doc("groceries", &content).await;
    assert_fields(&put.body, json!({"stored": "duplicate"}));

    assert!(
        !app.is_modified("groceries").await,
        "a duplicate re-entered modifiedDocs"
    );
    assert_fields(&app.admin().flush_now().await, json!({"flushed": 0}));
    assert_eq!(
        app.pg_row("groceries").await,
        Some(saved),
        "the row was written again"
    );
}
