//! One replica's durability state and its rules, as pure code with time passed in. It decides;
//! the cache supervisor carries out what it decides against Redis, the journal and PostgreSQL,
//! and the simulation (`sim`) drives the very same calls one step at a time.
//!
//! It holds:
//! - the [`Ledger`]: what this replica acknowledged that PostgreSQL lacks, and where each
//!   version is durable besides memory (Redis, or the journal);
//! - the [`Breaker`]: whether saves go to Redis;
//! - the announcements a commit could not write into Redis yet ([`Pending`]): content
//!   PostgreSQL holds that Redis may lack;
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

use super::announce::{after_commit, announced, Announcement, Pending};

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

/// What a commit leaves to do: the journal's entries to forget now, and the announcements to
/// write into Redis (none while Redis is out of use: they are kept for the next move back).
#[derive(Debug, Default)]
pub struct AfterCommit {
    pub forget: Vec<CommittedContent>,
    pub announce: Vec<Announcement>,
}

/// One move back into Redis: the announcements kept, then the journaled versions.
#[derive(Debug, Default)]
pub struct MoveBack {
    pub announce: Vec<Announcement>,
    pub journaled: Vec<Version>,
}

pub struct Durability {
    ledger: Ledger,
    breaker: Breaker,
    announce: Pending,
    move_failures: u32,
    next_move: Option<Instant>,
    retry_base: Duration,
    retry_max: Duration,
}

impl Durability {
    /// A replica's state at start: the journal's entries are what PostgreSQL lacked when the
    /// process last stopped, and seed the ledger.
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
            announce: Pending::default(),
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
    /// [`after_commit`]'s. While Redis is out of use the announcements are kept for the next
    /// move back ([`Durability::unannounced`]), and the journal lets go of what they rest on
    /// now: the journal holds what PostgreSQL lacks, and Redis may stay away for good (a crash
    /// before the move back then leaves Redis to its TTL and the fill from PostgreSQL).
    pub fn committed(&mut self, done: &[Commit]) -> AfterCommit {
        let left = self.ledger.committed(done);
        let (mut forget, announce) = after_commit(done, left);
        if !self.breaker.allows_redis() {
            forget.extend(self.unannounced(announce));
            return AfterCommit {
                forget,
                announce: Vec::new(),
            };
        }
        AfterCommit { forget, announce }
    }

    /// Announcements that could not be written: kept for the next move back, and what they
    /// rested on, which the journal lets go of now (answered).
    pub fn unannounced(&mut self, mut announce: Vec<Announcement>) -> Vec<CommittedContent> {
        let forget = announce
            .iter_mut()
            .flat_map(|a| std::mem::take(&mut a.forget))
            .collect();
        self.announce.keep(announce);
        forget
    }

    /// The move back, if one is due at `now` (breaker closed, past the backoff) and there is
    /// something to move: the announcements kept (taken out) and the journaled versions, by
    /// document. Each journaled version moved is then told to the ledger
    /// ([`Ledger::moved`]); the outcome of the whole, to [`Durability::moved_back`].
    pub fn move_back(&mut self, now: Instant) -> Option<MoveBack> {
        let due = self.next_move.is_none_or(|at| now >= at);
        if self.breaker.state() != BreakerState::Closed || !due {
            return None;
        }
        let journaled = self.durable_in(Durable::Journal);
        if journaled.is_empty() && self.announce.is_empty() {
            return None;
        }
        Some(MoveBack {
            announce: self.announce.take(),
            journaled,
        })
    }

    /// How a move back went: a failure keeps its announcements and backs off (answers the
    /// wait); a success lets the journal forget what the announcements rested on (answered).
    pub fn moved_back(
        &mut self,
        ok: bool,
        announce: Vec<Announcement>,
        now: Instant,
    ) -> Result<Vec<CommittedContent>, Duration> {
        if ok {
            self.move_failures = 0;
            self.next_move = None;
            return Ok(announced(&announce));
        }
        self.announce.keep(announce);
        self.move_failures = self.move_failures.saturating_add(1);
        let exp = self.move_failures.saturating_sub(1).min(16);
        let wait = (self.retry_base * 2u32.pow(exp)).min(self.retry_max);
        self.next_move = Some(now + wait);
        Err(wait)
    }

    /// Documents served from the journal and not yet back in Redis: the ledger's journaled
    /// entries, and the announcements kept.
    pub fn fallback_docs(&self) -> usize {
        self.ledger.count(Durable::Journal) + self.announce.len()
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
