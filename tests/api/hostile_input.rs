//! A bad-input battery (issue 6, item 4; SPEC §1.4): random bytes, invalid UTF-8, very deep JSON,
//! huge numbers, unicode and path-traversal ids, WebSocket routes without an upgrade, half-open
//! connections. Each one gets a clear error (or closes only the offending connection), and after
//! each the service still serves a normal client.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, ReadTxn, StateVector, Transact};

mod appended_chains;
mod broken_documents;
mod deep_nesting;
mod ids_and_connections;
mod renderings;
mod sockets_and_tokens;

use crate::harness::{assert_fields, content_hash, random_suffix, Frame, TestApp, WsClient};

/// The service did not panic, answers `/healthz`, and two fresh clients of a new document get a
/// snapshot, an ack and each other's update.
async fn assert_still_serves(app: &TestApp, after: &str) {
    let panics: Vec<String> = app
        .logs()
        .into_iter()
        .filter(|line| line.contains("panicked"))
        .collect();
    assert!(
        panics.is_empty(),
        "after {after}: the service panicked: {panics:#?}"
    );
    assert_eq!(
        app.get("/healthz").await.status,
        200,
        "after {after}: /healthz"
    );

    let doc = format!("canary-{}", random_suffix());
    let mut writer = WsClient::connect(app, &doc).await;
    let mut reader = WsClient::connect(app, &doc).await;
    assert_fields(&writer.snapshot, json!({"doc": doc, "content": null}));
    let content = json!({"after": after});
    let ack = writer.update(content.clone(), "canary").await;
    assert_fields(
        &ack,
        json!({"stored": "cache", "hash": content_hash(&content)}),
    );
    let seen = reader
        .recv_where("the canary update", |m| m["type"] == "update")
        .await;
    assert_eq!(seen["content"], content, "after {after}");
}

/// A text frame with exactly these bytes, valid UTF-8 or not.
fn raw_text_frame(bytes: Vec<u8>) -> Message {
    Message::Frame(RawFrame::message(bytes, OpCode::Data(Data::Text), true))
}

/// Random bytes that are certainly not UTF-8 (0xFF never occurs in UTF-8).
fn invalid_utf8(rng: &mut impl Rng) -> Vec<u8> {
    let len = rng.random_range(1..200);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    let at = rng.random_range(0..bytes.len());
    bytes[at] = 0xff;
    bytes
}

/// Random valid UTF-8 text: JSON punctuation, controls, quotes, escapes, non-ASCII.
fn noise_text(rng: &mut impl Rng) -> String {
    const PIECES: &[&str] = &[
        "{", "}", "[", "]", "\"", ":", ",", "\\", "\\u", "\\ud800", "type", "update", "content",
        "ref", "null", "true", "1e", "-", "\u{0}", "\u{7}", "\n", "é", "ü", "😀", "\u{202e}",
        "\u{fffd}", " ", "ping", "'", "NaN", "Infinity",
    ];
    let len = rng.random_range(1..40);
    (0..len)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

#[tokio::test]
async fn random_bytes_in_frames_close_or_answer_only_the_sender() {
    let app = TestApp::start().await;
    let mut rng = rand::rng();
    let mut bystander = WsClient::connect(&app, "noise").await;

    // Valid UTF-8 that is not a message: an error each, and the connection stays open.
    let mut noisy = WsClient::connect(&app, "noise").await;
    for _ in 0..60 {
        let text = noise_text(&mut rng);
        noisy.send_raw_text(&text);
        let reply = noisy.recv_json().await;
        assert_fields(&reply, json!({"type": "error", "code": "bad_message"}));
        assert!(
            !reply["message"].as_str().unwrap_or_default().is_empty(),
            "no reason for {text:?}: {reply}"
        );
    }
    noisy.ping().await;
    noisy.update(json!({"noisy": "but fine"}), "n1").await;
    bystander
        .recv_where("the noisy client's update", |m| m["type"] == "update")
        .await;

    // Invalid UTF-8 in a text frame is a WebSocket protocol error: that connection closes.
    for _ in 0..5 {
        let mut broken = WsClient::connect(&app, "noise").await;
        broken.send(raw_text_frame(invalid_utf8(&mut rng)));
        let mut closed = None;
        while let Some(frame) = broken.recv_within(Duration::from_secs(10)).await {
            match frame {
                Frame::Closed(code) => {
                    closed = code;
                    break;
                }
                Frame::Gone(why) => panic!("no Close frame after invalid UTF-8: {why}"),
                Frame::Json(m) => assert_ne!(m["type"], "ack", "invalid UTF-8 was acked"),
                Frame::Binary(_) => {}
            }
        }
        assert!(
            matches!(closed, Some(1002 | 1007)),
            "close code after invalid UTF-8: {closed:?}"
        );
    }

    // Random binary on the JSON route: an error, connection open.
    for _ in 0..10 {
        let len = rng.random_range(1..300);
        noisy.send_binary((0..len).map(|_| rng.random()).collect());
        let reply = noisy.recv_json().await;
        assert_fields(&reply, json!({"type": "error", "code": "bad_message"}));
    }
    noisy.ping().await;

    // The bystander never noticed anything.
    bystander.ping().await;
    let content = json!({"bystander": "unaffected"});
    bystander.update(content.clone(), "b1").await;
    assert_eq!(app.get_doc("noise").await.body["content"], content);
    assert_still_serves(&app, "random bytes in text frames").await;
}

/// A v1 update setting `m[key] = value` in a fresh document.
fn yjs_update(key: &str, value: &str) -> Vec<u8> {
    let doc = Doc::new();
    let map = doc.get_or_insert_map("m");
    map.insert(&mut doc.transact_mut(), key, value);
    let txn = doc.transact();
    txn.encode_state_as_update_v1(&StateVector::default())
}

/// `update` as a y-protocols sync update frame.
fn yjs_update_frame(update: Vec<u8>) -> Vec<u8> {
    YMessage::Sync(SyncMessage::Update(update)).encode_v1()
}

#[tokio::test]
async fn random_bytes_on_the_yjs_route_harm_nobody_else() {
    let app = TestApp::start().await;
    let mut rng = rand::rng();
    let writer = WsClient::open(&app, "/yjs/ynoise", &[]).await.unwrap();
    let mut observer = WsClient::open(&app, "/yjs/ynoise", &[]).await.unwrap();

    for round in 0..20 {
        let garbage = WsClient::open(&app, "/yjs/ynoise", &[]).await.unwrap();
        let len = rng.random_range(1..400);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if round % 2 == 0 {
            // Make it look like a sync update so it gets as far as the update decoder.
            bytes.splice(0..0, [0u8, 2, len.min(127) as u8]);
        }
        garbage.send_binary(bytes);
        // Invalid UTF-8 text frames on the Yjs route close too.
        if round % 5 == 0 {
            garbage.send(raw_text_frame(invalid_utf8(&mut rng)));
        }
        garbage.send_binary(yjs_update_frame(yjs_update("liveness", "probe")));
        drop(garbage);
    }

    let update = yjs_update("real", "edit");
    writer.send_binary(yjs_update_frame(update.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let update_payload = update.as_slice();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match observer.recv_within(left).await {
            Some(Frame::Binary(frame)) if contains(&frame, update_payload) => break,
            Some(Frame::Binary(_)) | Some(Frame::Json(_)) => {}
            Some(other) => panic!("the observer's connection ended: {other:?}"),
            None => panic!("the writer's update never reached the observer"),
        }
    }
    let doc = app.get_doc("ynoise").await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert_eq!(doc.body["content"]["m"]["real"], "edit", "{}", doc.text);
    assert_still_serves(&app, "random bytes on the yjs route").await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `depth` levels of alternating arrays and objects around a string.
fn nested(depth: usize) -> Value {
    let mut value = json!("bottom");
    for level in 0..depth {
        value = if level % 2 == 0 {
            json!([value])
        } else {
            json!({ "k": value })
        };
    }
    value
}

#[tokio::test]
async fn deep_json_is_accepted_to_64_levels_and_10000_levels_get_a_clear_error() {
    let app = TestApp::start().await;
    let mut client = WsClient::connect(&app, "deep").await;
    let mut other = WsClient::connect(&app, "deep").await;

    let deep64 = nested(64);
    let ack = client.update(deep64.clone(), "d64").await;
    assert_fields(
        &ack,
        json!({"stored": "cache", "hash": content_hash(&deep64)}),
    );
    let seen = other
        .recv_where("the 64-level update", |m| m["type"] == "update")
        .await;
    assert_eq!(seen["content"], deep64);
    assert_eq!(app.get_doc("deep").await.body["content"], deep64);
    // And it can be persisted: PostgreSQL's jsonb takes it.
    let flushed = app.admin().flush_now().await;
    assert_fields(&flushed, json!({"failed": 0}));
    assert_eq!(app.pg_content("deep").await, Some(deep64.clone()));

    for (shape, open, close) in [
        ("arrays", "[", "]"),
        ("objects", r#"{"a":"#, "}"),
        ("mixed", r#"[{"a":"#, "}]"),
    ] {
        let depth = if shape == "mixed" { 5_000 } else { 10_000 };
        let content = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        client.send_raw_text(&format!(
            r#"{{"type":"update","ref":"deep-{shape}","content":{content}}}"#
        ));
        let reply = client.recv_json().await;
        assert_fields(&reply, json!({"type": "error", "code": "bad_message"}));
        assert!(
            !reply["message"].as_str().unwrap_or_default().is_empty(),
            "{shape}: {reply}"
        );
        client.ping().await;

        let put = app.put_doc_raw("deep", &content).await;
        assert_eq!(put.status, 400, "PUT 10,000-level {shape}: {}", put.text);
    }
    // Deep nesting elsewhere in the message is refused the same way.
    client.send_raw_text(&format!(
        r#"{{"type":"ping","x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    ));
    assert_fields(
        &client.recv_json().await,
        json!({"type": "error", "code": "bad_message"}),
    );

    // Nothing deep reached the room.
    assert_eq!(app.get_doc("deep").await.body["content"], deep64);
    other.ping().await;
    while let Some(frame) = other.recv_within(Duration::ZERO).await {
        assert!(
            !matches!(&frame, Frame::Json(m) if m["type"] == "update"),
            "a refused deep update reached the room: {frame:?}"
        );
    }
    assert_still_serves(&app, "deep JSON").await;
}

#[tokio::test]
async fn huge_numbers_are_refused_clearly_or_stored_exactly_as_acknowledged() {
    let app = TestApp::start().await;
    let mut client = WsClient::connect(&app, "numbers").await;
    let digits400 = format!("9{}", "8".repeat(399));
    let cases = [
        "1e400".to_owned(),
        "-1e400".to_owned(),
        "1e-400".to_owned(),
        digits400.clone(),
        format!("-{digits400}"),
        format!("0.{digits400}"),
        "18446744073709551616".to_owned(),
        "-9223372036854775809".to_owned(),
        "123456789012345678901234567890".to_owned(),
        "1.7976931348623157e308".to_owned(),
    ];
    let (mut accepted, mut refused) = (0, 0);
    for number in &cases {
        let text = format!(r#"{{"type":"update","ref":"n","content":{{"n":{number}}}}}"#);
        client.send_raw_text(&text);
        let reply = client.recv_json().await;
        match reply["type"].as_str() {
            Some("error") => {
                refused += 1;
                assert_eq!(reply["code"], "bad_message", "{number}: {reply}");
                assert!(
                    !reply["message"].as_str().unwrap_or_default().is_empty(),
                    "{number}: {reply}"
                );
                let put = app
                    .put_doc_raw("numbers", &format!(r#"{{"n":{number}}}"#))
                    .await;
                assert_eq!(put.status, 400, "PUT {number}: {}", put.text);
            }
            Some("ack") => {
                accepted += 1;
                // What was acknowledged is what is served: the hash of the served content.
                let served = app.get_doc("numbers").await;
                assert_eq!(served.status, 200, "{number}: {}", served.text);
                assert_eq!(
                    reply["hash"],
                    content_hash(&served.body["content"]),
                    "{number}: the ack's hash is not the served content's: {}",
                    served.text
                );
                assert_eq!(served.body["hash"], reply["hash"], "{number}");
                let put = app
                    .put_doc_raw("numbers", &format!(r#"{{"n":{number}}}"#))
                    .await;
                assert_eq!(put.status, 200, "PUT {number}: {}", put.text);
            }
            _ => panic!("{number}: neither an ack nor an error: {reply}"),
        }
        client.ping().await;
    }
    assert!(refused >= 2, "1e400 and its like were accepted");
    assert!(accepted >= 2, "ordinary big numbers were refused");
    // Everything accepted can be persisted.
    assert_fields(&app.admin().flush_now().await, json!({"failed": 0}));
    assert_still_serves(&app, "huge numbers").await;
}
