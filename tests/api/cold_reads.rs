//! The cache-fill lock (`lock:{id}`, SPEC §6): many readers of a document that is in PostgreSQL
//! but not in Redis cause one database read, not a stampede.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::harness::{assert_fields, content_hash, TestApp, TestOptions};

/// How many times any backend has read `documents` in this test's database.
///
/// `seq_scan + idx_scan` of `pg_stat_user_tables` counts every scan of the table, whichever plan
/// the service's query gets. Backends report their counters when they go idle, at most about a
/// second later (PostgreSQL 15), so a reading is only trusted once it has stopped moving: see
/// `settled_reads`. The database belongs to this test alone, and the flusher is paused, so the
/// service's document reads are the only scans of the table.
async fn table_reads(app: &TestApp) -> i64 {
    app.pg()
        .await
        .query_one(
            "SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_user_tables \
             WHERE relname = 'documents'",
            &[],
        )
        .await
        .expect("read pg_stat_user_tables")
        .get(0)
}

/// The read count once it has not changed for 2.5 s (at most 20 s).
async fn settled_reads(app: &TestApp) -> i64 {
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut value = table_reads(app).await;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(2500) {
        assert!(Instant::now() < give_up, "table statistics never settled");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = table_reads(app).await;
        if now != value {
            (value, since) = (now, Instant::now());
        }
    }
    value
}

#[tokio::test]
async fn concurrent_reads_of_a_cold_document_hit_postgres_once() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let content = json!({"title": "archived", "body": "only in PostgreSQL"});
    let hash = content_hash(&content);
    app.pg()
        .await
        .execute(
            "INSERT INTO documents (doc_id, kind, content, content_hash, updated_at) \
             VALUES ($1, 'json', $2, $3, now())",
            &[&"cold", &content, &hash],
        )
        .await
        .expect("insert the cold document");
    assert_eq!(
        app.redis_get("doc:cold:temp").await,
        None,
        "not cold: cached"
    );
    let before = settled_reads(&app).await;

    let replies = join_all((0..50).map(|_| app.get_doc("cold"))).await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_fields(
            &reply.body,
            json!({"doc": "cold", "kind": "json", "content": content, "hash": hash}),
        );
    }

    let after = settled_reads(&app).await;
    assert_eq!(
        after - before,
        1,
        "50 cold reads scanned `documents` {} times",
        after - before
    );
    // The one reader that took the lock filled the cache for the others and for what follows.
    let cached = app
        .redis_get("doc:cold:temp")
        .await
        .expect("the cache was filled");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&cached).unwrap(),
        content
    );
    assert!(
        !app.is_modified("cold").await,
        "a cache fill marked the document dirty"
    );
}
