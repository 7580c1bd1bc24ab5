//! One replica's durability state and its rules, as pure code with time passed in. It decides;
//! the cache supervisor carries out what it decides against Redis, the journal and PostgreSQL,
//! and the simulation (`sim`) drives the very same calls one step at a time.
//!
//! It holds:
//! - the [`Ledger`]: what this replica acknowledged that PostgreSQL lacks, and where each
//!   version is durable besides memory (Redis, or the journal);
//! - the [`Breaker`]: whether saves go to Redis;
//! - the documents a commit could not announce into Redis yet ([`Owed`]): Redis is owed what
//!   PostgreSQL holds of them;
//! - the backoff of moving journaled content back into Redis.
//!
//! Routing rule for a save: Redis while the breaker is closed, the journal otherwise — and the
//! journal also while the ledger says the document's newest version is only journaled (not yet
//! moved back into Redis), so that a document has one place its saves go until the move is
//! done.

use std::time::{Duration, Instant};

use crate::breaker::{Breaker, BreakerState, ForceMode, Transition};
use crate::doc::{DocId, Kind, Version};
use crate::fallback::{CommittedContent, Fallback};
use crate::ledger::{Durable, Ledger};
use crate::storage::{Commit, Saved, Written};

use super::announce::{after_commit, Announcement, Owed};

/// Where an acknowledged version went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Cache,
    Fallback,
    Duplicate,
}

impl Stored {
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Cache => "cache",
            Stored::Fallback => "fallback",
            Stored::Duplicate => "duplicate",
        }
    }
}

/// A save's answer to the room that sent it: where it went, and what the ledger holds of the
/// document from elsewhere than the room's saves (the journal's content, merged in when the
/// save was journaled; unmerged: the room merges it), which the room takes in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveAnswer {
    pub stored: Stored,
    pub foreign: Option<Vec<Version>>,
}

/// Where a save goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To Redis; its answer is judged against the breaker's failure count when it was sent
    /// ([`Durability::saved`]).
    Redis {
        failures: u64,
    },
    Journal,
}

/// What an outcome of a Redis call did to the breaker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounted {
    pub transition: Option<Transition>,
    /// The first failure of a streak: Redis may have lost what it held, so every entry durable
    /// only there must be journaled ([`Durability::spill`]).
    pub spill: bool,
}

/// What the journal records ([`Fallback::settle`]): that Redis is owed PostgreSQL's content of
/// `owe`, and that PostgreSQL committed `forget`, which lets those entries go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settle {
    pub owe: Vec<DocId>,
    pub forget: Vec<CommittedContent>,
}

impl Settle {
    pub fn is_empty(&self) -> bool {
        self.owe.is_empty() && self.forget.is_empty()
    }
}

/// What a commit leaves to do: what the journal records now, and the announcements to write
/// into Redis (none while Redis is out of use: the journal records the debts instead).
#[derive(Debug, Default)]
pub struct AfterCommit {
    pub settle: Settle,
    pub announce: Vec<Announcement>,
}

/// One move back into Redis: the documents Redis is owed (taken out; each to load from
/// PostgreSQL and announce), then the journaled versions.
#[derive(Debug, Default)]
pub struct MoveBack {
    pub announce: Vec<DocId>,
    pub journaled: Vec<Version>,
}

/// How a move back went.
#[derive(Debug, Default)]
pub struct Moved {
    /// Every Redis call answered.
    pub redis_ok: bool,
    /// Owed documents whose PostgreSQL content is now in Redis.
    pub announced: Vec<DocId>,
    /// Owed documents not announced (PostgreSQL or Redis failed): still owed.
    pub unannounced: Vec<DocId>,
}

pub struct Durability {
    ledger: Ledger,
    breaker: Breaker,
    owed: Owed,
    /// Debts the move back in flight took out of `owed`: still unpaid until it answers.
    paying: usize,
    move_failures: u32,
    next_move: Option<Instant>,
    retry_base: Duration,
    retry_max: Duration,
}

impl Durability {
    /// A replica's state at start: the journal's entries are what PostgreSQL lacked when the
    /// process last stopped, and seed the ledger; its debts are what Redis is owed.
    pub fn new(
        ledger: Ledger,
        breaker: Breaker,
        fallback: &Fallback,
        retry: (Duration, Duration),
    ) -> Self {
        let mut journaled = fallback.dirty();
        journaled.sort_by(|a, b| a.doc.cmp(&b.doc));
        for v in journaled {
            ledger.absorbed(v, Durable::Journal);
        }
        Durability {
            ledger,
            breaker,
            owed: {
                let mut owed = Owed::default();
                owed.owe(fallback.owed());
                owed
            },
            paying: 0,
            move_failures: 0,
            next_move: None,
            retry_base: retry.0,
            retry_max: retry.1,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// For the half-open timer ([`Breaker::probe_due`]).
    pub fn breaker_mut(&mut self) -> &mut Breaker {
        &mut self.breaker
    }

    /// Where a save of `doc` goes (see the module doc).
    pub fn route(&self, doc: &DocId) -> Route {
        let journaled = self.ledger.durable(doc) == Some(Durable::Journal);
        match self.breaker.allows_redis() && !journaled {
            true => Route::Redis {
                failures: self.breaker.failures(),
            },
            false => Route::Journal,
        }
    }

    /// Redis answered a save of `v` sent when the breaker had seen `failures`: the ledger
    /// records it, or (`None`) it must be journaled too. A save that landed after a Redis
    /// failure newer than its sending may have landed in a Redis that lost it since (it
    /// restarted empty after taking it, and the spill that journals what only Redis held may be
    /// over); so may one whose document the spill journaled meanwhile, whose saves go to the
    /// journal until it is moved back.
    pub fn saved(&self, v: &Version, failures: u64, saved: Saved) -> Option<Stored> {
        let failed_since = self.breaker.failures() != failures;
        match saved.written {
            Written::Stored
                if !failed_since && self.ledger.durable(&v.doc) != Some(Durable::Journal) =>
            {
                self.ledger.saved(v, Durable::Cache, saved.position);
                Some(Stored::Cache)
            }
            Written::Stored => None,
            // A later version is cached, but its own save may never be acknowledged (its
            // replica may die before journaling it): this one waits until PostgreSQL holds it
            // or a later one.
            Written::Superseded => {
                self.ledger.saved(v, Durable::Cache, None);
                Some(Stored::Cache)
            }
            Written::Duplicate => Some(Stored::Duplicate),
        }
    }

    /// How a Redis call went (`None`: not tried).
    pub fn account(&mut self, ok: Option<bool>, now: Instant) -> Accounted {
        match ok {
            None => Accounted::default(),
            Some(true) => {
                let transition = self.breaker.on_success(now);
                Accounted {
                    transition: self.closed(transition),
                    spill: false,
                }
            }
            Some(false) => {
                let first = self.breaker.consecutive_failures() == 0;
                Accounted {
                    transition: self.breaker.on_failure(now),
                    spill: first,
                }
            }
        }
    }

    /// An operator's override of the breaker.
    pub fn force(&mut self, mode: ForceMode, now: Instant) -> Option<Transition> {
        let transition = self.breaker.force(mode, now);
        self.closed(transition)
    }

    /// A transition to closed means Redis answers again: move back at once, whatever the
    /// backoff was.
    fn closed(&mut self, transition: Option<Transition>) -> Option<Transition> {
        if transition.is_some_and(|t| t.to == BreakerState::Closed) {
            self.move_failures = 0;
            self.next_move = None;
        }
        transition
    }

    /// Every entry durable only in Redis, by document: what a spill journals.
    pub fn spill(&self) -> Vec<Version> {
        self.durable_in(Durable::Cache)
    }

    /// The ledger's entries durable in `durable`, by document.
    fn durable_in(&self, durable: Durable) -> Vec<Version> {
        let mut versions: Vec<Version> = self
            .ledger
            .entries(Some(durable))
            .into_iter()
            .map(|e| e.version)
            .collect();
        versions.sort_by(|a, b| a.doc.cmp(&b.doc));
        versions
    }

    /// PostgreSQL committed `done`: the ledger lets go of what it includes; what follows is
    /// [`after_commit`]'s. While Redis is out of use the announcements become debts
    /// ([`Durability::unannounced`]) and the journal lets go of what they rest on now: the
    /// journal holds what PostgreSQL lacks, and Redis may stay away for good.
    pub fn committed(&mut self, done: &[Commit]) -> AfterCommit {
        let left = self.ledger.committed(done);
        let (forget, announce) = after_commit(done, left);
        if self.breaker.allows_redis() {
            let settle = Settle {
                owe: Vec::new(),
                forget,
            };
            return AfterCommit { settle, announce };
        }
        let mut settle = self.missed(announce, done);
        settle.forget.extend(forget);
        AfterCommit {
            settle,
            announce: Vec::new(),
        }
    }

    /// Redis did not take the commit of `done` nor `announce` (the call failed, or was not
    /// made): [`Durability::unannounced`], and what it may lack of the logs
    /// ([`Durability::lost_logs`]) is owed too.
    pub fn missed(&mut self, announce: Vec<Announcement>, done: &[Commit]) -> Settle {
        let mut settle = self.unannounced(announce);
        settle.owe.extend(self.lost_logs(done, None));
        settle
    }

    /// Content PostgreSQL took from a log that Redis may have lost since (it restarted empty
    /// after the flush read it): a flush that completes a compaction or a fill from
    /// PostgreSQL's content may have read it before that commit, and would leave Redis whole
    /// without it. Redis is owed what PostgreSQL holds of those documents: the ones Redis named
    /// as committed from an incarnation of its log that is gone (`stale`), or, when it did not
    /// answer the commit (failed, or not tried while out of use), every one read from a log.
    pub fn lost_logs(&mut self, done: &[Commit], stale: Option<&[DocId]>) -> Vec<DocId> {
        let lost: Vec<DocId> = done
            .iter()
            .filter(|c| c.read.is_some() && !c.hash.is_empty())
            .filter(|c| stale.is_none_or(|s| s.contains(&c.doc)))
            .map(|c| c.doc.clone())
            .collect();
        self.owed.owe(lost.iter().cloned());
        lost
    }

    /// Announcements that could not be written: their documents are owed to Redis (until the
    /// next move back announces what PostgreSQL holds of them), and the journal lets go of
    /// what they rested on, recording the debts in the same write.
    pub fn unannounced(&mut self, announce: Vec<Announcement>) -> Settle {
        let owe: Vec<DocId> = announce.iter().map(|a| a.version.doc.clone()).collect();
        let forget = announce.into_iter().flat_map(|a| a.forget).collect();
        self.owed.owe(owe.iter().cloned());
        Settle { owe, forget }
    }

    /// The move back, if one is due at `now` (breaker closed, past the backoff) and there is
    /// something to move: the documents owed (taken out) and the journaled versions, by
    /// document. Each journaled version moved is then told to the ledger
    /// ([`Ledger::moved`]); the outcome of the whole, to [`Durability::moved_back`].
    pub fn move_back(&mut self, now: Instant) -> Option<MoveBack> {
        let due = self.next_move.is_none_or(|at| now >= at);
        if self.breaker.state() != BreakerState::Closed || !due {
            return None;
        }
        let journaled = self.durable_in(Durable::Journal);
        if journaled.is_empty() && self.owed.is_empty() {
            return None;
        }
        let announce = self.owed.take();
        self.paying = announce.len();
        Some(MoveBack {
            announce,
            journaled,
        })
    }

    /// How a move back went: answers the debts paid, for the journal to record (a document
    /// owed again since its announcement was loaded stays owed), and, if anything failed, the
    /// wait before the next try (the debts not paid are kept).
    pub fn moved_back(&mut self, moved: Moved, now: Instant) -> (Vec<DocId>, Option<Duration>) {
        self.paying = 0;
        let paid = moved
            .announced
            .into_iter()
            .filter(|d| !self.owed.contains(d))
            .collect();
        let failed = !moved.redis_ok || !moved.unannounced.is_empty();
        self.owed.owe(moved.unannounced);
        if !failed {
            self.move_failures = 0;
            self.next_move = None;
            return (paid, None);
        }
        self.move_failures = self.move_failures.saturating_add(1);
        let exp = self.move_failures.saturating_sub(1).min(16);
        let wait = (self.retry_base * 2u32.pow(exp)).min(self.retry_max);
        self.next_move = Some(now + wait);
        (paid, Some(wait))
    }

    /// Documents served from the journal and not yet back in Redis: the ledger's journaled
    /// entries, and the documents Redis is owed (a move back's included until it answers).
    pub fn fallback_docs(&self) -> usize {
        self.ledger.count(Durable::Journal) + self.owed.len() + self.paying
    }
}

/// The journal took `version`: the ledger learns what the journal now holds for its
/// document, so that what the flusher writes from the ledger is what the journal holds, and
/// the commit of it lets the journal's entry go.
///
/// - JSON: the journal keeps the later stamp, which may be an older put's.
/// - Yjs: the journal appended the save as an increment, and so does the ledger: neither
///   copies the document on a save's path. While the ledger's entry is journaled it has had
///   every earlier increment too. When it is not (no entry, or one whose saves went to
///   Redis), the journal's other parts join it as content from elsewhere, parts unmerged
///   (the ledger merges them when it is read, off the save's path). Called after the put,
///   with nothing in between that lets an entry leave the ledger. Only the flushes' progress
///   rests on this: the journal drops an entry only once PostgreSQL committed all of it, so
///   an entry the ledger lacks part of waits in the journal (until the next start replays
///   it), it is never lost.
pub fn journaled(ledger: &Ledger, fallback: &Fallback, version: &Version) {
    let doc = &version.doc;
    if version.kind == Kind::Json {
        match fallback.get(doc) {
            Some(held) if held.hash != version.hash => ledger.absorbed(held, Durable::Journal),
            _ => ledger.saved(version, Durable::Journal, None),
        }
        return;
    }
    if ledger.durable(doc) != Some(Durable::Journal) {
        let parts = fallback.parts(doc).into_iter();
        for part in parts.filter(|p| p.hash != version.hash) {
            ledger.absorbed(part, Durable::Journal);
        }
    }
    ledger.saved(version, Durable::Journal, None);
}

/// The journal took `version`, a spill's copy of the ledger's entry as it was when the spill
/// read it: [`journaled`], unless the entry took a Yjs save since (a save sent after the Redis
/// failure that started the spill, and stored in Redis). The entry then stays durable where it
/// was: marking it journaled would say the journal holds that save, which only Redis does, and
/// a Redis that restarts empty and a crash would lose it (the simulation's seed 81133). The
/// next failure's spill journals the entry with it.
pub fn spilled(ledger: &Ledger, fallback: &Fallback, version: &Version) {
    let grown = version.kind == Kind::Yjs
        && ledger.durable(&version.doc) == Some(Durable::Cache)
        && ledger
            .get(&version.doc)
            .is_some_and(|e| e.version.hash != version.hash);
    if !grown {
        journaled(ledger, fallback, version);
    }
}

#[cfg(test)]
mod tests;
