//! What the flusher asks of the supervisor: Redis's dirty documents, TTL refreshes, the one
//! path by which a commit reaches the ledger, the journal and Redis, the shutdown spill, and the
//! ids of everything PostgreSQL lacks.

use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, warn};

use super::{journal, CacheSupervisor, Outcome, SupervisorError};
use crate::doc::{DocId, Version};
use crate::ledger::Durable;

/// Redis's dirty documents that are not in `skip` (the ledger's, which the flusher reads
/// itself), with their TTLs refreshed on the way so waiting content never expires.
#[derive(Message, Default)]
#[rtype(result = "Vec<Version>")]
pub struct CollectDirty {
    pub skip: HashSet<DocId>,
}

/// PostgreSQL could not take these documents yet: keep their cache entries from expiring.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeepCached {
    pub docs: Vec<DocId>,
}

/// PostgreSQL committed these (doc, hash) pairs: the one path by which the ledger, the
/// journal and Redis `modifiedDocs` learn it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed {
    pub done: Vec<(DocId, String)>,
}

/// Shutdown with PostgreSQL unavailable: journal these so the next start recovers them.
#[derive(Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct Spill {
    pub versions: Vec<Version>,
}

/// Ids of every document PostgreSQL does not have yet: the ledger's and Redis's.
#[derive(Message)]
#[rtype(result = "Vec<DocId>")]
pub struct DirtyIds;

impl Handler<CollectDirty> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Vec<Version>>;

    /// Reads Redis's dirty documents the ledger does not hold.
    fn handle(&mut self, msg: CollectDirty, _: &mut Context<Self>) -> Self::Result {
        if !self.breaker.allows_redis() {
            return Box::pin(fut::ready(Vec::new()));
        }
        let cache = self.stores.cache.clone();
        let fut = async move {
            let docs: Vec<DocId> = cache
                .dirty_docs()
                .await?
                .into_iter()
                .filter(|d| !msg.skip.contains(d))
                .collect();
            let found = cache.load_dirty(&docs).await?;
            // A dirty id without content can only mean the entry expired, which the TTL
            // refresh exists to prevent; say so loudly and stop carrying the id.
            let orphans: Vec<(DocId, String)> = docs
                .iter()
                .zip(&found)
                .filter(|(_, v)| v.is_none())
                .map(|(d, _)| (d.clone(), String::new()))
                .collect();
            if !orphans.is_empty() {
                error!(docs = ?orphans.iter().map(|(d, _)| d).collect::<Vec<_>>(), "dirty documents had no cached content");
                cache.mark_clean(&orphans).await?;
            }
            Ok::<_, crate::storage::CacheError>(found)
        };
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            act.account(Outcome::from(&res), ctx);
            match res {
                Ok(found) => found.into_iter().flatten().collect(),
                Err(e) => {
                    warn!(error = %e, "reading dirty documents from redis failed");
                    Vec::new()
                }
            }
        }))
    }
}

impl Handler<Committed> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    /// Clears what PostgreSQL committed from the ledger, the journal and `modifiedDocs`. A
    /// journaled version PostgreSQL took before it was moved back into Redis is filled into
    /// the cache instead, so readers find it there.
    fn handle(&mut self, msg: Committed, ctx: &mut Context<Self>) -> Self::Result {
        let fills: Vec<Version> = self
            .stores
            .ledger
            .committed(&msg.done)
            .into_iter()
            .filter(|e| e.durable == Durable::Journal)
            .map(|e| e.version)
            .collect();
        let fallback = self.stores.fallback.clone();
        let done = Arc::new(msg.done);
        let journal_done = done.clone();
        ctx.spawn(
            async move {
                if let Err(e) = fallback.committed(&journal_done).await {
                    warn!(error = %e, "dropping committed documents from the journal failed");
                }
            }
            .into_actor(self),
        );
        if !self.breaker.allows_redis() {
            self.recovery.fill_later(fills);
            return Box::pin(fut::ready(()));
        }
        let cache = self.stores.cache.clone();
        self.best_effort("clearing flushed documents from redis failed", async move {
            for v in &fills {
                cache.fill(v).await?;
            }
            cache.mark_clean(&done).await
        })
    }
}

impl Handler<Spill> for CacheSupervisor {
    type Result = ResponseFuture<Result<(), SupervisorError>>;

    /// Journals versions PostgreSQL could not take at shutdown.
    fn handle(&mut self, msg: Spill, _: &mut Context<Self>) -> Self::Result {
        let stores = self.stores.clone();
        Box::pin(async move {
            let puts = msg.versions.into_iter().map(|v| journal(&stores, v));
            for res in futures_util::future::join_all(puts).await {
                if let Err(e) = &res {
                    error!(error = %e, "journal write failed during shutdown");
                }
                res?;
            }
            Ok(())
        })
    }
}

impl Handler<DirtyIds> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Vec<DocId>>;

    /// The ledger's documents, plus `modifiedDocs` when Redis is in use.
    fn handle(&mut self, _: DirtyIds, _: &mut Context<Self>) -> Self::Result {
        let mut ids: Vec<DocId> = self
            .stores
            .ledger
            .entries()
            .into_iter()
            .map(|e| e.version.doc)
            .collect();
        if !self.breaker.allows_redis() {
            return Box::pin(fut::ready(ids));
        }
        let cache = self.stores.cache.clone();
        Box::pin(
            async move { cache.dirty_docs().await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.account(Outcome::from(&res), ctx);
                    ids.extend(res.unwrap_or_default());
                    ids.sort();
                    ids.dedup();
                    ids
                }),
        )
    }
}

impl Handler<KeepCached> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    /// Refreshes the TTLs (breaker closed only; a failure counts against the breaker).
    fn handle(&mut self, msg: KeepCached, _: &mut Context<Self>) -> Self::Result {
        if !self.breaker.allows_redis() || msg.docs.is_empty() {
            return Box::pin(fut::ready(()));
        }
        let cache = self.stores.cache.clone();
        self.best_effort(
            "refreshing the ttl of waiting documents failed",
            async move { cache.touch(&msg.docs).await },
        )
    }
}
