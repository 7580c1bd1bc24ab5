//! A Yjs document's way to PostgreSQL (its state, then updates folded into it) and its JSON
//! rendering by `GET /docs/{id}`.

use base64::Engine as _;
use serde_json::{json, Value};
use yrs::updates::decoder::Decode;
use yrs::{Array, Doc, Map, ReadTxn, StateVector, Transact, Update};

use super::{assert_no_panic, WITHIN};
use crate::harness::yclient::{text_of_state, YClient};
use crate::harness::{ensure, eventually, sha256, TestApp, TestOptions};

/// The `documents` row of a Yjs document: kind, state, jsonb content, hash.
async fn pg_yjs_row(
    app: &TestApp,
    doc: &str,
) -> Option<(String, Option<Vec<u8>>, Option<Value>, String)> {
    let row = app
        .pg()
        .await
        .query_opt(
            "SELECT kind, state, content, content_hash FROM documents WHERE doc_id = $1",
            &[&doc],
        )
        .await
        .unwrap_or_else(|e| panic!("read document {doc}: {e}"))?;
    Some((row.get(0), row.get(1), row.get(2), row.get(3)))
}

#[tokio::test]
async fn yjs_state_lands_in_postgres_and_get_renders_it() {
    let app =
        TestApp::spawn(TestOptions::new().env("DOCROOM__ROOMS__YJS_SAVE_INTERVAL_MS", 200)).await;
    let mut alice = YClient::connect(&app, "stored").await;
    let bob = YClient::connect(&app, "stored").await;

    // A burst of updates, as a typing user sends them.
    for i in 0..40 {
        alice.type_text(&format!("{i} "));
    }
    let map = bob.doc.get_or_insert_map("map");
    bob.edit(|_, txn| {
        map.insert(txn, "title", "Stored");
        map.insert(txn, "count", 3);
    });
    let text: String = (0..40).map(|i| format!("{i} ")).collect();
    let alice_map = alice.doc.get_or_insert_map("map");
    alice
        .until("bob's map", |a| alice_map.len(&a.doc.transact()) == 2)
        .await;
    let room = app
        .admin()
        .room("stored")
        .await
        .expect("a room for the document");
    assert_eq!(room["kind"], "yjs", "{room}");
    assert_eq!(room["members"], 2, "{room}");
    let expected_state = alice
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());

    // Within a coalescing interval the state is in Redis; the flusher (every 200 ms here) then
    // writes it to PostgreSQL (its state plus the updates appended since), while everyone is
    // still connected.
    let state = eventually(WITHIN, "the state in PostgreSQL", async || {
        let state = app
            .pg_yjs_state("stored")
            .await
            .ok_or_else(|| "no row yet".to_string())?;
        ensure!(
            text_of_state(&state) == text,
            "text in PostgreSQL: {:?}",
            text_of_state(&state)
        );
        let doc = Doc::new();
        let m = doc.get_or_insert_map("map");
        doc.transact_mut()
            .apply_update(Update::decode_v1(&state).unwrap())
            .unwrap();
        ensure!(m.len(&doc.transact()) == 2, "map not there yet");
        Ok(state)
    })
    .await;
    let (kind, row_state, content, hash) = pg_yjs_row(&app, "stored").await.expect("the row");
    assert_eq!(kind, "yjs");
    assert_eq!(content, None, "a yjs document has no jsonb content");
    assert_eq!(
        hash,
        sha256::hex(&row_state.unwrap()),
        "content_hash is the SHA-256 of the row's state"
    );
    assert_eq!(text_of_state(&expected_state), text_of_state(&state));
    eventually(WITHIN, "persisted, so not in modifiedDocs", async || {
        ensure!(!app.is_modified("stored").await, "still in modifiedDocs");
        Ok(())
    })
    .await;

    // GET renders the document and carries the state.
    let reply = app.get_doc("stored").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["doc"], "stored");
    assert_eq!(reply.body["kind"], "yjs");
    assert_eq!(
        reply.body["content"],
        json!({"text": text, "map": {"title": "Stored", "count": 3}})
    );
    let state_b64 = reply.body["state"].as_str().expect("a base64 state");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(state_b64)
        .expect("valid base64");
    assert_eq!(text_of_state(&decoded), text);
    // The live room encodes its own state: the same document, maybe not the same bytes as
    // PostgreSQL's merge, but its hash names the state it serves.
    assert_eq!(reply.body["hash"], sha256::hex(&decoded).as_str());

    // Everyone leaves; the room retires; GET now reads storage and says the same.
    drop(alice);
    drop(bob);
    eventually(WITHIN, "the room to retire", async || {
        let rooms = app.admin().rooms().await;
        ensure!(rooms.is_empty(), "rooms: {rooms:?}");
        Ok(())
    })
    .await;
    // Its last member gone, the document's updates are folded into the row's state.
    let folded = eventually(WITHIN, "the updates folded into the state", async || {
        let (_, state, _, hash) = pg_yjs_row(&app, "stored").await.expect("the row");
        let waiting = app.pg_yjs_state("stored").await.expect("the row");
        ensure!(state.as_ref() == Some(&waiting), "updates still wait");
        Ok(hash)
    })
    .await;
    app.redis_delete_all().await;
    let cold = app.get_doc("stored").await;
    assert_eq!(cold.status, 200, "{}", cold.text);
    assert_eq!(cold.body["kind"], "yjs");
    assert_eq!(cold.body["hash"], folded.as_str());
    assert_eq!(cold.body["content"], reply.body["content"]);
    assert_no_panic(&app);
}

#[tokio::test]
async fn get_renders_array_roots_as_arrays_and_empty_untyped_roots_as_null() {
    let app = TestApp::start().await;
    let alice = YClient::connect(&app, "render").await;
    let list = alice.doc.get_or_insert_array("list");
    let map = alice.doc.get_or_insert_map("emptied");
    alice.edit(|_, txn| {
        list.insert_range(txn, 0, [1, 2]);
        map.insert(txn, "gone", true);
    });
    alice.edit(|_, txn| {
        map.remove(txn, "gone");
    });
    alice.type_text("marker");
    eventually(WITHIN, "the rendering", async || {
        let reply = app.get_doc("render").await;
        ensure!(reply.body["content"]["text"] == "marker", "{}", reply.text);
        ensure!(
            reply.body["content"]["list"] == json!([1, 2]),
            "list: {}",
            reply.body["content"]["list"]
        );
        // A root the server has no type for carries none in the encoding; once emptied it
        // could be a map, an array or text, so it renders as null.
        ensure!(
            reply.body["content"]["emptied"].is_null(),
            "emptied: {}",
            reply.body["content"]["emptied"]
        );
        Ok(())
    })
    .await;
}
