//! The WebSocket Origin allow-list (`DOCROOM_ALLOWED_ORIGINS`) and the `[limits]` settings:
//! connection caps (503 before the upgrade), the per-connection message rate, the document size.

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    assert_fields, eventually, raw_request, Frame, TestApp, TestOptions, WsClient,
};

#[tokio::test]
async fn upgrades_from_a_foreign_origin_get_403_and_allowed_or_absent_origins_upgrade() {
    let app = TestApp::spawn(TestOptions::new().env(
        "DOCROOM_ALLOWED_ORIGINS",
        "https://a.example,https://b.example",
    ))
    .await;

    for origin in [
        "https://evil.example",
        "http://a.example",
        "https://a.example.evil.example",
        "https://a.example:8443",
        "null",
    ] {
        for path in ["/docs/origins/ws", "/yjs/origins-y"] {
            let refused = WsClient::open(&app, path, &[("Origin", origin)])
                .await
                .err()
                .unwrap_or_else(|| panic!("{path} upgraded for Origin {origin}"));
            assert_eq!(
                refused.status, 403,
                "{path} Origin {origin}: {}",
                refused.body
            );
        }
    }

    let mut from_a = WsClient::open(&app, "/docs/origins/ws", &[("Origin", "https://a.example")])
        .await
        .unwrap_or_else(|r| panic!("allowed origin refused: {} {}", r.status, r.body));
    assert_eq!(from_a.recv_json().await["type"], "snapshot");
    let b = WsClient::open(&app, "/yjs/origins-y", &[("Origin", "https://b.example")]).await;
    assert!(b.is_ok(), "the second allowed origin was refused");

    // Non-browser clients send no Origin: nothing cross-site to guard against.
    let mut tool = WsClient::connect(&app, "origins").await;
    tool.update(json!({"from": "a tool"}), "t1").await;
    let seen = from_a
        .recv_where("the tool's update", |m| m["type"] == "update")
        .await;
    assert_eq!(seen["content"], json!({"from": "a tool"}));
}

#[tokio::test]
async fn a_full_document_refuses_more_connections_with_503_until_one_leaves() {
    let app =
        TestApp::spawn(TestOptions::new().env("DOCROOM__LIMITS__MAX_CONNECTIONS_PER_DOC", 2)).await;
    let first = WsClient::connect(&app, "crowded").await;
    let mut second = WsClient::connect(&app, "crowded").await;

    for path in ["/docs/crowded/ws", "/docs/crowded/ws?again=1"] {
        let refused = WsClient::open(&app, path, &[])
            .await
            .err()
            .expect("a third connection to a document limited to two");
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert!(refused.body.contains("unavailable"), "{}", refused.body);
    }
    // Other documents, and plain HTTP on this one, are not affected.
    let mut elsewhere = WsClient::connect(&app, "roomy").await;
    elsewhere.update(json!(1), "e1").await;
    assert_eq!(
        app.put_doc("crowded", &json!({"http": true})).await.status,
        200
    );
    second
        .recv_where("the PUT's update", |m| m["type"] == "update")
        .await;

    first.close().await;
    let mut third = eventually(
        Duration::from_secs(10),
        "a place on the document after one left",
        async || {
            WsClient::open(&app, "/docs/crowded/ws", &[])
                .await
                .map_err(|r| format!("{} {}", r.status, r.body))
        },
    )
    .await;
    assert_eq!(third.recv_json().await["type"], "snapshot");
    third.update(json!({"third": "in"}), "t1").await;

    // An abrupt disconnect frees its place too.
    drop(second);
    eventually(
        Duration::from_secs(10),
        "a place after an abrupt disconnect",
        async || {
            WsClient::open(&app, "/docs/crowded/ws", &[])
                .await
                .map(drop)
                .map_err(|r| format!("{} {}", r.status, r.body))
        },
    )
    .await;
}

#[tokio::test]
async fn the_overall_connection_limit_refuses_with_503_on_every_route_until_one_leaves() {
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM__LIMITS__MAX_CONNECTIONS", 2)).await;
    let one = WsClient::connect(&app, "one").await;
    let _two = WsClient::open(&app, "/yjs/two", &[])
        .await
        .unwrap_or_else(|r| panic!("second connection refused: {}", r.status));

    for path in ["/docs/three/ws", "/yjs/three-y", "/docs/one/ws"] {
        let refused = WsClient::open(&app, path, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{path} upgraded over the overall limit"));
        assert_eq!(refused.status, 503, "{path}: {}", refused.body);
    }
    // The service itself still answers.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.put_doc("three", &json!(3)).await.status, 200);

    one.close().await;
    let three = eventually(
        Duration::from_secs(10),
        "a place after a client left",
        async || {
            WsClient::open(&app, "/docs/three/ws", &[])
                .await
                .map_err(|r| format!("{} {}", r.status, r.body))
        },
    )
    .await;
    let mut three = three;
    assert_fields(
        &three.recv_json().await,
        json!({"type": "snapshot", "content": 3}),
    );
}

#[tokio::test]
async fn a_flooding_client_gets_rate_errors_then_is_closed_while_its_neighbour_is_unaffected() {
    let app = TestApp::spawn(
        TestOptions::new()
            .env("DOCROOM__LIMITS__MESSAGES_PER_SEC", 5)
            .env("DOCROOM__LIMITS__MESSAGE_BURST", 5)
            .env("DOCROOM__LIMITS__MAX_RATE_VIOLATIONS", 3),
    )
    .await;
    let mut flooder = WsClient::connect(&app, "flood").await;
    let mut neighbour = WsClient::connect(&app, "flood").await;

    for i in 0..30 {
        flooder.send_json(&json!({"type": "update", "ref": format!("f{i}"), "content": {"n": i}}));
    }
    let (mut acks, mut rate_errors) = (0, 0);
    loop {
        match flooder.recv().await {
            Frame::Json(m) if m["type"] == "ack" => acks += 1,
            Frame::Json(m) if m["type"] == "error" => {
                assert_eq!(m["code"], "unavailable", "{m}");
                let message = m["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("rate"),
                    "the error does not name the rate: {m}"
                );
                rate_errors += 1;
            }
            Frame::Json(m) => panic!("unexpected message to the flooder: {m}"),
            Frame::Closed(code) => {
                assert_eq!(code, Some(1008), "close code for a flooder");
                break;
            }
            other => panic!("the flooder's connection ended without a Close: {other:?}"),
        }
    }
    // Acks of the burst may be cut off by the close; never more than the burst (plus a refill).
    assert!(acks <= 6, "{acks} of 30 flooded updates acknowledged");
    assert!(
        (1..=3).contains(&rate_errors),
        "{rate_errors} rate errors before the close (max_rate_violations = 3)"
    );

    // The neighbour saw at most the accepted updates, and edits on as before.
    neighbour.ping().await;
    let content = json!({"calm": true});
    let ack = neighbour.update(content.clone(), "n1").await;
    assert_fields(&ack, json!({"stored": "cache"}));
    let late = WsClient::connect(&app, "flood").await;
    assert_fields(&late.snapshot, json!({"content": content}));

    // Below the rate nothing is refused.
    let mut steady = WsClient::connect(&app, "steady").await;
    for i in 0..8 {
        steady.update(json!({"i": i}), &format!("s{i}")).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn content_over_the_document_size_limit_is_refused_over_websocket_and_http() {
    let app =
        TestApp::spawn(TestOptions::new().env("DOCROOM__LIMITS__MAX_DOCUMENT_BYTES", 1000)).await;
    let mut client = WsClient::connect(&app, "sized").await;
    let mut other = WsClient::connect(&app, "sized").await;

    let fits = json!({"text": "x".repeat(900)});
    client.update(fits.clone(), "fits").await;
    other
        .recv_where("the update that fits", |m| m["type"] == "update")
        .await;

    let too_big = json!({"text": "x".repeat(1200)});
    let refused = client.try_update(too_big.clone(), "too-big").await;
    assert_fields(
        &refused,
        json!({"type": "error", "code": "bad_message", "ref": "too-big"}),
    );
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1000"),
        "the error does not name the limit: {refused}"
    );
    client.ping().await;

    let put = app.put_doc("sized", &too_big).await;
    assert_eq!(put.status, 400, "{}", put.text);
    // Many small values can be big too: the limit is on the serialized document.
    let wide: Vec<u32> = (0..500).collect();
    assert_eq!(app.put_doc("sized", &json!(wide)).await.status, 400);

    let get = app.get_doc("sized").await;
    assert_eq!(
        get.body["content"], fits,
        "oversized content replaced the document"
    );
    other.ping().await;
    while let Some(frame) = other.recv_within(Duration::ZERO).await {
        assert!(
            !matches!(&frame, Frame::Json(m) if m["type"] == "update"),
            "oversized content reached another member: {frame:?}"
        );
    }
    let raw = raw_request(
        app.addr,
        "PUT",
        "/docs/sized",
        &[("Content-Type", "application/json")],
        &json!({"text": "y".repeat(100)}).to_string(),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text);
}
