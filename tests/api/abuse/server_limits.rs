//! Item 13: limits on the server as a whole: rooms per replica, the size of a Yjs document.

use std::time::Duration;

use serde_json::json;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Text, Transact};

use super::{close_code, decode, WITHIN};
use crate::harness::{ensure, eventually, Frame, TestApp, TestOptions, WsClient};

#[tokio::test]
async fn rooms_beyond_max_rooms_are_refused_with_503_until_one_retires() {
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM__LIMITS__MAX_ROOMS", 2)).await;
    let first = WsClient::connect(&app, "room-a").await;
    let mut second = WsClient::connect(&app, "room-b").await;

    let put = app.put_doc("room-c", &json!({"c": 1})).await;
    assert_eq!(put.status, 503, "PUT of a third room: {}", put.text);
    assert_eq!(put.body["error"], "unavailable", "{}", put.text);
    for path in ["/docs/room-c/ws", "/yjs/room-c-y"] {
        let refused = WsClient::open(&app, path, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{path} upgraded beyond max_rooms"));
        assert_eq!(refused.status, 503, "{path}: {}", refused.body);
        assert!(refused.body.contains("unavailable"), "{}", refused.body);
    }
    // Open rooms go on serving.
    assert_eq!(app.put_doc("room-b", &json!({"b": 2})).await.status, 200);
    second
        .recv_where("the PUT's update", |m| m["type"] == "update")
        .await;

    first.close().await;
    eventually(
        WITHIN,
        "a room for room-c once room-a retired",
        async || {
            let put = app.put_doc("room-c", &json!({"c": 1})).await;
            ensure!(put.status == 200, "{} {}", put.status, put.text);
            Ok(())
        },
    )
    .await;
}

/// A sync update frame inserting `text` into the root text "t" of `doc`.
fn typing_frame(doc: &Doc, text: &str) -> Vec<u8> {
    let t = doc.get_or_insert_text("t");
    let update = {
        let mut txn = doc.transact_mut();
        let end = t.len(&txn);
        t.insert(&mut txn, end, text);
        txn.encode_update_v1()
    };
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

#[tokio::test]
async fn a_yjs_update_that_would_grow_the_state_past_max_yjs_state_bytes_is_refused() {
    let app =
        TestApp::spawn(TestOptions::new().env("DOCROOM__LIMITS__MAX_YJS_STATE_BYTES", 20_000))
            .await;
    let doc = "yjs-cap";
    let mut observer = WsClient::open(&app, &format!("/yjs/{doc}"), &[])
        .await
        .unwrap();
    let mut writer = WsClient::open(&app, &format!("/yjs/{doc}"), &[])
        .await
        .unwrap();
    let local = Doc::new();
    writer.send_binary(typing_frame(&local, &"a".repeat(5_000)));
    eventually(WITHIN, "the first edit stored", async || {
        let got = app.get_doc(doc).await;
        ensure!(got.status == 200, "{}", got.text);
        let text = got.body["content"]["t"].as_str().unwrap_or_default().len();
        ensure!(text == 5_000, "{text} characters stored");
        Ok(())
    })
    .await;

    writer.send_binary(typing_frame(&local, &"b".repeat(30_000)));
    assert_eq!(close_code(&mut writer).await, Some(1009), "close code");
    let got = app.get_doc(doc).await;
    let stored = got.body["content"]["t"].as_str().unwrap_or_default();
    assert_eq!(stored, "a".repeat(5_000), "the document is unchanged");
    // The observer got the first edit and never the refused one.
    let received = Doc::new();
    while let Some(Frame::Binary(bytes)) = observer.recv_within(Duration::from_millis(500)).await {
        for m in decode(&bytes) {
            if let Message::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u)) = m {
                use yrs::updates::decoder::Decode;
                let update = yrs::Update::decode_v1(&u).unwrap();
                received.transact_mut().apply_update(update).unwrap();
            }
        }
    }
    let t = received.get_or_insert_text("t");
    assert_eq!(t.get_string(&received.transact()), "a".repeat(5_000));
    // Others may still write within the limit.
    let other = WsClient::open(&app, &format!("/yjs/{doc}"), &[])
        .await
        .unwrap();
    other.send_binary(typing_frame(&Doc::new(), "c"));
    eventually(WITHIN, "a small edit after the refusal", async || {
        let got = app.get_doc(doc).await;
        let text = got.body["content"]["t"].as_str().unwrap_or_default().len();
        ensure!(text == 5_001, "{text} characters stored");
        Ok(())
    })
    .await;
}
