//! The flusher: dirty documents reach PostgreSQL on its own schedule, observable through
//! `GET /admin/flusher`.

use std::time::Duration;

use serde_json::json;

use crate::harness::{assert_fields, content_hash, ensure, eventually, TestApp, WsClient};

#[tokio::test]
async fn the_flusher_persists_dirty_documents_on_its_own_and_clears_them() {
    let app = TestApp::start().await;
    let mut client = WsClient::connect(&app, "ledger").await;
    let mut last = json!(null);
    for n in 1..=5 {
        last = json!({"entries": n, "note": format!("entry {n}")});
        client.update(last.clone(), &format!("u{n}")).await;
    }
    for n in 1..=3 {
        let put = app.put_doc(&format!("side-{n}"), &json!({"side": n})).await;
        assert_eq!(put.status, 200, "{}", put.text);
    }

    // The client stays connected: only the flusher can be writing these rows.
    eventually(
        Duration::from_secs(10),
        "every document flushed",
        async || {
            let dirty = app.redis_smembers("modifiedDocs").await;
            ensure!(dirty.is_empty(), "still dirty: {dirty:?}");
            let ledger = app.pg_row("ledger").await;
            ensure!(
                ledger.as_ref().and_then(|r| r.content.as_ref()) == Some(&last),
                "ledger row is {ledger:?}"
            );
            for n in 1..=3 {
                let side = app.pg_content(&format!("side-{n}")).await;
                ensure!(side == Some(json!({"side": n})), "side-{n} is {side:?}");
            }
            Ok(())
        },
    )
    .await;
    assert_eq!(
        app.pg_row("ledger").await.unwrap().content_hash,
        content_hash(&last)
    );

    let flusher = app.admin().flusher().await;
    for field in [
        "period_ms",
        "consecutive_errors",
        "pending_docs",
        "last_success_at",
        "last_error",
    ] {
        assert!(
            flusher.get(field).is_some(),
            "GET /admin/flusher has no {field}: {flusher}"
        );
    }
    assert_fields(
        &flusher,
        json!({"period_ms": 200, "consecutive_errors": 0, "pending_docs": 0, "last_error": null}),
    );
    assert!(flusher["last_success_at"].is_string(), "{flusher}");
}

#[tokio::test]
async fn a_manual_flush_with_nothing_dirty_flushes_nothing() {
    let app = TestApp::start().await;
    assert_eq!(
        app.admin().flush_now().await,
        json!({"flushed": 0, "failed": 0})
    );
}
