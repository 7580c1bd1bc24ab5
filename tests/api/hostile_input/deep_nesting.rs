//! Updates and stored documents nested thousands of levels deep (SPEC §1.5,
//! `limits.max_yjs_depth`). yrs walks nesting by recursion, so before the bound one such update
//! from a read-only client overflowed the stack and aborted the process, and one stored document
//! aborted it on every read. Each story runs against the built binary: an abort is the failure.

use std::time::Duration;

use docroom_actors::doc::sha256_hex;
use docroom_actors::protocol::hocuspocus::Frame as HpFrame;
use serde_json::json;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, MapPrelim, ReadTxn, StateVector, Transact};

use crate::harness::tokens;
use crate::harness::yclient::YClient;
use crate::harness::{random_suffix, TestApp, TestOptions, WsClient};
use crate::hocuspocus::HpClient;

const SECRET: &str = "deep-nesting-secret";

fn token(doc: &str, scope: &str) -> String {
    tokens::token(SECRET, &[doc], scope, Some("prober"))
}

/// A v1 update putting into root array `a` one value that is an array nested `levels` deep:
/// about two bytes a level, written by hand so that nothing here recurses either.
fn deep_array_update(levels: usize) -> Vec<u8> {
    let mut update = vec![1, 1, 0x2a, 0]; // one client (42) with one block at clock 0
    update.extend([8, 1, 1, b'a', 1]); // an item of values, parent: the root "a"; one value
    for _ in 0..levels {
        update.extend([117, 1]); // an array of one...
    }
    update.push(126); // ...null
    update.push(0); // no deletions
    update
}

/// A document whose root map `m` holds a map nested `levels` deep.
fn nested_maps_state(levels: usize) -> Vec<u8> {
    let doc = Doc::new();
    let mut map = doc.get_or_insert_map("m");
    for _ in 0..levels {
        let mut txn = doc.transact_mut();
        map = map.insert(&mut txn, "k", MapPrelim::default());
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    state
}

fn sync_update(update: Vec<u8>) -> Message {
    Message::Sync(SyncMessage::Update(update))
}

/// The process is up, never panicked, and two fresh members of `doc` converge.
async fn assert_alive_and_editing(app: &TestApp, doc_path: &str) {
    let panics: Vec<_> = app
        .logs()
        .into_iter()
        .filter(|l| l.contains("panicked") || l.contains("overflow"))
        .collect();
    assert!(panics.is_empty(), "{panics:#?}");
    assert_eq!(app.get("/healthz").await.status, 200);
    let writer = YClient::connect(app, doc_path).await;
    let mut reader = YClient::connect(app, doc_path).await;
    writer.type_text("still here");
    reader
        .until("the writer's text", |c| c.text().contains("still here"))
        .await;
}

#[tokio::test]
async fn a_read_only_yjs_client_nesting_an_update_7500_deep_is_closed_1009_and_no_one_else_notices()
{
    let app = TestApp::spawn(
        TestOptions::new()
            .process()
            .env("DOCROOM_JWT_SECRET", SECRET),
    )
    .await;
    let doc = format!("deep-ro-{}", random_suffix());
    let rw = format!("{doc}?token={}", token(&doc, "rw"));
    let member = YClient::connect(&app, &rw).await;
    member.type_text("before");

    let mut prober = YClient::connect(&app, &format!("{doc}?token={}", token(&doc, "ro"))).await;
    let update = deep_array_update(7_500);
    assert!(update.len() < 16_000, "about 15 KB: {}", update.len());
    prober.send(&[sync_update(update)]);
    prober.ws.expect_close(1009).await;

    assert_alive_and_editing(&app, &rw).await;
    let line = app
        .wait_for_log("nests 257 levels deep", Duration::from_secs(5))
        .await;
    assert!(line.contains("limits.max_yjs_depth"), "{line}");
}

#[tokio::test]
async fn a_read_only_hocuspocus_document_nesting_7500_deep_is_closed_alone_and_the_socket_goes_on()
{
    let app = TestApp::spawn(
        TestOptions::new()
            .process()
            .env("DOCROOM_JWT_SECRET", SECRET),
    )
    .await;
    let (probed, other) = (
        format!("deep-hp-{}", random_suffix()),
        format!("deep-hp-other-{}", random_suffix()),
    );
    let mut client = HpClient::open(&app).await;
    assert_eq!(
        client.join(&probed, &token(&probed, "ro")).await,
        "readonly"
    );
    client.join(&other, &token(&other, "rw")).await;

    let payload = sync_update(deep_array_update(7_500)).encode_v1()[1..].to_vec();
    client.send(&HpFrame::Sync {
        doc: probed.clone(),
        payload,
    });
    let closed = client
        .until(
            "the probed document's close",
            |f| matches!(f, HpFrame::Close { doc, .. } if *doc == probed),
        )
        .await;
    assert!(
        matches!(&closed, HpFrame::Close { reason: Some(r), .. } if r.contains("nesting")),
        "{closed:?}"
    );

    // The socket and its other document go on.
    let mut watcher = HpClient::open(&app).await;
    watcher.join(&other, &token(&other, "rw")).await;
    client.type_text(&other, "typed after");
    while watcher.text(&other) != "typed after" {
        watcher
            .until(
                "the other document's update",
                |f| matches!(f, HpFrame::Sync { doc, .. } if *doc == other),
            )
            .await;
    }
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn a_member_nesting_maps_5000_deep_is_refused_and_the_document_stays_readable() {
    let app = TestApp::spawn(TestOptions::new().process()).await;
    let doc = format!("deep-map-{}", random_suffix());
    let member = YClient::connect(&app, &doc).await;
    member.type_text("kept");
    let mut attacker = YClient::connect(&app, &doc).await;

    attacker.send(&[sync_update(nested_maps_state(5_000))]);
    attacker.ws.expect_close(1009).await;

    let reply = app.get_doc(&doc).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["content"]["text"], "kept");
    assert!(
        reply.body["content"].get("m").is_none(),
        "nothing of it applied"
    );
    assert_alive_and_editing(&app, &doc).await;
}

/// A document stored before the bound existed, written straight into PostgreSQL: still served
/// to editors, never rendered, and the process survives reading it, also after a restart.
#[tokio::test]
async fn a_document_stored_5000_deep_syncs_but_its_rendering_is_a_clear_422() {
    let mut app = TestApp::spawn(TestOptions::new().process()).await;
    let doc = format!("deep-stored-{}", random_suffix());
    let state = nested_maps_state(5_000);
    app.pg()
        .await
        .execute(
            "INSERT INTO documents (doc_id, kind, state, content_hash) VALUES ($1, 'yjs', $2, $3)",
            &[&doc, &state, &sha256_hex(&state)],
        )
        .await
        .expect("store the deep document");

    for round in ["first start", "after a restart"] {
        let reply = app.get_doc(&doc).await;
        assert_eq!(reply.status, 422, "{round}: {}", reply.body);
        assert_eq!(reply.body["error"], "too_deep", "{round}");
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("5000") && message.contains("limits.max_yjs_depth"),
            "{round}: {message}"
        );

        // Sync works: a fresh editor receives the whole stored state and edits beside it.
        let editor = YClient::connect(&app, &doc).await;
        let held = editor.doc.transact().state_vector();
        let stored = {
            let d = Doc::new();
            let update = yrs::updates::decoder::Decode::decode_v1(&state).unwrap();
            d.transact_mut().apply_update(update).unwrap();
            let sv = d.transact().state_vector();
            sv
        };
        assert!(
            stored
                .iter()
                .all(|(client, clock)| held.get(client) >= *clock),
            "{round}: the editor holds the stored document"
        );
        assert_alive_and_editing(&app, &doc).await;
        drop(editor);
        if round == "first start" {
            app.restart().await;
        }
    }
    let reply = app.get(&format!("/docs/{doc}?format=json")).await;
    assert_eq!(reply.status, 422);
    // The canary of the JSON route: other documents are unaffected.
    let mut json_client = WsClient::connect(&app, &format!("canary-{}", random_suffix())).await;
    let ack = json_client.update(json!({"ok": true}), "c").await;
    assert_eq!(ack["stored"], "cache");
}
