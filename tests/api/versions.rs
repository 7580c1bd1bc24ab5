//! SPEC §6 "Versions", against the real PostgreSQL and Redis: no store replaces JSON content
//! with content of a smaller stamp, and Yjs content is merged, never replaced.

use std::time::Duration;

use bytes::Bytes;
use docroom_actors::doc::{DocId, Kind, Stamp, Version};
use docroom_actors::storage::{
    Commit, DocStore, DocumentLog, FillLock, FlushClaims, PgStore, RedisCache, Written,
};
use serde_json::json;

use crate::harness::app::{SHARED_PG_ADDR, SHARED_REDIS_URL};
use crate::harness::storage::delete_keys;
use crate::harness::yclient::typed;
use crate::harness::{random_suffix, TestApp, TestOptions};

fn stamped(doc: &str, content: &'static str, millis: u64) -> Version {
    let stamp = Stamp {
        millis,
        counter: 0,
        replica: "test".into(),
    };
    Version::new(DocId::parse(doc).unwrap(), Kind::Json, Bytes::from(content)).stamped(stamp)
}

/// The app creates the database and its schema; the test then writes through the store itself.
async fn store_of(app: &TestApp) -> PgStore {
    let url = format!("postgres://postgres@{SHARED_PG_ADDR}/{}", app.db_name);
    PgStore::connect(&url, None, 2, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn postgres_never_takes_json_content_with_a_smaller_stamp_over_a_larger_one() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let store = store_of(&app).await;
    let (v2, v3) = (
        stamped("doc", r#"{"v":2}"#, 2),
        stamped("doc", r#"{"v":3}"#, 3),
    );

    store.upsert(std::slice::from_ref(&v3)).await.unwrap();
    // A leave flush of v2 queued behind the flush of v3 arrives late: it must be a no-op.
    store.upsert(std::slice::from_ref(&v2)).await.unwrap();

    assert_eq!(app.pg_content("doc").await, Some(json!({"v": 3})));
    let loaded = store.load(&v3.doc).await.unwrap().unwrap();
    assert_eq!(
        loaded.stamp, v3.stamp,
        "the stamp is stored with the content"
    );
}

/// "A JSON store that already holds the same content under a smaller stamp takes the larger
/// stamp": X (1), then X again (3), then W (2) from a replica's journal flushed last. Left under
/// stamp 1, X would lose to W, though every replica acknowledged the second X after W.
#[tokio::test]
async fn postgres_gives_equal_content_its_larger_stamp_so_a_write_stamped_between_loses() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let store = store_of(&app).await;
    let x1 = stamped("doc", r#"{"v":"x"}"#, 1);
    let w2 = stamped("doc", r#"{"v":"w"}"#, 2);
    let x3 = stamped("doc", r#"{"v":"x"}"#, 3);

    store.upsert(std::slice::from_ref(&x1)).await.unwrap();
    store.upsert(std::slice::from_ref(&x3)).await.unwrap();
    store.upsert(std::slice::from_ref(&w2)).await.unwrap();

    assert_eq!(app.pg_content("doc").await, Some(json!({"v": "x"})));
    let loaded = store.load(&x3.doc).await.unwrap().unwrap();
    assert_eq!(loaded.stamp, x3.stamp, "the larger stamp is taken");
}

#[tokio::test]
async fn postgres_merges_yjs_states_instead_of_replacing_them() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let store = store_of(&app).await;

    store.upsert(&[typed("ydoc", 1, "left ")]).await.unwrap();
    store.upsert(&[typed("ydoc", 2, "right")]).await.unwrap();

    let stored = store
        .load(&DocId::parse("ydoc").unwrap())
        .await
        .unwrap()
        .unwrap();
    let text = docroom_actors::protocol::yjs::YjsDoc::load(&stored.content)
        .unwrap()
        .to_json()
        .unwrap()
        .to_string();
    assert!(
        text.contains("left") && text.contains("right"),
        "one writer's edits were lost: {text}"
    );
}

/// Yjs flushes append their updates (SPEC §6); the updates are folded into the row's state once
/// they add up to its size (64 KiB at least) and when asked (a document at rest). Whatever the
/// folds, a load holds every update, and a folded row's hash names its state.
#[tokio::test]
async fn postgres_appends_yjs_updates_and_folds_them_into_the_state() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let store = store_of(&app).await;
    let doc = DocId::parse("appended").unwrap();
    let waiting = async || -> i64 {
        app.pg()
            .await
            .query_one(
                "SELECT count(*) FROM document_updates WHERE doc_id = 'appended'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    let text_of = |v: &Version| {
        docroom_actors::protocol::yjs::YjsDoc::load(&v.content)
            .unwrap()
            .to_json()
            .unwrap()
            .to_string()
    };

    store
        .upsert(&[typed("appended", 1, "first ")])
        .await
        .unwrap();
    store
        .upsert(&[typed("appended", 2, "second ")])
        .await
        .unwrap();
    assert_eq!(waiting().await, 2, "small updates wait as updates");
    let text = text_of(&store.load(&doc).await.unwrap().unwrap());
    assert!(text.contains("first") && text.contains("second"), "{text}");

    // 80 KiB more: past the fold threshold, the flush that crosses it folds.
    let big = "x".repeat(8 * 1024);
    for client in 3..13 {
        store
            .upsert(&[typed("appended", client, &big)])
            .await
            .unwrap();
    }
    assert!(waiting().await < 10, "the updates were folded");
    let loaded = store.load(&doc).await.unwrap().unwrap();
    let text = text_of(&loaded);
    assert!(
        text.contains("first")
            && text.contains("second")
            && text.matches('x').count() == 10 * big.len()
    );

    store
        .upsert(&[typed("appended", 20, "last")])
        .await
        .unwrap();
    store.fold(std::slice::from_ref(&doc)).await.unwrap();
    assert_eq!(waiting().await, 0, "a fold leaves nothing waiting");
    let row = app
        .pg()
        .await
        .query_one(
            "SELECT state, content_hash, updates_bytes FROM documents WHERE doc_id = 'appended'",
            &[],
        )
        .await
        .unwrap();
    let (state, hash, bytes): (Vec<u8>, String, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(bytes, 0);
    assert_eq!(hash, docroom_actors::doc::sha256_hex(&state));
    let folded = store.load(&doc).await.unwrap().unwrap();
    assert_eq!(folded.content, state, "a folded row loads as its state");
    assert!(text_of(&folded).contains("last"));
}

fn cache(prefix: &str) -> RedisCache {
    crate::harness::storage::redis_cache(prefix, "r1")
}

async fn cached(redis: &RedisCache, v: &Version) -> Option<Version> {
    redis.load(&v.doc).await.unwrap().map(|c| c.version)
}

#[tokio::test]
async fn a_cache_fill_never_replaces_what_a_save_wrote() {
    let prefix = format!("t{}:", random_suffix());
    let redis = cache(&prefix);
    let (v1, v2) = (
        stamped("filled", r#"{"v":1}"#, 1),
        stamped("filled", r#"{"v":2}"#, 2),
    );

    // A reader took the fill lock and read v1 from PostgreSQL; meanwhile a room saved v2 ...
    redis.save(&v2).await.unwrap();
    redis.fill(&v1).await.unwrap();
    assert_eq!(cached(&redis, &v2).await, Some(v2.clone()));
    // ... and v2 was flushed (no longer dirty) before the slow fill of v1 arrived.
    redis.committed(&[Commit::written(&v2)]).await.unwrap();
    redis.fill(&v1).await.unwrap();

    assert_eq!(cached(&redis, &v2).await, Some(v2));
    let _ = delete_keys(SHARED_REDIS_URL, &prefix).await;
}

#[tokio::test]
async fn redis_never_takes_json_content_with_a_smaller_stamp_over_a_larger_one() {
    let prefix = format!("t{}:", random_suffix());
    let redis = cache(&prefix);
    let (v2, v3) = (
        stamped("doc", r#"{"v":2}"#, 2),
        stamped("doc", r#"{"v":3}"#, 3),
    );

    assert_eq!(redis.save(&v3).await.unwrap().written, Written::Stored);
    assert_eq!(redis.save(&v2).await.unwrap().written, Written::Superseded);

    assert_eq!(cached(&redis, &v3).await, Some(v3));
    let _ = delete_keys(SHARED_REDIS_URL, &prefix).await;
}
