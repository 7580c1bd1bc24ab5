//! Sync step 2 answers, encoded once and shared (issue 26, item 3).
//!
//! A client that joins sends sync step 1 with its state vector and is answered the updates it
//! lacks. Encoding them costs CPU and memory in proportion to the document, and clients joining
//! at once mostly send the same state vector (a fresh provider sends the empty one): 150 of
//! them on a 20 MiB document would be 150 encodings and 150 buffers of 20 MiB. So an answer is
//! kept, as [`Bytes`], for the state vector it answers, and every client that asks with the
//! same one gets a clone of it: one encoding, one buffer, however many joiners.
//!
//! An answer is only true of the document it was encoded from: [`Step2Cache::clear`] drops them
//! all whenever the document changes (an update or a merge that inserted, deleted or left
//! something pending). The answer to the empty state vector is the document's whole state, so
//! it also serves whoever wants the state (`GET /docs/{id}`, the limit check).
//!
//! Only the update is kept: the bytes in front of it ([`header`], and on `/hocuspocus` the
//! document's name) are a few per send, and the sessions write them ahead of the shared update
//! without copying it.

use bytes::Bytes;
use yrs::encoding::write::Write;
use yrs::sync::protocol::{MSG_SYNC, MSG_SYNC_STEP_2};
use yrs::updates::encoder::{Encoder, EncoderV1};
use yrs::StateVector;

/// Answers kept at once. Joiners mostly share one state vector (the empty one) or a few (the
/// providers of a storm of reconnects were all in sync); more than a few distinct ones are
/// clients that each get their own answer anyway. Each answer is at most the document's size,
/// and all of them go at the next change.
const KEPT: usize = 4;

/// One answer: the update a client with this state vector lacks, as of the document's current
/// content.
#[derive(Debug)]
pub struct Step2 {
    pub update: Bytes,
    /// It was encoded for an earlier client, not for this one.
    pub shared: bool,
}

/// The answers encoded since the document last changed, oldest first.
#[derive(Default)]
pub(super) struct Step2Cache {
    answers: Vec<(StateVector, Bytes)>,
    /// How often the document changed: what is derived from its state is current while this
    /// is what it was then.
    changes: u64,
}

impl Step2Cache {
    /// The answer to `sv`: the kept one, or `encode`'s, then kept.
    pub(super) fn answer(&mut self, sv: &StateVector, encode: impl FnOnce() -> Vec<u8>) -> Step2 {
        if let Some((_, update)) = self.answers.iter().find(|(kept, _)| kept == sv) {
            return Step2 {
                update: update.clone(),
                shared: true,
            };
        }
        let update = Bytes::from(encode());
        if self.answers.len() == KEPT {
            self.answers.remove(0);
        }
        self.answers.push((sv.clone(), update.clone()));
        Step2 {
            update,
            shared: false,
        }
    }

    /// The document changed: no answer is true any more.
    pub(super) fn clear(&mut self) {
        self.answers.clear();
        self.changes += 1;
    }

    pub(super) fn changes(&self) -> u64 {
        self.changes
    }
}

/// The bytes in front of a sync step 2's update of `update_len` bytes: the message type, the
/// sync message type and the update's length. Followed by the update, the y-protocols message.
pub fn header(update_len: usize) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_SYNC);
    encoder.write_var(MSG_SYNC_STEP_2);
    encoder.write_var(update_len);
    encoder.to_vec()
}

/// The whole y-protocols message of an answer, copied into one buffer (tests, tools).
pub fn message(update: &[u8]) -> Vec<u8> {
    let mut message = header(update.len());
    message.extend_from_slice(update);
    message
}
