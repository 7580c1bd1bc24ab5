//! A frame's messages decoded and checked before any of them touches the document, so a bad
//! message cannot leave a frame half-applied.

use yrs::sync::awareness::AwarenessUpdate;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{StateVector, Update};

use super::{guarded, YjsError};

/// A message decoded and checked, ready to apply: every update of a frame is decoded before any
/// is applied, so a bad message cannot leave a frame half-applied.
pub(super) enum Checked {
    Step1(StateVector),
    Update {
        raw: Vec<u8>,
        update: Update,
    },
    /// A read-only sender's update: never applied, only compared with the document.
    ReadOnly(Update),
    Awareness(AwarenessUpdate),
    Query,
    Ignored,
}

/// Decodes and validates one message without touching the document.
pub(super) fn check(message: Message, may_write: bool) -> Result<Checked, YjsError> {
    Ok(match message {
        Message::Sync(SyncMessage::SyncStep1(sv)) => Checked::Step1(sv),
        Message::Sync(SyncMessage::SyncStep2(raw) | SyncMessage::Update(raw)) => {
            // Kept (and saved) with its chains merged: see `nesting/squash.rs`.
            let raw = super::squash_chains(&raw).unwrap_or(raw);
            let update =
                guarded(|| Update::decode_v1(&raw)).and_then(|r| r.map_err(|e| e.to_string()));
            if !may_write {
                // Dropped either way; decoded only to tell whether it would have changed
                // anything, and one that does not decode is simply dropped, as before.
                return Ok(match update {
                    Ok(update) if !update.is_empty() => Checked::ReadOnly(update),
                    _ => Checked::Ignored,
                });
            }
            let update = update.map_err(YjsError::BadUpdate)?;
            // A client's first step 2 is usually empty: nothing to apply, relay or save.
            if update.is_empty() {
                Checked::Ignored
            } else {
                Checked::Update { raw, update }
            }
        }
        Message::Awareness(update) => {
            // Peers JSON.parse every state they are sent: one that is not JSON would break
            // every other client's provider, so it is refused here.
            for entry in update.clients.values() {
                if serde_json::from_str::<serde::de::IgnoredAny>(&entry.json).is_err() {
                    return Err(YjsError::Malformed("awareness state is not JSON".into()));
                }
            }
            Checked::Awareness(update)
        }
        Message::AwarenessQuery => Checked::Query,
        // Auth and unknown (custom) messages mean nothing to this server: ignored, as the
        // reference y-websocket server does.
        Message::Auth(_) | Message::Custom(..) => Checked::Ignored,
    })
}
