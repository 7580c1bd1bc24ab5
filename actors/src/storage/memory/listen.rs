//! Pub/sub as the in-memory cache models it: each listening connection is an `Ear` in the
//! shared state, with the documents it subscribed to and the sending end of its stream. What a
//! save or a publish announces reaches every ear subscribed to the document at that moment,
//! its own replica's included, as Redis does. A test drops every ear to play a lost connection.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{CacheState, MemoryCache};
use crate::doc::DocId;
use crate::log::Heard;
use crate::storage::{CacheError, CacheResult, Channels, Listener};

/// One listening connection.
pub(super) struct Ear {
    docs: HashSet<DocId>,
    tx: mpsc::UnboundedSender<Heard>,
}

impl CacheState {
    /// Delivers `heard` to every ear subscribed to its document; forgets ears whose stream is
    /// gone.
    pub(super) fn announce(&mut self, heard: Heard) {
        if self.deaf {
            return;
        }
        self.ears
            .retain(|_, ear| !ear.docs.contains(&heard.doc) || ear.tx.send(heard.clone()).is_ok());
    }
}

impl MemoryCache {
    pub(super) fn new_listener(&self) -> Listener {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ear = {
            let mut state = self.state();
            state.next_ear += 1;
            let id = state.next_ear;
            state.ears.insert(
                id,
                Ear {
                    docs: HashSet::new(),
                    tx,
                },
            );
            id
        };
        let heard = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Listener {
            channels: Arc::new(MemoryChannels {
                cache: self.clone(),
                ear,
            }),
            heard: heard.boxed(),
        }
    }

    /// Every listening connection is lost (their streams end), as when Redis restarts.
    pub fn drop_listeners(&self) {
        self.state().ears.clear();
    }

    /// From now on every notice and event is lost (`true`), or none is (`false`).
    pub fn lose_notices(&self, lose: bool) {
        self.state().deaf = lose;
    }

    /// The documents of each log read through this replica's view since the last call.
    pub fn take_log_reads(&self) -> Vec<Vec<DocId>> {
        std::mem::take(&mut *self.reads.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Listening connections, and how many subscriptions each holds.
    pub fn listeners(&self) -> Vec<usize> {
        self.state().ears.values().map(|e| e.docs.len()).collect()
    }
}

struct MemoryChannels {
    cache: MemoryCache,
    ear: u64,
}

impl MemoryChannels {
    /// Runs `f` on this connection's subscriptions; fails (after the faults) if it was lost.
    async fn with(&self, f: impl FnOnce(&mut HashSet<DocId>)) -> CacheResult<()> {
        let mut state = self.cache.enter().await?;
        let ear = state
            .ears
            .get_mut(&self.ear)
            .ok_or_else(|| CacheError::Unreachable("the listening connection was lost".into()))?;
        f(&mut ear.docs);
        Ok(())
    }
}

#[async_trait]
impl Channels for MemoryChannels {
    async fn subscribe(&self, docs: &[DocId]) -> CacheResult<()> {
        self.with(|held| held.extend(docs.iter().cloned())).await
    }

    async fn unsubscribe(&self, docs: &[DocId]) -> CacheResult<()> {
        self.with(|held| held.retain(|d| !docs.contains(d))).await
    }

    async fn ping(&self) -> CacheResult<()> {
        self.with(|_| ()).await
    }

    /// Every subscriber hears every channel it subscribed: there is no lease to renew.
    async fn renew(&self, _following: &[DocId]) -> CacheResult<()> {
        Ok(())
    }
}
