//! The fallback's writer thread: the only code that changes the entries or the journal, so the
//! two change in the same order. It batches concurrent puts into one sync, applies the SPEC §6
//! rules to each put, records commits, and compacts the journal when its trigger says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::error::JournalError;
use super::journal::Journal;
use super::record;
use crate::doc::{later, DocId, Kind, Version};

/// Most puts written under one sync: bounds the writer's buffer without costing throughput.
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

pub(crate) enum Command {
    Put {
        version: Version,
        reply: Reply,
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
            let queued = std::iter::once(first).chain(commands.try_iter().take(MAX_BATCH - 1));
            for command in queued {
                match command {
                    Command::Put { version, reply } => puts.push((version, reply)),
                    Command::Committed { done, reply } => {
                        self.put_batch(std::mem::take(&mut puts));
                        let _ = reply.send(self.commit(&done));
                    }
                }
            }
            self.put_batch(puts);
        }
        debug!("fallback journal writer stopped");
    }

    fn put_batch(&mut self, puts: Vec<(Version, Reply)>) {
        // The newest version of each document this batch, not yet durable.
        let mut staged: HashMap<DocId, Version> = HashMap::new();
        // Answered once the batch is synced: a put superseded by a staged version is only as
        // durable as that version.
        let mut waiting = Vec::with_capacity(puts.len());
        for (version, reply) in puts {
            let doc = version.doc.clone();
            let held = match staged.get(&doc) {
                Some(staged) => Some(staged.clone()),
                None => self.shared.entries().get(&doc).cloned(),
            };
            match resolve(held, version) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok(Some(next)) => {
                    staged.insert(doc, next);
                    waiting.push(reply);
                }
                Ok(None) if staged.contains_key(&doc) => waiting.push(reply),
                // A later version is already durable: nothing to write.
                Ok(None) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        if staged.is_empty() {
            return;
        }
        let written = self.write_staged(&staged);
        self.publish_len();
        let result = match written {
            Ok(()) => {
                let mut entries = self.shared.entries();
                for (doc, version) in staged {
                    self.live_bytes += record::put_len(&version);
                    if let Some(old) = entries.insert(doc, version) {
                        self.live_bytes -= record::put_len(&old);
                    }
                }
                Ok(())
            }
            Err(error) => {
                warn!(%error, puts = waiting.len(), "fallback journal write failed");
                Err(error)
            }
        };
        let compact = result.is_ok();
        for reply in waiting {
            let _ = reply.send(result.clone());
        }
        if compact {
            self.compact_if_due(MIN_DEAD_BYTES);
        }
    }

    fn write_staged(&mut self, staged: &HashMap<DocId, Version>) -> Result<(), JournalError> {
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
