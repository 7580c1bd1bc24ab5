//! SPEC §5: the Yjs protocol (`/yjs/{id}`) spoken by a yrs peer, byte for byte: sync step 1 / 2,
//! relayed updates and awareness, what happens to frames that are not y-protocols, the one-kind
//! rule, and the state's way to PostgreSQL. The real JavaScript clients are in tests/interop.

use std::time::Duration;

use serde_json::json;
use yrs::encoding::write::Write as _;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::{Encoder, EncoderV1};
use yrs::{Array, ClientID, Map, ReadTxn, StateVector, Transact};

mod backend_edits;
mod backend_renderings;
mod backend_writes;
mod stored_and_rendered;

use crate::harness::yclient::YClient;
use crate::harness::{ensure, eventually, Frame, TestApp, WsClient};

const WITHIN: Duration = Duration::from_secs(10);

/// `alice` types `chunk` and `bob` must receive it (the room still relays).
async fn relay_still_works(alice: &mut YClient, bob: &mut YClient, chunk: &str) {
    alice.type_text(chunk);
    let expected = alice.text();
    bob.until(&format!("{chunk:?} relayed"), |b| b.text() == expected)
        .await;
}

/// A frame of raw y-protocols bytes: `parts` are written one after the other.
fn raw(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A sync message (`sub` = 0 step 1, 1 step 2, 2 update) carrying `payload` as a length-prefixed
/// buffer, the way y-protocols frames it.
fn sync_frame(sub: u8, payload: &[u8]) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(0u8);
    encoder.write_var(sub);
    encoder.write_buf(payload);
    encoder.to_vec()
}

fn assert_no_panic(app: &TestApp) {
    let panics: Vec<String> = app
        .logs()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "the service panicked: {panics:#?}");
}

#[tokio::test]
async fn a_yrs_client_syncs_and_its_updates_reach_the_other_members() {
    let app = TestApp::start().await;

    // The greeting of an empty document: sync step 1 with an empty state vector, no awareness.
    let mut alice = YClient::open(&app, "story").await;
    let greeting = alice.next_messages().await;
    assert_eq!(
        greeting,
        vec![Message::Sync(
            SyncMessage::SyncStep1(StateVector::default())
        )]
    );
    alice.sync().await;
    assert_eq!(alice.text(), "");

    alice.type_text("hello");
    eventually(WITHIN, "the server to apply alice's edit", async || {
        let reply = app.get_doc("story").await;
        ensure!(reply.body["content"]["text"] == "hello", "{}", reply.text);
        Ok(())
    })
    .await;
    // Bob edited offline before connecting: his step 2 (the answer to the server's step 1)
    // carries it to the room, which applies it and relays it to alice.
    let mut bob = YClient::open(&app, "story").await;
    let bob_map = bob.doc.get_or_insert_map("map");
    bob_map.insert(&mut bob.doc.transact_mut(), "offline", "edit");
    let greeting = bob.next_messages().await;
    let Some(Message::Sync(SyncMessage::SyncStep1(server_sv))) = greeting.first() else {
        panic!("the greeting starts with sync step 1: {greeting:?}");
    };
    assert!(
        server_sv.get(&alice.doc.client_id()) > 0,
        "the server's state vector has alice's edit: {server_sv:?}"
    );
    bob.sync().await;
    assert_eq!(bob.text(), "hello", "bob's step 2 from the server");

    let alice_map = alice.doc.get_or_insert_map("map");
    alice
        .until("bob's offline edit", |a| {
            alice_map.get(&a.doc.transact(), "offline").is_some()
        })
        .await;

    // Live updates, both ways, arrive as sync `Update` messages.
    alice.type_text(", world");
    bob.until("alice's update", |b| b.text() == "hello, world")
        .await;
    assert!(
        matches!(
            bob.received.last(),
            Some(Message::Sync(SyncMessage::Update(_)))
        ),
        "relayed as an update: {:?}",
        bob.received.last()
    );
    let list = bob.doc.get_or_insert_array("list");
    bob.edit(|_, txn| list.insert_range(txn, 0, [1, 2, 3]));
    let alice_list = alice.doc.get_or_insert_array("list");
    alice
        .until("bob's list", |a| alice_list.len(&a.doc.transact()) == 3)
        .await;

    // A third client starts from everything.
    let carol = YClient::connect(&app, "story").await;
    assert_eq!(carol.text(), "hello, world");
    assert_eq!(
        carol.doc.transact().state_vector(),
        alice.doc.transact().state_vector()
    );

    // The sender of an update gets no echo of it.
    while alice
        .ws
        .recv_within(Duration::from_millis(200))
        .await
        .is_some()
    {}
    alice.type_text("!");
    bob.until("the last update", |b| b.text() == "hello, world!")
        .await;
    assert_eq!(
        alice.ws.recv_within(Duration::from_millis(200)).await,
        None,
        "alice got her own update back"
    );
}

#[tokio::test]
async fn awareness_is_relayed_answered_on_query_and_removed_when_its_connection_ends() {
    let app = TestApp::start().await;
    let alice = YClient::connect(&app, "aware").await;
    let mut bob = YClient::connect(&app, "aware").await;
    let alice_id = alice.doc.client_id().get();

    alice.set_awareness(alice_id, 1, &json!({"user": "alice"}));
    bob.until("alice's awareness", |b| {
        b.awareness_of(alice_id) == Some(json!({"user": "alice"}))
    })
    .await;

    // A newcomer gets it in its greeting; a query-awareness gets it too.
    let mut carol = YClient::open(&app, "aware").await;
    let greeting = carol.next_messages().await;
    assert!(
        matches!(
            greeting.first(),
            Some(Message::Sync(SyncMessage::SyncStep1(_)))
        ),
        "{greeting:?}"
    );
    carol
        .until("the awareness greeting", |c| {
            c.awareness_of(alice_id).is_some()
        })
        .await;
    carol.awareness.clear();
    carol.send(&[Message::AwarenessQuery]);
    carol
        .until("the answer to query-awareness", |c| {
            c.awareness_of(alice_id) == Some(json!({"user": "alice"}))
        })
        .await;

    // Alice's connection ends without a goodbye: the server removes her state for the others.
    drop(alice);
    bob.until("alice's removal", |b| {
        b.awareness.get(&alice_id).is_some_and(|(_, j)| j == "null")
    })
    .await;
    carol
        .until("alice's removal", |c| c.awareness_of(alice_id).is_none())
        .await;
    let mut dave = YClient::connect(&app, "aware").await;
    dave.send(&[Message::AwarenessQuery]);
    let answer = dave.next_messages().await;
    assert!(
        matches!(&answer[..], [Message::Awareness(u)] if !u.clients.contains_key(&ClientID::new(alice_id))),
        "the server forgot alice: {answer:?}"
    );
}

#[tokio::test]
async fn bad_frames_close_only_the_offending_connection_and_the_room_goes_on() {
    let app = TestApp::start().await;
    let mut alice = YClient::connect(&app, "edges").await;
    let mut bob = YClient::connect(&app, "edges").await;
    relay_still_works(&mut alice, &mut bob, "start;").await;

    let varint_overflow = [0xffu8; 12];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a varint longer than 64 bits", varint_overflow.to_vec()),
        (
            "a varint inside a message that never ends",
            raw(&[&[0, 2], &[0x80, 0x80, 0x80, 0x80]]),
        ),
        (
            "a buffer length past the end of the frame",
            raw(&[&[0, 2, 100], b"only a few bytes"]),
        ),
        ("a frame cut after the message type", vec![0]),
        ("an empty frame", vec![]),
        ("an unknown sync message type", sync_frame(9, b"x")),
        (
            "an update that does not decode",
            sync_frame(2, &[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]),
        ),
        (
            "a sync step 2 that does not decode",
            sync_frame(1, b"\x05\x01garbage"),
        ),
        (
            "a state vector that does not decode",
            sync_frame(0, &[3, 0xff]),
        ),
    ];
    for (case, frame) in cases {
        let mut bad = YClient::open(&app, "edges").await;
        bad.next_messages().await; // the greeting
        bad.ws.send_binary(frame);
        match bad.ws.recv_within(WITHIN).await {
            Some(Frame::Closed(code)) => assert_eq!(code, Some(1007), "{case}: close code"),
            other => panic!("{case}: expected a close with 1007, got {other:?}"),
        }
        relay_still_works(&mut alice, &mut bob, &format!("after {case};")).await;
    }

    // A text frame is not y-protocols: 1003.
    let mut texter = YClient::open(&app, "edges").await;
    texter.next_messages().await;
    texter.ws.send_raw_text("{\"type\":\"update\"}");
    match texter.ws.recv().await {
        Frame::Closed(code) => assert_eq!(code, Some(1003), "text frame: close code"),
        other => panic!("text frame: expected a close with 1003, got {other:?}"),
    }

    // An unknown top-level message type (a custom y-protocols message) is ignored, as the
    // reference server does: the connection stays and keeps syncing.
    let mut custom = YClient::connect(&app, "edges").await;
    let mut encoder = EncoderV1::new();
    encoder.write_var(42u8);
    encoder.write_buf(b"custom payload");
    custom.ws.send_binary(encoder.to_vec());
    custom.sync().await;
    relay_still_works(&mut alice, &mut custom, "custom ignored;").await;

    // Nobody saw any of it, and the document holds exactly the good edits.
    let expected = alice.text();
    bob.until("the last edit", |b| b.text() == expected).await;
    assert!(expected.starts_with("start;after a varint longer than 64 bits;"));
    let late = YClient::connect(&app, "edges").await;
    assert_eq!(late.text(), expected);
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_no_panic(&app);
}

#[tokio::test]
async fn a_document_has_one_kind_and_the_other_route_is_refused() {
    let app = TestApp::start().await;

    // A JSON document on the Yjs route: close 1003 before any sync.
    let put = app.put_doc("json-doc", &json!({"a": 1})).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let mut y = YClient::open(&app, "json-doc").await;
    match y.ws.recv().await {
        Frame::Closed(code) => assert_eq!(code, Some(1003), "yjs route on a json document"),
        other => panic!("expected a close with 1003, got {other:?}"),
    }

    // A Yjs document on the JSON route: `wrong_kind`, then 1003; PUT is refused too.
    let writer = YClient::connect(&app, "yjs-doc").await;
    writer.type_text("yjs content");
    let mut json_client = WsClient::open(&app, "/docs/yjs-doc/ws", &[])
        .await
        .expect("upgrade");
    let error = json_client.recv_json().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "wrong_kind", "{error}");
    json_client.expect_close(1003).await;
    let put = app.put_doc("yjs-doc", &json!({"overwrite": true})).await;
    assert!(
        (400..500).contains(&put.status),
        "PUT over a yjs document: {} {}",
        put.status,
        put.text
    );
    // While its room is open, GET answers the live document.
    eventually(WITHIN, "the yjs document in GET", async || {
        let reply = app.get_doc("yjs-doc").await;
        ensure!(reply.status == 200, "status {}", reply.status);
        ensure!(reply.body["kind"] == "yjs", "{}", reply.text);
        ensure!(
            reply.body["content"]["text"] == "yjs content",
            "{}",
            reply.text
        );
        Ok(())
    })
    .await;
    drop(writer);

    // Still refused once the rooms are gone and only storage knows the kinds.
    eventually(WITHIN, "the rooms to retire", async || {
        let rooms = app.admin().rooms().await;
        ensure!(rooms.is_empty(), "rooms: {rooms:?}");
        Ok(())
    })
    .await;
    let mut json_client = WsClient::open(&app, "/docs/yjs-doc/ws", &[])
        .await
        .expect("upgrade");
    let error = json_client.recv_json().await;
    assert_eq!(error["code"], "wrong_kind", "{error}");
    json_client.expect_close(1003).await;
    let mut y = YClient::open(&app, "json-doc").await;
    match y.ws.recv().await {
        Frame::Closed(code) => assert_eq!(code, Some(1003), "yjs route on a stored json document"),
        other => panic!("expected a close with 1003, got {other:?}"),
    }
    let json_doc = app.get_doc("json-doc").await;
    assert_eq!(json_doc.body["kind"], "json");
    assert_eq!(json_doc.body["content"], json!({"a": 1}));
    assert_no_panic(&app);
}

#[tokio::test]
async fn an_awareness_state_that_is_not_json_is_refused() {
    let app = TestApp::start().await;
    let mut alice = YClient::connect(&app, "bad-awareness").await;
    let mut bad = YClient::connect(&app, "bad-awareness").await;
    let mut inner = EncoderV1::new();
    inner.write_var(1u32); // one client
    inner.write_var(7u64); // client id
    inner.write_var(1u32); // clock
    inner.write_string("{oops"); // its state: not JSON
    let mut frame = EncoderV1::new();
    frame.write_var(1u8); // awareness
    frame.write_buf(inner.to_vec());
    bad.ws.send_binary(frame.to_vec());
    match bad.ws.recv_within(WITHIN).await {
        Some(Frame::Closed(code)) => assert_eq!(code, Some(1007), "close code"),
        other => panic!("expected a close with 1007, got {other:?}"),
    }
    // Neither relayed nor kept for newcomers.
    let mut carol = YClient::connect(&app, "bad-awareness").await;
    relay_still_works(&mut alice, &mut carol, "still fine").await;
    assert!(
        !alice.awareness.contains_key(&7),
        "relayed: {:?}",
        alice.awareness
    );
    carol.send(&[Message::AwarenessQuery]);
    carol
        .until("the awareness answer", |c| {
            c.received
                .iter()
                .any(|m| matches!(m, Message::Awareness(_)))
        })
        .await;
    assert!(
        !carol.awareness.contains_key(&7),
        "kept: {:?}",
        carol.awareness
    );
}

#[tokio::test]
async fn a_leaving_member_removes_only_the_awareness_states_it_introduced() {
    let app = TestApp::start().await;
    let mut alice = YClient::connect(&app, "echo").await;
    let mut bob = YClient::connect(&app, "echo").await;
    let mut carol = YClient::connect(&app, "echo").await;
    let (alice_id, carol_id) = (1001, 3003);
    alice.set_awareness(alice_id, 1, &json!({"user": "alice"}));
    carol.set_awareness(carol_id, 1, &json!({"user": "carol"}));
    for peer in [&mut alice, &mut bob] {
        peer.until("carol's state", |p| p.awareness_of(carol_id).is_some())
            .await;
    }
    // What y-websocket's provider does with a remote state it has just learned: it sends it on,
    // unchanged (same clock).
    alice.set_awareness(carol_id, 1, &json!({"user": "carol"}));
    relay_still_works(&mut alice, &mut bob, "sync point").await;

    drop(alice);
    bob.until("alice's removal", |b| b.awareness_of(alice_id).is_none())
        .await;
    carol
        .until("alice's removal", |c| c.awareness_of(alice_id).is_none())
        .await;
    assert_eq!(
        bob.awareness_of(carol_id),
        Some(json!({"user": "carol"})),
        "carol is still connected, her state must stay"
    );
}
