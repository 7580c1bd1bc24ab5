//! A room's Yjs document, sans IO: y-protocols frames in, frames out. The room actor decides
//! who receives what; this module only speaks the protocol (through yrs's `sync` module) and
//! keeps the document and the awareness states.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::encoding::read::Cursor;
use yrs::encoding::write::Write;
use yrs::sync::protocol::{MessageReader, MSG_SYNC, MSG_SYNC_UPDATE};
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::types::ToJson;
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{ClientID, Doc, GetString, Map, Out, ReadTxn, StateVector, Transact, Update};

#[derive(Debug, thiserror::Error)]
pub enum YjsError {
    #[error("malformed yjs message: {0}")]
    Malformed(String),
    #[error("yjs update could not be applied: {0}")]
    BadUpdate(String),
    #[error("stored yjs state is unreadable: {0}")]
    BadState(String),
}

/// What one incoming frame produced.
#[derive(Default, Debug)]
pub struct Handled {
    /// Frames for the sender only (sync step 2, awareness answers).
    pub reply: Vec<Vec<u8>>,
    /// Frames for every other member (document updates, awareness changes).
    pub broadcast: Vec<Vec<u8>>,
    /// The document changed and must be saved.
    pub changed: bool,
    /// Awareness client ids the sender spoke for (removed when it disconnects).
    pub clients: Vec<ClientID>,
}

pub struct YjsDoc {
    awareness: Awareness,
}

impl YjsDoc {
    pub fn new() -> Self {
        YjsDoc {
            awareness: Awareness::new(Doc::new()),
        }
    }

    /// A document from its stored v1 state.
    pub fn load(state: &[u8]) -> Result<Self, YjsError> {
        let doc = YjsDoc::new();
        let update = guarded(|| Update::decode_v1(state))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(YjsError::BadState)?;
        guarded(|| doc.awareness.doc().transact_mut().apply_update(update))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(YjsError::BadState)?;
        Ok(doc)
    }

    /// The whole document as one v1 update: what is cached, journaled and persisted.
    pub fn encode_state(&self) -> Vec<u8> {
        self.awareness
            .doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// What a new connection receives first: sync step 1 and the current awareness states.
    pub fn greeting(&self) -> Vec<Vec<u8>> {
        let sv = self.awareness.doc().transact().state_vector();
        let mut frames = vec![Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1()];
        if let Ok(update) = self.awareness.update() {
            if !update.clients.is_empty() {
                frames.push(Message::Awareness(update).encode_v1());
            }
        }
        frames
    }

    /// Handles one binary frame (which may carry several messages). An error leaves the document
    /// as it was before the failing message. Without `may_write`, document updates are dropped.
    pub fn handle(&mut self, frame: &[u8], may_write: bool) -> Result<Handled, YjsError> {
        let mut out = Handled::default();
        let messages = guarded(|| {
            let mut decoder = DecoderV1::new(Cursor::new(frame));
            MessageReader::new(&mut decoder).collect::<Result<Vec<_>, _>>()
        })
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(YjsError::Malformed)?;
        if messages.is_empty() {
            return Err(YjsError::Malformed("empty or truncated frame".into()));
        }
        for message in messages {
            let writes = matches!(
                message,
                Message::Sync(SyncMessage::SyncStep2(_) | SyncMessage::Update(_))
            );
            if writes && !may_write {
                continue;
            }
            self.handle_message(message, &mut out)?;
        }
        Ok(out)
    }

    fn handle_message(&mut self, message: Message, out: &mut Handled) -> Result<(), YjsError> {
        match message {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let update = self
                    .awareness
                    .doc()
                    .transact()
                    .encode_state_as_update_v1(&sv);
                out.reply
                    .push(Message::Sync(SyncMessage::SyncStep2(update)).encode_v1());
            }
            Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                // Deletions leave the state vector as it was, so "changed" cannot be read off
                // it; the SHA-256 dedup of the encoded state drops saves that change nothing.
                self.apply(&update)?;
                out.changed = true;
                out.broadcast.push(update_frame(&update));
            }
            Message::Awareness(update) => {
                out.clients.extend(update.clients.keys().copied());
                let frame = Message::Awareness(update.clone()).encode_v1();
                guarded(|| self.awareness.apply_update(update))
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map_err(YjsError::Malformed)?;
                out.broadcast.push(frame);
            }
            Message::AwarenessQuery => {
                if let Ok(update) = self.awareness.update() {
                    out.reply.push(Message::Awareness(update).encode_v1());
                }
            }
            // Auth and unknown (custom) messages mean nothing to this server: ignored, as the
            // reference y-websocket server does.
            Message::Auth(_) | Message::Custom(..) => {}
        }
        Ok(())
    }

    fn apply(&mut self, update: &[u8]) -> Result<(), YjsError> {
        let decoded = guarded(|| Update::decode_v1(update))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(YjsError::BadUpdate)?;
        let doc = self.awareness.doc();
        guarded(|| doc.transact_mut().apply_update(decoded))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(YjsError::BadUpdate)
    }

    /// Forgets the awareness states of a departed connection; answers the removal frame for the
    /// remaining members.
    pub fn remove_clients(&mut self, clients: &HashSet<ClientID>) -> Option<Vec<u8>> {
        let known: Vec<ClientID> = clients
            .iter()
            .copied()
            .filter(|c| self.awareness.meta(*c).is_some())
            .collect();
        if known.is_empty() {
            return None;
        }
        for c in &known {
            self.awareness.remove_state(*c);
        }
        let update = self.awareness.update_with_clients(known).ok()?;
        Some(Message::Awareness(update).encode_v1())
    }

    /// The document rendered as JSON: each root type under its name.
    pub fn to_json(&self) -> serde_json::Value {
        let txn = self.awareness.doc().transact();
        let names: Vec<String> = txn.root_refs().map(|(name, _)| name.to_string()).collect();
        let mut root = serde_json::Map::new();
        for name in names {
            let value = match txn.root_refs().find(|(n, _)| *n == name).map(|(_, v)| v) {
                Some(Out::UndefinedRef(_)) | None => {
                    // A root nobody on this server asked for by type: a map if it has keys,
                    // otherwise its text / XML content.
                    match txn.get_map(name.as_str()) {
                        Some(map) if map.len(&txn) > 0 => json_of(&map.to_json(&txn)),
                        _ => txn
                            .get_xml_fragment(name.as_str())
                            .map(|f| serde_json::Value::String(f.get_string(&txn)))
                            .unwrap_or(serde_json::Value::Null),
                    }
                }
                Some(out) => json_of(&out.to_json(&txn)),
            };
            root.insert(name, value);
        }
        serde_json::Value::Object(root)
    }
}

impl Default for YjsDoc {
    fn default() -> Self {
        YjsDoc::new()
    }
}

fn json_of(any: &yrs::Any) -> serde_json::Value {
    serde_json::to_value(any).unwrap_or(serde_json::Value::Null)
}

/// A sync `Update` message carrying `update`, as relayed to the other members.
fn update_frame(update: &[u8]) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_SYNC);
    encoder.write_var(MSG_SYNC_UPDATE);
    encoder.write_buf(update);
    encoder.to_vec()
}

/// Runs yrs code on untrusted input without letting a panic inside it take the room's thread
/// down: a panic becomes an error for that one frame.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic in yrs".into())
    })
}
