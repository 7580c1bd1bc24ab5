//! The flush claims of the in-memory cache: the CLAIM, KEEP and COMMIT scripts' model.

use std::time::Duration;

use async_trait::async_trait;

use super::MemoryCache;
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
        Ok(docs
            .iter()
            .map(|doc| {
                if let Some(held) = state.docs.get_mut(doc) {
                    if held.claim.as_ref().is_some_and(|r| *r != self.replica) {
                        return Claimed::Busy;
                    }
                    let recent = held
                        .persisted_at
                        .zip(fresh)
                        .is_some_and(|(at, window)| at.elapsed() < window);
                    if let (true, None, Some(position)) = (recent, &held.claim, held.persisted) {
                        let incarnation = state.incarnation;
                        return Claimed::Fresh {
                            persisted: LogMark {
                                incarnation,
                                position,
                            },
                        };
                    }
                    held.claim = Some(self.replica.clone());
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
        for doc in docs {
            if let Some(held) = state.docs.get_mut(doc) {
                if held.claim.as_ref() == Some(&self.replica) {
                    held.claim = None;
                }
            }
        }
        Ok(())
    }

    /// As the COMMIT script.
    async fn committed(&self, done: &[Commit]) -> CacheResult<()> {
        let mut state = self.enter().await?;
        let incarnation = state.incarnation;
        for c in done {
            let Some(held) = state.docs.get_mut(&c.doc) else {
                state.modified.remove(&c.doc);
                continue;
            };
            let ours = c.read.or(c.recorded).map(|m| m.incarnation) == Some(incarnation);
            if ours {
                if let Some(recorded) = c.recorded.map(|m| m.position) {
                    if held.persisted.is_none_or(|p| p < recorded) {
                        held.persisted = Some(recorded);
                        held.persisted_at = Some(std::time::Instant::now());
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
            if held.claim.as_ref() == Some(&self.replica) {
                held.claim = None;
            }
            if clean {
                state.modified.remove(&c.doc);
            }
        }
        Ok(())
    }
}
