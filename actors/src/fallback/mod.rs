//! The fallback store: where updates are acknowledged from while Redis is down.
//!
//! It holds the latest version of every document that PostgreSQL has not committed yet. Each
//! entry is held only until it is committed, so every entry is dirty: the map doubles as the
//! "modified documents" set that Redis keeps in `modifiedDocs`.
//!
//! An acknowledged update must survive a SIGKILL, so memory is only a view of the
//! [journal](journal): a version enters the map after its record is fsync'd, and the journal is
//! replayed into the map at start. All writes (puts and compactions) go through one writer thread,
//! which keeps the map and the journal in the same order, batches concurrent puts into one fsync,
//! and keeps blocking file IO off the async runtime.

mod journal;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::doc::{DocId, Version};
use journal::Journal;
pub use journal::JournalError;

/// Most puts written under one fsync: bounds the writer's buffer without costing throughput.
const MAX_BATCH: usize = 1024;

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
    /// `Some` until drop; dropping it is what tells the writer thread to stop.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

/// State read by any thread and written only by the writer thread.
struct Shared {
    /// Locked only for map operations, never across IO or an `.await`.
    entries: Mutex<HashMap<DocId, Version>>,
    journal_bytes: AtomicU64,
}

impl Shared {
    fn entries(&self) -> MutexGuard<'_, HashMap<DocId, Version>> {
        // Nothing panics while holding the lock, and a map is never left half-updated anyway.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Reply = oneshot::Sender<Result<(), JournalError>>;

enum Command {
    Put {
        version: Version,
        reply: Reply,
    },
    Committed {
        done: Vec<(DocId, String)>,
        reply: Reply,
    },
}

impl Fallback {
    /// Opens (creating the directory if needed) the journal at `dir/journal.log`, replays it
    /// (last record per document wins; a torn or corrupt tail is truncated away with a warn! log,
    /// never a panic) and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Fallback, JournalError> {
        let (journal, entries) = Journal::open(dir)?;
        if !entries.is_empty() {
            let docs = entries.len();
            info!(docs, dir = %dir.display(), "fallback journal replayed unpersisted documents");
        }
        let shared = Arc::new(Shared {
            entries: Mutex::new(entries),
            journal_bytes: AtomicU64::new(journal.len()),
        });
        let (commands, receiver) = mpsc::channel();
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("fallback-journal".into())
                .spawn(move || run_writer(journal, &shared, &receiver))
                .map_err(|e| journal::io_error("could not start writer for", dir, e))?
        };
        let inner = Inner {
            shared,
            commands: Some(commands),
            writer: Some(writer),
        };
        Ok(Fallback {
            inner: Arc::new(inner),
        })
    }

    /// Journals `version` (written and fsync'd) and only then makes it the document's entry and
    /// marks it dirty. Concurrent calls are group-committed: one writer thread drains everything
    /// queued, writes it, fsyncs once, then answers all of them.
    ///
    /// On error nothing changed in memory and the caller must not acknowledge. If this future is
    /// dropped after sending, the put may still land, as it would in the journal.
    pub async fn put(&self, version: Version) -> Result<(), JournalError> {
        self.request(|reply| Command::Put { version, reply }).await
    }

    /// The latest version held for `doc`, if any.
    pub fn get(&self, doc: &DocId) -> Option<Version> {
        self.inner.shared.entries().get(doc).cloned()
    }

    /// Every dirty version (a snapshot; order not significant).
    pub fn dirty(&self) -> Vec<Version> {
        self.inner.shared.entries().values().cloned().collect()
    }

    /// PostgreSQL committed these (doc, hash) pairs: drop each entry whose current hash is still
    /// that hash (a newer put for the same doc stays), then compact the journal so it holds only
    /// the remaining entries (truncate when nothing remains; otherwise rewrite to a temp file,
    /// fsync, rename over, fsync the directory). Compaction goes through the same writer thread
    /// so it never races a put.
    ///
    /// The entries are dropped even if compaction then fails: they are in PostgreSQL, and the
    /// stale records left in the journal only cause a harmless re-flush after a restart. The next
    /// call retries the compaction.
    pub async fn committed(&self, done: &[(DocId, String)]) -> Result<(), JournalError> {
        let done = done.to_vec();
        self.request(|reply| Command::Committed { done, reply })
            .await
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

    /// Hands a command to the writer thread and waits for its answer.
    async fn request(&self, command: impl FnOnce(Reply) -> Command) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        let commands = self.inner.commands.as_ref().expect("set until drop");
        let sent = commands.send(command(reply));
        sent.map_err(|_| JournalError::WriterStopped)?;
        answer.await.map_err(|_| JournalError::WriterStopped)?
    }
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

/// The writer thread: takes everything queued, writes the puts as one batch, runs compactions in
/// their place in the queue, until every sender is gone.
fn run_writer(mut journal: Journal, shared: &Shared, commands: &mpsc::Receiver<Command>) {
    while let Ok(first) = commands.recv() {
        let mut puts = Vec::new();
        let queued = std::iter::once(first).chain(commands.try_iter().take(MAX_BATCH - 1));
        for command in queued {
            match command {
                Command::Put { version, reply } => puts.push((version, reply)),
                Command::Committed { done, reply } => {
                    write_puts(&mut journal, shared, std::mem::take(&mut puts));
                    let _ = reply.send(compact(&mut journal, shared, &done));
                }
            }
        }
        write_puts(&mut journal, shared, puts);
    }
    debug!("fallback journal writer stopped");
}

fn write_puts(journal: &mut Journal, shared: &Shared, puts: Vec<(Version, Reply)>) {
    let mut buf = Vec::new();
    let mut accepted = Vec::with_capacity(puts.len());
    for (version, reply) in puts {
        match journal::encode(&version, &mut buf) {
            Ok(()) => accepted.push((version, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    if accepted.is_empty() {
        return;
    }
    let written = heal(journal, shared).and_then(|()| journal.append(&buf, accepted.len()));
    shared.journal_bytes.store(journal.len(), Ordering::Relaxed);
    match written {
        Ok(()) => {
            let mut replies = Vec::with_capacity(accepted.len());
            let mut entries = shared.entries();
            for (version, reply) in accepted {
                entries.insert(version.doc.clone(), version);
                replies.push(reply);
            }
            drop(entries);
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
        }
        Err(error) => {
            warn!(%error, puts = accepted.len(), "fallback journal write failed");
            for (_, reply) in accepted {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// After a failure that left the journal unusable (e.g. its file was removed), rebuilds it from
/// memory, which holds exactly what was acknowledged, before anything is appended.
fn heal(journal: &mut Journal, shared: &Shared) -> Result<(), JournalError> {
    if journal.is_healthy() {
        return Ok(());
    }
    let held: Vec<Version> = shared.entries().values().cloned().collect();
    journal.rewrite(&held)?;
    warn!(docs = held.len(), "fallback journal rebuilt from memory");
    Ok(())
}

fn compact(
    journal: &mut Journal,
    shared: &Shared,
    done: &[(DocId, String)],
) -> Result<(), JournalError> {
    let remaining: Vec<Version> = {
        let mut entries = shared.entries();
        for (doc, hash) in done {
            if entries.get(doc).is_some_and(|held| held.hash == *hash) {
                entries.remove(doc);
            }
        }
        // One record per held document and nothing else: already compact. This keeps the
        // flusher's frequent calls with nothing committed free.
        if journal.is_healthy() && journal.records() == entries.len() {
            return Ok(());
        }
        entries.values().cloned().collect()
    };
    let result = journal.rewrite(&remaining);
    shared.journal_bytes.store(journal.len(), Ordering::Relaxed);
    if let Err(error) = &result {
        warn!(%error, "fallback journal compaction failed");
    }
    result
}

#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TestDir(pub PathBuf);

    impl TestDir {
        pub(crate) fn new(name: &str) -> TestDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            let path = std::env::temp_dir().join(format!("docroom-fallback-{name}-{pid}-{n}"));
            let _ = std::fs::remove_dir_all(&path);
            TestDir(path)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_dir::TestDir;
    use super::*;
    use crate::doc::Kind;
    use bytes::Bytes;

    fn v(doc: &str, content: &str) -> Version {
        let doc = DocId::parse(doc).unwrap();
        Version::new(doc, Kind::Json, Bytes::copy_from_slice(content.as_bytes()))
    }

    fn id(doc: &str) -> DocId {
        DocId::parse(doc).unwrap()
    }

    fn sorted(mut versions: Vec<Version>) -> Vec<Version> {
        versions.sort_by(|a, b| a.doc.cmp(&b.doc));
        versions
    }

    #[tokio::test]
    async fn replay_after_a_crash_restores_the_last_put_per_document() {
        let dir = TestDir::new("replay");
        let fallback = Fallback::open(&dir.0).unwrap();
        fallback.put(v("a", "1")).await.unwrap();
        fallback.put(v("b", "1")).await.unwrap();
        fallback.put(v("a", "2")).await.unwrap();
        let before = sorted(fallback.dirty());
        drop(fallback);

        let reopened = Fallback::open(&dir.0).unwrap();

        assert_eq!(sorted(reopened.dirty()), before);
        assert_eq!(reopened.get(&id("a")), Some(v("a", "2")));
        assert_eq!(reopened.len(), 2);
    }

    #[tokio::test]
    async fn committed_drops_only_matching_hashes_and_empties_the_journal() {
        let dir = TestDir::new("committed");
        let fallback = Fallback::open(&dir.0).unwrap();
        let old = v("a", "old");
        fallback.put(old.clone()).await.unwrap();
        fallback.put(v("b", "1")).await.unwrap();
        fallback.put(v("a", "new")).await.unwrap();

        // PostgreSQL committed a's old version and b: a's newer put must stay.
        let done = [(id("a"), old.hash.clone()), (id("b"), v("b", "1").hash)];
        fallback.committed(&done).await.unwrap();

        assert_eq!(fallback.dirty(), vec![v("a", "new")]);
        let mut one = Vec::new();
        journal::encode(&v("a", "new"), &mut one).unwrap();
        assert_eq!(fallback.journal_bytes(), one.len() as u64);
        drop(fallback);
        let fallback = Fallback::open(&dir.0).unwrap();
        assert_eq!(fallback.dirty(), vec![v("a", "new")]);

        fallback
            .committed(&[(id("a"), v("a", "new").hash)])
            .await
            .unwrap();

        assert!(fallback.is_empty());
        assert_eq!(fallback.journal_bytes(), 0);
        let file_len = std::fs::metadata(dir.0.join("journal.log")).unwrap().len();
        assert_eq!(file_len, 0);
        drop(fallback);
        assert!(Fallback::open(&dir.0).unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_puts_all_land_and_survive_a_reopen() {
        let dir = TestDir::new("concurrent");
        let fallback = Fallback::open(&dir.0).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let fallback = fallback.clone();
                tokio::spawn(async move { fallback.put(v(&format!("doc-{i}"), "{}")).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(fallback.len(), 200);
        drop(fallback);

        let reopened = Fallback::open(&dir.0).unwrap();

        assert_eq!(reopened.len(), 200);
        assert_eq!(reopened.get(&id("doc-199")), Some(v("doc-199", "{}")));
    }

    #[tokio::test]
    async fn put_into_a_removed_directory_fails_and_leaves_memory_unchanged() {
        // Removing the directory works as root too, where permission bits would not stop us.
        let dir = TestDir::new("removed");
        let fallback = Fallback::open(&dir.0).unwrap();
        fallback.put(v("a", "1")).await.unwrap();
        std::fs::remove_dir_all(&dir.0).unwrap();

        // The first write lands in the unlinked file; the next cannot even rebuild it.
        for content in ["2", "3"] {
            let result = fallback.put(v("a", content)).await;
            assert!(matches!(result, Err(JournalError::Io { .. })), "{result:?}");
            assert_eq!(fallback.dirty(), vec![v("a", "1")]);
        }
        assert!(fallback.put(v("b", "1")).await.is_err());
        assert_eq!(fallback.get(&id("b")), None);
    }

    #[tokio::test]
    async fn a_removed_journal_file_is_rebuilt_from_memory() {
        let dir = TestDir::new("rebuilt");
        let fallback = Fallback::open(&dir.0).unwrap();
        fallback.put(v("a", "1")).await.unwrap();
        std::fs::remove_file(dir.0.join("journal.log")).unwrap();
        assert!(fallback.put(v("b", "1")).await.is_err());

        fallback.put(v("c", "1")).await.unwrap();
        drop(fallback);

        let reopened = Fallback::open(&dir.0).unwrap();
        assert_eq!(sorted(reopened.dirty()), vec![v("a", "1"), v("c", "1")]);
    }

    #[tokio::test]
    async fn a_torn_tail_after_a_crash_keeps_earlier_puts_and_accepts_new_ones() {
        let dir = TestDir::new("torn-tail");
        let fallback = Fallback::open(&dir.0).unwrap();
        fallback.put(v("a", "1")).await.unwrap();
        drop(fallback);
        let path = dir.0.join("journal.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[42, 0, 0, 0, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();

        let fallback = Fallback::open(&dir.0).unwrap();
        fallback.put(v("b", "1")).await.unwrap();
        drop(fallback);

        let reopened = Fallback::open(&dir.0).unwrap();
        assert_eq!(sorted(reopened.dirty()), vec![v("a", "1"), v("b", "1")]);
    }

    #[tokio::test]
    async fn a_version_with_a_wrong_hash_is_refused() {
        let dir = TestDir::new("wrong-hash");
        let fallback = Fallback::open(&dir.0).unwrap();
        let mut lying = v("a", "1");
        lying.hash = v("a", "2").hash;

        let result = fallback.put(lying).await;

        assert!(matches!(result, Err(JournalError::HashMismatch { .. })));
        assert!(fallback.is_empty());
        assert_eq!(fallback.journal_bytes(), 0);
    }
}
