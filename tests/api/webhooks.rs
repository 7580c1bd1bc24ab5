//! SPEC §9 webhooks, against the real service and a real HTTP receiver: signed
//! `document.changed` (one per window, however many replicas took the changes),
//! `document.stored` after the flush, client events; retries with the same delivery id, in
//! order per document; a replica SIGKILLed before its webhook went out; a PostgreSQL outage
//! while changes happen.

mod faults;
mod receiver;

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::tokens::token;
use crate::harness::yclient::YClient;
use crate::harness::{content_hash, ensure, eventually, TestApp, TestOptions, WsClient};
use receiver::{Receiver, SECRET};

const WITHIN: Duration = Duration::from_secs(30);
const JWT: &str = "webhook-tests-jwt";

/// An app (or replica) posting webhooks to `receiver`, with short windows and a quick worker.
fn with_webhooks(opts: TestOptions, receiver: &Receiver) -> TestOptions {
    opts.env("DOCROOM__WEBHOOKS__URL", receiver.url())
        .env("DOCROOM__WEBHOOKS__SECRET", SECRET)
        .env("DOCROOM__WEBHOOKS__DEBOUNCE_MS", 600)
        .env("DOCROOM__WEBHOOKS__MAX_WAIT_MS", 4000)
        .env("DOCROOM__WEBHOOKS__POLL_MS", 50)
        .env("DOCROOM__WEBHOOKS__TIMEOUT_MS", 2000)
        .env("DOCROOM_JWT_SECRET", JWT)
}

/// `PUT /docs/{doc}` as `sub`; panics unless acknowledged.
async fn put_as(app: &TestApp, doc: &str, sub: &str, content: &Value) {
    let reply = app
        .http()
        .put(app.url(&format!("/docs/{doc}")))
        .bearer_auth(token(JWT, &["*"], "rw", Some(sub)))
        .json(content)
        .send()
        .await
        .expect("put");
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
}

/// A JSON-protocol client of `doc` whose token says `sub`.
async fn client_as(app: &TestApp, doc: &str, sub: &str) -> WsClient {
    let bearer = format!("Bearer {}", token(JWT, &[doc], "rw", Some(sub)));
    let path = format!("/docs/{doc}/ws");
    let mut client = WsClient::open(app, &path, &[("authorization", &bearer)])
        .await
        .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.body));
    let snapshot = client.recv_json().await;
    assert_eq!(snapshot["type"], "snapshot");
    client
}

/// Waits until nothing new has arrived for `doc` for a few seconds (past any window).
async fn quiet(receiver: &Receiver, doc: &str) {
    let mut seen = receiver.hits_for(doc).len();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = receiver.hits_for(doc).len();
        if now == seen {
            return;
        }
        seen = now;
    }
}

#[tokio::test]
async fn a_change_sends_one_signed_changed_then_stored_and_the_client_events() {
    let receiver = Receiver::start();
    let app = TestApp::spawn(with_webhooks(TestOptions::new(), &receiver)).await;
    let doc = "hooked";

    let mut alice = client_as(&app, doc, "alice").await;
    let content = json!({"title": "first"});
    alice.update(json!({"title": "draft"}), "1").await;
    alice.update(content.clone(), "2").await;
    alice.close().await;

    let changed = receiver.accepted(doc, "document.changed", WITHIN).await;
    assert!(changed.signed(), "signature of {}", changed.body);
    assert_eq!(changed.json["delivery"], changed.delivery.as_str());
    assert_eq!(changed.json["event"], "document.changed");
    assert_eq!(changed.json["kind"], "json");
    assert_eq!(changed.json["users"], json!(["alice"]));
    assert!(changed.json["at"].as_str().unwrap().contains('T'));

    let stored = receiver.accepted(doc, "document.stored", WITHIN).await;
    assert!(stored.signed());
    assert_eq!(stored.json["hash"], content_hash(&content).as_str());

    let connected = receiver.accepted(doc, "client.connected", WITHIN).await;
    let left = receiver.accepted(doc, "client.disconnected", WITHIN).await;
    for hit in [&connected, &left] {
        assert!(hit.signed());
        assert_eq!(hit.json["users"], json!(["alice"]));
        assert!(hit.json["replica"].is_string(), "{}", hit.body);
    }

    quiet(&receiver, doc).await;
    let changes = receiver
        .events_of(doc)
        .into_iter()
        .filter(|(e, _)| e == "document.changed")
        .count();
    assert_eq!(changes, 1, "{:?}", receiver.events_of(doc));
    let admin = app.admin().get("webhooks").await.body;
    assert_eq!(admin["enabled"], true, "{admin}");
    assert_eq!(admin["failed"], 0, "{admin}");
    for field in ["oldest_pending_at", "last_error"] {
        assert!(admin.get(field).is_some(), "SPEC §3 names {field}: {admin}");
    }
    assert!(admin["delivered"].as_i64().unwrap() >= 4, "{admin}");
    assert!(!admin["recent"].as_array().unwrap().is_empty(), "{admin}");
}

#[tokio::test]
async fn changes_on_two_replicas_within_a_window_send_one_changed_naming_both_users() {
    let receiver = Receiver::start();
    let a = TestApp::spawn(with_webhooks(TestOptions::new(), &receiver)).await;
    let b = TestApp::spawn(with_webhooks(a.replica_options(), &receiver)).await;
    let doc = "shared-window";

    for round in 0..4 {
        put_as(&a, doc, "ann", &json!({"round": round, "on": "a"})).await;
        put_as(&b, doc, "bob", &json!({"round": round, "on": "b"})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let changed = receiver.accepted(doc, "document.changed", WITHIN).await;
    assert_eq!(changed.json["users"], json!(["ann", "bob"]));
    quiet(&receiver, doc).await;
    let changes: Vec<_> = receiver
        .hits_for(doc)
        .into_iter()
        .filter(|h| h.event == "document.changed")
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
}

#[tokio::test]
async fn a_receiver_that_fails_gets_the_same_delivery_again_and_events_in_order() {
    let receiver = Receiver::answering(&[500, 500]);
    let app = TestApp::spawn(with_webhooks(TestOptions::new(), &receiver)).await;
    let doc = "retried";

    put_as(&app, doc, "carol", &json!({"v": 1})).await;
    receiver.accepted(doc, "document.changed", WITHIN).await;
    put_as(&app, doc, "carol", &json!({"v": 2})).await;
    eventually(WITHIN, "a second document.changed", async || {
        let changes = receiver
            .events_of(doc)
            .into_iter()
            .filter(|(e, _)| e == "document.changed")
            .count();
        ensure!(changes == 2, "{:?}", receiver.events_of(doc));
        Ok(())
    })
    .await;

    let hits = receiver.hits_for(doc);
    // The first event was refused twice, then taken: three identical requests.
    let first = &hits[0];
    assert_eq!(
        hits[..3].iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for retry in &hits[1..3] {
        assert_eq!(retry.delivery, first.delivery);
        assert_eq!(retry.body, first.body);
        assert!(retry.signed());
    }
    // In order: each event is sent only once every earlier one of the document was taken, so
    // the requests are runs of one delivery, never interleaved.
    let mut runs: Vec<&str> = Vec::new();
    for h in &hits {
        if runs.last() != Some(&h.delivery.as_str()) {
            assert!(!runs.contains(&h.delivery.as_str()), "{hits:?}");
            runs.push(&h.delivery);
        }
    }
}

#[tokio::test]
async fn a_yjs_change_with_content_carries_its_prosemirror_rendering() {
    use yrs::{XmlElementPrelim, XmlFragment, XmlTextPrelim};

    let receiver = Receiver::start();
    let opts = TestOptions::new().env("DOCROOM__WEBHOOKS__INCLUDE_CONTENT", true);
    let app = TestApp::spawn(with_webhooks(opts, &receiver)).await;
    let doc = "yjs-hooked";
    let tok = token(JWT, &[doc], "rw", Some("yuki"));
    let client = YClient::connect(&app, &format!("{doc}?token={tok}")).await;
    let fragment = client.doc.get_or_insert_xml_fragment("default");
    client.edit(|_, txn| {
        let p = fragment.push_back(txn, XmlElementPrelim::empty("paragraph"));
        p.push_back(txn, XmlTextPrelim::new("hello"));
    });

    let changed = receiver.accepted(doc, "document.changed", WITHIN).await;
    assert!(changed.signed());
    assert_eq!(changed.json["kind"], "yjs");
    assert_eq!(changed.json["users"], json!(["yuki"]));
    let paragraph = &changed.json["prosemirror"]["content"][0];
    assert_eq!(paragraph["type"], "paragraph", "{}", changed.body);
    assert_eq!(paragraph["content"][0]["text"], "hello", "{}", changed.body);
    assert!(!changed.json["content"].is_null(), "{}", changed.body);
    let stored = receiver.accepted(doc, "document.stored", WITHIN).await;
    assert!(stored.json["hash"].is_string(), "{}", stored.body);
    assert_eq!(stored.json["prosemirror"], changed.json["prosemirror"]);
}

#[tokio::test]
async fn a_hocuspocus_member_and_a_backend_write_are_clients_and_authors_of_the_change() {
    use crate::hocuspocus::HpClient;
    let receiver = Receiver::start();
    let app = TestApp::spawn(with_webhooks(TestOptions::new(), &receiver)).await;
    let doc = "hooked-by-an-agent";
    let mut member = HpClient::open(&app).await;
    member
        .join(doc, &token(JWT, &[doc], "rw", Some("carol")))
        .await;
    member.type_text(doc, "typed by carol. ");
    let edit = json!({"type": "doc", "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "written by an agent"}]}]});
    let put = app
        .http()
        .put(app.url(&format!("/docs/{doc}/prosemirror")))
        .bearer_auth(token(JWT, &["*"], "rw", Some("agent")))
        .body(edit.to_string())
        .send()
        .await
        .expect("PUT the edit");
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    drop(member);

    let changed = receiver.accepted(doc, "document.changed", WITHIN).await;
    assert_eq!(changed.json["users"], json!(["agent", "carol"]));
    assert_eq!(changed.json["kind"], "yjs");
    let connected = receiver.accepted(doc, "client.connected", WITHIN).await;
    let left = receiver.accepted(doc, "client.disconnected", WITHIN).await;
    assert_eq!(connected.json["users"], json!(["carol"]));
    assert_eq!(left.json["users"], json!(["carol"]));
}
