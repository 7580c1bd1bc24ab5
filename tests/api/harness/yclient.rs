//! `YClient`: a y-protocols peer for tests — a yrs `Doc` behind a `WsClient`, doing what
//! y-websocket's provider does with each frame.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::protocol::MessageReader;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{ClientID, Doc, GetString, ReadTxn, Text, Transact, TransactionMut, Update};

use super::{Frame, TestApp, WsClient};

const WITHIN: Duration = Duration::from_secs(10);

/// A y-protocols peer: a yrs `Doc` behind the harness's `WsClient`, doing what y-websocket's
/// provider does with each frame (answer step 1, apply step 2 and updates, track awareness).
pub struct YClient {
    pub ws: WsClient,
    pub doc: Doc,
    /// Awareness states the server told us about: client id → (clock, JSON; `null` = removed).
    pub awareness: HashMap<u64, (u32, String)>,
    /// Every message received, in order.
    pub received: Vec<Message>,
}

impl YClient {
    /// Opens `/yjs/{doc}` without syncing: the server's greeting starts with sync step 1.
    pub async fn open(app: &TestApp, doc: &str) -> YClient {
        Self::open_path(app, &format!("/yjs/{doc}")).await
    }

    /// Opens `path` (a `/yjs/...` route, with a `?token=` say) without syncing.
    pub async fn open_path(app: &TestApp, path: &str) -> YClient {
        let ws = WsClient::open(app, path, &[])
            .await
            .unwrap_or_else(|r| panic!("upgrade of {path} refused: {} {}", r.status, r.body));
        YClient {
            ws,
            doc: Doc::new(),
            awareness: HashMap::new(),
            received: Vec::new(),
        }
    }

    /// Opens and syncs like a provider: answers the server's step 1, sends its own, and returns
    /// once the server's step 2 is applied.
    pub async fn connect(app: &TestApp, doc: &str) -> YClient {
        Self::connect_path(app, &format!("/yjs/{doc}")).await
    }

    /// [`YClient::connect`] on `path`.
    pub async fn connect_path(app: &TestApp, path: &str) -> YClient {
        let mut client = Self::open_path(app, path).await;
        let greeting = client.next_messages().await;
        assert!(
            matches!(
                greeting.first(),
                Some(Message::Sync(SyncMessage::SyncStep1(_)))
            ),
            "the greeting starts with sync step 1: {greeting:?}"
        );
        client.sync().await;
        client
    }

    /// Sends sync step 1 and waits for the server's step 2.
    pub async fn sync(&mut self) {
        let sv = self.doc.transact().state_vector();
        self.send(&[Message::Sync(SyncMessage::SyncStep1(sv))]);
        let before = self.step2_count();
        while self.step2_count() == before {
            self.next_messages().await;
        }
    }

    pub fn step2_count(&self) -> usize {
        self.received
            .iter()
            .filter(|m| matches!(m, Message::Sync(SyncMessage::SyncStep2(_))))
            .count()
    }

    pub fn send(&self, messages: &[Message]) {
        let mut encoder = EncoderV1::new();
        for m in messages {
            m.encode(&mut encoder);
        }
        self.ws.send_binary(encoder.to_vec());
    }

    /// The next binary frame, decoded and handled; panics on anything else.
    pub async fn next_messages(&mut self) -> Vec<Message> {
        match self.ws.recv().await {
            Frame::Binary(bytes) => self.handle(&bytes),
            other => panic!("expected a binary y-protocols frame, got {other:?}"),
        }
    }

    pub fn handle(&mut self, frame: &[u8]) -> Vec<Message> {
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        let messages: Vec<Message> = MessageReader::new(&mut decoder)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("the server sent an undecodable frame {frame:?}: {e}"));
        assert!(!messages.is_empty(), "the server sent an empty frame");
        for m in &messages {
            match m {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = self.doc.transact().encode_state_as_update_v1(sv);
                    self.send(&[Message::Sync(SyncMessage::SyncStep2(update))]);
                }
                Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                    let update = Update::decode_v1(u).expect("the server's update decodes");
                    self.doc
                        .transact_mut()
                        .apply_update(update)
                        .expect("the server's update applies");
                }
                Message::Awareness(update) => {
                    for (id, entry) in &update.clients {
                        let known = self.awareness.get(&id.get()).map_or(0, |(c, _)| *c);
                        if entry.clock >= known {
                            self.awareness
                                .insert(id.get(), (entry.clock, entry.json.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        self.received.extend(messages.iter().cloned());
        messages
    }

    /// Handles frames until `done` holds.
    pub async fn until(&mut self, what: &str, done: impl Fn(&YClient) -> bool) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ws.recv_within(left).await {
                Some(Frame::Binary(bytes)) => {
                    self.handle(&bytes);
                }
                Some(other) => panic!("waiting for {what}: got {other:?}"),
                None => panic!("no {what} within {WITHIN:?}"),
            }
        }
    }

    /// A local edit, sent as a sync update like a provider does; returns the update.
    pub fn edit(&self, f: impl FnOnce(&Doc, &mut TransactionMut)) -> Vec<u8> {
        let update = {
            let mut txn = self.doc.transact_mut();
            f(&self.doc, &mut txn);
            txn.encode_update_v1()
        };
        self.send(&[Message::Sync(SyncMessage::Update(update.clone()))]);
        update
    }

    /// Appends to the root text `text`.
    pub fn type_text(&self, chunk: &str) -> Vec<u8> {
        let text = self.doc.get_or_insert_text("text");
        self.edit(|_, txn| {
            let end = text.len(txn);
            text.insert(txn, end, chunk);
        })
    }

    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("text");
        text.get_string(&self.doc.transact())
    }

    /// Announces an awareness state for `client` (as a provider does for its own client id).
    pub fn set_awareness(&self, client: u64, clock: u32, state: &Value) {
        let mut clients = HashMap::new();
        clients.insert(
            ClientID::new(client),
            AwarenessUpdateEntry {
                clock,
                json: state.to_string().into(),
            },
        );
        self.send(&[Message::Awareness(AwarenessUpdate { clients })]);
    }

    /// The awareness state of `client` as last heard (`None` if unknown or removed).
    pub fn awareness_of(&self, client: u64) -> Option<Value> {
        let (_, json) = self.awareness.get(&client)?;
        let value: Value = serde_json::from_str(json).expect("awareness JSON");
        (!value.is_null()).then_some(value)
    }
}

/// The text of root `text` in a v1-encoded state.
pub fn text_of_state(state: &[u8]) -> String {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    doc.transact_mut()
        .apply_update(Update::decode_v1(state).expect("the state decodes"))
        .expect("the state applies");
    let txn = doc.transact();
    text.get_string(&txn)
}

/// A Yjs update of client `client` inserting `text` into the root text "t", as a stored version
/// of `doc`.
pub fn typed(doc: &str, client: u64, text: &str) -> docroom_actors::doc::Version {
    use docroom_actors::doc::{DocId, Kind, Version};
    let ydoc = Doc::with_client_id(client);
    let t = ydoc.get_or_insert_text("t");
    t.insert(&mut ydoc.transact_mut(), 0, text);
    let update = ydoc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    Version::new(
        DocId::parse(doc).unwrap(),
        Kind::Yjs,
        bytes::Bytes::from(update),
    )
}
