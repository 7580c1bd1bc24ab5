//! Editing a document together: snapshots, updates, acks and broadcasts, over WebSocket and HTTP.

use serde_json::json;

use crate::harness::{assert_fields, content_hash, sha256, TestApp, WsClient};

#[tokio::test]
async fn an_update_is_acked_to_its_sender_and_broadcast_to_the_room() {
    let app = TestApp::start().await;
    let mut alice = WsClient::connect(&app, "story").await;
    let mut bob = WsClient::connect(&app, "story").await;
    for client in [&alice, &bob] {
        assert_fields(
            &client.snapshot,
            json!({"type": "snapshot", "doc": "story", "content": null, "hash": null}),
        );
    }

    let first = json!({"title": "Chapter 1", "paragraphs": ["It was a dark night."], "rev": 1});
    let ack = alice.update(first.clone(), "a-1").await;
    assert_fields(
        &ack,
        json!({"type": "ack", "ref": "a-1", "hash": content_hash(&first), "stored": "cache"}),
    );
    let seen = bob.recv_json().await;
    assert_fields(
        &seen,
        json!({"type": "update", "content": first, "hash": content_hash(&first)}),
    );

    // The sender gets no echo of its own update: the next thing alice hears is bob's edit.
    let second = json!({"title": "Chapter 1", "paragraphs": ["It was a stormy night."], "rev": 2});
    bob.update(second.clone(), "b-1").await;
    let heard = alice.recv_json().await;
    assert_fields(
        &heard,
        json!({"type": "update", "content": second, "hash": content_hash(&second)}),
    );

    let carol = WsClient::connect(&app, "story").await;
    assert_fields(
        &carol.snapshot,
        json!({"type": "snapshot", "doc": "story", "content": second, "hash": content_hash(&second)}),
    );
}

#[tokio::test]
async fn the_hash_is_taken_over_the_canonical_json_with_sorted_keys() {
    let app = TestApp::start().await;
    let mut client = WsClient::connect(&app, "canon").await;
    client.send_raw_text(
        r#"{ "type": "update", "ref": "r", "content": { "zeta": 1, "alpha": [true, null, "x"] } }"#,
    );
    let ack = client
        .recv_where("the ack", |m| m["type"] == "ack" || m["type"] == "error")
        .await;
    // Hashed byte for byte, not through serde_json, so the test does not share the service's view.
    let expected = sha256::hex(br#"{"alpha":[true,null,"x"],"zeta":1}"#);
    assert_fields(&ack, json!({"type": "ack", "ref": "r", "hash": expected}));
}

#[tokio::test]
async fn put_stores_and_broadcasts_and_get_reads_it_back() {
    let app = TestApp::start().await;
    let never = app.get_doc("never-stored").await;
    assert_eq!(
        never.status, 404,
        "GET of a never-stored document: {}",
        never.text
    );

    let mut watcher = WsClient::connect(&app, "memo").await;
    let put = app.put_doc_raw("memo", r#"{ "z": 1, "a": [1, 2] }"#).await;
    let hash = sha256::hex(br#"{"a":[1,2],"z":1}"#);
    assert_eq!(put.status, 200, "PUT /docs/memo: {}", put.text);
    assert_fields(&put.body, json!({"hash": hash, "stored": "cache"}));

    let content = json!({"a": [1, 2], "z": 1});
    let broadcast = watcher.recv_json().await;
    assert_fields(
        &broadcast,
        json!({"type": "update", "content": content, "hash": hash}),
    );

    let got = app.get_doc("memo").await;
    assert_eq!(got.status, 200, "GET /docs/memo: {}", got.text);
    assert_fields(
        &got.body,
        json!({"doc": "memo", "kind": "json", "content": content, "hash": hash}),
    );

    let again = app.put_doc("memo", &content).await;
    assert_eq!(again.status, 200, "second PUT: {}", again.text);
    assert_fields(&again.body, json!({"hash": hash, "stored": "duplicate"}));
}

#[tokio::test]
async fn put_accepts_any_json_value_as_content() {
    let app = TestApp::start().await;
    for (doc, content) in [
        ("text", json!("just a string")),
        ("number", json!(42)),
        ("list", json!([1, "two", {"three": 3}])),
        ("nothing", json!(null)),
    ] {
        let put = app.put_doc(doc, &content).await;
        assert_eq!(put.status, 200, "PUT {doc}: {}", put.text);
        assert_fields(&put.body, json!({"hash": content_hash(&content)}));
        let got = app.get_doc(doc).await;
        assert_eq!(got.status, 200, "GET {doc}: {}", got.text);
        assert_fields(&got.body, json!({"doc": doc, "content": content}));
    }
}
