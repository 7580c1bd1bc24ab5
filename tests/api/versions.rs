//! SPEC §6 "Versions", against the real PostgreSQL and Redis: no store replaces JSON content
//! with content of a smaller stamp, and Yjs content is merged, never replaced.

use std::time::Duration;

use bytes::Bytes;
use docroom_actors::doc::{DocId, Kind, Stamp, Version};
use docroom_actors::storage::{DocStore, PgStore};
use serde_json::json;
use yrs::{ReadTxn, Text, Transact};

use crate::harness::app::SHARED_PG_ADDR;
use crate::harness::{TestApp, TestOptions};

fn stamped(doc: &str, content: &'static str, millis: u64) -> Version {
    let stamp = Stamp {
        millis,
        counter: 0,
        replica: "test".into(),
    };
    Version::new(DocId::parse(doc).unwrap(), Kind::Json, Bytes::from(content)).stamped(stamp)
}

fn typed(doc: &str, client: u64, text: &str) -> Version {
    let ydoc = yrs::Doc::with_client_id(client);
    let t = ydoc.get_or_insert_text("t");
    t.insert(&mut ydoc.transact_mut(), 0, text);
    let state = ydoc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    Version::new(DocId::parse(doc).unwrap(), Kind::Yjs, Bytes::from(state))
}

/// The app creates the database and its schema; the test then writes through the store itself.
async fn store_of(app: &TestApp) -> PgStore {
    let url = format!("postgres://postgres@{SHARED_PG_ADDR}/{}", app.db_name);
    PgStore::connect(&url, 2, Duration::from_secs(5)).unwrap()
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
        .to_string();
    assert!(
        text.contains("left") && text.contains("right"),
        "one writer's edits were lost: {text}"
    );
}
