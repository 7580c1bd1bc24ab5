//! A flush, as `Flusher::run` and the supervisor's `CollectDirty` and `Committed` handlers
//! carry it out, one call a step: the ledger read under the flusher's gate; Redis's dirty
//! documents; the CLAIM script (marks and positions); then, in a round trip of its own as
//! `RedisCache::claim_read` makes it, the content (`temp` and the log), which may hold saves
//! made after the claim; the decision per document by the real [`flushed`]; one write per
//! document by the real [`one_write_per_document`]; PostgreSQL's transactions in batches; and
//! the commit, the one path by which the ledger, the journal and Redis learn what PostgreSQL
//! recorded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::faults::Conn;
use super::replica::account;
use super::world::{at_once, short, Task, World};
use crate::doc::{combine, later, DocId, Version};
use crate::durability::announce::{announced, Announcement};
use crate::durability::flush::{flushed, Dirty, Flushed};
use crate::durability::state::Settle;
use crate::flusher::one_write_per_document;
use crate::ledger::Durable;
use crate::storage::{Claimed, Commit, DocumentLog, FlushClaims, Pending};
use crate::supervisor::Collected;

#[derive(Clone, Copy, Debug)]
enum Phase {
    Start,
    Collect,
    Claim,
    Read,
    Decide,
    Orphans,
    Resume,
    Write,
    Committed,
    RedisCommit,
    Done,
}

pub(super) struct Flush {
    /// The periodic flush: a document another replica flushed within the window is left to it
    /// (the window is open for as long as the model's `persisted_at` is set).
    fresh: bool,
    phase: Phase,
    local: BTreeMap<DocId, Version>,
    mine: Vec<DocId>,
    skip: BTreeSet<DocId>,
    docs: Vec<DocId>,
    claimed: Vec<(DocId, Pending)>,
    read: VecDeque<(DocId, Pending)>,
    orphans: Vec<Commit>,
    out: Collected,
    batches: VecDeque<Vec<Dirty>>,
    committed: Vec<Commit>,
    uncommitted: Vec<DocId>,
    announce: VecDeque<Version>,
    /// All of them: a failed call keeps them for the next move back, as the actor does.
    announcing: Vec<Announcement>,
}

impl Flush {
    pub fn new(fresh: bool) -> Flush {
        Flush {
            fresh,
            phase: Phase::Start,
            local: BTreeMap::new(),
            mine: Vec::new(),
            skip: BTreeSet::new(),
            docs: Vec::new(),
            claimed: Vec::new(),
            read: VecDeque::new(),
            orphans: Vec::new(),
            out: Collected::default(),
            batches: VecDeque::new(),
            committed: Vec::new(),
            uncommitted: Vec::new(),
            announce: VecDeque::new(),
            announcing: Vec::new(),
        }
    }

    pub fn step(mut self: Box<Self>, w: &mut World, r: usize) -> Option<Box<Flush>> {
        self.phase = match self.phase {
            Phase::Start => self.start(w, r),
            Phase::Collect => self.collect(w, r),
            Phase::Claim => self.claim(w, r),
            Phase::Read => self.read(w, r),
            Phase::Decide => self.decide(w, r),
            Phase::Orphans => self.orphans(w, r),
            Phase::Resume => self.resume(w, r),
            Phase::Write => self.write(w, r),
            Phase::Committed => self.committed(w, r),
            Phase::RedisCommit => self.redis_commit(w, r),
            Phase::Done => {
                let life = w.life(r);
                life.flushing = false;
                if !self.uncommitted.is_empty() {
                    w.spawn(r, Task::Touch(std::mem::take(&mut self.uncommitted)));
                }
                return None;
            }
        };
        Some(self)
    }

    /// The flusher, holding its gate, reads the ledger: saves in the log are read from Redis,
    /// the others' content is read here.
    fn start(&mut self, w: &mut World, r: usize) -> Phase {
        let ledger = w.life(r).ledger().clone();
        let mut waiting = ledger.waiting();
        waiting.sort_by(|a, b| a.doc.cmp(&b.doc));
        for entry in waiting {
            if entry.durable == Durable::Cache && entry.position.is_some() {
                self.mine.push(entry.doc);
            } else if let Some(e) = ledger.get(&entry.doc) {
                self.skip.insert(entry.doc.clone());
                self.local.insert(entry.doc, e.version);
            }
        }
        let (mine, local) = (self.mine.clone(), self.skip.clone());
        w.note(Some(r), || format!("flush: mine {mine:?}, local {local:?}"));
        Phase::Collect
    }

    fn collect(&mut self, w: &mut World, r: usize) -> Phase {
        if !w.life(r).allows_redis() {
            self.out.unread = self.mine.clone();
            return Phase::Resume;
        }
        let Some(mut docs) = w.redis(r, Conn::Bulk, "dirty docs", |c| at_once(c.dirty_docs()))
        else {
            return self.failed(w, r);
        };
        docs.retain(|d| !self.skip.contains(d));
        docs.extend(self.mine.iter().cloned());
        docs.sort();
        docs.dedup();
        self.docs = docs;
        Phase::Claim
    }

    fn claim(&mut self, w: &mut World, r: usize) -> Phase {
        let (docs, fresh) = (&self.docs, self.fresh.then_some(Duration::MAX));
        let Some(claims) = w.redis(r, Conn::Bulk, "claim", |c| at_once(c.claim(docs, fresh)))
        else {
            return self.failed(w, r);
        };
        let docs = std::mem::take(&mut self.docs);
        for (doc, claim) in docs.into_iter().zip(claims) {
            let mine = self.mine.contains(&doc);
            w.note(Some(r), || format!("  {doc}: {}", claimed(&claim)));
            match claim {
                Claimed::Busy => {}
                Claimed::Fresh { persisted } => {
                    if mine {
                        self.out.settled.push(Commit {
                            recorded: Some(persisted),
                            ..Commit::of(doc, String::new())
                        });
                    }
                }
                Claimed::Missing if mine => self.out.unread.push(doc),
                Claimed::Missing => self.orphans.push(Commit::of(doc, String::new())),
                Claimed::Found(p) => self.claimed.push((doc, *p)),
            }
        }
        match self.claimed.is_empty() {
            true => Phase::Decide,
            false => Phase::Read,
        }
    }

    /// The content of what was claimed, read in the next round trip.
    fn read(&mut self, w: &mut World, r: usize) -> Phase {
        let docs: Vec<DocId> = self.claimed.iter().map(|(d, _)| d.clone()).collect();
        let Some(now) = w.redis(r, Conn::Bulk, "read", |c| at_once(c.claim(&docs, None))) else {
            return self.failed(w, r);
        };
        for ((doc, at_claim), now) in std::mem::take(&mut self.claimed).into_iter().zip(now) {
            let p = completed(at_claim, now);
            w.note(Some(r), || {
                let v = p.version.as_ref().map(short);
                format!(
                    "  {doc}: read {v:?} to {:?}, persisted {:?}",
                    p.position, p.persisted
                )
            });
            self.read.push_back((doc, p));
        }
        Phase::Decide
    }

    /// `persisting::dirty`: a compaction without compacted content is completed with
    /// PostgreSQL's (a read of its own step), then the real decision.
    fn decide(&mut self, w: &mut World, r: usize) -> Phase {
        while let Some((doc, mut p)) = self.read.pop_front() {
            let (compacted, folded) = match p.compaction.take() {
                None => (None, 0),
                Some(c) if c.whole => (Some(c.version), c.folded),
                Some(c) => {
                    let stored = w.pg_load(r, &doc);
                    let merged = stored.map(|s| combine(s.into_iter().chain([c.version])));
                    match merged {
                        Some(Ok(v)) => self.decided(w, r, doc, p, v, c.folded),
                        _ if self.mine.contains(&doc) => self.out.unread.push(doc),
                        _ => {}
                    }
                    return Phase::Decide;
                }
            };
            self.decided(w, r, doc, p, compacted, folded);
        }
        Phase::Orphans
    }

    fn decided(
        &mut self,
        w: &mut World,
        r: usize,
        doc: DocId,
        p: Pending,
        compacted: Option<Version>,
        folded: u64,
    ) {
        match flushed(doc, p, compacted, folded) {
            Flushed::Write(d) => self.out.dirty.push(d),
            Flushed::Settled(c) => {
                w.note(Some(r), || {
                    format!("  {}: settled at {:?}", c.doc, c.recorded)
                });
                self.out.settled.push(c);
            }
        }
    }

    /// Dirty ids without content are committed away; then the breaker learns the read went.
    fn orphans(&mut self, w: &mut World, r: usize) -> Phase {
        if !self.orphans.is_empty() {
            let orphans = std::mem::take(&mut self.orphans);
            let done = w.redis(r, Conn::Bulk, "commit orphans", |c| {
                at_once(c.committed(&orphans))
            });
            if done.is_none() {
                return self.failed(w, r);
            }
        }
        account(w, r, true);
        Phase::Resume
    }

    /// A failed read of Redis: the breaker learns it, and the flusher writes the ledger's
    /// versions of this replica's saves instead.
    fn failed(&mut self, w: &mut World, r: usize) -> Phase {
        account(w, r, false);
        self.claimed.clear();
        self.read.clear();
        self.orphans.clear();
        self.out = Collected {
            unread: self.mine.clone(),
            ..Collected::default()
        };
        Phase::Resume
    }

    /// The flusher takes the answer: one write per document, in batches.
    fn resume(&mut self, w: &mut World, r: usize) -> Phase {
        let ledger = w.life(r).ledger().clone();
        let unread = std::mem::take(&mut self.out.unread);
        for v in unread
            .iter()
            .filter_map(|d| ledger.get(d))
            .map(|e| e.version)
        {
            let v = match self.local.remove(&v.doc) {
                Some(held) => later(v.clone(), held).unwrap_or(v),
                None => v,
            };
            self.local.insert(v.doc.clone(), v);
        }
        let local = std::mem::take(&mut self.local).into_iter().collect();
        let mut writes = one_write_per_document(local, std::mem::take(&mut self.out.dirty));
        writes.sort_by(|a, b| a.version.doc.cmp(&b.version.doc));
        let batch = w.rng.between(1, 2) as usize;
        while !writes.is_empty() {
            let rest = writes.split_off(batch.min(writes.len()));
            self.batches.push_back(std::mem::replace(&mut writes, rest));
        }
        Phase::Write
    }

    /// One batch, one transaction; after a failure no further batch starts.
    fn write(&mut self, w: &mut World, r: usize) -> Phase {
        if let Some(batch) = self.batches.pop_front() {
            match w.pg_write(r, &batch) {
                Some(written) => {
                    let commits = batch.iter().zip(written);
                    let commits = commits.map(|(d, written)| d.commit.answered(written));
                    self.committed.extend(commits);
                }
                None => {
                    let failed = std::iter::once(batch).chain(self.batches.drain(..));
                    let docs = failed.flatten().map(|d| d.version.doc);
                    self.uncommitted.extend(docs);
                }
            }
            return Phase::Write;
        }
        self.committed.append(&mut self.out.settled);
        match self.committed.is_empty() {
            true => Phase::Done,
            false => Phase::Committed,
        }
    }

    /// The supervisor's `Committed` handler: the ledger first, the journal in the background,
    /// then (breaker closed) Redis, announcing journaled content PostgreSQL took.
    fn committed(&mut self, w: &mut World, r: usize) -> Phase {
        let life = w.life(r);
        let after = life.durability.committed(&self.committed);
        let allows_redis = life.allows_redis();
        let summary: Vec<String> = self
            .committed
            .iter()
            .map(|c| format!("{} recorded {:?}", c.doc, c.recorded))
            .collect();
        w.note(Some(r), || format!("committed {summary:?}"));
        w.spawn(r, Task::Settle(after.settle));
        if !allows_redis {
            return Phase::Done;
        }
        let announce = after.announce;
        self.announce = announce.iter().map(|a| a.version.clone()).collect();
        self.announcing = announce;
        Phase::RedisCommit
    }

    fn redis_commit(&mut self, w: &mut World, r: usize) -> Phase {
        if let Some(v) = self.announce.pop_front() {
            let saved = w.redis(r, Conn::Main, "save (announce)", |c| at_once(c.restore(&v)));
            if saved.is_none() {
                let unannounced = std::mem::take(&mut self.announcing);
                let settle = w.life(r).durability.missed(unannounced, &self.committed);
                w.spawn(r, Task::Settle(settle));
                account(w, r, false);
                return Phase::Done;
            }
            return Phase::RedisCommit;
        }
        let done = &self.committed;
        let ok = w.redis(r, Conn::Main, "commit", |c| at_once(c.committed(done)));
        let unannounced = std::mem::take(&mut self.announcing);
        let durability = &mut w.life(r).durability;
        let settle = match &ok {
            Some(stale) => Settle {
                owe: durability.lost_logs(&self.committed, Some(stale)),
                forget: announced(&unannounced),
            },
            None => durability.missed(unannounced, &self.committed),
        };
        w.spawn(r, Task::Settle(settle));
        account(w, r, ok.is_some());
        Phase::Done
    }
}

/// The claim's answer completed by the read of the content that follows it: the marks are the
/// claim's, the content is what `temp` and the log held when read (a save in between is in it).
fn completed(at_claim: Pending, read: Claimed) -> Pending {
    match read {
        Claimed::Found(now) => Pending {
            persisted: at_claim.persisted,
            incarnation: at_claim.incarnation,
            dirty: at_claim.dirty,
            log_len: at_claim.log_len,
            ..*now
        },
        // The log was gone when read: nothing after what PostgreSQL recorded.
        _ => Pending {
            version: None,
            position: at_claim.persisted,
            added: 0,
            compaction: None,
            ..at_claim
        },
    }
}

fn claimed(c: &Claimed) -> String {
    match c {
        Claimed::Found(p) => format!(
            "claimed, dirty {}, persisted {:?} of incarnation {}",
            p.dirty, p.persisted, p.incarnation
        ),
        other => format!("{other:?}"),
    }
}
