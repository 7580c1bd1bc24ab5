//! SPEC §1.4: bad input gets a clear error and harms nobody else.

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    assert_fields, content_hash, raw_request, Frame, TestApp, TestOptions, WsClient,
};

#[tokio::test]
async fn malformed_messages_get_an_error_and_the_connection_stays_usable() {
    let app = TestApp::start().await;
    let mut alice = WsClient::connect(&app, "shared").await;
    let mut bob = WsClient::connect(&app, "shared").await;

    let cases = [
        ("not JSON", "this is not json {"),
        ("unknown type", r#"{"type":"shout","content":"HELLO"}"#),
        ("no type", r#"{"content":{"a":1}}"#),
        ("missing content", r#"{"type":"update","ref":"m-1"}"#),
        ("not an object", r#"[{"type":"ping"}]"#),
    ];
    for (case, text) in cases {
        alice.send_raw_text(text);
        let error = alice.recv_json().await;
        assert_fields(&error, json!({"type": "error", "code": "bad_message"}));
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{case}: the error says nothing: {error}"
        );
        alice.ping().await;
    }

    alice.send_binary(vec![0x00, 0x01, 0xff]);
    let error = alice.recv_json().await;
    assert_fields(&error, json!({"type": "error", "code": "bad_message"}));
    alice.ping().await;

    // Nothing above reached the room; the same connection still edits.
    let content = json!({"after": "all that noise"});
    let ack = alice.update(content.clone(), "ok").await;
    assert_fields(
        &ack,
        json!({"stored": "cache", "hash": content_hash(&content)}),
    );
    let seen = bob.recv_json().await;
    assert_fields(&seen, json!({"type": "update", "content": content}));
}

#[tokio::test]
async fn an_error_names_the_ref_of_the_update_it_answers() {
    let app = TestApp::start().await;
    let mut client = WsClient::connect(&app, "refs").await;
    client.send_raw_text(r#"{"type":"update","ref":"where-is-my-content"}"#);
    let error = client.recv_json().await;
    assert_fields(
        &error,
        json!({"type": "error", "code": "bad_message", "ref": "where-is-my-content"}),
    );
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection() {
    let app =
        TestApp::spawn(TestOptions::new().env("DOCROOM__SESSION__MAX_FRAME_BYTES", 1024)).await;
    let mut big = WsClient::connect(&app, "limits").await;
    let mut small = WsClient::connect(&app, "limits").await;

    big.send_json(&json!({"type": "update", "ref": "big", "content": "x".repeat(2000)}));
    big.expect_close(1009).await;

    let content = json!({"fits": true});
    let ack = small.update(content.clone(), "small").await;
    assert_fields(&ack, json!({"stored": "cache"}));
    small.ping().await;
    let late = WsClient::connect(&app, "limits").await;
    assert_fields(&late.snapshot, json!({"content": content}));
    while let Some(frame) = small.recv_within(Duration::ZERO).await {
        assert!(
            !matches!(&frame, Frame::Json(m) if m["type"] == "update"),
            "the oversized update reached the room: {frame:?}"
        );
    }
}

/// Method, target, headers, body.
type RawRequest<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn bad_document_ids_are_rejected_with_400_on_every_route() {
    let app = TestApp::start().await;
    let too_long = "x".repeat(256);
    // SPEC §3: ids are 1-255 bytes of UTF-8 without control characters, not `.` or `..`.
    let bad_ids = [
        "..",
        ".",
        "%2E%2E",
        too_long.as_str(),
        "a%00b",
        "a%0Ab",
        "del%7F",
        "bad%FFutf8",
        "half%2",
    ];
    // Sent byte for byte: an HTTP library would resolve `..` before the server saw it.
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let json_body = [("Content-Type", "application/json")];
    for id in bad_ids {
        let requests: [RawRequest; 4] = [
            ("GET", format!("/docs/{id}"), &[], ""),
            ("PUT", format!("/docs/{id}"), &json_body, r#"{"a":1}"#),
            ("GET", format!("/docs/{id}/ws"), &upgrade, ""),
            ("GET", format!("/yjs/{id}"), &upgrade, ""),
        ];
        for (method, target, headers, body) in requests {
            let reply = raw_request(app.addr, method, &target, headers, body).await;
            assert_eq!(reply.status, 400, "{method} {target}: {}", reply.text);
            assert!(
                reply.body.is_object(),
                "{method} {target}: the 400 body is not a JSON object: {:?}",
                reply.text
            );
        }
    }

    // The edges of the rule are fine: 255 bytes, dots that are not the whole id, and what the
    // old pattern refused (spaces, `/`, `;`, non-ASCII: percent-encoded in the path).
    let longest = "y".repeat(255);
    let fine = [
        (longest.as_str(), longest.as_str()),
        ("A.b_c-9", "A.b_c-9"),
        ("..a", "..a"),
        ("a..", "a.."),
        ("a%20b", "a b"),
        ("a%2Fb", "a/b"),
        ("caf%C3%A9", "caf\u{e9}"),
        ("semi%3Bcolon", "semi;colon"),
    ];
    for (path, id) in fine {
        let reply = app.put_doc(path, &json!({"ok": id})).await;
        assert_eq!(reply.status, 200, "PUT /docs/{path}: {}", reply.text);
        let client = WsClient::connect(&app, path).await;
        assert_fields(&client.snapshot, json!({"doc": id, "content": {"ok": id}}));
    }
}
