//! The fallback's writer thread: the only code that changes the entries or the journal, so the
//! two change in the same order. It batches whatever puts are queued (single versions and whole
//! groups alike) into one write and one sync, applies the SPEC §6 rules to each version,
//! records commits, merges Yjs increments once they are due (after answering the batch that
//! made them due, see [`entry`](super::entry)), and compacts the journal when its trigger says so.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::entry::{check_update, Entry};
use super::error::JournalError;
use super::journal::Journal;
use super::record;
use super::staged::{change, Change, Staged};
use super::CommittedContent;
use crate::doc::{CombineError, DocId, Version};

/// Versions (and commits) drained from the queue before the batch is written: bounds the
/// writer's buffer without costing throughput. A group is never split, so one larger than this
/// is still one write and one sync.
const MAX_BATCH: usize = 1024;
/// Superseded bytes a journal may hold beyond its live bytes before a put compacts it.
pub(crate) const MIN_DEAD_BYTES: u64 = 64 * 1024;

/// State read by any thread and written only by the writer thread.
pub(crate) struct Shared {
    /// Locked only for map operations, never across IO, a merge or an `.await`.
    entries: Mutex<HashMap<DocId, Entry>>,
    /// Documents whose PostgreSQL content Redis is owed (see [`Command::Committed`]).
    owed: Mutex<BTreeSet<DocId>>,
    pub(crate) journal_bytes: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        entries: HashMap<DocId, Entry>,
        owed: BTreeSet<DocId>,
        journal_bytes: u64,
    ) -> Shared {
        Shared {
            entries: Mutex::new(entries),
            owed: Mutex::new(owed),
            journal_bytes: AtomicU64::new(journal_bytes),
        }
    }

    pub(crate) fn entries(&self) -> MutexGuard<'_, HashMap<DocId, Entry>> {
        // Nothing panics while holding the lock, and a map is never left half-updated anyway.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn owed(&self) -> MutexGuard<'_, BTreeSet<DocId>> {
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) type Reply = oneshot::Sender<Result<(), JournalError>>;
/// A put's answer: one result per version, in the order they were put.
pub(crate) type PutReply = oneshot::Sender<Vec<Result<(), JournalError>>>;

pub(crate) enum Command {
    /// One version (a save) or many (a spill): all of them are written with whatever else is
    /// queued, under one sync, and answered together once it is done.
    Put {
        versions: Vec<Version>,
        reply: PutReply,
    },
    /// PostgreSQL committed `done`; Redis is owed PostgreSQL's content of each of `owe`
    /// (recorded before, and synced with, the commits that let go of what it rested on).
    Committed {
        owe: Vec<DocId>,
        done: Vec<CommittedContent>,
        reply: Reply,
    },
    /// Redis was given PostgreSQL's content of `docs`: no longer owed.
    Announced { docs: Vec<DocId>, reply: Reply },
}

pub(crate) struct Writer<'a> {
    journal: Journal,
    shared: &'a Shared,
    /// Bytes the entries' records take in a compacted journal; the rest of the file is dead.
    live_bytes: u64,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(journal: Journal, shared: &'a Shared) -> Writer<'a> {
        let owed: u64 = shared.owed().iter().map(record::owed_len).sum();
        let live_bytes = owed
            + shared
                .entries()
                .values()
                .map(Entry::record_len)
                .sum::<u64>();
        Writer {
            journal,
            shared,
            live_bytes,
        }
    }

    /// Takes everything queued, writes the puts as one batch, runs commits in their place in the
    /// queue, until every sender is gone.
    pub(crate) fn run(mut self, commands: &mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut puts = Vec::new();
            let mut drained = 0;
            let mut next = Some(first);
            while let Some(command) = next {
                match command {
                    Command::Put { versions, reply } => {
                        drained += versions.len();
                        puts.push((versions, reply));
                    }
                    Command::Committed { owe, done, reply } => {
                        drained += 1;
                        self.put_batch(std::mem::take(&mut puts));
                        let _ = reply.send(self.commit(&owe, &done));
                    }
                    Command::Announced { docs, reply } => {
                        drained += 1;
                        self.put_batch(std::mem::take(&mut puts));
                        let _ = reply.send(self.announced(&docs));
                    }
                }
                next = match drained < MAX_BATCH {
                    true => commands.try_recv().ok(),
                    false => None,
                };
            }
            self.put_batch(puts);
        }
        debug!("fallback journal writer stopped");
    }

    /// Writes every version of `puts` that changes an entry in one append, so under one sync,
    /// then answers each put. No version is answered `Ok` before that sync, and a failed
    /// append fails every version that waited on it, whichever put it came in. Merges that the
    /// batch made due come after the answers.
    fn put_batch(&mut self, puts: Vec<(Vec<Version>, PutReply)>) {
        let mut staged: HashMap<DocId, Staged> = HashMap::new();
        let answers: Vec<(Vec<Answer>, PutReply)> = puts
            .into_iter()
            .map(|(versions, reply)| {
                let answers = versions
                    .into_iter()
                    .map(|version| self.stage(&mut staged, version))
                    .collect();
                (answers, reply)
            })
            .collect();
        let touched: Vec<DocId> = staged.keys().cloned().collect();
        let synced = match touched.is_empty() {
            false => self.write_staged(staged),
            true => Ok(()),
        };
        if let Err(error) = &synced {
            let waiting = answers.iter().flat_map(|(a, _)| a).filter(|a| a.is_none());
            warn!(%error, versions = waiting.count(), "fallback journal write failed");
        }
        for (answers, reply) in answers {
            let answers = answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| synced.clone()));
            let _ = reply.send(answers.collect());
        }
        if !touched.is_empty() && synced.is_ok() {
            for doc in &touched {
                let due = self.shared.entries().get(doc).is_some_and(Entry::merge_due);
                if due {
                    let _ = self.merge(doc);
                }
            }
            self.compact_if_due(MIN_DEAD_BYTES);
        }
    }

    /// Applies the SPEC §6 rules to `version` against what this batch staged or the entries
    /// hold: its answer now (refused, or nothing to write), or `None` when it waits on the
    /// batch's sync (a version superseded by a staged one is only as durable as that one).
    fn stage(&self, staged: &mut HashMap<DocId, Staged>, version: Version) -> Answer {
        // Outside the entries' lock: it hashes the content.
        if let Err(e) = record::check_hash(&version) {
            return Some(Err(e));
        }
        let doc = version.doc.clone();
        let change = {
            let entries = self.shared.entries();
            change(entries.get(&doc), staged.get(&doc), version)
        };
        let (version, replaces) = match change {
            Err(e) => return Some(Err(e)),
            Ok(Change::None) if staged.contains_key(&doc) => return None,
            // A later version is already durable: nothing to write.
            Ok(Change::None) => return Some(Ok(())),
            Ok(Change::Replace(v)) => (v, true),
            Ok(Change::Append(v)) => (v, false),
        };
        // Outside the entries' lock: the check decodes the update.
        let checked = match replaces {
            true => Ok(()),
            false => check_update(&version).map_err(JournalError::from),
        };
        if let Err(e) = checked.and_then(|()| record::check_fits(&version)) {
            return Some(Err(e));
        }
        let slot = staged.entry(doc).or_default();
        match replaces {
            true => *slot = Staged::replacing(version),
            false => slot.increments.push(version),
        }
        None
    }

    /// Appends `staged` and, once that is synced, makes it the entries.
    fn write_staged(&mut self, staged: HashMap<DocId, Staged>) -> Result<(), JournalError> {
        let written = self.append_staged(&staged);
        self.publish_len();
        written?;
        let mut entries = self.shared.entries();
        for (doc, Staged { base, increments }) in staged {
            let entry = match base {
                Some(base) => {
                    let new = Entry::new(base);
                    self.live_bytes += new.record_len();
                    if let Some(old) = entries.insert(doc.clone(), new) {
                        self.live_bytes -= old.record_len();
                    }
                    entries.get_mut(&doc)
                }
                None => entries.get_mut(&doc),
            };
            let entry = entry.expect("increments are staged for a held or staged entry");
            for update in increments {
                self.live_bytes += record::increment_len(&update);
                entry.push(update);
            }
        }
        Ok(())
    }

    fn append_staged(&mut self, staged: &HashMap<DocId, Staged>) -> Result<(), JournalError> {
        let mut buf = Vec::new();
        for Staged { base, increments } in staged.values() {
            if let Some(base) = base {
                record::encode_put(base, &mut buf)?;
            }
            for update in increments {
                record::encode_increment(update, &mut buf)?;
            }
        }
        self.heal()?;
        self.journal.append(&buf)
    }

    /// Merges the increments of `doc`'s entry into its base, outside the entries' lock (the
    /// writer is the only one that changes an entry, so none changes meanwhile).
    fn merge(&mut self, doc: &DocId) -> Result<(), CombineError> {
        let held = self
            .shared
            .entries()
            .get(doc)
            .filter(|e| !e.is_merged())
            .cloned();
        let Some(mut entry) = held else {
            return Ok(());
        };
        let before = entry.record_len();
        let merged = entry.merge();
        if merged.is_ok() {
            self.live_bytes = self.live_bytes - before + entry.record_len();
        }
        self.shared.entries().insert(doc.clone(), entry);
        merged
    }

    /// PostgreSQL committed these versions: record that durably, then let the entries go. An
    /// entry leaves only if its whole content, every increment merged in, is the committed
    /// version: one whose increment was put after the flush read it is not, and stays. What
    /// Redis is owed is recorded first, in the same write: a crash can keep the debt and lose
    /// the commit (the entry is flushed again), never the other way round.
    fn commit(&mut self, owe: &[DocId], done: &[CommittedContent]) -> Result<(), JournalError> {
        let mut leaving: HashMap<&DocId, &String> = HashMap::new();
        for (doc, hash, stamp) in done {
            // No content hashes to "": such a commit only settles a log position.
            if hash.is_empty() || leaving.contains_key(doc) {
                continue;
            }
            if self.merge(doc).is_err() {
                continue;
            }
            let held = self
                .shared
                .entries()
                .get(doc)
                // The same content under a larger stamp is a later version (SPEC §6): a
                // commit of it under a smaller one does not let it go.
                .map(|e| e.base().hash == *hash && e.base().stamp <= *stamp);
            if held == Some(true) {
                leaving.insert(doc, hash);
            }
        }
        let owe: BTreeSet<&DocId> = {
            let owed = self.shared.owed();
            owe.iter().filter(|d| !owed.contains(*d)).collect()
        };
        if leaving.is_empty() && owe.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for doc in &owe {
            record::encode_owed(doc, true, &mut buf);
        }
        for (doc, hash) in &leaving {
            record::encode_committed(doc, hash, &mut buf);
        }
        if let Err(error) = self.append(&buf) {
            // The entries stay: had they left memory, a restart would replay them from records
            // that nothing marks committed. Holding them costs at most a refused re-flush.
            warn!(%error, docs = leaving.len(), "fallback journal could not record a commit");
            return Err(error);
        }
        {
            let mut owed = self.shared.owed();
            for doc in owe {
                self.live_bytes += record::owed_len(doc);
                owed.insert(doc.clone());
            }
        }
        {
            let mut entries = self.shared.entries();
            for doc in leaving.keys() {
                if let Some(old) = entries.remove(*doc) {
                    self.live_bytes -= old.record_len();
                }
            }
        }
        self.compact_if_due(0);
        Ok(())
    }

    /// Redis was given PostgreSQL's content of `docs`: the debts leave once a record saying so
    /// is synced.
    fn announced(&mut self, docs: &[DocId]) -> Result<(), JournalError> {
        let paid: Vec<&DocId> = {
            let owed = self.shared.owed();
            docs.iter().filter(|d| owed.contains(*d)).collect()
        };
        if paid.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for doc in &paid {
            record::encode_owed(doc, false, &mut buf);
        }
        if let Err(error) = self.append(&buf) {
            warn!(%error, docs = paid.len(), "fallback journal could not record an announcement");
            return Err(error);
        }
        {
            let mut owed = self.shared.owed();
            for doc in paid {
                if owed.remove(doc) {
                    self.live_bytes -= record::owed_len(doc);
                }
            }
        }
        self.compact_if_due(0);
        Ok(())
    }

    /// Rewrites the journal with the live entries only, one merged record each, once its dead
    /// bytes exceed both its live bytes and `min_dead`. A failure is logged and changes nothing:
    /// the journal is still whole and correct, only longer.
    fn compact_if_due(&mut self, min_dead: u64) {
        let dead = self.journal.len().saturating_sub(self.live_bytes);
        if dead <= self.live_bytes || dead <= min_dead {
            return;
        }
        // The rewrite costs every entry anyway: merge what waits (one that does not merge is
        // written as its parts).
        let unmerged: Vec<DocId> = {
            let entries = self.shared.entries();
            let waiting = entries.iter().filter(|(_, e)| !e.is_merged());
            waiting.map(|(doc, _)| doc.clone()).collect()
        };
        for doc in &unmerged {
            let _ = self.merge(doc);
        }
        let live: Vec<Entry> = self.shared.entries().values().cloned().collect();
        let owed = self.shared.owed().clone();
        let result = self.journal.rewrite(&live, &owed);
        self.publish_len();
        match result {
            Ok(()) => debug!(docs = live.len(), dead, "fallback journal compacted"),
            Err(error) => warn!(%error, dead, "fallback journal compaction failed"),
        }
    }

    /// After a failure that left the journal unusable (e.g. its file was removed), rebuilds it
    /// from memory, which holds exactly what was acknowledged, before anything is appended.
    fn heal(&mut self) -> Result<(), JournalError> {
        if self.journal.is_healthy() {
            return Ok(());
        }
        let held: Vec<Entry> = self.shared.entries().values().cloned().collect();
        let owed = self.shared.owed().clone();
        self.journal.rewrite(&held, &owed)?;
        warn!(docs = held.len(), "fallback journal rebuilt from memory");
        Ok(())
    }

    /// Appends `buf` (whole records) and syncs it, rebuilding the journal first if it must be.
    fn append(&mut self, buf: &[u8]) -> Result<(), JournalError> {
        let written = self.heal().and_then(|()| self.journal.append(buf));
        self.publish_len();
        written
    }

    fn publish_len(&self) {
        let len = self.journal.len();
        self.shared.journal_bytes.store(len, Ordering::Relaxed);
    }
}

/// A version's answer once it is staged: `Some` when known at once, `None` when it is the
/// batch's sync's.
type Answer = Option<Result<(), JournalError>>;
