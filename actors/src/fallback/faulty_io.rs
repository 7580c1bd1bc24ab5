//! A [`JournalIo`] that can be told to run out of disk space, for tests of what the fallback
//! does on a full disk. Public so the service's in-process tests can use it too.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::io::{JournalIo, ReadSeek};

/// Wraps a real [`JournalIo`] (usually a [`FileIo`](super::FileIo)) and fails its writes with
/// `StorageFull` (ENOSPC) while [`Faults`] says the disk is full.
///
/// Like a real full disk: an append writes part of its bytes before it fails, a replace fails
/// before it renames, and truncating (which frees space) still works.
pub struct FaultyIo<I = super::FileIo> {
    inner: I,
    faults: Faults,
}

/// The switch of a [`FaultyIo`], kept by the test while the fallback owns the io. Cloning is
/// shallow.
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    appends_fail: AtomicBool,
    replaces_fail: AtomicBool,
    refused: AtomicU64,
}

impl<I: JournalIo> FaultyIo<I> {
    /// `inner`, healthy until told otherwise through the returned [`Faults`].
    pub fn new(inner: I) -> (FaultyIo<I>, Faults) {
        let faults = Faults::default();
        let io = FaultyIo {
            inner,
            faults: faults.clone(),
        };
        (io, faults)
    }
}

impl Faults {
    /// Every append and replace fails from now on.
    pub fn fill_disk(&self) {
        self.set(true, true);
    }

    /// Writes succeed again.
    pub fn free_disk(&self) {
        self.set(false, false);
    }

    /// Only replaces (compactions, rebuilds) fail: a disk with a few bytes left, enough for a
    /// small record but not for a copy of the journal.
    pub fn fail_replaces(&self) {
        self.set(false, true);
    }

    /// Writes refused so far, so a test can tell that its fault was reached.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    fn set(&self, appends: bool, replaces: bool) {
        self.state.appends_fail.store(appends, Ordering::Relaxed);
        self.state.replaces_fail.store(replaces, Ordering::Relaxed);
    }

    fn refuse(&self) -> io::Error {
        self.state.refused.fetch_add(1, Ordering::Relaxed);
        io::Error::new(
            io::ErrorKind::StorageFull,
            "no space left on device (injected)",
        )
    }
}

impl<I: JournalIo> JournalIo for FaultyIo<I> {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn read(&mut self) -> io::Result<Option<(Box<dyn ReadSeek>, u64)>> {
        self.inner.read()
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.faults.state.appends_fail.load(Ordering::Relaxed) {
            // What fitted before the disk filled up is on disk: the journal must cut it off.
            self.inner.append(&bytes[..bytes.len() / 2])?;
            return Err(self.faults.refuse());
        }
        self.inner.append(bytes)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.faults.state.replaces_fail.load(Ordering::Relaxed) {
            return Err(self.faults.refuse());
        }
        self.inner.replace(bytes)
    }
}
