//! The fallback's writer thread: the only code that changes the entries or the journal, so the
//! two change in the same order. It batches whatever puts are queued (single versions and whole
//! groups alike) into one write and one sync, applies the SPEC §6 rules to each version,
//! records commits, and compacts the journal when its trigger says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::error::JournalError;
use super::journal::Journal;
use super::record;
use crate::doc::{later, DocId, Kind, Version};

/// Versions (and commits) drained from the queue before the batch is written: bounds the
/// writer's buffer without costing throughput. A group is never split, so one larger than this
/// is still one write and one sync.
const MAX_BATCH: usize = 1024;
/// Superseded bytes a journal may hold beyond its live bytes before a put compacts it.
pub(crate) const MIN_DEAD_BYTES: u64 = 64 * 1024;

/// State read by any thread and written only by the writer thread.
pub(crate) struct Shared {
    /// Locked only for map operations, never across IO or an `.await`.
    entries: Mutex<HashMap<DocId, Version>>,
    pub(crate) journal_bytes: AtomicU64,
}

impl Shared {
    pub(crate) fn new(entries: HashMap<DocId, Version>, journal_bytes: u64) -> Shared {
        Shared {
            entries: Mutex::new(entries),
            journal_bytes: AtomicU64::new(journal_bytes),
        }
    }

    pub(crate) fn entries(&self) -> MutexGuard<'_, HashMap<DocId, Version>> {
        // Nothing panics while holding the lock, and a map is never left half-updated anyway.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
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
    Committed {
        done: Vec<(DocId, String)>,
        reply: Reply,
    },
}

pub(crate) struct Writer<'a> {
    journal: Journal,
    shared: &'a Shared,
    /// Bytes the entries' records take in a compacted journal; the rest of the file is dead.
    live_bytes: u64,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(journal: Journal, shared: &'a Shared) -> Writer<'a> {
        let live_bytes = shared.entries().values().map(record::put_len).sum();
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
                    Command::Committed { done, reply } => {
                        drained += 1;
                        self.put_batch(std::mem::take(&mut puts));
                        let _ = reply.send(self.commit(&done));
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
    /// append fails every version that waited on it, whichever put it came in.
    fn put_batch(&mut self, puts: Vec<(Vec<Version>, PutReply)>) {
        // The newest version of each document this batch, not yet durable.
        let mut staged: HashMap<DocId, Version> = HashMap::new();
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
        let wrote = !staged.is_empty();
        let synced = match wrote {
            true => self.write_staged(staged),
            false => Ok(()),
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
        if wrote && synced.is_ok() {
            self.compact_if_due(MIN_DEAD_BYTES);
        }
    }

    /// Applies the SPEC §6 rules to `version` against what this batch staged or the entries
    /// hold: its answer now (refused, or nothing to write), or `None` when it waits on the
    /// batch's sync (a version superseded by a staged one is only as durable as that one).
    fn stage(&self, staged: &mut HashMap<DocId, Version>, version: Version) -> Answer {
        let doc = version.doc.clone();
        let held = match staged.get(&doc) {
            Some(staged) => Some(staged.clone()),
            None => self.shared.entries().get(&doc).cloned(),
        };
        match resolve(held, version) {
            Err(e) => Some(Err(e)),
            Ok(Some(next)) => match record::check_fits(&next) {
                Err(e) => Some(Err(e)),
                Ok(()) => {
                    staged.insert(doc, next);
                    None
                }
            },
            Ok(None) if staged.contains_key(&doc) => None,
            // A later version is already durable: nothing to write.
            Ok(None) => Some(Ok(())),
        }
    }

    /// Appends `staged` and, once that is synced, makes it the entries.
    fn write_staged(&mut self, staged: HashMap<DocId, Version>) -> Result<(), JournalError> {
        let written = self.append_staged(&staged);
        self.publish_len();
        written?;
        let mut entries = self.shared.entries();
        for (doc, version) in staged {
            self.live_bytes += record::put_len(&version);
            if let Some(old) = entries.insert(doc, version) {
                self.live_bytes -= record::put_len(&old);
            }
        }
        Ok(())
    }

    fn append_staged(&mut self, staged: &HashMap<DocId, Version>) -> Result<(), JournalError> {
        let mut buf = Vec::new();
        for version in staged.values() {
            record::encode_put(version, &mut buf)?;
        }
        self.heal()?;
        self.journal.append(&buf)
    }

    /// PostgreSQL committed these versions: record that durably, then let the entries go.
    fn commit(&mut self, done: &[(DocId, String)]) -> Result<(), JournalError> {
        let leaving: HashMap<&DocId, &String> = {
            let entries = self.shared.entries();
            let held = |(doc, hash): &&(DocId, String)| {
                entries.get(doc).is_some_and(|held| held.hash == *hash)
            };
            done.iter().filter(held).map(|(d, h)| (d, h)).collect()
        };
        if leaving.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for (doc, hash) in &leaving {
            record::encode_committed(doc, hash, &mut buf);
        }
        let written = self.heal().and_then(|()| self.journal.append(&buf));
        self.publish_len();
        if let Err(error) = written {
            // The entries stay: had they left memory, a restart would replay them from records
            // that nothing marks committed. Holding them costs at most a refused re-flush.
            warn!(%error, docs = leaving.len(), "fallback journal could not record a commit");
            return Err(error);
        }
        {
            let mut entries = self.shared.entries();
            for doc in leaving.keys() {
                if let Some(old) = entries.remove(*doc) {
                    self.live_bytes -= record::put_len(&old);
                }
            }
        }
        self.compact_if_due(0);
        Ok(())
    }

    /// Rewrites the journal with the live entries only, once its dead bytes exceed both its
    /// live bytes and `min_dead`. A failure is logged and changes nothing: the journal is still
    /// whole and correct, only longer.
    fn compact_if_due(&mut self, min_dead: u64) {
        let dead = self.journal.len().saturating_sub(self.live_bytes);
        if dead <= self.live_bytes || dead <= min_dead {
            return;
        }
        let live: Vec<Version> = self.shared.entries().values().cloned().collect();
        let result = self.journal.rewrite(&live);
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
        let held: Vec<Version> = self.shared.entries().values().cloned().collect();
        self.journal.rewrite(&held)?;
        warn!(docs = held.len(), "fallback journal rebuilt from memory");
        Ok(())
    }

    fn publish_len(&self) {
        let len = self.journal.len();
        self.shared.journal_bytes.store(len, Ordering::Relaxed);
    }
}

/// A version's answer once it is staged: `Some` when known at once, `None` when it is the
/// batch's sync's.
type Answer = Option<Result<(), JournalError>>;

/// What `new` makes of the document's entry `held` (SPEC §6 "Versions"): `Some` version to
/// write, or `None` when `held` already is, or is later than, `new`.
fn resolve(held: Option<Version>, new: Version) -> Result<Option<Version>, JournalError> {
    record::check_hash(&new)?;
    let Some(held) = held else {
        return Ok(Some(new));
    };
    if held.kind == Kind::Json && new.kind == Kind::Json && held.stamp > new.stamp {
        return Ok(None);
    }
    // `new` first: between equal JSON stamps (or none, from callers without stamps) the later
    // put wins, as it always did.
    let (held_hash, held_stamp) = (held.hash.clone(), held.stamp.clone());
    let next = later(new, held)?;
    if next.hash == held_hash && next.stamp <= held_stamp {
        return Ok(None);
    }
    Ok(Some(next))
}
