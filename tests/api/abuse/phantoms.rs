//! Item 11: a connection that vanishes while joining leaves no member and no room behind.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{metric, WITHIN};
use crate::harness::{ensure, eventually, random_suffix, Proxy, TestApp, TestOptions, WsClient};

/// Sends a WebSocket upgrade for `path` and reads the 101: the session exists and joins.
async fn upgrade(app: &TestApp, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        app.addr
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the upgrade");
    let mut buf = [0u8; 12];
    let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
        .await
        .expect("read the answer");
    assert_eq!(
        &buf[..n],
        b"HTTP/1.1 101",
        "answer to the upgrade of {path}"
    );
    stream
}

#[tokio::test]
async fn connections_that_vanish_while_joining_leave_no_member_and_no_room() {
    // PostgreSQL stalled: a new document's room waits for its load, and joins wait with it.
    let proxy = Proxy::to_postgres();
    let app = TestApp::spawn(
        TestOptions::new()
            .database_through(proxy.addr)
            .env("DOCROOM__DATABASE__STATEMENT_TIMEOUT_MS", 60_000)
            // Rooms on a thread of their own: the answer to a join crosses threads, the window
            // in which a connection can vanish with its join handled is widest.
            .env("DOCROOM__ROOMS__ARBITERS", 1),
    )
    .await;
    let run = random_suffix();
    proxy.stall();
    let docs: Vec<String> = (0..20).map(|i| format!("phantom-{run}-{i}")).collect();
    let mut connections = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let path = match i % 2 {
            0 => format!("/docs/{doc}/ws"),
            _ => format!("/yjs/{doc}"),
        };
        connections.push(upgrade(&app, &path).await);
    }
    // Rooms answer nothing while they load, so the metrics tell: every room is open ...
    eventually(WITHIN, "a room for every connection", async || {
        let rooms = metric(&app, "docroom_rooms").await;
        ensure!(rooms == docs.len() as f64, "{rooms} rooms");
        Ok(())
    })
    .await;
    // ... and each session sends its join right after its room is named; let the last ones
    // reach their rooms' mailboxes (a window to hit, not a claim about speed).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(connections);
    eventually(WITHIN, "every connection gone", async || {
        let connections = metric(&app, "docroom_connections").await;
        ensure!(connections == 0.0, "{connections} connections");
        Ok(())
    })
    .await;
    proxy.restore();

    eventually(
        WITHIN,
        "no room left for the vanished connections",
        async || {
            let left: Vec<Value> = app
                .admin()
                .rooms()
                .await
                .into_iter()
                .filter(|r| docs.iter().any(|d| r["doc"] == d.as_str()))
                .collect();
            ensure!(left.is_empty(), "still open: {left:?}");
            Ok(())
        },
    )
    .await;

    // Without a stall: many connections vanish at every moment of their join.
    let mut vanishing = Vec::new();
    for i in 0..200u64 {
        let path = format!("/yjs/vanish-{run}-{i}");
        let app_addr = app.addr;
        vanishing.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(app_addr).await.expect("connect");
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {app_addr}\r\nConnection: Upgrade\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.expect("upgrade");
            let mut buf = [0u8; 12];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            tokio::time::sleep(Duration::from_micros(i * 50)).await;
        }));
    }
    for task in vanishing {
        task.await.unwrap();
    }
    eventually(
        WITHIN,
        "no room left for the vanished connections",
        async || {
            let left: Vec<Value> = app
                .admin()
                .rooms()
                .await
                .into_iter()
                .filter(|r| r["doc"].as_str().unwrap_or_default().starts_with("vanish-"))
                .collect();
            ensure!(
                left.is_empty(),
                "{} still open: {:?}",
                left.len(),
                left.first()
            );
            Ok(())
        },
    )
    .await;

    // And a live connection still joins as usual.
    let mut client = WsClient::connect(&app, &docs[0]).await;
    client.update(json!({"alive": true}), "a1").await;
}
