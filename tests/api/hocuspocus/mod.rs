//! SPEC §5b: the Hocuspocus protocol on `/hocuspocus`, spoken by a small lib0 client built
//! from docroom's own codec (the real `@hocuspocus/provider` 2.x/3.x/4.x are in tests/interop).
//! `HpClient` is the crate's one such client; other suites (hostile input) use it too.
//!
//! - `handshake`: Auth, held frames and their bounds, refused documents, bad frames
//! - `sync_status`: SyncStatus(1) only once the update is stored; read-only answers
//! - `relay`: updates, awareness, stateless and keepalive between connections

mod handshake;
mod relay;
mod sync_status;

use std::collections::HashMap;
use std::time::Duration;

use docroom_actors::protocol::hocuspocus::{decode, Auth, Frame};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use crate::harness::tokens;
use crate::harness::{Frame as WsFrame, TestApp, WsClient};

const SECRET: &str = "hocuspocus-test-secret";

/// A token for `docs` with `scope` ("rw" or "ro"), valid for an hour.
fn token(docs: &[&str], scope: &str) -> String {
    tokens::token(SECRET, docs, scope, None)
}

/// What a provider does, frame by frame: a yrs document per document name, step 1 answered,
/// updates applied, every frame kept in order.
pub(crate) struct HpClient {
    ws: WsClient,
    docs: HashMap<String, Doc>,
    received: Vec<Frame>,
}

/// How a socket ended, when a test waits for frames that never come.
#[derive(Debug)]
enum Ended {
    Closed(Option<u16>),
    Gone(String),
}

impl HpClient {
    pub(crate) async fn open(app: &TestApp) -> HpClient {
        let ws = WsClient::open(app, "/hocuspocus", &[])
            .await
            .unwrap_or_else(|r| panic!("upgrade of /hocuspocus refused: {} {}", r.status, r.body));
        HpClient {
            ws,
            docs: HashMap::new(),
            received: Vec::new(),
        }
    }

    pub(crate) fn send(&self, frame: &Frame) {
        self.ws.send_binary(frame.encode());
    }

    fn doc(&mut self, name: &str) -> &Doc {
        self.docs.entry(name.to_owned()).or_default()
    }

    pub(crate) fn auth(&self, doc: &str, token: &str, version: Option<&str>) {
        self.send(&Frame::Auth {
            doc: doc.into(),
            auth: Auth::Token {
                token: token.into(),
                provider_version: version.map(str::to_owned),
            },
        });
    }

    fn sync(&self, doc: &str, message: SyncMessage) {
        let bytes = Message::Sync(message).encode_v1();
        self.send(&Frame::Sync {
            doc: doc.into(),
            payload: bytes[1..].to_vec(),
        });
    }

    pub(crate) fn step1(&mut self, doc: &str) {
        let sv = self.doc(doc).transact().state_vector();
        self.sync(doc, SyncMessage::SyncStep1(sv));
    }

    /// Auth then step 1, as a 3.x provider opens a document; waits for `Authenticated`, the
    /// server's step 2, and the SyncStatus of the step 2 this client sent in answer to the
    /// server's step 1 (every step 2 gets one). The last two come in either order: this
    /// client's step 2 may be answered before the server's (a large one) reaches it.
    pub(crate) async fn join(&mut self, doc: &str, token: &str) -> String {
        let since = self.received.len();
        self.auth(doc, token, None);
        self.step1(doc);
        let scope = match self.until("authenticated", |f| is_auth(f, doc)).await {
            Frame::Auth {
                auth: Auth::Authenticated { scope },
                ..
            } => scope,
            other => panic!("{doc}: expected Authenticated, got {other:?}"),
        };
        self.until("sync step 2", |f| is_step2(f, doc)).await;
        let answered = self.received[since..]
            .iter()
            .any(|f| is_sync_status(f, doc));
        if !answered {
            self.until("the step 2's sync status", |f| is_sync_status(f, doc))
                .await;
        }
        scope
    }

    /// Types `text` at the end of `doc`'s text `t` and sends the update.
    pub(crate) fn type_text(&mut self, doc: &str, text: &str) {
        let d = self.doc(doc).clone();
        let t = d.get_or_insert_text("t");
        let before = d.transact().state_vector();
        {
            let mut txn = d.transact_mut();
            let len = t.len(&txn);
            t.insert(&mut txn, len, text);
        }
        let update = d.transact().encode_state_as_update_v1(&before);
        self.sync(doc, SyncMessage::Update(update));
    }

    pub(crate) fn text(&mut self, doc: &str) -> String {
        let d = self.doc(doc).clone();
        let t = d.get_or_insert_text("t");
        let s = t.get_string(&d.transact());
        s
    }

    /// The next frame, handled like a provider; `Err` once the socket ended.
    async fn next(&mut self, wait: Duration) -> Option<Result<Frame, Ended>> {
        let frame = match self.ws.recv_within(wait).await? {
            WsFrame::Binary(bytes) => decode(&bytes)
                .unwrap_or_else(|e| panic!("the server sent an undecodable frame {bytes:?}: {e}")),
            WsFrame::Closed(code) => return Some(Err(Ended::Closed(code))),
            WsFrame::Gone(why) => return Some(Err(Ended::Gone(why))),
            WsFrame::Json(v) => panic!("the server sent text on /hocuspocus: {v}"),
        };
        if let Frame::Sync { doc, payload } = &frame {
            let message = frame
                .to_yjs_message()
                .expect("sync is a y-protocols message");
            let message = Message::decode_v1(&message)
                .unwrap_or_else(|e| panic!("{doc}: undecodable sync payload {payload:?}: {e}"));
            let d = self.doc(doc).clone();
            match message {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = d.transact().encode_state_as_update_v1(&sv);
                    self.sync(doc, SyncMessage::SyncStep2(update));
                }
                Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                    let update = Update::decode_v1(&u).expect("the server's update decodes");
                    d.transact_mut().apply_update(update).expect("applies");
                }
                other => panic!("unexpected sync message {other:?}"),
            }
        }
        self.received.push(frame.clone());
        Some(Ok(frame))
    }

    /// The first frame matching `wanted`; panics if the socket ends or 10 s pass first.
    pub(crate) async fn until(&mut self, what: &str, wanted: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Ok(frame)) if wanted(&frame) => return frame,
                Some(Ok(_)) => {}
                Some(Err(ended)) => panic!("socket ended waiting for {what}: {ended:?}"),
                None => panic!("no {what} within 10 s; received {:?}", self.received),
            }
        }
    }

    /// Frames received within `wait` (handled like the others); stops early if the socket ends.
    pub(crate) async fn drain(&mut self, wait: Duration) -> Vec<Frame> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Ok(frame)) => out.push(frame),
                Some(Err(_)) | None => return out,
            }
        }
    }

    /// Waits for the socket to close; answers its close code.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Ok(_)) => {}
                Some(Err(Ended::Closed(code))) => return code,
                Some(Err(Ended::Gone(why))) => panic!("socket gone without a close: {why}"),
                None => panic!("the socket stayed open; received {:?}", self.received),
            }
        }
    }
}

pub(crate) fn is_auth(f: &Frame, name: &str) -> bool {
    matches!(f, Frame::Auth { doc, .. } if doc == name)
}

fn is_step2(f: &Frame, name: &str) -> bool {
    matches!(f, Frame::Sync { doc, payload } if doc == name && payload.first() == Some(&1))
}

fn is_sync_status(f: &Frame, name: &str) -> bool {
    matches!(f, Frame::SyncStatus { doc, .. } if doc == name)
}

fn is_close(f: &Frame, name: &str) -> bool {
    matches!(f, Frame::Close { doc, .. } if doc == name)
}

/// A state vector with nothing in it: what a fresh provider sends.
fn empty_sv() -> StateVector {
    StateVector::default()
}
