//! A read-only token on the Yjs protocol: the client gets the document and every update, and
//! whatever it sends is dropped (SPEC §3 "Client tokens").

use std::time::Duration;

use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, ReadTxn, StateVector, Transact, Update};

use super::{app_with_tokens, token};
use crate::harness::{eventually, raw_request, Frame, WsClient};

/// A v1 update that sets `m[key] = value` in a fresh document (its own client id).
fn map_update(key: &str, value: &str) -> Vec<u8> {
    let doc = Doc::new();
    let map = doc.get_or_insert_map("m");
    map.insert(&mut doc.transact_mut(), key, value);
    let txn = doc.transact();
    txn.encode_state_as_update_v1(&StateVector::default())
}

fn sync_frame(message: SyncMessage) -> Vec<u8> {
    YMessage::Sync(message).encode_v1()
}

/// The sync messages in one binary frame.
fn sync_messages(frame: &[u8]) -> Vec<SyncMessage> {
    let mut decoder = DecoderV1::new(Cursor::new(frame));
    MessageReader::new(&mut decoder)
        .filter_map(|m| match m.expect("a y-protocols frame from the server") {
            YMessage::Sync(sync) => Some(sync),
            _ => None,
        })
        .collect()
}

/// Applies every document update in `frame` to `doc`; true if there was one.
fn apply_frame(doc: &Doc, frame: &[u8]) -> bool {
    let mut applied = false;
    for message in sync_messages(frame) {
        if let SyncMessage::SyncStep2(update) | SyncMessage::Update(update) = message {
            let update = Update::decode_v1(&update).expect("a v1 update");
            doc.transact_mut().apply_update(update).expect("apply");
            applied = true;
        }
    }
    applied
}

fn map_has(doc: &Doc, key: &str) -> bool {
    let map = doc.get_or_insert_map("m");
    let txn = doc.transact();
    map.contains_key(&txn, key)
}

/// A Yjs connection's local copy: applies every update it receives until `key` is in it.
async fn receive_until(client: &mut WsClient, doc: &Doc, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !map_has(doc, key) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.recv_within(left).await {
            Some(Frame::Binary(frame)) => {
                apply_frame(doc, &frame);
            }
            Some(Frame::Json(_)) => {}
            Some(other) => panic!("connection ended waiting for {key}: {other:?}"),
            None => panic!("{key} did not arrive within 10 s"),
        }
    }
}

#[tokio::test]
async fn a_read_only_yjs_client_receives_updates_but_its_own_are_dropped() {
    let app = app_with_tokens().await;
    let rw = format!("Bearer {}", token(&["yjs-ro"], "rw"));
    let ro = format!("Bearer {}", token(&["yjs-ro"], "ro"));
    let open = |auth: String| {
        let app = &app;
        async move {
            WsClient::open(app, "/yjs/yjs-ro", &[("Authorization", &auth)])
                .await
                .unwrap_or_else(|r| panic!("/yjs/yjs-ro refused: {} {}", r.status, r.body))
        }
    };
    let mut observer = open(rw.clone()).await;
    let mut reader = open(ro.clone()).await;
    let writer = open(rw.clone()).await;
    let (observer_doc, reader_doc) = (Doc::new(), Doc::new());

    // The read-only client sends an update, then asks for the whole state: the room handles one
    // connection's frames in order, so the answer comes after the update was dealt with.
    reader.send_binary(sync_frame(SyncMessage::Update(map_update(
        "from_ro",
        "must not land",
    ))));
    reader.send_binary(sync_frame(SyncMessage::SyncStep1(StateVector::default())));
    let state = loop {
        match reader.recv().await {
            Frame::Binary(frame) => {
                let step2 = sync_messages(&frame).into_iter().find_map(|m| match m {
                    SyncMessage::SyncStep2(update) => Some(update),
                    _ => None,
                });
                if let Some(update) = step2 {
                    break update;
                }
            }
            Frame::Json(_) => {}
            other => panic!("the read-only connection ended: {other:?}"),
        }
    };
    let server_view = Doc::new();
    server_view
        .transact_mut()
        .apply_update(Update::decode_v1(&state).unwrap())
        .unwrap();
    assert!(
        !map_has(&server_view, "from_ro"),
        "the server's document took a read-only update"
    );

    // A writer's update reaches both the observer and the read-only client ...
    writer.send_binary(sync_frame(SyncMessage::Update(map_update(
        "from_rw", "landed",
    ))));
    receive_until(&mut observer, &observer_doc, "from_rw").await;
    receive_until(&mut reader, &reader_doc, "from_rw").await;
    // ... and the observer never received the read-only one.
    assert!(
        !map_has(&observer_doc, "from_ro"),
        "a read-only update was relayed to a read-write client"
    );

    // What is served and stored has the writer's key and not the reader's.
    let got = eventually(
        Duration::from_secs(10),
        "GET to show the writer's update",
        async || {
            let reply = raw_request(
                app.addr,
                "GET",
                "/docs/yjs-ro",
                &[("Authorization", &rw)],
                "",
            )
            .await;
            if reply.status == 200 && reply.body["content"]["m"]["from_rw"] == "landed" {
                Ok(reply.body)
            } else {
                Err(format!("{} {}", reply.status, reply.text))
            }
        },
    )
    .await;
    assert!(
        got["content"]["m"].get("from_ro").is_none(),
        "the document contains the read-only update: {got}"
    );
    use base64::Engine as _;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(got["state"].as_str().expect("a base64 state"))
        .unwrap();
    let stored_doc = Doc::new();
    stored_doc
        .transact_mut()
        .apply_update(Update::decode_v1(&stored).unwrap())
        .unwrap();
    assert!(map_has(&stored_doc, "from_rw"));
    assert!(
        !map_has(&stored_doc, "from_ro"),
        "the stored state has the read-only update"
    );
}
