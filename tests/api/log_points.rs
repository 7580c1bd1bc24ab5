//! SPEC §6 "persisted": PostgreSQL records, in the transaction that writes a document's content,
//! the point of the Redis log that content includes (the log's incarnation and the last entry),
//! and only that record says what is persisted. Played against the real PostgreSQL and Redis,
//! through the store itself and through the service.

use std::time::Duration;

use bytes::Bytes;
use docroom_actors::doc::{DocId, Kind, Stamp, Version};
use docroom_actors::log::{Incarnation, LogMark, LogPos};
use docroom_actors::storage::{DocStore, PgStore, StoreAnswer, Write};
use serde_json::json;

use crate::harness::app::SHARED_PG_ADDR;
use crate::harness::yclient::typed;
use crate::harness::{TestApp, TestOptions};

async fn store_of(app: &TestApp) -> PgStore {
    let url = format!("postgres://postgres@{SHARED_PG_ADDR}/{}", app.db_name);
    PgStore::connect(&url, None, 2, Duration::from_secs(5)).unwrap()
}

fn mark(incarnation: u64, ms: u64) -> LogMark {
    LogMark {
        incarnation: Incarnation(incarnation),
        position: LogPos { ms, seq: 0 },
    }
}

fn json_at(doc: &str, content: &'static str, millis: u64) -> Version {
    let stamp = Stamp {
        millis,
        counter: 0,
        replica: "test".into(),
    };
    Version::new(DocId::parse(doc).unwrap(), Kind::Json, Bytes::from(content)).stamped(stamp)
}

/// What PostgreSQL answers a write of `v` that includes the log up to `at`.
async fn answer(store: &PgStore, v: &Version, at: LogMark) -> StoreAnswer {
    let mut answers = store
        .write(&[Write {
            version: v,
            includes: Some(at),
        }])
        .await
        .unwrap();
    answers.remove(0)
}

async fn write(store: &PgStore, v: &Version, at: LogMark) -> Option<LogMark> {
    answer(store, v, at).await.recorded
}

/// The row's recorded point, as PostgreSQL holds it.
async fn recorded(app: &TestApp, doc: &str) -> Option<(i64, String)> {
    let row = app
        .pg()
        .await
        .query_one(
            "SELECT log_incarnation, log_ms, log_seq FROM documents WHERE doc_id = $1",
            &[&doc],
        )
        .await
        .unwrap();
    let (inc, ms, seq): (Option<i64>, Option<i64>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2));
    Some((inc?, format!("{}-{}", ms?, seq?)))
}

/// Two flushes of one document that reach PostgreSQL out of order cannot move its point back,
/// for JSON (whose content follows stamps on its own) and Yjs alike; a later incarnation's
/// point replaces an earlier one's whatever the positions, and a write of the earlier one after
/// that is answered with no point: its log is gone.
#[tokio::test]
async fn postgres_moves_a_documents_log_point_only_forward_by_incarnation_then_position() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let store = store_of(&app).await;
    for (doc, v) in [
        ("j", json_at("j", r#"{"v":1}"#, 1)),
        ("y", typed("y", 1, "one")),
    ] {
        assert_eq!(write(&store, &v, mark(1, 50)).await, Some(mark(1, 50)));
        assert_eq!(
            write(&store, &v, mark(1, 20)).await,
            Some(mark(1, 50)),
            "{doc}: the point stays where the later flush put it, and says so"
        );
        assert_eq!(recorded(&app, doc).await, Some((1, "50-0".into())));

        assert_eq!(write(&store, &v, mark(2, 5)).await, Some(mark(2, 5)));
        assert_eq!(
            write(&store, &v, mark(1, 90)).await,
            None,
            "{doc}: a write read from a log that was replaced learns nothing"
        );
        assert_eq!(recorded(&app, doc).await, Some((2, "5-0".into())));
    }
    // Content without a point (a journal's, an import's) leaves the point as it is.
    store
        .upsert(&[json_at("j", r#"{"v":2}"#, 2)])
        .await
        .unwrap();
    assert_eq!(recorded(&app, "j").await, Some((2, "5-0".into())));
    assert_eq!(app.pg_content("j").await, Some(json!({"v": 2})));
}

/// A JSON write whose content loses to a larger stamp still records its point: what it read is
/// superseded, so the log up to there is in PostgreSQL. It is answered the content the row
/// kept, under its stamp, for Redis and the rooms to take; a write that won is answered none.
#[tokio::test]
async fn a_json_write_that_loses_to_a_larger_stamp_still_records_its_point() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let store = store_of(&app).await;
    let later = json_at("doc", r#"{"v":"later"}"#, 9);
    store.upsert(std::slice::from_ref(&later)).await.unwrap();

    let earlier = json_at("doc", r#"{"v":"earlier"}"#, 3);
    let answered = answer(&store, &earlier, mark(4, 7)).await;

    assert_eq!(answered.recorded, Some(mark(4, 7)));
    assert_eq!(answered.kept, Some(later.clone()), "the row's own content");
    assert_eq!(recorded(&app, "doc").await, Some((4, "7-0".into())));
    assert_eq!(app.pg_content("doc").await, Some(json!({"v": "later"})));

    let latest = json_at("doc", r#"{"v":"latest"}"#, 12);
    let answered = answer(&store, &latest, mark(4, 8)).await;
    assert_eq!(answered.kept, None, "the write took the row");
    assert_eq!(app.pg_content("doc").await, Some(json!({"v": "latest"})));
}

/// Through the service: a flush records the log point with the content, and what Redis marks
/// persisted is that point, of the log's incarnation.
#[tokio::test]
async fn a_flush_records_its_log_point_with_the_content_and_redis_marks_that_persisted() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let put = app.put_doc("doc", &json!({"v": 1})).await;
    assert_eq!(put.status, 200, "{}", put.text);

    app.admin().flush_now().await;

    let (inc, position) = recorded(&app, "doc").await.expect("a point is recorded");
    assert_eq!(app.redis_get("incarnation").await, Some(inc.to_string()));
    assert_eq!(app.redis_get("doc:doc:persisted").await, Some(position));
    assert!(!app.is_modified("doc").await);
}

/// A Redis replaced by an empty one starts a new incarnation of the log. Here the old log's
/// clock ran far ahead (its last recorded entry is years away): compared by position alone,
/// that point would mark every entry of the new log persisted, and the next save would be
/// trimmed and forgotten before PostgreSQL saw it.
#[tokio::test]
async fn a_redis_that_comes_back_empty_starts_a_new_log_that_an_old_point_cannot_cover() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let put = app.put_doc("doc", &json!({"v": 1})).await;
    assert_eq!(put.status, 200, "{}", put.text);
    app.admin().flush_now().await;
    let (old, _) = recorded(&app, "doc").await.expect("a point is recorded");
    app.pg()
        .await
        .execute(
            "UPDATE documents SET log_ms = log_ms + 100000000000 WHERE doc_id = 'doc'",
            &[],
        )
        .await
        .unwrap();

    assert!(app.redis_delete_all().await > 0, "redis held the document");
    for v in [2, 3] {
        let put = app.put_doc("doc", &json!({ "v": v })).await;
        assert_eq!(put.status, 200, "{}", put.text);
        app.admin().flush_now().await;
        assert_eq!(app.pg_content("doc").await, Some(json!({ "v": v })));
    }

    let (new, position) = recorded(&app, "doc").await.unwrap();
    assert!(new > old, "incarnation {new} follows {old}");
    assert_eq!(app.redis_get("doc:doc:persisted").await, Some(position));
    assert!(!app.is_modified("doc").await);
}
