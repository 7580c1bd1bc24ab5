//! A room's saves through the core: at most one in flight ([`SaveQueue`]), its result fed back
//! by the actor, the waiters it answers, and the changes it reports.
//!
//! Who changed the document is noted per applied change, for the `document.changed` webhook
//! (SPEC §9): a save takes what was noted when it starts and reports it once it lands, so a
//! change is reported only once it is acknowledged; a save that fails gives it back to the next
//! one. Nothing is noted when nobody listens (webhooks off).

use std::time::Instant;

use bytes::Bytes;
use tracing::warn;

use super::{Answer, Authors, CoreConfig, Effect, RoomCore, WaiterId};
use crate::doc::{Kind, Version};
use crate::metrics as m;
use crate::room::history::Unversioned;
use crate::room::{history_user, Ack, MemberId, RoomError};
use crate::supervisor::{SaveAnswer, Stored};

/// What rides a save in the [`SaveQueue`](crate::room::SaveQueue).
pub(super) enum SaveWaiter {
    /// A JSON update's acknowledgement; `duplicate`: its content was the room's already.
    Ack {
        waiter: WaiterId,
        hash: String,
        duplicate: bool,
    },
    /// The Yjs answers filed since the last capture, answered together when the save that
    /// captured what they wait for lands.
    Stored(Vec<StoredAnswer>),
}

/// One answer due when the save capturing what was applied so far lands.
#[derive(Debug)]
pub(super) enum StoredAnswer {
    /// Hocuspocus's SyncStatus: `true` once stored, `false` if the save failed.
    Status(WaiterId),
    /// A posted update's acknowledgement: `hash` is the document's once it held the update,
    /// `duplicate` that it added nothing.
    Ack {
        waiter: WaiterId,
        hash: String,
        duplicate: bool,
    },
}

/// What the save in flight carries besides its version.
pub(super) struct InFlight {
    hash: String,
    /// A Yjs save's updates, which only it holds: if it fails, they go into the next one.
    increment: Option<Bytes>,
    /// The changes it reports once it lands.
    changes: Option<Authors>,
}

/// Changes noted since the last save started.
#[derive(Debug, Default)]
pub(super) struct Unreported {
    /// A change was applied, with or without a `sub`.
    any: bool,
    authors: Authors,
}

impl RoomCore {
    /// Queues a save of `version` (the room's newest content); starts it if none is in flight.
    pub(super) fn save(&mut self, version: Version, waiter: Option<SaveWaiter>) {
        if let Some(next) = self.saves.push(version, waiter) {
            self.start_save(next);
        }
    }

    fn start_save(&mut self, version: Version) {
        let increment = (version.kind == Kind::Yjs).then(|| version.content.clone());
        self.in_flight = Some(InFlight {
            hash: version.hash.clone(),
            increment,
            changes: self.take_changes(),
        });
        self.effects.push(Effect::Save(version));
    }

    /// The save in flight landed, or failed: its waiters are answered, a failed Yjs save's
    /// updates go into the next save, and the next save starts.
    pub fn saved(&mut self, result: Result<SaveAnswer, RoomError>, now: Instant) {
        let Some(flight) = self.in_flight.take() else {
            return; // no save in flight: nothing to answer
        };
        let (res, foreign) = match result {
            Ok(answer) => (Ok(answer.stored), answer.foreign),
            Err(e) => (Err(e), None),
        };
        if let Err(e) = &res {
            warn!(doc = %self.cfg.doc, error = %e, "save failed, update not acknowledged");
        }
        match (&res, flight.increment) {
            (Err(_), Some(update)) => self.retry_yjs(update, now),
            (Err(_), None) => {}
            (Ok(_), _) => self.landed(foreign, now),
        }
        match (&res, flight.changes) {
            (Ok(_), Some(users)) => self.effects.push(Effect::Changed {
                users: users.into_iter().collect(),
            }),
            (Err(_), Some(users)) => {
                self.unreported.any = true;
                self.unreported.authors.extend(users);
            }
            (_, None) => {}
        }
        let (waiters, next) = self.saves.finish(&flight.hash, res.is_ok());
        for w in waiters {
            self.answer_saved(w, &res);
        }
        match next {
            Some(next) => self.start_save(next),
            // Updates applied while it was in flight: their save starts now.
            None if self.save_yjs_soon(now) => {}
            None => self.check_idle(now),
        }
    }

    fn answer_saved(&mut self, waiter: SaveWaiter, res: &Result<Stored, RoomError>) {
        if let Ok(stored) = res {
            let stored = match &waiter {
                SaveWaiter::Ack {
                    duplicate: true, ..
                } => Stored::Duplicate,
                _ => *stored,
            };
            metrics::counter!(m::ACKS, "stored" => stored.as_str()).increment(1);
        }
        match waiter {
            SaveWaiter::Ack {
                waiter,
                hash,
                duplicate,
            } => self.answer(waiter, ack(res, hash, duplicate)),
            SaveWaiter::Stored(answers) => self.answer_stored(answers, res),
        }
    }

    /// Answers each of `answers` how the save they waited for went.
    pub(super) fn answer_stored(
        &mut self,
        answers: Vec<StoredAnswer>,
        res: &Result<Stored, RoomError>,
    ) {
        for a in answers {
            match a {
                StoredAnswer::Status(waiter) => self.answer(waiter, Answer::Status(res.is_ok())),
                StoredAnswer::Ack {
                    waiter,
                    hash,
                    duplicate,
                } => self.answer(waiter, ack(res, hash, duplicate)),
            }
        }
    }

    /// A save landed: the retry of a failed one, if it was, is over; and content the ledger
    /// holds from elsewhere, which the save's answer carries, comes in.
    fn landed(&mut self, foreign: Option<Vec<Version>>, now: Instant) {
        if let Some(y) = self.held.yjs_mut() {
            y.retrying = false;
        }
        if let Some(parts) = foreign {
            self.absorb_foreign(parts, now);
        }
    }

    /// Content from elsewhere that the ledger's entry for the document holds (SPEC §6: a
    /// journaled or cached version merged in): the room takes it in — Yjs merged, JSON if its
    /// stamp is larger — and tells its members.
    fn absorb_foreign(&mut self, parts: Vec<Version>, now: Instant) {
        let held = match crate::doc::combine(parts) {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(e) => {
                warn!(doc = %self.cfg.doc, error = %e, "content from elsewhere could not be merged");
                return;
            }
        };
        if self.held.json().is_some_and(|c| c.hash == held.hash) {
            return;
        }
        match self.held.kind() {
            Kind::Yjs => self.absorb_yjs(&held.content, now),
            Kind::Json => self.absorb_json(held),
        }
    }

    /// A member's change was applied: its token's `sub`, if any, is noted (and for the
    /// history, `"anonymous"` without one).
    pub(super) fn note_member_change(&mut self, member: MemberId) {
        let subject = self.members.get(&member).and_then(|m| m.subject.as_deref());
        note(
            &self.cfg,
            &mut self.unversioned,
            &mut self.unreported,
            subject,
        );
    }

    /// A change was applied, by `by` if its token had a `sub`.
    pub(super) fn note_change_by(&mut self, by: Option<&str>) {
        note(&self.cfg, &mut self.unversioned, &mut self.unreported, by);
    }

    /// Called as a save starts: what it will report if it lands (`None`: nothing noted).
    fn take_changes(&mut self) -> Option<Authors> {
        let noted = std::mem::take(&mut self.unreported);
        (noted.any || !noted.authors.is_empty()).then_some(noted.authors)
    }
}

/// Notes a change by `by` for the history and the webhooks, whichever are on.
fn note(
    cfg: &CoreConfig,
    unversioned: &mut Unversioned,
    unreported: &mut Unreported,
    by: Option<&str>,
) {
    if cfg.history {
        unversioned.note(history_user(by));
    }
    if !cfg.changes {
        return;
    }
    unreported.any = true;
    if let Some(by) = by.filter(|by| !unreported.authors.contains(*by)) {
        unreported.authors.insert(by.to_owned());
    }
}

/// A waiter's acknowledgement from how its save went.
fn ack(res: &Result<Stored, RoomError>, hash: String, duplicate: bool) -> Answer {
    Answer::Ack(res.clone().map(|stored| Ack {
        hash,
        stored: if duplicate { Stored::Duplicate } else { stored },
    }))
}
