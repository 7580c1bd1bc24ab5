//! In-memory [`Cache`] and [`DocStore`] for unit tests of the actors' logic — never for the
//! integration tests, which use the real Redis and PostgreSQL.
//!
//! Each can be told, through its [`Faults`], to fail every call, to hold every call until
//! released, or to answer slowly, so a test can stop a store in the middle of a flush or a save
//! and play out a race step by step. Both follow the same version rules as the real stores
//! (JSON by stamp, Yjs merged; see SPEC §6).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{
    Cache, CacheError, CacheResult, DocStore, ReplicaBeat, StoreError, StoreResult, Written,
};
use crate::doc::{later, DocId, Kind, Version};

/// What a test can do to a store. Cloning is shallow: the test keeps one clone, the store the
/// other.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<FaultsInner>,
}

struct FaultsInner {
    failing: AtomicBool,
    /// `true` while calls are held; a call waits until it turns `false`.
    paused: watch::Sender<bool>,
    delay: Mutex<Duration>,
    /// Calls that have started (held ones included), so a test can wait for one to arrive.
    calls: AtomicUsize,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            inner: Arc::new(FaultsInner {
                failing: AtomicBool::new(false),
                paused: watch::channel(false).0,
                delay: Mutex::new(Duration::ZERO),
                calls: AtomicUsize::new(0),
            }),
        }
    }
}

impl Faults {
    /// Every call fails from now on (`true`) or works again (`false`).
    pub fn fail(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// Every call from now on waits until [`resume`](Faults::resume).
    pub fn pause(&self) {
        self.inner.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.inner.paused.send_replace(false);
    }

    /// Every call takes at least this long.
    pub fn slow(&self, delay: Duration) {
        *self.inner.delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls have started.
    pub async fn until_calls(&self, n: usize) {
        while self.calls() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Where every call begins: counted, held while paused, slowed, then failed if failing.
    async fn enter(&self) -> Result<(), String> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let mut paused = self.inner.paused.subscribe();
        let _ = paused.wait_for(|held| !held).await;
        let delay = *self.inner.delay.lock().unwrap_or_else(|p| p.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.inner.failing.load(Ordering::SeqCst) {
            true => Err("injected failure".into()),
            false => Ok(()),
        }
    }
}

#[derive(Default)]
struct CacheState {
    docs: HashMap<DocId, Version>,
    modified: HashSet<DocId>,
    locks: HashSet<DocId>,
    /// Heartbeats with the instant they expire at.
    replicas: HashMap<String, (ReplicaBeat, std::time::Instant)>,
}

/// An in-memory cache. Cloning is shallow.
#[derive(Clone, Default)]
pub struct MemoryCache {
    state: Arc<Mutex<CacheState>>,
    pub faults: Faults,
}

impl MemoryCache {
    fn state(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn enter(&self) -> CacheResult<MutexGuard<'_, CacheState>> {
        self.faults.enter().await.map_err(CacheError::Unreachable)?;
        Ok(self.state())
    }

    /// What a Redis restarted empty would hold: nothing.
    pub fn wipe(&self) {
        *self.state() = CacheState::default();
    }

    /// The cached version of `doc`, read without any fault.
    pub fn peek(&self, doc: &DocId) -> Option<Version> {
        self.state().docs.get(doc).cloned()
    }

    pub fn is_dirty(&self, doc: &DocId) -> bool {
        self.state().modified.contains(doc)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn ping(&self) -> CacheResult<()> {
        self.enter().await.map(drop)
    }

    async fn probe(&self) -> CacheResult<()> {
        self.enter().await.map(drop)
    }

    async fn save(&self, v: &Version) -> CacheResult<Written> {
        let mut state = self.enter().await?;
        let held = state.docs.get(&v.doc);
        // As the Redis script: only a stamped JSON entry can refuse a write.
        let refuses = |held: &Version| held.stamp.is_some() && held.stamp >= v.stamp;
        if v.kind == Kind::Json && held.is_some_and(refuses) {
            return Ok(Written::Superseded);
        }
        state.docs.insert(v.doc.clone(), v.clone());
        state.modified.insert(v.doc.clone());
        Ok(Written::Stored)
    }

    async fn fill(&self, v: &Version) -> CacheResult<()> {
        let mut state = self.enter().await?;
        if !state.docs.contains_key(&v.doc) && !state.modified.contains(&v.doc) {
            state.docs.insert(v.doc.clone(), v.clone());
        }
        Ok(())
    }

    async fn load(&self, doc: &DocId) -> CacheResult<Option<Version>> {
        Ok(self.enter().await?.docs.get(doc).cloned())
    }

    async fn dirty_docs(&self) -> CacheResult<Vec<DocId>> {
        Ok(self.enter().await?.modified.iter().cloned().collect())
    }

    async fn load_dirty(&self, docs: &[DocId]) -> CacheResult<Vec<Option<Version>>> {
        let state = self.enter().await?;
        Ok(docs.iter().map(|d| state.docs.get(d).cloned()).collect())
    }

    async fn touch(&self, _docs: &[DocId]) -> CacheResult<()> {
        self.enter().await.map(drop)
    }

    async fn mark_clean(&self, done: &[(DocId, String)]) -> CacheResult<()> {
        let mut state = self.enter().await?;
        for (doc, hash) in done {
            if state.docs.get(doc).is_none_or(|held| &held.hash == hash) {
                state.modified.remove(doc);
            }
        }
        Ok(())
    }

    async fn try_lock(&self, doc: &DocId) -> CacheResult<bool> {
        Ok(self.enter().await?.locks.insert(doc.clone()))
    }

    async fn is_locked(&self, doc: &DocId) -> CacheResult<bool> {
        Ok(self.enter().await?.locks.contains(doc))
    }

    async fn unlock(&self, doc: &DocId) -> CacheResult<()> {
        self.enter().await?.locks.remove(doc);
        Ok(())
    }

    async fn beat(&self, beat: &ReplicaBeat, ttl: Duration) -> CacheResult<()> {
        let expires = std::time::Instant::now() + ttl;
        let mut state = self.enter().await?;
        state
            .replicas
            .insert(beat.replica.clone(), (beat.clone(), expires));
        Ok(())
    }

    async fn replicas(&self) -> CacheResult<Vec<ReplicaBeat>> {
        let now = std::time::Instant::now();
        let mut state = self.enter().await?;
        state.replicas.retain(|_, (_, expires)| *expires > now);
        Ok(state.replicas.values().map(|(b, _)| b.clone()).collect())
    }

    async fn retire(&self, replica: &str) -> CacheResult<()> {
        self.enter().await?.replicas.remove(replica);
        Ok(())
    }
}

/// An in-memory document store. Cloning is shallow.
#[derive(Clone, Default)]
pub struct MemoryStore {
    rows: Arc<Mutex<HashMap<DocId, Version>>>,
    pub faults: Faults,
}

impl MemoryStore {
    fn rows(&self) -> MutexGuard<'_, HashMap<DocId, Version>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored version of `doc`, read without any fault.
    pub fn peek(&self, doc: &DocId) -> Option<Version> {
        self.rows().get(doc).cloned()
    }
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn load(&self, doc: &DocId) -> StoreResult<Option<Version>> {
        self.faults.enter().await.map_err(StoreError::Unavailable)?;
        Ok(self.rows().get(doc).cloned())
    }

    async fn upsert(&self, versions: &[Version]) -> StoreResult<()> {
        self.faults.enter().await.map_err(StoreError::Unavailable)?;
        let mut rows = self.rows();
        for v in versions {
            // `v` first: on a tie (rows written before stamps) the new write wins, as in SQL.
            let next = match rows.remove(&v.doc) {
                Some(held) => later(v.clone(), held).map_err(|e| StoreError::BadRow {
                    doc: v.doc.clone(),
                    why: e.to_string(),
                })?,
                None => v.clone(),
            };
            rows.insert(v.doc.clone(), next);
        }
        Ok(())
    }
}
