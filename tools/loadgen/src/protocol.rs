//! The three wire protocols, as one codec per connection: what to send on open, how to build an
//! update that carries a [`Marker`], and what an incoming frame means.
//!
//! - `json`: docroom's JSON protocol (SPEC §4). Acks carry the update's `ref`.
//! - `yjs`: y-protocols as y-websocket speaks it (docroom's `/yjs/{id}`, the reference
//!   y-websocket server). No acknowledgements exist; only broadcasts are measured.
//! - `hocuspocus`: what `@hocuspocus/provider` 3.x speaks, to Hocuspocus itself or to docroom's
//!   `/hocuspocus` (SPEC §5b): the same y-protocols messages, each prefixed with the document
//!   name (a varstring), after an auth message (type 2, token); SyncStep1 and awareness once
//!   `Authenticated`. Both servers answer every content-carrying Sync message from the client
//!   (SyncStep2 included) with one `SyncStatus` (type 8), used here as the ack of an update —
//!   Hocuspocus sends it once the update is applied in memory, docroom once it is stored (the
//!   same meaning as docroom's JSON ack). The statuses of our own SyncStep2 replies are not acks
//!   and are skipped.
//!
//! Yjs updates are real: each connection owns a `yrs` document and inserts the marker text at
//! the end of a text type, so the bytes on the wire are what an editor would send for typing.

use std::borrow::Cow;

use clap::ValueEnum;
use tokio_tungstenite::tungstenite::Message;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{Doc, ReadTxn, StateVector, Text, TextRef, Transact};

use crate::marker::{self, Marker};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Json,
    Yjs,
    Hocuspocus,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Yjs => "yjs",
            Protocol::Hocuspocus => "hocuspocus",
        }
    }

    /// Whether the server answers each update to its sender (needed for ack latency and for
    /// closed loop).
    pub fn has_acks(self) -> bool {
        !matches!(self, Protocol::Yjs)
    }

    pub fn default_url(self) -> &'static str {
        match self {
            Protocol::Json => "ws://127.0.0.1:8080/docs/{doc}/ws",
            Protocol::Yjs => "ws://127.0.0.1:8080/yjs/{doc}",
            Protocol::Hocuspocus => "ws://127.0.0.1:8080/hocuspocus",
        }
    }
}

// y-protocols message types, and the ones Hocuspocus adds.
const MSG_SYNC: u32 = 0;
const MSG_AWARENESS: u32 = 1;
const MSG_AUTH: u32 = 2;
const MSG_QUERY_AWARENESS: u32 = 3;
const MSG_SYNC_REPLY: u32 = 4;
const MSG_CLOSE: u32 = 7;
const MSG_SYNC_STATUS: u32 = 8;
/// Ping and Pong (4.x only) are one-byte frames without a document name.
const PING_FRAME: [u8; 1] = [9];
const PONG_FRAME: [u8; 1] = [10];
const SYNC_STEP1: u32 = 0;
const SYNC_STEP2: u32 = 1;
const SYNC_UPDATE: u32 = 2;
const AUTH_TOKEN: u32 = 0;
const AUTH_DENIED: u32 = 1;
const AUTH_OK: u32 = 2;

/// What one incoming frame meant; reused across frames to avoid allocating per frame.
#[derive(Default)]
pub struct Incoming {
    /// The connection is ready to send updates (snapshot received, or synced).
    pub ready: bool,
    /// Acks, by update sequence number (JSON) or in order (`None`, Hocuspocus).
    pub acks: Vec<Option<u64>>,
    /// Markers of other connections' updates received as broadcasts.
    pub markers: Vec<Marker>,
    /// Frames to send back at once.
    pub replies: Vec<Message>,
    pub error: Option<String>,
}

impl Incoming {
    pub fn clear(&mut self) {
        self.ready = false;
        self.acks.clear();
        self.markers.clear();
        self.replies.clear();
        self.error = None;
    }
}

/// One connection's side of the protocol.
pub struct Codec {
    protocol: Protocol,
    doc_name: String,
    yjs: Option<YjsClient>,
    /// JSON padding, so each update is a document of realistic size.
    padding: String,
    /// The server acks our SyncStep2 replies (to its SyncStep1) too: that many statuses are not
    /// acks of updates.
    statuses_to_skip: u32,
}

/// The connection's own document and awareness state. (yrs's `Awareness` holds non-`Send`
/// observers, so the awareness entry is kept by hand.)
struct YjsClient {
    doc: Doc,
    text: TextRef,
    client_id: u64,
    awareness_clock: u32,
}

impl Codec {
    pub fn new(protocol: Protocol, doc_name: String, client_id: u64, payload_bytes: usize) -> Self {
        let yjs = (protocol != Protocol::Json).then(|| {
            let doc = Doc::with_client_id(client_id);
            let text = doc.get_or_insert_text("loadgen");
            YjsClient {
                doc,
                text,
                client_id,
                awareness_clock: 0,
            }
        });
        Codec {
            protocol,
            doc_name,
            yjs,
            padding: "x".repeat(payload_bytes),
            statuses_to_skip: 0,
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Frames sent right after the WebSocket opens.
    pub fn open(&mut self) -> Vec<Message> {
        match self.protocol {
            Protocol::Json => Vec::new(),
            Protocol::Yjs => self.sync_start(),
            Protocol::Hocuspocus => {
                let mut e = self.hocus_encoder(MSG_AUTH);
                e.write_var(AUTH_TOKEN);
                e.write_string("loadgen");
                vec![Message::binary(e.to_vec())]
            }
        }
    }

    /// Our SyncStep1 and awareness state: what a provider sends once it may sync.
    fn sync_start(&mut self) -> Vec<Message> {
        let y = self.yjs.as_ref().expect("yjs codec");
        let sv = y.doc.transact().state_vector();
        let step1 = YMessage::Sync(SyncMessage::SyncStep1(sv)).encode_v1();
        let mut frames = vec![self.frame(&step1)];
        if let Some(a) = self.keepalive() {
            frames.push(a);
        }
        frames
    }

    /// An update carrying `marker` (and, for JSON, `seq` as its `ref`).
    pub fn update(&mut self, seq: u64, marker: &Marker) -> Message {
        match &mut self.yjs {
            None => Message::text(format!(
                r#"{{"type":"update","ref":"{seq}","content":{{"type":"doc","loadgen":"{}","content":[{{"type":"paragraph","content":[{{"type":"text","text":"{}"}}]}}]}}}}"#,
                marker, self.padding
            )),
            Some(y) => {
                let update = {
                    let mut txn = y.doc.transact_mut();
                    let len = y.text.len(&txn);
                    y.text.insert(&mut txn, len, &marker.to_string());
                    txn.encode_update_v1()
                };
                let msg = YMessage::Sync(SyncMessage::Update(update)).encode_v1();
                self.frame(&msg)
            }
        }
    }

    /// An update inserting `bytes` of plain text (no marker) at the end of the document: what
    /// seeding a large document sends.
    pub fn seed_update(&mut self, bytes: usize) -> Option<Message> {
        const FILLER: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ";
        let y = self.yjs.as_mut()?;
        let text: String = FILLER.chars().cycle().take(bytes).collect();
        let update = {
            let mut txn = y.doc.transact_mut();
            let len = y.text.len(&txn);
            y.text.insert(&mut txn, len, &text);
            txn.encode_update_v1()
        };
        let msg = YMessage::Sync(SyncMessage::Update(update)).encode_v1();
        Some(self.frame(&msg))
    }

    /// Our SyncStep1 alone. The server answers it with a SyncStep2 (`Incoming::ready`) after
    /// every message sent before it on this connection: a barrier.
    pub fn sync_step1(&self) -> Option<Message> {
        let y = self.yjs.as_ref()?;
        let sv = y.doc.transact().state_vector();
        Some(self.frame(&YMessage::Sync(SyncMessage::SyncStep1(sv)).encode_v1()))
    }

    /// A keepalive frame: an awareness update (what y-websocket and Hocuspocus providers send
    /// every 15 s). JSON has none: docroom's WebSocket pings are answered by the client library.
    pub fn keepalive(&mut self) -> Option<Message> {
        let y = self.yjs.as_mut()?;
        y.awareness_clock += 1;
        let entry = AwarenessUpdateEntry {
            clock: y.awareness_clock,
            json: format!(r#"{{"user":{{"name":"loadgen-{}"}}}}"#, y.client_id).into(),
        };
        let update = AwarenessUpdate {
            clients: [(yrs::ClientID::new(y.client_id), entry)]
                .into_iter()
                .collect(),
        };
        let msg = YMessage::Awareness(update).encode_v1();
        Some(self.frame(&msg))
    }

    /// Interprets one incoming frame into `out` (cleared first).
    pub fn on_frame(&mut self, msg: &Message, out: &mut Incoming) {
        out.clear();
        match (self.protocol, msg) {
            (Protocol::Json, Message::Text(text)) => self.on_json(text.as_str(), out),
            (Protocol::Json, Message::Binary(_)) => {
                out.error = Some("unexpected binary frame on the JSON protocol".into())
            }
            (Protocol::Yjs, Message::Binary(data)) => {
                let mut cur = Cursor::new(data);
                while cur.has_content() && out.error.is_none() {
                    self.on_y_message(&mut cur, out);
                }
            }
            (Protocol::Hocuspocus, Message::Binary(data)) if data[..] == PING_FRAME => {
                out.replies.push(Message::binary(PONG_FRAME.to_vec()))
            }
            (Protocol::Hocuspocus, Message::Binary(data)) if data[..] == PONG_FRAME => {}
            (Protocol::Hocuspocus, Message::Binary(data)) => {
                let mut cur = Cursor::new(data);
                match cur.read_string() {
                    Ok(name) if name == self.doc_name => self.on_y_message(&mut cur, out),
                    Ok(_) => {} // another document on a shared socket: not ours
                    Err(e) => out.error = Some(format!("bad hocuspocus frame: {e}")),
                }
            }
            (_, Message::Text(t)) => {
                out.error = Some(format!("unexpected text frame: {}", clip(t.as_str())))
            }
            _ => {}
        }
    }

    fn on_json(&mut self, text: &str, out: &mut Incoming) {
        #[derive(serde::Deserialize)]
        struct Frame<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
            #[serde(rename = "ref", borrow, default)]
            reference: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            code: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            message: Option<Cow<'a, str>>,
        }
        let frame: Frame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                out.error = Some(format!("unparsable frame ({e}): {}", clip(text)));
                return;
            }
        };
        match &*frame.kind {
            "snapshot" => out.ready = true,
            "ack" => out
                .acks
                .push(frame.reference.and_then(|r| r.parse::<u64>().ok())),
            "update" => marker::find_all(text.as_bytes(), &mut out.markers),
            "error" => {
                out.error = Some(format!(
                    "server error {}: {}",
                    frame.code.as_deref().unwrap_or("?"),
                    frame.message.as_deref().unwrap_or("")
                ))
            }
            _ => {} // pong
        }
    }

    fn on_y_message(&mut self, cur: &mut Cursor, out: &mut Incoming) {
        if let Err(e) = self.read_y_message(cur, out) {
            out.error = Some(format!("bad {} message: {e}", self.protocol.name()));
        }
    }

    fn read_y_message(
        &mut self,
        cur: &mut Cursor,
        out: &mut Incoming,
    ) -> Result<(), yrs::encoding::read::Error> {
        let hocus = self.protocol == Protocol::Hocuspocus;
        match cur.read_var::<u32>()? {
            MSG_SYNC | MSG_SYNC_REPLY => {
                let sub = cur.read_var::<u32>()?;
                let payload = cur.read_buf()?;
                match sub {
                    SYNC_STEP1 => {
                        let sv = StateVector::decode_v1(payload).unwrap_or_default();
                        let y = self.yjs.as_ref().expect("yjs codec");
                        let diff = y.doc.transact().encode_state_as_update_v1(&sv);
                        // A Sync step 2, as the providers answer (type 4, SyncReply, is for
                        // Hocuspocus's servers among themselves; docroom refuses it).
                        let mut e = if hocus {
                            self.statuses_to_skip += 1;
                            self.hocus_encoder(MSG_SYNC)
                        } else {
                            let mut e = EncoderV1::new();
                            e.write_var(MSG_SYNC);
                            e
                        };
                        e.write_var(SYNC_STEP2);
                        e.write_buf(&diff);
                        out.replies.push(Message::binary(e.to_vec()));
                    }
                    // The server's state: we are in sync. Old markers in it are not broadcasts.
                    SYNC_STEP2 => out.ready = true,
                    SYNC_UPDATE => marker::find_all(payload, &mut out.markers),
                    _ => {}
                }
            }
            MSG_AWARENESS => {
                cur.read_buf()?;
            }
            MSG_QUERY_AWARENESS => out.replies.extend(self.keepalive()),
            MSG_AUTH if hocus => match cur.read_var::<u32>()? {
                AUTH_OK => out.replies.extend(self.sync_start()),
                AUTH_DENIED => {
                    out.error = Some(format!("permission denied: {}", cur.read_string()?))
                }
                _ => {}
            },
            MSG_SYNC_STATUS if hocus => {
                let applied = cur.read_var::<u32>()? == 1;
                if self.statuses_to_skip > 0 {
                    self.statuses_to_skip -= 1;
                } else if applied {
                    out.acks.push(None);
                } else {
                    out.error = Some("update refused (sync status false)".into());
                }
            }
            MSG_CLOSE if hocus => {
                let reason = if cur.has_content() {
                    cur.read_string()?.to_owned()
                } else {
                    String::new()
                };
                out.error = Some(format!("document closed by the server: {reason}"))
            }
            // Anything else (stateless, close, custom): not ours to measure.
            _ => {
                while cur.has_content() {
                    cur.read_u8()?;
                }
            }
        }
        Ok(())
    }

    /// An encoder with Hocuspocus's document-name prefix and message type written.
    fn hocus_encoder(&self, kind: u32) -> EncoderV1 {
        let mut e = EncoderV1::new();
        e.write_string(&self.doc_name);
        e.write_var(kind);
        e
    }

    /// A y-protocols message as a frame of this protocol.
    fn frame(&self, y_message: &[u8]) -> Message {
        if self.protocol == Protocol::Hocuspocus {
            let mut e = EncoderV1::new();
            e.write_string(&self.doc_name);
            let mut bytes = e.to_vec();
            bytes.extend_from_slice(y_message);
            Message::binary(bytes)
        } else {
            Message::binary(y_message.to_vec())
        }
    }
}

fn clip(s: &str) -> &str {
    let end = s.char_indices().nth(120).map(|(i, _)| i).unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests;
