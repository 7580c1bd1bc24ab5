//! The read path: what a room starts from and what `GET /docs/{id}` answers when no room is
//! open.
//!
//! The ledger holds what this replica accepted that PostgreSQL lacks (for Yjs, its updates
//! merged); Redis holds the compacted content and the log after it (every replica's updates);
//! they are combined by the version rule (SPEC §6). PostgreSQL is read where those are not the
//! whole document: when Redis has nothing (under the stampede guard: the holder of `lock:{id}`
//! reads it and fills the cache; the others poll the cache until the lock is released, then
//! read it, or PostgreSQL), or only log entries of a Yjs document, or is down and the ledger
//! holds only Yjs updates.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tracing::debug;

use super::{CacheSupervisor, Load, Loaded, Outcome, Stores, SupervisorError, SupervisorSettings};
use crate::doc::{combine, DocId, Kind, Version};
use crate::log::LogPos;

impl Handler<Load> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Result<Loaded, SupervisorError>>;

    /// Reads a document (see the module doc).
    fn handle(&mut self, msg: Load, _: &mut Context<Self>) -> Self::Result {
        let use_redis = self.allows_redis();
        let (stores, settings) = (self.stores.clone(), self.settings.clone());
        let fut = async move {
            let mut outcome = Outcome::Untried;
            let res = load(&stores, &settings, &msg.doc, use_redis, &mut outcome).await;
            (res, outcome)
        };
        Box::pin(fut.into_actor(self).map(|(res, outcome), act, ctx| {
            act.account(outcome, ctx);
            res
        }))
    }
}

async fn load(
    stores: &Stores,
    settings: &SupervisorSettings,
    doc: &DocId,
    use_redis: bool,
    outcome: &mut Outcome,
) -> Result<Loaded, SupervisorError> {
    let local = stores.ledger.get(doc).map(|e| e.version);
    // JSON content is whole; a Yjs entry holds only this replica's updates.
    let whole_local = local.as_ref().is_some_and(|v| v.kind == Kind::Json);
    if use_redis {
        let cached = stores.cache.load(doc).await;
        *outcome = Outcome::from(&cached);
        match cached {
            Ok(Some(cached)) => {
                let base = match cached.whole || cached.version.kind == Kind::Json {
                    true => None,
                    false => from_store(stores, doc).await?,
                };
                let version = combine(local.into_iter().chain(base).chain([cached.version]))?;
                return Ok(Loaded {
                    version,
                    position: cached.position,
                });
            }
            Ok(None) if whole_local => return Ok(at_start(local)),
            Ok(None) => {
                let stored = through_cache_lock(stores, settings, doc, outcome).await?;
                return Ok(at_start(combine(local.into_iter().chain(stored))?));
            }
            Err(e) => debug!(doc = %doc, error = %e, "cache read failed"),
        }
    }
    if whole_local {
        return Ok(at_start(local));
    }
    let stored = from_store(stores, doc).await?;
    Ok(at_start(combine(local.into_iter().chain(stored))?))
}

/// Content read without the log: a reader of the log starts from its beginning.
fn at_start(version: Option<Version>) -> Loaded {
    Loaded {
        version,
        position: LogPos::ZERO,
    }
}

async fn from_store(stores: &Stores, doc: &DocId) -> Result<Option<Version>, SupervisorError> {
    stores
        .store
        .load(doc)
        .await
        .map_err(|e| SupervisorError::Unloadable(Arc::new(e)))
}

async fn through_cache_lock(
    stores: &Stores,
    settings: &SupervisorSettings,
    doc: &DocId,
    outcome: &mut Outcome,
) -> Result<Option<Version>, SupervisorError> {
    let cache = &stores.cache;
    match cache.try_lock(doc).await {
        Ok(true) => {
            let res = match cache.load(doc).await {
                Ok(Some(c)) if c.whole => Ok(Some(c.version)),
                _ => {
                    let loaded = from_store(stores, doc).await;
                    if let Ok(Some(v)) = &loaded {
                        if let Err(e) = cache.fill(v).await {
                            debug!(doc = %doc, error = %e, "cache fill failed");
                        }
                    }
                    loaded
                }
            };
            let _ = cache.unlock(doc).await;
            res
        }
        Ok(false) => {
            let deadline = Instant::now() + settings.lock_wait;
            while Instant::now() < deadline {
                tokio::time::sleep(settings.lock_poll).await;
                match cache.load(doc).await {
                    Ok(Some(c)) if c.whole => return Ok(Some(c.version)),
                    Ok(_) if !cache.is_locked(doc).await.unwrap_or(false) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            from_store(stores, doc).await
        }
        Err(e) => {
            debug!(doc = %doc, error = %e, "cache lock failed, reading postgres");
            *outcome = Outcome::Failed;
            from_store(stores, doc).await
        }
    }
}
