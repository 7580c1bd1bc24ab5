//! Hostile ids on every route, WebSocket routes without a proper upgrade, and half-open
//! connections: each gets a clear 4xx or holds nothing, and the service still serves.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::assert_still_serves;
use crate::harness::{raw_request, TestApp, TestOptions, WsClient};

const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// Method, target, headers, body.
type RawRequest<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str);

/// SPEC §3: dot-only ids, control characters, invalid UTF-8 and broken escapes are refused.
/// Ids that look like path traversal are plain names (no id is ever a file path): they reach
/// their own document and never `etc`.
#[tokio::test]
async fn control_and_dot_ids_get_400_and_traversal_ids_are_plain_names_on_every_route() {
    let app = TestApp::start().await;
    app.put_doc("etc", &json!({"do not": "reach"})).await;
    // Unencoded non-ASCII in the request line is refused by the HTTP parser itself (clients
    // percent-encode it; `%C3%BC` below is a fine id).
    let refused = [
        "%2e%2e",
        "%2E",
        "%00",
        "a%00b",
        "etc%00",
        "a%0Ab",
        "%7F",
        "%C2%85",
        "%FF",
        "%",
        "\u{fc}",
        "caf\u{e9}",
    ];
    let json_body = [("Content-Type", "application/json")];
    let mut failures = Vec::new();
    for id in refused {
        let requests: [RawRequest; 4] = [
            ("GET", format!("/docs/{id}"), &[], ""),
            ("PUT", format!("/docs/{id}"), &json_body, r#"{"a":1}"#),
            ("GET", format!("/docs/{id}/ws"), &UPGRADE, ""),
            ("GET", format!("/yjs/{id}"), &UPGRADE, ""),
        ];
        for (method, target, headers, body) in requests {
            let reply = raw_request(app.addr, method, &target, headers, body).await;
            if reply.status != 400 {
                failures.push(format!(
                    "{method} {target} -> {} {}",
                    reply.status, reply.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "bad ids not refused with 400:\n{}",
        failures.join("\n")
    );

    // Decoded once: `%252e` is the three characters `%2e`, not a dot.
    let plain = [
        ("%2e%2e%2f", "../"),
        ("..%2f..%2fetc", "../../etc"),
        ("..%2F..%2Fetc%2Fpasswd", "../../etc/passwd"),
        ("..%5c..%5cetc", "..\\..\\etc"),
        ("%252e%252e%252fetc", "%2e%2e%2fetc"),
        ("%C3%BC", "\u{fc}"),
        ("%E2%80%AE", "\u{202e}"),
        ("%F0%9F%98%80", "\u{1f600}"),
    ];
    for (path, id) in plain {
        let put = raw_request(
            app.addr,
            "PUT",
            &format!("/docs/{path}"),
            &json_body,
            r#"{"a":1}"#,
        )
        .await;
        assert_eq!(put.status, 200, "PUT /docs/{path}: {}", put.text);
        let got = raw_request(app.addr, "GET", &format!("/docs/{path}"), &[], "").await;
        assert_eq!(
            (got.status, &got.body["doc"]),
            (200, &json!(id)),
            "GET /docs/{path}"
        );
    }
    assert_eq!(
        app.get_doc("etc").await.body["content"],
        json!({"do not": "reach"})
    );
    assert_still_serves(&app, "unicode and path-traversal ids").await;
}

#[tokio::test]
async fn websocket_routes_without_a_proper_upgrade_get_a_4xx_and_hold_no_place() {
    // Two places per document: a failed upgrade that kept its place would lock the document.
    let app =
        TestApp::spawn(TestOptions::new().env("DOCROOM__LIMITS__MAX_CONNECTIONS_PER_DOC", 2)).await;
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let headers: [(&str, Vec<(&str, &str)>); 6] = [
        ("no upgrade headers", vec![]),
        ("Upgrade without Connection", vec![("Upgrade", "websocket")]),
        (
            "no key",
            vec![
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
            ],
        ),
        (
            "unknown version",
            vec![
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "99"),
                key,
            ],
        ),
        (
            "another protocol",
            vec![("Connection", "Upgrade"), ("Upgrade", "h2c"), key],
        ),
        (
            "Connection: close",
            vec![("Connection", "close"), ("Upgrade", "websocket"), key],
        ),
    ];
    for round in 0..3 {
        for (case, headers) in &headers {
            for path in ["/docs/plain/ws", "/yjs/plain-y"] {
                let reply = raw_request(app.addr, "GET", path, headers, "").await;
                assert!(
                    (400..500).contains(&reply.status),
                    "round {round}, {case}, GET {path}: {} {}",
                    reply.status,
                    reply.text
                );
            }
        }
    }
    for (method, path) in [("POST", "/docs/plain/ws"), ("PUT", "/yjs/plain-y")] {
        let reply = raw_request(app.addr, method, path, &UPGRADE, "").await;
        assert!(
            (400..500).contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.text
        );
    }

    // Both places on each document are still free.
    let mut first = WsClient::connect(&app, "plain").await;
    let mut second = WsClient::connect(&app, "plain").await;
    first.update(json!({"upgraded": true}), "u1").await;
    second
        .recv_where("the update", |m| m["type"] == "update")
        .await;
    let mut yjs_clients = Vec::new();
    for _ in 0..2 {
        let yjs = WsClient::open(&app, "/yjs/plain-y", &[]).await;
        assert!(yjs.is_ok(), "a failed upgrade kept its place on plain-y");
        yjs_clients.push(yjs);
    }
    assert_still_serves(&app, "requests without an upgrade").await;
}

/// Opens a TCP connection and writes `bytes`, keeping the socket open.
async fn half_open(app: &TestApp, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

#[tokio::test]
async fn half_open_connections_do_not_block_other_clients() {
    let app = TestApp::start().await;
    let host = format!("Host: {}\r\n", app.addr);
    let partial_upgrade = format!(
        "GET /docs/slow/ws HTTP/1.1\r\n{host}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Vers"
    );
    let partial_put =
        format!("PUT /docs/slow HTTP/1.1\r\n{host}Content-Length: 1000\r\n\r\n{{\"a\":");
    let complete_upgrade = format!(
        "GET /docs/slow/ws HTTP/1.1\r\n{host}Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut held = Vec::new();
    for i in 0..60 {
        let bytes: &[u8] = match i % 5 {
            0 => b"",
            1 => b"GET /docs/slow/w",
            2 => partial_upgrade.as_bytes(),
            3 => partial_put.as_bytes(),
            _ => complete_upgrade.as_bytes(),
        };
        held.push(half_open(&app, bytes).await);
    }
    // Some trickle a byte at a time, the classic slowloris.
    let mut trickles = Vec::new();
    for _ in 0..10 {
        let mut stream = half_open(&app, b"G").await;
        let rest = complete_upgrade.as_bytes()[1..].to_vec();
        trickles.push(tokio::spawn(async move {
            for byte in rest.iter().take(12) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
            }
            stream
        }));
    }

    // While they hang, everyone else is served promptly.
    let served = async {
        for round in 0..2 {
            let started = Instant::now();
            assert_eq!(app.get("/healthz").await.status, 200);
            let mut a = WsClient::connect(&app, "slow").await;
            let mut b = WsClient::connect(&app, "slow").await;
            let content = json!({"round": round});
            a.update(content.clone(), &format!("r{round}")).await;
            let seen = b.recv_where("the update", |m| m["type"] == "update").await;
            assert_eq!(seen["content"], content);
            assert_eq!(app.put_doc("slow-http", &content).await.status, 200);
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "round {round} took {:?} among half-open connections",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("normal clients were blocked by half-open connections");

    for trickle in trickles {
        held.push(trickle.await.unwrap());
    }
    drop(held);
    assert_still_serves(&app, "half-open connections").await;
}
