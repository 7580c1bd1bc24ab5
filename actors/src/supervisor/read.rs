//! The read path: what a room starts from and what `GET /docs/{id}` answers when no room is
//! open.
//!
//! The ledger holds the newest version this replica accepted that PostgreSQL lacks; Redis may
//! hold one from elsewhere (another process, or one saved after this process's journal entry);
//! the two are combined by the version rule (SPEC §6). Only when neither has the document is
//! PostgreSQL read, under the stampede guard: the holder of `lock:{id}` reads it and fills the
//! cache; the others poll the cache until the lock is released, then read it (or, if the
//! holder found nothing or failed, PostgreSQL).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tracing::debug;

use super::{CacheSupervisor, Load, Outcome, Stores, SupervisorError, SupervisorSettings};
use crate::doc::{later, DocId, Version};

impl Handler<Load> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Result<Option<Version>, SupervisorError>>;

    /// Reads a document (see the module doc).
    fn handle(&mut self, msg: Load, _: &mut Context<Self>) -> Self::Result {
        let use_redis = self.breaker.allows_redis();
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
) -> Result<Option<Version>, SupervisorError> {
    let local = stores.ledger.get(doc).map(|e| e.version);
    if use_redis {
        let cached = stores.cache.load(doc).await;
        *outcome = Outcome::from(&cached);
        match cached {
            Ok(Some(cached)) => {
                return Ok(Some(match local {
                    Some(local) => later(local, cached)?,
                    None => cached,
                }))
            }
            Ok(None) if local.is_some() => return Ok(local),
            Ok(None) => return through_cache_lock(stores, settings, doc, outcome).await,
            Err(e) => debug!(doc = %doc, error = %e, "cache read failed"),
        }
    }
    match local {
        Some(local) => Ok(Some(local)),
        None => from_store(stores, doc).await,
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
                Ok(Some(v)) => Ok(Some(v)),
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
                    Ok(Some(v)) => return Ok(Some(v)),
                    Ok(None) if !cache.is_locked(doc).await.unwrap_or(false) => break,
                    Ok(None) => {}
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
