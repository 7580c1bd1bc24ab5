//! The Yjs side of the core: members' frames, awareness bookkeeping and when to save.
//!
//! Every applied update is relayed at once and saved as itself, not as the document: the
//! updates applied since the last save are merged into one and appended (to the document's log,
//! or the journal). A save starts as soon as the room's previous save has landed, within the
//! room's [`SaveBudget`] (a burst, then one save per `rooms.yjs_save_interval_ms`): a room edited
//! at a typing pace saves each update at once; a hot room gathers what arrives meanwhile into
//! one save per interval. Leaving and shutdown save immediately, so no applied update is left
//! behind; a failed save's updates go into the next one, tried after a pause.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};
use yrs::ClientID;

use super::{Answer, CoreConfig, Effect, RoomCore, WaiterId};
use crate::doc::{DocId, Kind, Version};
use crate::log::EventKind;
use crate::metrics as m;
use crate::protocol::yjs::{squash_chains, Sender, YjsDoc, YjsError};
use crate::refusal_log::Refusal;
use crate::room::save_queue::SaveBudget;
use crate::room::{MemberId, Outbound};

/// How long a failed save waits before its updates are tried again.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);

pub(super) struct YjsRoom {
    pub(super) doc: YjsDoc,
    /// Awareness client ids each member spoke for, removed (and the removal broadcast) when
    /// that member leaves.
    clients: HashMap<MemberId, HashSet<ClientID>>,
    /// When a scheduled save of what is pending starts (`None`: none is scheduled).
    pub(super) save_at: Option<Instant>,
    /// Updates applied since the last capture, as received: the next save's content.
    pub(super) pending: Vec<Bytes>,
    /// Since when updates applied since the last capture wait for their save (`None`: none
    /// waits; `docroom_save_wait_seconds`).
    unsaved: Option<Instant>,
    /// The last save failed: its updates wait in `pending` for the next one.
    pub(super) retrying: bool,
    /// How soon the next save may start.
    budget: SaveBudget,
    /// Answers due when the save that captures the updates applied so far lands (SyncStatus,
    /// posted updates).
    pub(super) stored_waiters: Vec<super::saves::StoredAnswer>,
    /// The hash of the last [`YjsRoom::version`] and the document's [`YjsDoc::changes`] then:
    /// reused while the document is unchanged (hashing a large document costs about what
    /// encoding it does).
    hashed: Option<(u64, String)>,
}

impl YjsRoom {
    /// The live document from the loaded state (`None`: never stored).
    pub(super) fn open(
        loaded: Option<Version>,
        cfg: &CoreConfig,
        now: Instant,
    ) -> Result<Self, YjsError> {
        let limits = cfg.limits.yjs;
        let doc = match &loaded {
            Some(v) => YjsDoc::load_with(&v.content, limits)?,
            None => YjsDoc::new().with_limits(limits),
        };
        Ok(YjsRoom {
            doc,
            clients: HashMap::new(),
            save_at: None,
            pending: Vec::new(),
            unsaved: None,
            retrying: false,
            budget: SaveBudget::new(cfg.yjs_save_interval, now),
            stored_waiters: Vec::new(),
            hashed: None,
        })
    }

    pub(super) fn unsaved(&self) -> bool {
        self.unsaved.is_some()
    }

    /// The document as a version: its shared state ([`YjsDoc::state`]), so reading it costs
    /// neither an encoding nor a copy while the document is unchanged.
    pub(super) fn version(&mut self, doc: &DocId) -> Version {
        let content = self.doc.state();
        let changes = self.doc.changes();
        match &self.hashed {
            Some((at, hash)) if *at == changes => Version {
                doc: doc.clone(),
                kind: Kind::Yjs,
                hash: hash.clone(),
                content,
                stamp: None,
            },
            _ => {
                let version = Version::new(doc.clone(), Kind::Yjs, content);
                self.hashed = Some((changes, version.hash.clone()));
                version
            }
        }
    }
}

impl RoomCore {
    /// A member's binary y-protocols frame: replies to it, relays to the others, schedules a
    /// save. `stored` is Hocuspocus's SyncStatus for it (see `yjs_answers.rs`), answered
    /// `false` if the frame is dropped or refused; `may_write` false drops its document
    /// updates.
    pub fn yjs_frame(
        &mut self,
        from: MemberId,
        data: &[u8],
        may_write: bool,
        stored: Option<WaiterId>,
        now: Instant,
    ) {
        let mut stored = stored;
        self.handle_frame(from, data, may_write, &mut stored, now);
        if let Some(waiter) = stored {
            self.answer(waiter, Answer::Status(false));
        }
    }

    fn handle_frame(
        &mut self,
        from: MemberId,
        data: &[u8],
        may_write: bool,
        stored: &mut Option<WaiterId>,
        now: Instant,
    ) {
        if self.closing || !self.members.contains_key(&from) {
            return;
        }
        let Some(y) = self.held.yjs_mut() else {
            return self.close_member(from, 1003, "wrong_kind");
        };
        let owned = y.clients.entry(from).or_default();
        let sender = Sender {
            may_write,
            owns: owned,
        };
        let mut handled = match y.doc.handle_from(data, sender) {
            Ok(h) => h,
            Err(e) => return self.refuse(from, &e, now),
        };
        // Ids it announced gone stay counted against its limit (see `YjsLimits`).
        owned.extend(std::mem::take(&mut handled.added_clients));
        if let Some(stored) = stored.take() {
            self.answer_when_stored(stored, may_write, &handled);
        }
        if handled.changed {
            self.series.yjs_updates.increment(1);
            if let Some(y) = self.held.yjs_mut() {
                y.pending
                    .extend(handled.applied.into_iter().map(Bytes::from));
            }
            self.note_member_change(from);
            self.mark_unsaved(now);
        }
        for frame in handled.awareness {
            let payload = Bytes::from(frame);
            let kind = EventKind::Awareness;
            self.effects.push(Effect::Publish { kind, payload });
        }
        for answer in handled.syncs {
            let encoding = if answer.shared { "shared" } else { "new" };
            metrics::counter!(m::SYNC_ANSWERS, "encoding" => encoding).increment(1);
            self.sync_to(from, answer.update);
        }
        for frame in handled.reply {
            self.send_to(from, Outbound::Binary(frame.into()));
        }
        for frame in handled.broadcast {
            self.broadcast(Some(from), Outbound::Binary(frame.into()));
        }
        if let Some(e) = handled.error {
            self.refuse(from, &e, now);
        }
        self.drop_lagging(now);
    }

    /// A member left: the awareness states it spoke for are removed, and the others told.
    pub(super) fn forget_awareness(&mut self, member: MemberId) {
        let Some(y) = self.held.yjs_mut() else { return };
        let Some(ids) = y.clients.remove(&member) else {
            return;
        };
        if let Some(frame) = y.doc.remove_clients(&ids) {
            let frame = Bytes::from(frame);
            self.effects.push(Effect::Publish {
                kind: EventKind::Awareness,
                payload: frame.clone(),
            });
            self.broadcast(None, Outbound::Binary(frame));
        }
    }

    /// The updates applied since the last capture, merged into one version to save.
    fn capture_yjs(&mut self, now: Instant) -> Option<Version> {
        let y = self.held.yjs_mut()?;
        y.save_at = None;
        let since = y.unsaved.take()?;
        let waited = now.saturating_duration_since(since);
        self.series.save_wait.record(waited.as_secs_f64());
        let parts = std::mem::take(&mut y.pending);
        let update = match parts.len() {
            0 => return None,
            1 => parts.into_iter().next().unwrap_or_default(),
            _ => {
                let merged = std::panic::catch_unwind(|| {
                    yrs::merge_updates_v1(parts.iter().map(|p| &p[..]))
                });
                match merged {
                    // Saved with its chains merged: whoever applies it later pays no square.
                    Ok(Ok(update)) => Bytes::from(squash_chains(&update).unwrap_or(update)),
                    // Every part was applied to the document, so its state holds them all.
                    _ => y.doc.state(),
                }
            }
        };
        Some(Version::new(self.cfg.doc.clone(), Kind::Yjs, update))
    }

    /// A save of `update` failed: it goes into the next save, which starts after a pause (the
    /// supervisor is retrying its stores meanwhile).
    pub(super) fn retry_yjs(&mut self, update: Bytes, now: Instant) {
        let Some(y) = self.held.yjs_mut() else { return };
        y.pending.insert(0, update);
        y.retrying = true;
        y.unsaved.get_or_insert(now);
        let wait = self.cfg.yjs_save_interval.max(RETRY_AFTER);
        self.save_yjs_after(wait, now);
    }

    /// Updates were applied: they are saved as soon as the save in flight lands and the
    /// budget allows (at once, usually); after a failed save, after a pause.
    pub(super) fn mark_unsaved(&mut self, now: Instant) {
        let Some(y) = self.held.yjs_mut() else { return };
        y.unsaved.get_or_insert(now);
        if y.retrying {
            let wait = self.cfg.yjs_save_interval.max(RETRY_AFTER);
            return self.save_yjs_after(wait, now);
        }
        self.save_yjs_soon(now);
    }

    /// Starts a save of what is pending if nothing else will: none is in flight (its landing
    /// comes back here), none is scheduled, and the budget allows one now (else one is
    /// scheduled for when it does). True if a save started.
    pub(super) fn save_yjs_soon(&mut self, now: Instant) -> bool {
        let idle = self.saves.is_idle();
        let Some(y) = self.held.yjs_mut() else {
            return false;
        };
        if y.unsaved.is_none() || y.save_at.is_some() || !idle {
            return false;
        }
        match y.budget.take(now) {
            Ok(()) => self.save_yjs_now(now),
            Err(wait) => {
                self.save_yjs_after(wait, now);
                false
            }
        }
    }

    /// Schedules a save of what is pending in `wait`, unless one is scheduled.
    fn save_yjs_after(&mut self, wait: Duration, now: Instant) {
        let Some(y) = self.held.yjs_mut() else { return };
        y.save_at.get_or_insert(now + wait);
    }

    /// Captures and saves now; true if a save was queued.
    pub(super) fn save_yjs_now(&mut self, now: Instant) -> bool {
        match self.capture_yjs(now) {
            Some(v) => {
                let waiter = self.stored_waiter();
                self.save(v, waiter);
                true
            }
            None => {
                self.release_stored_waiters();
                false
            }
        }
    }

    /// Content the ledger holds that this room's document lacks (merged in from the journal or
    /// Redis): merged into the live document and relayed to every member, so they converge
    /// without reconnecting; the next save carries it too.
    pub(super) fn absorb_yjs(&mut self, state: &[u8], now: Instant) {
        let Some(y) = self.held.yjs_mut() else { return };
        match y.doc.absorb(state) {
            Ok(None) => {}
            Ok(Some(frame)) => {
                y.pending.push(Bytes::copy_from_slice(state));
                y.unsaved.get_or_insert(now);
                self.broadcast(None, Outbound::Binary(frame.into()));
                self.save_yjs_now(now);
            }
            Err(e @ YjsError::Broken(_)) => {
                warn!(doc = %self.cfg.doc, error = %e, "held yjs state broke the document, the room starts afresh");
                self.start_afresh(now);
            }
            Err(e) => {
                warn!(doc = %self.cfg.doc, error = %e, "held yjs state could not be merged")
            }
        }
    }

    /// Closes the connection of a member whose frame was refused. Counted every time, logged
    /// once per document and reason ([`RefusalLog`](crate::refusal_log::RefusalLog)): the
    /// member's provider reconnects and sends the same frame again.
    fn refuse(&mut self, member: MemberId, e: &YjsError, now: Instant) {
        let (code, reason, why) = close_for(e);
        metrics::counter!(m::REFUSED_FRAMES, "reason" => why.as_str()).increment(1);
        if self.cfg.refusals.first(self.cfg.doc.as_str(), why, now) {
            warn!(doc = %self.cfg.doc, error = %e, "yjs frame refused, closing that connection; repeats are counted, not logged");
        } else {
            debug!(doc = %self.cfg.doc, error = %e, "yjs frame refused again, closing that connection");
        }
        self.close_member(member, code, reason);
        if matches!(e, YjsError::Broken(_)) {
            self.start_afresh(now);
        }
    }
}

/// The close code and reason for a refused frame, and what it counts as.
pub fn close_for(e: &YjsError) -> (u16, &'static str, Refusal) {
    match e {
        YjsError::AwarenessLimit(_) => (1008, "awareness limit exceeded", Refusal::AwarenessLimit),
        YjsError::StateLimit(_) => (1009, "document state limit reached", Refusal::StateLimit),
        YjsError::TooDeep(_) => (1009, "nesting limit reached", Refusal::NestingLimit),
        YjsError::Broken(_) => (1011, "document reloading", Refusal::Broken),
        YjsError::Malformed(_) | YjsError::BadUpdate(_) | YjsError::BadState(_) => {
            (1007, "malformed yjs message", Refusal::Malformed)
        }
    }
}
