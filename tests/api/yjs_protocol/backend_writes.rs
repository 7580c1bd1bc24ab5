//! SPEC §9, writing: `POST /docs/{id}/update` takes one Yjs update from a backend. It is a
//! change like a member's: merged, broadcast to members on every replica, answered once stored
//! (`cache`, `fallback`, or `duplicate` for a repeat), refused whole when it is not an update,
//! and kept through a SIGKILL right after its acknowledgement (as is a ProseMirror edit).

use serde_json::json;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

use super::WITHIN;
use crate::harness::http::Reply;
use crate::harness::tokens::token;
use crate::harness::yclient::{text_of_state, YClient};
use crate::harness::{ensure, eventually, random_suffix, TestApp, TestOptions};

/// A Yjs update of client `client` writing `text` into the root text "text".
fn update_writing(client: u64, text: &str) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(client);
    let root = doc.get_or_insert_text("text");
    root.insert(&mut doc.transact_mut(), 0, text);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    update
}

/// `POST /docs/{doc}/update` with `body`, as `bearer` if given.
async fn post_update(app: &TestApp, doc: &str, body: &[u8], bearer: Option<&str>) -> Reply {
    let mut request = app
        .http()
        .post(app.url(&format!("/docs/{doc}/update")))
        .header("content-type", "application/octet-stream")
        .body(body.to_vec());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST the update");
    let status = response.status().as_u16();
    let text = response.text().await.expect("the answer");
    let body = serde_json::from_str(&text).unwrap_or_default();
    Reply { status, body, text }
}

/// The text of root "text" of the document as `GET /docs/{doc}?format=update` gives it.
async fn stored_text(app: &TestApp, doc: &str) -> String {
    let response = app
        .http()
        .get(app.url(&format!("/docs/{doc}?format=update")))
        .send()
        .await
        .expect("GET the update");
    assert_eq!(response.status().as_u16(), 200);
    text_of_state(&response.bytes().await.expect("the state"))
}

#[tokio::test]
async fn a_posted_update_reaches_members_on_every_replica_and_a_repeat_is_a_duplicate() {
    let a = TestApp::spawn(TestOptions::new()).await;
    let b = a.replica().await;
    let doc = format!("posted-{}", random_suffix());
    let mut member = YClient::connect(&b, &doc).await;
    let update = update_writing(7001, "from the backend");

    let first = post_update(&a, &doc, &update, None).await;

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["stored"], "cache", "{}", first.text);
    // The document's hash once it holds the update, as GET reads it.
    assert_eq!(first.body["hash"], a.get_doc(&doc).await.body["hash"]);
    member
        .until("the posted text on the other replica", |m| {
            m.text() == "from the backend"
        })
        .await;
    let again = post_update(&a, &doc, &update, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["stored"], "duplicate", "{}", again.text);
    assert_eq!(again.body["hash"], first.body["hash"]);
    // Through the replica the member is on, too: the update is already there.
    let there = post_update(&b, &doc, &update, None).await;
    assert_eq!(there.body["stored"], "duplicate", "{}", there.text);
    member.type_text(", and a member");
    eventually(WITHIN, "both edits in the document", async || {
        let text = stored_text(&a, &doc).await;
        ensure!(text == "from the backend, and a member", "{text:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_an_update_changes_nothing() {
    let app = TestApp::start().await;
    let doc = format!("refused-{}", random_suffix());
    let first = post_update(&app, &doc, &update_writing(7002, "kept"), None).await;
    assert_eq!(first.status, 200, "{}", first.text);

    for (why, body) in [
        ("garbage", vec![0xff, 0xff, 0xff, 0x01, 0x02]),
        ("empty", Vec::new()),
        (
            "a truncated update",
            update_writing(7003, "cut short")[..6].to_vec(),
        ),
    ] {
        let refused = post_update(&app, &doc, &body, None).await;
        assert_eq!(refused.status, 400, "{why}: {}", refused.text);
        assert_eq!(refused.body["error"], "bad_request", "{why}");
    }
    let limit = 1 << 20;
    let huge = vec![0u8; limit + 1];
    let refused = post_update(&app, &doc, &huge, None).await;
    assert_eq!(refused.status, 413, "{}", refused.text);
    assert_eq!(stored_text(&app, &doc).await, "kept");

    let json_doc = format!("json-{}", random_suffix());
    assert_eq!(app.put_doc(&json_doc, &json!({"a": 1})).await.status, 200);
    let wrong = post_update(&app, &json_doc, &update_writing(7004, "x"), None).await;
    assert_eq!(wrong.status, 409, "{}", wrong.text);
    assert_eq!(wrong.body["error"], "wrong_kind");
}

#[tokio::test]
async fn tokens_apply_to_posted_updates_as_to_every_document_route() {
    const SECRET: &str = "posted-updates-secret";
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await;
    let doc = format!("tokened-{}", random_suffix());
    let update = update_writing(7005, "signed");

    let none = post_update(&app, &doc, &update, None).await;
    let reader = token(SECRET, &[&doc], "ro", Some("reader"));
    let read_only = post_update(&app, &doc, &update, Some(&reader)).await;
    let other = token(SECRET, &["another-doc"], "rw", Some("agent"));
    let elsewhere = post_update(&app, &doc, &update, Some(&other)).await;
    let everything = token(SECRET, &["*"], "rw", Some("agent"));
    let written = post_update(&app, &doc, &update, Some(&everything)).await;

    assert_eq!(none.status, 401, "{}", none.text);
    assert_eq!(read_only.status, 403, "{}", read_only.text);
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.text);
    assert_eq!(written.status, 200, "{}", written.text);
    assert_eq!(written.body["stored"], "cache");
}

#[tokio::test]
async fn an_acknowledged_update_outlives_a_sigkill_from_redis_and_from_the_journal() {
    // The flusher never runs by itself: at the kill, the updates are in Redis and the journal.
    let mut app = TestApp::spawn(TestOptions::new().process().flusher_paused()).await;
    let doc = format!("killed-{}", random_suffix());
    let cached = post_update(&app, &doc, &update_writing(7006, "cached "), None).await;
    assert_eq!(cached.body["stored"], "cache", "{}", cached.text);
    assert_eq!(app.admin().set_breaker("open").await.status, 200);
    let journaled = post_update(&app, &doc, &update_writing(7007, "journaled"), None).await;
    assert_eq!(journaled.body["stored"], "fallback", "{}", journaled.text);
    let edited = json!({"type": "doc", "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "edited by an agent"}]}]});
    let edit = app
        .http()
        .put(app.url(&format!("/docs/{doc}/prosemirror")))
        .body(edited.to_string())
        .send()
        .await
        .expect("PUT the edit");
    assert_eq!(edit.status().as_u16(), 200);
    let edit: serde_json::Value = edit.json().await.expect("the answer");
    assert_eq!(edit["stored"], "fallback", "{edit}");

    app.sigkill().await;
    app.restart().await;

    let rendered = app.get(&format!("/docs/{doc}?format=prosemirror")).await;
    assert_eq!(rendered.body, edited, "the acknowledged edit");

    let text = stored_text(&app, &doc).await;
    let doc_after = yrs::Doc::new();
    let root = doc_after.get_or_insert_text("text");
    let mut txn = doc_after.transact_mut();
    for part in [
        update_writing(7006, "cached "),
        update_writing(7007, "journaled"),
    ] {
        use yrs::updates::decoder::Decode;
        txn.apply_update(yrs::Update::decode_v1(&part).unwrap())
            .unwrap();
    }
    assert_eq!(text, root.get_string(&txn), "both acknowledged updates");
}
