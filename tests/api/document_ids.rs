//! SPEC §3 ids as Hocuspocus names documents (issue 13 item 2): 1–255 bytes of UTF-8 without
//! control characters, not `.` or `..`, one percent-encoded segment in a URL path. Ids with `/`,
//! `:`, spaces, quotes and non-ASCII go through every route and reach PostgreSQL as they are.

use std::time::Duration;

use serde_json::{json, Value};
use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{Doc, GetString, StateVector, Text, Transact, Update};

use crate::harness::tokens;
use crate::harness::{eventually, raw_request, Frame, TestApp, TestOptions, WsClient};

const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// Method, target, headers, body.
type RawRequest<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str);

/// `id` as one path segment: every byte but RFC 3986's unreserved ones percent-encoded (what
/// `encodeURIComponent` does, and more).
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn wide_ids_travel_http_and_the_json_socket_and_reach_postgres_exactly() {
    let app = TestApp::start().await;
    let longest = "文".repeat(85); // 255 bytes
    let ids = [
        "org/doc",
        "doc:1",
        "a b",
        "é文",
        r#"quote " and \ back"#,
        "100%",
        "../etc",
        longest.as_str(),
    ];
    let mut clients = Vec::new();
    for id in ids {
        let path = segment(id);
        let put = app.put_doc(&path, &json!({"name": id})).await;
        assert_eq!(put.status, 200, "PUT /docs/{path}: {}", put.text);

        let got = app.get_doc(&path).await;
        assert_eq!(got.status, 200, "GET /docs/{path}: {}", got.text);
        assert_eq!(got.body["doc"], id, "GET names the decoded id");
        assert_eq!(got.body["content"], json!({"name": id}));

        // The snapshot is built by serde: quotes and backslashes in the id arrive escaped.
        let mut client = WsClient::connect(&app, &path).await;
        assert_eq!(client.snapshot["doc"], id, "snapshot on /docs/{path}/ws");
        assert_eq!(client.snapshot["content"], json!({"name": id}));
        let ack = client
            .update(json!({"name": id, "by": "socket"}), "r1")
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        clients.push(client);
    }

    let rooms: Vec<Value> = app.admin().rooms().await;
    for id in ids {
        assert!(
            rooms.iter().any(|r| r["doc"] == id),
            "admin rooms list {id:?}: {rooms:?}"
        );
    }
    let flushed = app.admin().flush_now().await;
    assert_eq!(flushed["failed"], 0, "{flushed}");
    for client in clients {
        client.close().await;
    }
    for id in ids {
        assert_eq!(
            app.pg_content(id).await,
            Some(json!({"name": id, "by": "socket"})),
            "PostgreSQL row with doc_id {id:?}"
        );
    }
}

#[tokio::test]
async fn ids_that_only_look_like_other_redis_keys_stay_separate_documents() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    // `doc:{id}:temp` for the id `a:temp` is `doc:a:temp:temp`, never `doc:a:temp` (the id `a`):
    // every key ends in its own suffix, so two (id, suffix) pairs cannot give one key.
    let ids = [
        "a",
        "a:temp",
        "a:temp:temp",
        "a:lastSavedHash",
        "a:stamp",
        "doc:a",
    ];
    // Each room keeps a member: a room's last member leaving would persist (and clean) at once.
    let mut clients = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let mut client = WsClient::connect(&app, &segment(id)).await;
        client.update(json!({"n": n}), "r").await;
        clients.push(client);
    }
    let modified = app.redis_smembers("modifiedDocs").await;
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            app.get_doc(&segment(id)).await.body["content"],
            json!({"n": n})
        );
        let cached = app.redis_get(&format!("doc:{id}:temp")).await;
        let cached: Option<Value> = cached.map(|c| serde_json::from_str(&c).expect("JSON"));
        assert_eq!(cached, Some(json!({"n": n})), "doc:{id}:temp");
        assert!(
            modified.iter().any(|d| d == id),
            "{id} in modifiedDocs: {modified:?}"
        );
    }
    for client in clients {
        client.close().await;
    }
}

/// A y-protocols frame of `messages`.
fn frame(messages: &[Message]) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    for m in messages {
        m.encode(&mut encoder);
    }
    encoder.to_vec()
}

/// Reads frames until a sync step 2 or update makes `doc`'s text `want`.
async fn await_text(client: &mut WsClient, doc: &Doc, want: &str) {
    let text = doc.get_or_insert_text("text");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text.get_string(&doc.transact()) != want {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(Frame::Binary(bytes)) = client.recv_within(left).await else {
            panic!("text {want:?} not received within 10 s");
        };
        let mut decoder = DecoderV1::new(Cursor::new(&bytes));
        for message in MessageReader::new(&mut decoder).flatten() {
            if let Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) = message {
                let update = Update::decode_v1(&u).expect("the server's update decodes");
                doc.transact_mut().apply_update(update).expect("it applies");
            }
        }
    }
}

#[tokio::test]
async fn a_yjs_room_named_with_a_slash_is_one_document_whether_encoded_or_not() {
    let app = TestApp::start().await;
    // y-websocket puts the room name into the URL as is: `org/notes é` arrives as below.
    let raw = WsClient::open(&app, "/yjs/org/notes%20%C3%A9", &[]).await;
    let writer = raw.unwrap_or_else(|r| panic!("raw room path refused: {} {}", r.status, r.body));
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let update = {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hello");
        txn.encode_update_v1()
    };
    writer.send_binary(frame(&[Message::Sync(SyncMessage::Update(update))]));

    let mut reader = WsClient::open(&app, &format!("/yjs/{}", segment("org/notes é")), &[])
        .await
        .unwrap_or_else(|r| panic!("encoded room path refused: {} {}", r.status, r.body));
    reader.send_binary(frame(&[Message::Sync(SyncMessage::SyncStep1(
        StateVector::default(),
    ))]));
    await_text(&mut reader, &Doc::new(), "hello").await;

    let got = app.get_doc(&segment("org/notes é")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(
        (&got.body["doc"], &got.body["kind"]),
        (&json!("org/notes é"), &json!("yjs"))
    );
    let kind = eventually(
        Duration::from_secs(10),
        "the row in PostgreSQL",
        async || {
            app.admin().flush_now().await;
            let row = app
                .pg()
                .await
                .query_opt(
                    "SELECT kind FROM documents WHERE doc_id = $1",
                    &[&"org/notes é"],
                )
                .await
                .map_err(|e| e.to_string())?;
            row.map(|r| r.get::<_, String>(0))
                .ok_or("no row yet".to_owned())
        },
    )
    .await;
    assert_eq!(kind, "yjs", "stored under the decoded id");
}

#[tokio::test]
async fn refused_ids_get_400_saying_what_an_id_may_be_on_every_route() {
    let app = TestApp::start().await;
    let too_long = segment(&"é".repeat(128)); // 256 bytes
    let refused = [
        ".",
        "%2E",
        "%2e%2E",
        "..",
        "a%00b",
        "a%0Ab",
        "%09",
        "del%7F",
        "c1%C2%85",
        "%FF",
        "%C3",
        "%",
        "a%2",
        "%zz",
        too_long.as_str(),
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
            let message = reply.body["message"].as_str().unwrap_or_default();
            if reply.status != 400 || !message.contains("invalid document id") {
                failures.push(format!(
                    "{method} {target} -> {} {}",
                    reply.status, reply.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "not refused as bad ids:\n{}",
        failures.join("\n")
    );
}

const SECRET: &str = "document-ids-test-secret";

fn token(docs: &[&str]) -> String {
    tokens::token(SECRET, docs, "rw", None)
}

#[tokio::test]
async fn a_token_for_team_7_slash_star_covers_the_documents_under_team_7() {
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await;
    let bearer = format!("Bearer {}", token(&["team-7/*"]));
    let put = |id: &str| {
        app.http()
            .put(app.url(&format!("/docs/{}", segment(id))))
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body(r#"{"x":1}"#)
            .send()
    };
    for (id, status) in [
        ("team-7/notes", 200),
        ("team-7/a/b c", 200),
        ("team-70/x", 403),
    ] {
        let reply = put(id).await.expect("PUT");
        assert_eq!(reply.status().as_u16(), status, "PUT {id}");
    }
    let path = format!("/yjs/team-7/live?token={}", token(&["team-7/*"]));
    assert!(
        WsClient::open(&app, &path, &[]).await.is_ok(),
        "/yjs/team-7/live"
    );
    let other = format!("/yjs/team-8/live?token={}", token(&["team-7/*"]));
    let refused = WsClient::open(&app, &other, &[])
        .await
        .err()
        .map(|r| r.status);
    assert_eq!(refused, Some(403), "/yjs/team-8/live");
}
