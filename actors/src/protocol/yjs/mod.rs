//! A room's Yjs document, sans IO: y-protocols frames in, frames out. The room actor decides
//! who receives what; this module only speaks the protocol (through yrs's `sync` module) and
//! keeps the document and the awareness states.

use foldhash::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;

use yrs::encoding::read::Cursor;
use yrs::encoding::write::Write;
use yrs::sync::protocol::{MessageReader, MSG_SYNC, MSG_SYNC_UPDATE};
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, Update};

mod checked;
mod depth;
mod edit;
mod guard;
mod limits;
mod nesting;
mod novelty;
mod refused;
mod render;
mod restore;
pub mod step2;
mod write;
use checked::{check, Checked};
pub use depth::decodable;
pub use edit::{prosemirror_edit, EditError};
use guard::{guard_counts, plausible_count};
pub use limits::{Sender, YjsLimits, DEFAULT_MAX_DEPTH, DEPTH_CEILING};
pub(crate) use nesting::{decode_squashed, squash_chains};
use nesting::{Admit, Nesting};
use refused::RefusedFrames;
pub use restore::restore_update;
pub use step2::Step2;
use step2::Step2Cache;
pub use write::{write_prosemirror, NotProsemirror};

#[derive(Debug, thiserror::Error)]
pub enum YjsError {
    #[error("malformed yjs message: {0}")]
    Malformed(String),
    #[error("yjs update could not be applied: {0}")]
    BadUpdate(String),
    #[error("stored yjs state is unreadable: {0}")]
    BadState(String),
    /// Over [`YjsLimits`]' awareness bounds: the connection is closed (1008).
    #[error("awareness limit exceeded: {0}")]
    AwarenessLimit(String),
    /// Over [`YjsLimits::max_state_bytes`]: the connection is closed (1009).
    #[error("document state limit reached: {0}")]
    StateLimit(String),
    /// Over [`YjsLimits::max_depth`]: an update is refused (1009), a rendering of a document
    /// stored deeper than that answers 422.
    #[error("nesting limit reached: {0}")]
    TooDeep(String),
    /// yrs panicked inside an update's transaction (an arithmetic bug of its own on some valid
    /// sequences of updates): the document may hold part of the update, so it is not used
    /// again. The room starts afresh from what is stored, and its members reconnect and sync.
    #[error("the document broke applying an update: {0}")]
    Broken(String),
}

/// What one incoming frame produced.
#[derive(Default, Debug)]
pub struct Handled {
    /// Frames for the sender only (awareness answers).
    pub reply: Vec<Vec<u8>>,
    /// The sender's sync step 1 answered: the updates it lacks, shared with every client that
    /// asked with the same state vector since the document last changed ([`step2`]).
    pub syncs: Vec<Step2>,
    /// Frames for every other member (document updates, awareness changes).
    pub broadcast: Vec<Vec<u8>>,
    /// The document changed and must be saved.
    pub changed: bool,
    /// The updates that changed it, as received (v1): what a save appends.
    pub applied: Vec<Vec<u8>>,
    /// Awareness messages applied (also in `broadcast`): what the other replicas' rooms get.
    pub awareness: Vec<Vec<u8>>,
    /// An update inserted or deleted something the document did not hold (`changed` is also
    /// set for an update that only repeats what is there). A Hocuspocus `SyncStatus(1)` for an
    /// update that added nothing is due at once; one that added waits for the save.
    pub added: bool,
    /// A read-only sender's update would have changed the document (it was dropped):
    /// Hocuspocus answers it `SyncStatus(0)`.
    pub refused_change: bool,
    /// Awareness client ids the sender introduced (removed when it disconnects).
    pub added_clients: Vec<ClientID>,
    /// Set when a message failed after earlier ones in the frame were applied.
    pub error: Option<YjsError>,
}

pub struct YjsDoc {
    awareness: Awareness,
    limits: YjsLimits,
    /// At least the encoded state's length (see [`YjsDoc::check_growth`]).
    state_bytes: usize,
    /// The level of every block, so an update's nesting is known before yrs decodes it.
    nesting: Nesting,
    /// Frames refused for the state limit, refused again for the cost of hashing them.
    refused: RefusedFrames,
    /// Sync step 2 answers encoded since the document last changed.
    answers: Step2Cache,
}

impl YjsDoc {
    pub fn new() -> Self {
        YjsDoc {
            awareness: Awareness::new(Doc::new()),
            limits: YjsLimits::unlimited(),
            state_bytes: 0,
            nesting: Nesting::default(),
            refused: RefusedFrames::default(),
            answers: Step2Cache::default(),
        }
    }

    pub fn with_limits(mut self, limits: YjsLimits) -> Self {
        self.limits = limits;
        self
    }

    /// A document from its stored v1 state, within the default limits.
    pub fn load(state: &[u8]) -> Result<Self, YjsError> {
        Self::load_with(state, YjsLimits::default())
    }

    /// A document from its stored v1 state. A state nested deeper than `limits.max_depth` (never
    /// accepted so, only ever stored so) is loaded and served, but not rendered, and takes no
    /// deletions; one whose values nest deeper, or that would delete a type when loaded, is
    /// refused: yrs could not decode or apply it without recursing that deep.
    pub fn load_with(state: &[u8], limits: YjsLimits) -> Result<Self, YjsError> {
        plausible_count(state).map_err(YjsError::BadState)?;
        let mut doc = YjsDoc::new().with_limits(limits);
        doc.state_bytes = state.len();
        let plan = doc.plan(&[state], Admit::Stored)?;
        let update = decode_squashed(state).map_err(YjsError::BadState)?;
        guarded(|| doc.awareness.doc().transact_mut().apply_update(update))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(YjsError::BadState)?;
        doc.nesting.commit(plan);
        Ok(doc)
    }

    /// Merges a state from elsewhere (a reload's content, content a store held that this
    /// document lacked) into the document; Yjs merges commute, so nothing of either side is
    /// lost. Answers the update frame to relay to the members when the document changed: only
    /// what this merge added (a state mostly repeats what the members have), not the whole
    /// state it came in.
    pub fn absorb(&mut self, state: &[u8]) -> Result<Option<Vec<u8>>, YjsError> {
        self.absorb_as(state, true)
    }

    /// [`absorb`](Self::absorb) for an update members sent elsewhere (another replica's log
    /// entry): relayed as it came, like a member's own update here.
    pub fn absorb_update(&mut self, update: &[u8]) -> Result<Option<Vec<u8>>, YjsError> {
        self.absorb_as(update, false)
    }

    fn absorb_as(&mut self, state: &[u8], diff: bool) -> Result<Option<Vec<u8>>, YjsError> {
        plausible_count(state).map_err(YjsError::BadState)?;
        let plan = self.plan(&[state], Admit::Stored)?;
        let update = decode_squashed(state).map_err(YjsError::BadState)?;
        let doc = self.awareness.doc();
        let (added, deleted) = guarded(|| {
            let mut txn = doc.transact_mut();
            txn.apply_update(update)?;
            let added = novelty::txn_added(&txn);
            let changed = added || txn.has_missing_updates();
            let frame = changed.then(|| match added && diff {
                true => txn.encode_update_v1(),
                false => Vec::new(),
            });
            Ok::<_, yrs::error::UpdateError>((frame, !txn.delete_set().is_empty()))
        })
        // A panic inside the transaction may leave part of the update behind.
        .map_err(YjsError::Broken)?
        .map_err(|e| YjsError::BadState(e.to_string()))?;
        if deleted {
            self.refused.forget();
        }
        if deleted || added.is_some() {
            self.answers.clear();
        }
        self.nesting.commit(plan);
        let Some(added) = added else {
            return Ok(None);
        };
        self.state_bytes = self.state_bytes.saturating_add(state.len());
        // Not diffed, or held pending its dependencies only (the members hold it pending too):
        // relayed as it came.
        Ok(Some(match added.is_empty() {
            true => update_frame(state),
            false => update_frame(&added),
        }))
    }

    /// Applies one update; true if the document changed (items inserted or deleted, or the
    /// update is held pending its dependencies). Costs the update, not the document.
    fn apply(&mut self, update: Update) -> Result<bool, YjsError> {
        let doc = self.awareness.doc();
        let (changed, deleted) = guarded(|| {
            let mut txn = doc.transact_mut();
            txn.apply_update(update)?;
            // An update waiting for its dependencies counts: its bytes must be saved now, the
            // update that completes it may not carry them.
            let changed = novelty::txn_added(&txn) || txn.has_missing_updates();
            Ok::<_, yrs::error::UpdateError>((changed, !txn.delete_set().is_empty()))
        })
        .map_err(YjsError::Broken)?
        .map_err(|e| YjsError::BadUpdate(e.to_string()))?;
        if deleted {
            self.refused.forget();
        }
        if deleted || changed {
            self.answers.clear();
        }
        Ok(changed)
    }

    /// The whole document as one v1 update: what is cached, journaled and persisted.
    pub fn encode_state(&self) -> Vec<u8> {
        self.awareness
            .doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// The whole document as one v1 update, shared: the answer to the empty state vector
    /// ([`step2`]), encoded at most once per change of the document.
    pub fn state(&mut self) -> Bytes {
        self.answer(&StateVector::default()).update
    }

    /// How often the document changed since it was loaded: what was derived from its state
    /// (a hash of it, say) is current while this stays the same.
    pub fn changes(&self) -> u64 {
        self.answers.changes()
    }

    /// The updates a client with state vector `sv` lacks, encoded once for every client that
    /// asks with `sv` until the document changes.
    fn answer(&mut self, sv: &StateVector) -> Step2 {
        let doc = self.awareness.doc();
        self.answers
            .answer(sv, || doc.transact().encode_state_as_update_v1(sv))
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

    /// [`YjsDoc::handle_from`] a sender that introduced no awareness ids yet.
    pub fn handle(&mut self, frame: &[u8], may_write: bool) -> Result<Handled, YjsError> {
        let owns = HashSet::default();
        self.handle_from(
            frame,
            Sender {
                may_write,
                owns: &owns,
            },
        )
    }

    /// Handles one binary frame (which may carry several messages). The frame is decoded and
    /// checked whole, limits included, before anything is applied; a bad frame changes
    /// nothing. Without `may_write`, document updates are dropped.
    pub fn handle_from(&mut self, frame: &[u8], sender: Sender<'_>) -> Result<Handled, YjsError> {
        if sender.may_write {
            self.refused_before(frame)?;
        }
        guard_counts(frame).map_err(YjsError::Malformed)?;
        let messages = guarded(|| {
            let mut decoder = DecoderV1::new(Cursor::new(frame));
            MessageReader::new(&mut decoder).collect::<Result<Vec<_>, _>>()
        })
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(YjsError::Malformed)?;
        if messages.is_empty() {
            return Err(YjsError::Malformed("empty or truncated frame".into()));
        }
        let mut messages = messages;
        let claims = self.awareness_claims(&mut messages, sender)?;
        // Before anything decodes an update (the growth check merges them, `check` decodes
        // them): read-only senders' updates too, since their decoding would recurse as deep.
        let plan = self.plan_frame(&messages, sender.may_write)?;
        if sender.may_write {
            self.check_growth(frame, &messages)?;
        }
        let checked = messages
            .into_iter()
            .map(|m| check(m, sender.may_write))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Handled {
            added_clients: claims,
            ..Handled::default()
        };
        for message in checked {
            // yrs refusing an update it decoded stops the frame; what was applied before it is
            // still in `out`, so the caller relays and saves it before closing the sender.
            if let Err(e) = self.apply_checked(message, &mut out) {
                out.error = Some(e);
                break;
            }
        }
        if let Some(plan) = plan {
            // Also after a partial apply: levels follow from what blocks refer to, so a block
            // known here that yrs did not take only resolves a later reference to it.
            self.nesting.commit(plan);
        }
        Ok(out)
    }

    fn apply_checked(&mut self, message: Checked, out: &mut Handled) -> Result<(), YjsError> {
        match message {
            Checked::Step1(sv) => out.syncs.push(self.answer(&sv)),
            Checked::Update { raw, update } => {
                // An update that adds nothing is the duplicate of SPEC §1.3: not saved, and a
                // Hocuspocus SyncStatus(1) for it is due at once.
                if self.apply(update)? {
                    self.state_bytes = self.state_bytes.saturating_add(raw.len());
                    out.changed = true;
                    out.added = true;
                    out.broadcast.push(update_frame(&raw));
                    out.applied.push(raw);
                }
            }
            Checked::Awareness(update) => {
                let frame = Message::Awareness(update.clone()).encode_v1();
                guarded(|| self.awareness.apply_update(update))
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map_err(YjsError::Malformed)?;
                out.awareness.push(frame.clone());
                out.broadcast.push(frame);
            }
            Checked::Query => {
                if let Ok(update) = self.awareness.update() {
                    out.reply.push(Message::Awareness(update).encode_v1());
                }
            }
            Checked::ReadOnly(update) => {
                let doc = self.awareness.doc();
                if novelty::would_add(&doc.transact(), &update) {
                    out.refused_change = true;
                }
            }
            Checked::Ignored => {}
        }
        Ok(())
    }

    /// Applies an awareness message another replica's room applied (its members' states);
    /// answers the frame to relay to this room's members. Anything else is ignored: events are
    /// best effort.
    pub fn apply_remote_awareness(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let message = guarded(|| Message::decode_v1(frame)).ok()?.ok()?;
        let Message::Awareness(update) = message else {
            return None;
        };
        guarded(|| self.awareness.apply_update(update)).ok()?.ok()?;
        Some(frame.to_vec())
    }

    /// Forgets the awareness states of a departed connection; answers the removal frame for the
    /// remaining members.
    pub fn remove_clients(&mut self, clients: &HashSet<ClientID>) -> Option<Vec<u8>> {
        let known: Vec<ClientID> = clients
            .iter()
            .copied()
            .filter(|c| self.holds_state(*c))
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

    /// The document rendered as JSON: each root type under its name. Refused for a document
    /// nested deeper than the limit (stored so before the limit existed): every rendering walks
    /// the nesting.
    pub fn to_json(&self) -> Result<serde_json::Value, YjsError> {
        self.renderable()?;
        Ok(render::document(&self.awareness.doc().transact()))
    }
}

impl Default for YjsDoc {
    fn default() -> Self {
        YjsDoc::new()
    }
}

/// The document updates a frame's messages carry (sync step 2 and update payloads).
fn document_updates(messages: &[Message]) -> Vec<&[u8]> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => Some(u.as_slice()),
            _ => None,
        })
        .collect()
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
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic in yrs".into())
    })
}

#[cfg(test)]
mod absorb_tests;
#[cfg(test)]
mod broken_tests;
#[cfg(test)]
mod depth_tests;
#[cfg(test)]
mod refused_tests;
#[cfg(test)]
mod step2_tests;
