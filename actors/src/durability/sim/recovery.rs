//! What the supervisor does around an outage and on the side of a flush, one call a step
//! (`supervisor/recovery.rs`, `persisting.rs`, `read.rs`): the spill of Redis-only entries to
//! the journal, the half-open probe, the health check, the move of journaled entries back
//! into Redis, the TTL refresh of what PostgreSQL refused, the journal's forgetting of what it
//! committed, and a room's read, which fills the cache from PostgreSQL.

use std::collections::VecDeque;

use super::faults::Conn;
use super::replica::{account, move_back};
use super::world::{at_once, short, wait, Task, World};
use crate::doc::{DocId, Kind, Version};
use crate::durability::state::{spilled, Moved, Settle};
use crate::fallback::JournalError;
use crate::ledger::Durable;
use crate::log::LogPos;
use crate::storage::{DocumentLog, FillLock, FlushClaims, Health};

/// Journals what only Redis held, as one group (`journal_all`), then tells the ledger.
pub(super) struct Spill {
    versions: Vec<Version>,
    answers: Option<Vec<Result<(), JournalError>>>,
}

impl Spill {
    pub fn new(versions: Vec<Version>) -> Spill {
        Spill {
            versions,
            answers: None,
        }
    }

    pub fn step(mut self, w: &mut World, r: usize) -> Option<Spill> {
        let Some(answers) = self.answers.take() else {
            let answers = wait(w.life(r).fallback().put_all(self.versions.clone()));
            self.answers = Some(answers);
            w.note(Some(r), || "spill: journal synced".into());
            return Some(self);
        };
        let life = w.life(r);
        for (v, answer) in self.versions.iter().zip(answers) {
            if answer.is_ok() {
                spilled(&life.stores.ledger, &life.stores.fallback, v);
            }
        }
        life.spilling -= 1;
        w.note(Some(r), || "spill: ledger knows the journal".into());
        None
    }
}

/// The move back (`move_back`, `announce_owed`, `move_one`): what PostgreSQL holds of each
/// document Redis is owed, loaded and announced; then each journaled entry's save, and the
/// ledger told that it is in Redis if it did not change meanwhile.
pub(super) struct MoveBack {
    owed: VecDeque<DocId>,
    loaded: Option<(DocId, Option<Version>)>,
    moved: Moved,
    moves: VecDeque<Version>,
    landed: Option<(Version, Option<LogPos>)>,
}

impl MoveBack {
    pub fn new(owed: Vec<DocId>, moves: Vec<Version>) -> MoveBack {
        MoveBack {
            owed: owed.into(),
            loaded: None,
            moved: Moved {
                redis_ok: true,
                ..Moved::default()
            },
            moves: moves.into(),
            landed: None,
        }
    }

    pub fn step(mut self, w: &mut World, r: usize) -> Option<MoveBack> {
        if let Some((v, position)) = self.landed.take() {
            let ledger = w.life(r).ledger().clone();
            let moved = ledger.moved(&v, Durable::Cache, position);
            w.note(Some(r), || {
                format!("moved {} {}: {moved}", v.doc, short(&v))
            });
            return Some(self);
        }
        if let Some((doc, stored)) = self.loaded.take() {
            let restored = match &stored {
                Some(v) => w
                    .redis(r, Conn::Main, "save (announce owed)", |c| {
                        at_once(c.restore(v))
                    })
                    .is_some(),
                None => true,
            };
            if restored {
                self.moved.announced.push(doc);
            } else {
                self.failed(doc);
            }
            return Some(self);
        }
        if let Some(doc) = self.owed.pop_front() {
            match w.pg_load(r, &doc) {
                Some(stored) => self.loaded = Some((doc, stored)),
                None => self.moved.unannounced.push(doc),
            }
            return Some(self);
        }
        if !self.moved.redis_ok {
            self.moves.clear();
        }
        if let Some(v) = self.moves.pop_front() {
            match w.redis(r, Conn::Main, "save (move back)", |c| {
                at_once(c.restore(&v))
            }) {
                Some(saved) => {
                    w.note(Some(r), || {
                        format!("  {:?} at {:?}", saved.written, saved.position)
                    });
                    self.landed = Some((v, saved.position));
                }
                None => self.moved.redis_ok = false,
            }
            return Some(self);
        }
        let at = w.instant();
        let life = w.life(r);
        life.moving = false;
        let redis_ok = self.moved.redis_ok;
        let (paid, _) = life.durability.moved_back(self.moved, at);
        if !paid.is_empty() {
            w.spawn(r, Task::Paid(paid));
        }
        account(w, r, redis_ok);
        None
    }

    /// Redis failed: this document and every one after it stay owed, and nothing more moves.
    fn failed(&mut self, doc: DocId) {
        self.moved.redis_ok = false;
        self.moved.unannounced.push(doc);
        self.moved.unannounced.extend(self.owed.drain(..));
    }
}

/// The half-open probe on a fresh connection; a success closes the breaker and moves back.
pub(super) enum Probe {
    Call,
    Answered(bool),
}

impl Probe {
    pub fn step(self, w: &mut World, r: usize) -> Option<Probe> {
        match self {
            Probe::Call => {
                let ok = w.redis(r, Conn::Fresh, "probe", |c| at_once(c.probe()));
                Some(Probe::Answered(ok.is_some()))
            }
            Probe::Answered(ok) => {
                w.life(r).probing = false;
                account(w, r, ok);
                if w.life(r).allows_redis() {
                    move_back(w, r);
                }
                None
            }
        }
    }
}

/// The health check (and the first command at start).
pub(super) struct Ping;

impl Ping {
    pub fn step(self, w: &mut World, r: usize) -> Option<Ping> {
        let ok = w.redis(r, Conn::Main, "ping", |c| at_once(c.ping()));
        w.life(r).checking = false;
        account(w, r, ok.is_some());
        None
    }
}

/// `KeepCached`: PostgreSQL could not take these yet; refresh them and release the claims.
pub(super) fn touch(w: &mut World, r: usize, docs: Vec<DocId>) -> Option<Task> {
    if !w.life(r).allows_redis() {
        return None;
    }
    let ok = w.redis(r, Conn::Main, "touch", |c| at_once(c.touch(&docs)));
    account(w, r, ok.is_some());
    None
}

/// The journal records what Redis is owed, and drops the entries PostgreSQL committed whole.
pub(super) fn settle(w: &mut World, r: usize, settle: Settle) -> Option<Task> {
    if let Err(e) = wait(w.life(r).fallback().settle(settle.owe, &settle.forget)) {
        w.note(Some(r), || format!("journal commit failed: {e}"));
    }
    None
}

/// The journal records that Redis was given what it was owed of `docs`.
pub(super) fn paid(w: &mut World, r: usize, docs: Vec<DocId>) -> Option<Task> {
    if let Err(e) = wait(w.life(r).fallback().announced(docs)) {
        w.note(Some(r), || format!("journal announcement failed: {e}"));
    }
    None
}

/// A room opens a document (`read.rs`): Redis, or PostgreSQL filling an empty cache.
pub(super) enum Read {
    Cache(DocId),
    Store(DocId),
    Fill(Version),
}

pub(super) fn client_read(w: &mut World, r: usize) {
    let (doc, _) = w.docs[w.rng.index(w.docs.len())].clone();
    if w.life(r).allows_redis() {
        w.spawn(r, Task::Read(Read::Cache(doc)));
    }
}

impl Read {
    pub fn step(self, w: &mut World, r: usize) -> Option<Read> {
        match self {
            Read::Cache(doc) => {
                let cached = w.redis(r, Conn::Main, "load", |c| at_once(c.load(&doc)));
                account(w, r, cached.is_some());
                match cached? {
                    Some(c) => {
                        seen(w, r, &c.version);
                        None
                    }
                    None => Some(Read::Store(doc)),
                }
            }
            Read::Store(doc) => {
                let stored = w.pg_load(r, &doc)??;
                seen(w, r, &stored);
                Some(Read::Fill(stored))
            }
            Read::Fill(v) => {
                w.redis(r, Conn::Main, "fill", |c| at_once(c.fill(&v)));
                None
            }
        }
    }
}

/// The room's content: its next stamp follows this one's.
fn seen(w: &mut World, r: usize, v: &Version) {
    if let (Kind::Json, Some(stamp)) = (v.kind, &v.stamp) {
        let life = w.life(r);
        let newer = life.seen.get(&v.doc).is_none_or(|s| s < stamp);
        if newer {
            life.seen.insert(v.doc.clone(), stamp.clone());
        }
    }
}
