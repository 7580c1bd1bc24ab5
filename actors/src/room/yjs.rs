//! The Yjs side of a room: frames from members, awareness bookkeeping and saves.
//!
//! Every applied update is relayed at once and saved as itself, not as the document: the
//! updates applied since the last save are merged into one and appended (to the document's log,
//! or the journal). A save starts as soon as the room's previous save has landed, within the
//! room's [`SaveBudget`] (a burst, then one save per `rooms.yjs_save_interval_ms`): a room edited
//! at a typing pace saves each update at once, and an edit reaches other replicas' members one
//! save after it arrived (`log_side.rs`); a hot room gathers what arrives meanwhile into one
//! save per interval. Leaving and shutdown save immediately, so no applied update is left
//! behind; a failed save's updates go into the next one, tried after a pause.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, warn};
use yrs::ClientID;

use super::save_queue::SaveBudget;
use super::sync_status::StoredAnswer;
use super::{DocRoom, MemberId, Outbound};
use crate::doc::{DocId, Kind, Version};
use crate::protocol::yjs::{squash_chains, Sender, YjsDoc, YjsError};
use crate::refusal_log::Refusal;

/// A binary y-protocols frame from a member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct YjsFrame {
    pub from: MemberId,
    pub data: Bytes,
    /// False for read-only tokens: their document updates are dropped, not applied or relayed.
    pub may_write: bool,
    /// Hocuspocus's SyncStatus for a frame carrying one content message (SPEC §5b): answered
    /// `true` once that content is stored (at once if it added nothing), `false` if it was
    /// refused or its save failed. See `sync_status.rs`.
    pub stored: Option<oneshot::Sender<bool>>,
}

/// How long a failed save waits before its updates are tried again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

pub struct YjsRoom {
    pub doc: YjsDoc,
    /// Awareness client ids each member spoke for, removed (and the removal broadcast) when
    /// that member leaves.
    clients: HashMap<MemberId, HashSet<ClientID>>,
    save_timer: Option<SpawnHandle>,
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
    pub(super) stored_waiters: Vec<StoredAnswer>,
    /// The hash of the last [`YjsRoom::version`] and the document's [`YjsDoc::changes`] then:
    /// reused while the document is unchanged (hashing a large document costs about what
    /// encoding it does).
    hashed: Option<(u64, String)>,
}

impl YjsRoom {
    pub fn unsaved(&self) -> bool {
        self.unsaved.is_some()
    }

    pub fn retrying(&self) -> bool {
        self.retrying
    }

    /// The document as a version: its shared state ([`YjsDoc::state`]), so reading it (`GET
    /// /docs/{id}`) costs neither an encoding nor a copy while the document is unchanged.
    pub fn version(&mut self, doc: &DocId) -> Version {
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

impl DocRoom {
    /// Builds the live document from the loaded state (rooms of kind Yjs only).
    pub(super) fn open_yjs(&mut self) -> Result<(), YjsError> {
        if self.kind != Kind::Yjs {
            return Ok(());
        }
        let limits = self.shared.limits.yjs;
        let doc = match &self.current {
            Some(v) => YjsDoc::load_with(&v.content, limits)?,
            None => YjsDoc::new().with_limits(limits),
        };
        self.yjs = Some(YjsRoom {
            doc,
            clients: HashMap::new(),
            save_timer: None,
            pending: Vec::new(),
            unsaved: None,
            retrying: false,
            budget: SaveBudget::new(self.shared.yjs_save_interval, Instant::now()),
            stored_waiters: Vec::new(),
            hashed: None,
        });
        Ok(())
    }

    pub(super) fn forget_awareness(&mut self, member: MemberId) {
        let Some(y) = self.yjs.as_mut() else { return };
        let Some(ids) = y.clients.remove(&member) else {
            return;
        };
        if let Some(frame) = y.doc.remove_clients(&ids) {
            self.publish_awareness(&frame);
            self.broadcast_binary(None, frame.into());
        }
    }

    /// The updates applied since the last capture, merged into one version to save.
    pub(super) fn capture_yjs(&mut self, ctx: &mut Context<Self>) -> Option<Version> {
        let y = self.yjs.as_mut()?;
        if let Some(timer) = y.save_timer.take() {
            ctx.cancel_future(timer);
        }
        let since = y.unsaved.take()?;
        metrics::histogram!(crate::metrics::SAVE_WAIT).record(since.elapsed().as_secs_f64());
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
        Some(Version::new(self.doc.clone(), Kind::Yjs, update))
    }

    /// A save of `update` failed: it goes into the next save, which starts after a pause (the
    /// supervisor is retrying its stores meanwhile).
    pub(super) fn retry_yjs(&mut self, update: Bytes, ctx: &mut Context<Self>) {
        let Some(y) = self.yjs.as_mut() else { return };
        y.pending.insert(0, update);
        y.retrying = true;
        y.unsaved.get_or_insert_with(Instant::now);
        let wait = self.shared.yjs_save_interval.max(RETRY_AFTER);
        self.save_yjs_after(wait, ctx);
    }

    /// Updates were applied: they are saved as soon as the save in flight lands and the
    /// budget allows (at once, usually); after a failed save, after a pause.
    pub(super) fn mark_unsaved(&mut self, ctx: &mut Context<Self>) {
        let Some(y) = self.yjs.as_mut() else { return };
        y.unsaved.get_or_insert_with(Instant::now);
        if y.retrying {
            let wait = self.shared.yjs_save_interval.max(RETRY_AFTER);
            return self.save_yjs_after(wait, ctx);
        }
        self.save_yjs_soon(ctx);
    }

    /// Starts a save of what is pending if nothing else will: none is in flight (its landing
    /// comes back here), none is scheduled, and the budget allows one now (else one is
    /// scheduled for when it does). True if a save started.
    pub(super) fn save_yjs_soon(&mut self, ctx: &mut Context<Self>) -> bool {
        let idle = self.saves.is_idle();
        let Some(y) = self.yjs.as_mut() else {
            return false;
        };
        if y.unsaved.is_none() || y.save_timer.is_some() || !idle {
            return false;
        }
        match y.budget.take(Instant::now()) {
            Ok(()) => self.save_yjs_now(ctx),
            Err(wait) => {
                self.save_yjs_after(wait, ctx);
                false
            }
        }
    }

    /// Schedules a save of what is pending in `wait`, unless one is scheduled.
    fn save_yjs_after(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        let Some(y) = self.yjs.as_mut() else { return };
        if y.save_timer.is_none() {
            y.save_timer = Some(ctx.run_later(wait, |act, ctx| {
                if let Some(y) = act.yjs.as_mut() {
                    y.save_timer = None;
                }
                act.save_yjs_soon(ctx);
            }));
        }
    }

    /// Captures and saves now; true if a save was queued.
    pub(super) fn save_yjs_now(&mut self, ctx: &mut Context<Self>) -> bool {
        match self.capture_yjs(ctx) {
            Some(v) => {
                let waiter = self.stored_waiter(&v.hash);
                self.save(v, waiter, ctx);
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
    pub(super) fn absorb_yjs(&mut self, state: &[u8], ctx: &mut Context<Self>) {
        let Some(y) = self.yjs.as_mut() else { return };
        match y.doc.absorb(state) {
            Ok(None) => {}
            Ok(Some(frame)) => {
                y.pending.push(Bytes::copy_from_slice(state));
                y.unsaved.get_or_insert_with(Instant::now);
                self.broadcast_binary(None, frame.into());
                self.save_yjs_now(ctx);
            }
            Err(e @ YjsError::Broken(_)) => {
                warn!(doc = %self.doc, error = %e, "held yjs state broke the document, the room starts afresh");
                self.start_afresh(ctx);
            }
            Err(e) => warn!(doc = %self.doc, error = %e, "held yjs state could not be merged"),
        }
    }

    pub(super) fn broadcast_binary(&mut self, from: Option<MemberId>, frame: Bytes) {
        self.broadcast(from, Outbound::Binary(frame));
    }
}

impl Handler<YjsFrame> for DocRoom {
    type Result = ();

    /// Applies a member's frame: replies to it, relays to the others, schedules a save.
    fn handle(&mut self, msg: YjsFrame, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        if self.closing || !self.members.contains_key(&msg.from) {
            return;
        }
        let Some(y) = self.yjs.as_mut() else {
            return self.close_member(msg.from, 1003, "wrong_kind");
        };
        let owned = y.clients.entry(msg.from).or_default();
        let sender = Sender {
            may_write: msg.may_write,
            owns: owned,
        };
        let mut handled = match y.doc.handle_from(&msg.data, sender) {
            Ok(h) => h,
            Err(e) => return self.refuse(msg.from, &e, ctx),
        };
        // Ids it announced gone stay counted against its limit (see `YjsLimits`).
        owned.extend(std::mem::take(&mut handled.added_clients));
        if let Some(stored) = msg.stored {
            self.answer_when_stored(stored, msg.may_write, &handled);
        }
        let Some(y) = self.yjs.as_mut() else { return };
        if handled.changed {
            metrics::counter!(crate::metrics::UPDATES, "kind" => "yjs").increment(1);
            y.pending
                .extend(handled.applied.into_iter().map(Bytes::from));
            self.note_member_change(msg.from);
            self.mark_unsaved(ctx);
        }
        for frame in &handled.awareness {
            self.publish_awareness(frame);
        }
        for answer in handled.syncs {
            let encoding = if answer.shared { "shared" } else { "new" };
            metrics::counter!(crate::metrics::SYNC_ANSWERS, "encoding" => encoding).increment(1);
            self.sync_to(msg.from, answer.update);
        }
        for frame in handled.reply {
            self.send_to(msg.from, Outbound::Binary(frame.into()));
        }
        for frame in handled.broadcast {
            self.broadcast_binary(Some(msg.from), frame.into());
        }
        if let Some(e) = handled.error {
            self.refuse(msg.from, &e, ctx);
        }
        self.drop_lagging(ctx);
    }
}

impl DocRoom {
    /// Closes the connection of a member whose frame was refused. Counted every time, logged
    /// once per document and reason ([`RefusalLog`](crate::refusal_log::RefusalLog)): the
    /// member's provider reconnects and sends the same frame again.
    fn refuse(&mut self, member: MemberId, e: &YjsError, ctx: &mut Context<Self>) {
        let (code, reason, why) = close_for(e);
        if self.shared.refusals.note(self.doc.as_str(), why) {
            warn!(doc = %self.doc, error = %e, "yjs frame refused, closing that connection; repeats are counted, not logged");
        } else {
            debug!(doc = %self.doc, error = %e, "yjs frame refused again, closing that connection");
        }
        self.close_member(member, code, reason);
        if matches!(e, YjsError::Broken(_)) {
            self.start_afresh(ctx);
        }
    }

    /// Refuses one member's connection; the session closes it and then leaves.
    fn close_member(&self, id: MemberId, code: u16, reason: &'static str) {
        if let Some(member) = self.members.get(&id) {
            member.force(Outbound::Close { code, reason });
        }
    }
}

/// The close code and reason for a refused frame, and what it counts as.
fn close_for(e: &YjsError) -> (u16, &'static str, Refusal) {
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
