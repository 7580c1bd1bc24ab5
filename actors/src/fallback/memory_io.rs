//! A [`JournalIo`] in memory: for tests that need a fallback but no disk (or thousands of puts
//! without thousands of fsyncs). Public so the service's in-process tests can use it too.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::io::{JournalIo, ReadSeek};

/// A journal "file" held in memory. Clones share the bytes, so a test can drop a fallback and
/// open another on a clone, as a restart would reopen the file; every operation is "durable"
/// at once, and counted as the sync it would cost on disk.
#[derive(Clone, Default)]
pub struct MemoryIo {
    bytes: Arc<Mutex<Vec<u8>>>,
    syncs: Arc<AtomicU64>,
}

impl MemoryIo {
    pub fn new() -> MemoryIo {
        MemoryIo::default()
    }

    /// A journal that starts with `bytes`, e.g. one written by an earlier release.
    pub fn with_bytes(bytes: Vec<u8>) -> MemoryIo {
        MemoryIo {
            bytes: Arc::new(Mutex::new(bytes)),
            syncs: Arc::default(),
        }
    }

    /// Appends, truncates and replaces so far: each one a sync on a real disk (a replace two,
    /// the file's and its directory's, counted here as one), so a test can tell what a burst
    /// of puts costs where a sync takes milliseconds.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// A copy of the journal's bytes as they are now.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn synced(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }
}

impl JournalIo for MemoryIo {
    fn path(&self) -> &Path {
        static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        PATH.get_or_init(|| PathBuf::from("(memory)/journal.log"))
    }

    fn read(&mut self) -> io::Result<Option<(Box<dyn ReadSeek>, u64)>> {
        let bytes = self.bytes();
        let len = bytes.len() as u64;
        Ok(Some((Box::new(Cursor::new(bytes)), len)))
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.lock().extend_from_slice(bytes);
        self.synced();
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut bytes = self.lock();
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len());
        bytes.truncate(len);
        self.synced();
        Ok(())
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        *self.lock() = bytes.to_vec();
        self.synced();
        Ok(())
    }
}
