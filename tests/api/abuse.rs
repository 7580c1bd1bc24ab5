//! Clients that try to exhaust the server (issue 11, items 9, 10, 11, 13): a member that stops
//! reading, a read-only token flooding awareness, connections that vanish while joining, and
//! the limits on the server as a whole (rooms per replica, the size of a Yjs document).
//! Each story asserts what a client or the admin API can observe, never a timing.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::DecoderV1;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, Text, Transact};

use crate::harness::{
    ensure, eventually, random_suffix, Frame, Proxy, TestApp, TestOptions, WsClient,
};

const WITHIN: Duration = Duration::from_secs(20);
const SECRET: &str = "abuse-test-secret";

/// Resident memory of the service process, from /proc/<pid>/status.
fn rss_kib(app: &TestApp) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.pid().unwrap()))
        .expect("read the service's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc status")
}

async fn members(app: &TestApp, doc: &str) -> Option<u64> {
    app.admin()
        .room(doc)
        .await
        .map(|room| room["members"].as_u64().unwrap())
}

#[tokio::test]
async fn a_member_that_stops_reading_is_dropped_from_the_room_and_memory_stays_bounded() {
    let app = TestApp::spawn(
        TestOptions::new()
            .env("DOCROOM__LIMITS__MEMBER_BACKLOG_BYTES", 2_000_000)
            .env("DOCROOM__LIMITS__MEMBER_BACKLOG_MESSAGES", 1000)
            .env("DOCROOM__LIMITS__MESSAGES_PER_SEC", 10_000),
    )
    .await;
    let doc = "stalled-reader";
    let mut writer = WsClient::connect(&app, doc).await;
    // Upgrades, reads its snapshot, then never reads again (a hung tab, or an attacker).
    let (mut stalled, _) = tokio_tungstenite::connect_async(app.ws_url(&format!("/docs/{doc}/ws")))
        .await
        .expect("connect the stalled reader");
    let snapshot = stalled.next().await.expect("a snapshot").expect("read it");
    assert!(snapshot.to_text().unwrap().contains("snapshot"));
    assert_eq!(members(&app, doc).await, Some(2));
    let rss_before = rss_kib(&app);

    // 256 KB updates: kernel buffers fill after a few dozen, then the server-side backlog grows.
    let filler = "x".repeat(256 * 1024);
    let mut sent = 0;
    while members(&app, doc).await == Some(2) {
        assert!(
            sent < 400,
            "the stalled reader is still a member after {sent} updates (service RSS {} KiB, \
             {rss_before} KiB before)",
            rss_kib(&app)
        );
        writer
            .update(json!({"n": sent, "fill": filler}), &format!("u{sent}"))
            .await;
        sent += 1;
    }
    let dropped_after = sent;
    // The writer goes on; the stalled member is gone and gets nothing more.
    for n in sent..sent + 200 {
        writer
            .update(json!({"n": n, "fill": filler}), &format!("u{n}"))
            .await;
    }
    let rss_after = rss_kib(&app);
    eprintln!(
        "stalled reader dropped after {dropped_after} updates of 256 KiB; service RSS {} KiB \
         before, {} KiB after {} more updates",
        rss_before, rss_after, 200
    );
    assert_eq!(members(&app, doc).await, Some(1), "only the writer is left");

    // Once it reads again it finds its connection closed with 1008 (after what was queued).
    let closed = tokio::time::timeout(WITHIN, async {
        while let Some(frame) = stalled.next().await {
            match frame {
                Ok(WsMessage::Close(close)) => return close.map(|c| u16::from(c.code)),
                Ok(_) => {}
                Err(e) => panic!("the stalled reader's connection broke: {e}"),
            }
        }
        panic!("the stalled reader's connection ended without a Close frame")
    })
    .await
    .expect("a Close frame once the stalled reader reads again");
    assert_eq!(closed, Some(1008));
}

/// A token for `doc` with `scope` ("rw" / "ro"), valid for an hour.
fn token(doc: &str, scope: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"docs": [doc], "scope": scope, "exp": exp, "sub": "abuse"});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign the token")
}

/// An awareness frame announcing `state` for every id in `clients`.
fn awareness_frame(clients: impl IntoIterator<Item = u64>, state: &Value) -> Vec<u8> {
    let clients = clients
        .into_iter()
        .map(|id| {
            let entry = AwarenessUpdateEntry {
                clock: 1,
                json: state.to_string().into(),
            };
            (ClientID::new(id), entry)
        })
        .collect();
    Message::Awareness(AwarenessUpdate { clients }).encode_v1()
}

fn decode(frame: &[u8]) -> Vec<Message> {
    let mut decoder = DecoderV1::new(Cursor::new(frame));
    MessageReader::new(&mut decoder)
        .collect::<Result<_, _>>()
        .expect("the server's frames decode")
}

/// Awareness client ids (with a live state) seen in the frames `client` receives within `wait`.
async fn awareness_seen(client: &mut WsClient, wait: Duration) -> HashMap<u64, String> {
    let mut seen = HashMap::new();
    while let Some(frame) = client.recv_within(wait).await {
        let Frame::Binary(bytes) = frame else {
            panic!("the observer's connection ended: {frame:?}")
        };
        for m in decode(&bytes) {
            if let Message::Awareness(update) = m {
                for (id, entry) in update.clients {
                    seen.insert(id.get(), entry.json.to_string());
                }
            }
        }
    }
    seen
}

/// The close code the server sends `client`, skipping other frames.
async fn close_code(client: &mut WsClient) -> Option<u16> {
    loop {
        match client.recv_within(WITHIN).await {
            Some(Frame::Closed(code)) => return code,
            Some(Frame::Gone(why)) => panic!("no Close frame: {why}"),
            Some(_) => {}
            None => panic!("not closed within {WITHIN:?}"),
        }
    }
}

async fn yjs_client(app: &TestApp, doc: &str, scope: &str) -> WsClient {
    let path = format!("/yjs/{doc}?token={}", token(doc, scope));
    WsClient::open(app, &path, &[])
        .await
        .unwrap_or_else(|r| panic!("upgrade of /yjs/{doc} refused: {} {}", r.status, r.body))
}

#[tokio::test]
async fn a_read_only_client_flooding_awareness_is_closed_and_its_states_are_neither_relayed_nor_held(
) {
    let app = TestApp::spawn(
        TestOptions::new()
            .env("DOCROOM_JWT_SECRET", SECRET)
            .env("DOCROOM__LIMITS__MAX_AWARENESS_CLIENTS_PER_CONNECTION", 4)
            .env("DOCROOM__LIMITS__MAX_AWARENESS_STATE_BYTES", 4096),
    )
    .await;
    let doc = "aware-flood";
    let mut observer = yjs_client(&app, doc, "rw").await;
    awareness_seen(&mut observer, Duration::from_millis(300)).await; // the greeting

    // A read-only client may announce its presence, as every Yjs client does.
    let mut reader = yjs_client(&app, doc, "ro").await;
    reader.send_binary(awareness_frame([1], &json!({"user": "reader"})));
    let seen = eventually(WITHIN, "the reader's presence relayed", async || {
        let seen = awareness_seen(&mut observer, Duration::from_millis(200)).await;
        ensure!(seen.contains_key(&1), "relayed so far: {seen:?}");
        Ok(seen)
    })
    .await;
    assert!(seen[&1].contains("reader"));

    // A big state: the connection is closed (1008) and the state goes nowhere.
    let big = json!({"junk": "y".repeat(600 * 1024)});
    reader.send_binary(awareness_frame([2], &big));
    assert_eq!(
        close_code(&mut reader).await,
        Some(1008),
        "close code for a big state"
    );

    // Many new client ids, each state small: closed too, none relayed.
    let mut flooder = yjs_client(&app, doc, "ro").await;
    flooder.send_binary(awareness_frame(100..140, &json!({"user": "many"})));
    assert_eq!(
        close_code(&mut flooder).await,
        Some(1008),
        "close code for many ids"
    );

    let seen = awareness_seen(&mut observer, Duration::from_millis(500)).await;
    let flood: Vec<_> = seen
        .iter()
        .filter(|(id, json)| **id == 2 || (100..140).contains(*id) && json.as_str() != "null")
        .collect();
    assert!(flood.is_empty(), "relayed: {flood:?}");
    // Nor kept for newcomers.
    let mut newcomer = yjs_client(&app, doc, "rw").await;
    let greeting = awareness_seen(&mut newcomer, Duration::from_millis(500)).await;
    let kept: Vec<_> = greeting
        .keys()
        .filter(|id| **id == 2 || (100..140).contains(*id))
        .collect();
    assert!(kept.is_empty(), "held: {kept:?}");

    // The attack of issue 11 item 10 (600 KB states under fresh ids), repeated: each connection
    // is closed at its first frame and memory stays where it was.
    let rss_before = rss_kib(&app);
    for round in 0..40 {
        let mut attacker = yjs_client(&app, doc, "ro").await;
        attacker.send_binary(awareness_frame([1000 + round], &big));
        assert_eq!(close_code(&mut attacker).await, Some(1008));
    }
    eprintln!(
        "awareness flood: service RSS {rss_before} KiB before, {} KiB after 40 read-only \
         connections sent 600 KiB states",
        rss_kib(&app)
    );
}

/// A gauge's value in `GET /metrics` (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

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
