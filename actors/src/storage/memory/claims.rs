//! The flush claims of the in-memory cache: the CLAIM, KEEP and COMMIT scripts' model.

use std::time::Duration;

use async_trait::async_trait;

use super::{MemoryCache, CLAIM_TTL};
use crate::doc::DocId;
use crate::log::LogMark;
use crate::storage::{CacheResult, Claimed, Commit, FlushClaims};

#[async_trait]
impl FlushClaims for MemoryCache {
    async fn dirty_docs(&self) -> CacheResult<Vec<DocId>> {
        Ok(self.enter().await?.modified.iter().cloned().collect())
    }

    async fn claim(&self, docs: &[DocId], fresh: Option<Duration>) -> CacheResult<Vec<Claimed>> {
        let mut state = self.enter().await?;
        let now = state.now();
        Ok(docs
            .iter()
            .map(|doc| {
                if let Some(held) = state.docs.get_mut(doc) {
                    let claimant = held.claimant(now);
                    if claimant.is_some_and(|r| *r != self.replica) {
                        return Claimed::Busy;
                    }
                    let recent = held
                        .persisted_at
                        .zip(fresh)
                        .is_some_and(|(at, window)| now.saturating_duration_since(at) < window);
                    if let (true, None, Some(position)) = (recent, claimant, held.persisted) {
                        let incarnation = state.incarnation;
                        return Claimed::Fresh {
                            persisted: LogMark {
                                incarnation,
                                position,
                            },
                        };
                    }
                    held.claim = Some((self.replica.clone(), now + CLAIM_TTL));
                }
                match state.flush_read(doc).pending() {
                    Ok(Some(pending)) => Claimed::Found(Box::new(pending)),
                    Ok(None) => Claimed::Missing,
                    Err(_) => Claimed::Busy,
                }
            })
            .collect())
    }

    async fn touch(&self, docs: &[DocId]) -> CacheResult<()> {
        let mut state = self.enter().await?;
        let now = state.now();
        for doc in docs {
            if let Some(held) = state.docs.get_mut(doc) {
                if held.claimant(now) == Some(&self.replica) {
                    held.claim = None;
                }
            }
        }
        Ok(())
    }

    /// As the COMMIT script.
    async fn committed(&self, done: &[Commit]) -> CacheResult<Vec<DocId>> {
        let mut state = self.enter().await?;
        let (incarnation, now) = (state.incarnation, state.now());
        let mut stale = Vec::new();
        for c in done {
            let named = c.read.or(c.recorded).map(|m| m.incarnation);
            if named.is_some_and(|n| n != incarnation) {
                stale.push(c.doc.clone());
            }
            let Some(held) = state.docs.get_mut(&c.doc) else {
                state.modified.remove(&c.doc);
                continue;
            };
            if named == Some(incarnation) {
                if let Some(recorded) = c.recorded.map(|m| m.position) {
                    if held.persisted.is_none_or(|p| p < recorded) {
                        held.persisted = Some(recorded);
                        held.persisted_at = Some(now);
                        held.tail += c.added;
                    }
                }
                let read = c.read.map(|m| m.position);
                if let Some((compacted, at)) = c.compacted.as_ref().zip(read) {
                    if held.pos < at {
                        held.temp = Some(compacted.clone());
                        held.pos = at;
                        held.tail = held.tail.saturating_sub(c.folded);
                    }
                }
                if let Some(persisted) = held.persisted {
                    let upto = persisted.min(held.pos);
                    held.log.retain(|e| e.pos > upto);
                    held.trimmed = held.trimmed.max(upto.next());
                }
            }
            let clean = match held.log.last() {
                None => true,
                Some(last) => held.persisted.is_some_and(|p| p >= last.pos),
            };
            if held.claimant(now) == Some(&self.replica) {
                held.claim = None;
            }
            if clean {
                state.modified.remove(&c.doc);
            }
        }
        Ok(stale)
    }
}
