//! The fallback store: where updates are acknowledged from while Redis is down.
//!
//! An entry means: **PostgreSQL does not have this version yet.** It leaves only once PostgreSQL
//! committed it ([`Fallback::committed`] with its hash); a newer put for the same document
//! replaces it. So every entry is dirty, and the map doubles as the "modified documents" set
//! that Redis keeps in `modifiedDocs`. Moving entries into Redis does not make them leave:
//! Redis is a cache.
//!
//! Puts follow SPEC §6 "Versions": a JSON version whose stamp is smaller than the entry's leaves
//! the entry as it is (the put answers `Ok`: a later version is already durable); a Yjs version
//! joins the entry, never replaces it. A Yjs save is an increment (the updates its room applied
//! since its last save), and it is journaled and held as one: the entry is a base and the
//! increments put since, which the writer thread merges into the base once they add up to about
//! the document's size, after answering the puts ([`entry`] says why). So a put costs what it
//! appends, not the document. A commit's hash names the whole content, so an entry leaves only
//! when its base and every increment, merged, are exactly what PostgreSQL committed: an
//! increment put after the flush read the entry makes it differ, and it stays.
//!
//! An acknowledged update must survive a SIGKILL, so memory is only a view of the journal: a
//! version enters the map after its record is synced, an entry leaves after the record saying
//! PostgreSQL committed it is synced, and the journal is replayed into the map at start. All
//! writes go through one writer thread, which keeps the map and the journal in the same order,
//! batches concurrent puts into one sync, and keeps blocking file IO off the async runtime.
//! [`Fallback::put_all`] hands it many versions as one put, so a spill of thousands of
//! documents costs one sync, not one each.
//! File IO goes through [`JournalIo`]: [`FileIo`] for real, [`MemoryIo`] for tests without a
//! disk, [`FaultyIo`] around either to fill the disk on command.
//!
//! One process at a time uses a journal: [`FileIo`] holds an exclusive `flock` on
//! `dir/journal.lock` while the journal is open, so a second replica started on the same
//! directory, or `docroom replay-journal` run on a live replica's directory, is refused
//! ([`JournalError::InUse`]) instead of interleaving records with it.
//!
//! # Record format
//!
//! ```text
//! format 2 (written):
//!   record  = magic DB 6A 72 F2 | u32 LE payload length | u32 LE crc32(payload) | payload
//!   payload = u8 format (2) | u8 type (0 put json, 1 put yjs, 2 committed, 3 yjs increment,
//!             4 owed) | u8 id length | id | u8 hash length | hash (lowercase hex; empty: owed)
//!           | put only: stamp | content (the rest, arbitrary bytes)
//!           | increment only: content (the rest: a Yjs update; hash is its own)
//!           | owed only: u8 01 (owed) or 00 (paid)
//!   stamp   = 00 (none) | 01 u64 LE millis, u32 LE counter, u8 replica length, replica
//! format 1 (read only; written by releases before stamps):
//!   record  = u32 LE payload length | u32 LE crc32(payload) | payload
//!   payload = u8 format (1) | u8 kind (0 json, 1 yjs) | u8 id length | id
//!           | u8 hash length | hash | content
//! ```
//!
//! A put record holds the document's whole entry as it is after the put; an increment record
//! holds one Yjs update that joins the entry (the writer writes one only for a Yjs entry it
//! holds); a committed record says PostgreSQL committed `(id, hash)`, and on replay removes the
//! entry if its content, the document's last put record and every increment record after it
//! merged, is that version. An owed record says Redis is owed PostgreSQL's content of the
//! document, or (00) was given it: a commit let go of content Redis may lack before it could be
//! announced there ([`Fallback::settle`]), and the next move back into Redis must announce
//! what PostgreSQL holds. Replay applies records in order: a document's last put record and
//! the increments after it are its live records, earlier ones are dead bytes until compaction.
//! A journal is format-1 records followed by format-2 records: after the first format-2
//! record, a record without the magic is corrupt. Type 3 came after the other format-2 types:
//! a release without it skips increment records as corrupt, so a journal holding any must not
//! be replayed by one; type 4 came last, and a release without it skips owed records (losing
//! only the announcement: Redis then holds older content until its TTL).
//!
//! # Replay: skip, do not stop
//!
//! Replay reads one record at a time, so memory follows the entries, not the file. A record
//! whose frame is intact but whose content is not (checksum mismatch with a record right after
//! it, unknown format or type, invalid id, hash not matching the content) is skipped with a
//! `warn!` naming its offset, counted in [`ReplayReport`] ([`Fallback::replay_report`]), and
//! replay goes on. When the frame itself is broken (no magic, a length running past the end of
//! the file, a checksum mismatch with no record after it), replay looks for the next valid
//! format-2 record (magic, length within the file, checksum and payload good) and resumes
//! there. If there is none, what follows is a torn tail, a write a crash interrupted (which
//! includes a last record with a bad checksum), and it is truncated. The per-record magic is
//! what tells a garbage length in the middle from a torn tail. Nothing valid is lost to a bad
//! record, with two limits: format-1 records after a broken format-1 frame cannot be found
//! again (they have no magic), and a Yjs state could contain bytes that pass as a record, which
//! a search starting inside it would take for one.
//!
//! # Compaction
//!
//! The journal is rewritten with one put record per entry, its increments merged first (temp
//! file, sync, rename, sync of the directory: a crash leaves the old journal or the new one,
//! whole) when its dead bytes (those not in an entry's current records: its base's and its
//! increments') exceed its live bytes and, after a put, 64 KiB too; after a commit no minimum
//! applies, and a journal with no entries left is truncated to nothing. So the file stays under
//! twice the live entries plus 64 KiB and one batch; a merge turns the increments' records
//! into dead bytes, which is what makes the journal of a busy Yjs document compact. A failed
//! compaction
//! changes nothing: every committed record is already durable, so no stale version can come
//! back; only the file stays longer until the next try.

mod entry;
mod error;
mod faulty_io;
mod io;
mod journal;
mod memory_io;
mod record;
mod replay;
mod staged;
mod writer;

#[cfg(test)]
pub(crate) mod test_dir;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::doc::{DocId, Stamp, Version};
use entry::Entry;
pub use error::JournalError;
pub use faulty_io::{Faults, FaultyIo};
pub use io::{FileIo, JournalIo, ReadSeek};
use journal::Journal;
pub use memory_io::MemoryIo;
pub use replay::ReplayReport;
use writer::{Command, Shared, Writer};

/// What PostgreSQL committed of a document: the content's hash and its stamp (JSON; `None` for
/// Yjs and for content written before stamps). An entry leaves only if it holds that content
/// under a stamp no larger: equal content under a larger stamp is a later version.
pub type CommittedContent = (DocId, String, Option<Stamp>);

/// The journaled fallback store.
///
/// Cloning is shallow (one `Arc`), so every actor that may need the fallback holds its own clone.
/// When the last clone is dropped the writer thread is stopped and joined.
#[derive(Clone)]
pub struct Fallback {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    replayed: ReplayReport,
    /// `Some` until drop; dropping it is what tells the writer thread to stop.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

impl Fallback {
    /// Opens (creating the directory if needed) the journal at `dir/journal.log`, replays it
    /// (see the module doc: corrupt records are skipped, a torn tail is truncated, never a
    /// panic) and starts the writer thread.
    /// Only one `Fallback` at a time has a directory (a lock file, see [`FileIo`]): another
    /// gets [`JournalError::InUse`].
    pub fn open(dir: &Path) -> Result<Fallback, JournalError> {
        let io = FileIo::open(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => JournalError::InUse {
                dir: dir.to_owned(),
            },
            _ => error::io_error("could not open", dir, e),
        })?;
        Fallback::open_with(io)
    }

    /// As [`open`](Fallback::open), on the journal behind `io`.
    pub fn open_with(io: impl JournalIo) -> Result<Fallback, JournalError> {
        let path = io.path().to_owned();
        let (journal, replayed) = Journal::open(Box::new(io))?;
        let report = replayed.report;
        if !replayed.entries.is_empty() || !replayed.owed.is_empty() || report.skipped > 0 {
            let (docs, skipped) = (replayed.entries.len(), report.skipped);
            let (owed, path) = (replayed.owed.len(), path.display());
            info!(docs, owed, skipped, %path, "fallback journal replayed unpersisted documents");
        }
        let shared = Arc::new(Shared::new(replayed.entries, replayed.owed, journal.len()));
        let (commands, receiver) = mpsc::channel();
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("fallback-journal".into())
                .spawn(move || Writer::new(journal, &shared).run(&receiver))
                .map_err(|e| error::io_error("could not start writer for", &path, e))?
        };
        let inner = Inner {
            shared,
            replayed: report,
            commands: Some(commands),
            writer: Some(writer),
        };
        Ok(Fallback {
            inner: Arc::new(inner),
        })
    }

    /// Makes `version` the document's entry under the SPEC §6 rules (module doc) once its record
    /// is synced. Concurrent calls are group-committed: one writer thread drains everything
    /// queued, writes it, syncs once, then answers all of them.
    ///
    /// `Ok` means the document's entry is durable and at least as late as `version`. On error
    /// nothing changed in memory and the caller must not acknowledge. If this future is dropped
    /// after sending, the put may still land, as it would in the journal.
    pub async fn put(&self, version: Version) -> Result<(), JournalError> {
        let mut answers = self.put_all(vec![version]).await;
        answers.pop().expect("one answer per version")
    }

    /// [`put`](Fallback::put) for many versions at once, written with one append and one sync
    /// however many there are (with whatever else is queued): what a spill needs, where one
    /// sync per document would hold up the journaling of the last one by their number times
    /// the disk's sync latency.
    ///
    /// Answers one result per version, in order, each meaning what `put`'s does: a version the
    /// SPEC §6 rules refuse fails alone; a failed write fails every version it held, and none
    /// of them enters the entries. (A crash during that write can leave some of its records
    /// whole in the journal, which replay then applies: unacknowledged puts landing, as with
    /// `put`.)
    pub async fn put_all(&self, versions: Vec<Version>) -> Vec<Result<(), JournalError>> {
        let n = versions.len();
        if n == 0 {
            return Vec::new();
        }
        let answers = self.request(|reply| Command::Put { versions, reply });
        answers.await.unwrap_or_else(|e| vec![Err(e); n])
    }

    /// The entry held for `doc`, if any, as one version: Yjs increments not merged yet are
    /// merged into a copy (outside the lock, at the document's cost: not for a save's path).
    pub fn get(&self, doc: &DocId) -> Option<Version> {
        let entry = self.inner.shared.entries().get(doc).cloned()?;
        Some(whole(entry))
    }

    /// Every entry, each a version PostgreSQL does not have yet (a snapshot; order not
    /// significant), merged as [`get`](Fallback::get) merges.
    pub fn dirty(&self) -> Vec<Version> {
        let entries: Vec<Entry> = self.inner.shared.entries().values().cloned().collect();
        entries.into_iter().map(whole).collect()
    }

    /// The entry held for `doc` as it is held, nothing merged: its base version, then the Yjs
    /// increments put since, in order (empty if there is none). Costs no merge.
    pub fn parts(&self, doc: &DocId) -> Vec<Version> {
        let entries = self.inner.shared.entries();
        let parts = entries.get(doc).into_iter().flat_map(Entry::parts);
        parts.cloned().collect()
    }

    /// PostgreSQL committed these (doc, hash) pairs: each entry whose whole content (its Yjs
    /// increments merged in) is at that hash leaves (a newer put for the same doc stays, and so
    /// does an entry with an increment the committed version lacks), once a record saying so is
    /// synced; then the journal is compacted if its trigger says so. Goes through the writer
    /// thread, so it never races a put; the merge a check needs is done there, off every put's
    /// path.
    ///
    /// On error (nothing could be written) the entries stay, and a later call may retry. A
    /// failed compaction is not an error: the commit is already durable.
    pub async fn committed(&self, done: &[CommittedContent]) -> Result<(), JournalError> {
        self.settle(Vec::new(), done).await
    }

    /// [`committed`](Fallback::committed), and Redis is owed PostgreSQL's content of each
    /// document of `owe`: written before the commits, under the same sync, so a crash never
    /// loses the debt while keeping the commit that let go of what it rested on. Each stays
    /// owed ([`owed`](Fallback::owed), also after a restart) until
    /// [`announced`](Fallback::announced).
    pub async fn settle(
        &self,
        owe: Vec<DocId>,
        done: &[CommittedContent],
    ) -> Result<(), JournalError> {
        let done = done.to_vec();
        self.request(|reply| Command::Committed { owe, done, reply })
            .await?
    }

    /// Redis was given PostgreSQL's content of `docs`: no longer owed, once a record saying so
    /// is synced.
    pub async fn announced(&self, docs: Vec<DocId>) -> Result<(), JournalError> {
        self.request(|reply| Command::Announced { docs, reply })
            .await?
    }

    /// Documents whose PostgreSQL content Redis is owed (a snapshot, in order).
    pub fn owed(&self) -> Vec<DocId> {
        self.inner.shared.owed().iter().cloned().collect()
    }

    /// Documents held.
    pub fn len(&self) -> usize {
        self.inner.shared.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Current journal file size.
    pub fn journal_bytes(&self) -> u64 {
        self.inner.shared.journal_bytes.load(Ordering::Relaxed)
    }

    /// What the replay at open found: records applied, corrupt ones skipped, bytes truncated.
    pub fn replay_report(&self) -> ReplayReport {
        self.inner.replayed
    }

    /// Hands a command to the writer thread and waits for its answer.
    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, JournalError> {
        let (reply, answer) = oneshot::channel();
        let commands = self.inner.commands.as_ref().expect("set until drop");
        let sent = commands.send(command(reply));
        sent.map_err(|_| JournalError::WriterStopped)?;
        answer.await.map_err(|_| JournalError::WriterStopped)
    }
}

/// `entry` as one version. A Yjs entry whose increments do not merge (logged) is answered as
/// its base: a view, the entry itself keeps every part.
fn whole(entry: Entry) -> Version {
    entry.merged().unwrap_or_else(|error| {
        let doc = &entry.base().doc;
        warn!(%doc, %error, "yjs updates in the fallback could not be merged, showing the base");
        entry.base().clone()
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.commands.take());
        // Nothing can be queued any more (every clone is gone), so this waits at most for the
        // batch in progress.
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                warn!("fallback journal writer panicked");
            }
        }
    }
}
