//! Item 10: awareness per connection is bounded, read-only connections included.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::Message;
use yrs::updates::encoder::Encode;
use yrs::ClientID;

use super::{close_code, decode, rss_kib, WITHIN};
use crate::harness::tokens;
use crate::harness::{ensure, eventually, Frame, TestApp, TestOptions, WsClient};

const SECRET: &str = "abuse-test-secret";

/// A token for `doc` with `scope` ("rw" / "ro"), valid for an hour.
fn token(doc: &str, scope: &str) -> String {
    tokens::token(SECRET, &[doc], scope, Some("abuse"))
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

async fn yjs_client(app: &TestApp, doc: &str, scope: &str) -> WsClient {
    let path = format!("/yjs/{doc}?token={}", token(doc, scope));
    WsClient::open(app, &path, &[])
        .await
        .unwrap_or_else(|r| panic!("upgrade of /yjs/{doc} refused: {} {}", r.status, r.body))
}

#[tokio::test]
async fn a_read_only_client_flooding_awareness_is_closed_and_its_states_are_neither_relayed_nor_held(
) {
    // The server's memory is read from /proc, so it runs as a process of its own.
    let app = TestApp::spawn(
        TestOptions::new()
            .process()
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
