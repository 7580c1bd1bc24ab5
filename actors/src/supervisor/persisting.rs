//! What the flusher asks of the supervisor: Redis's dirty documents, TTL refreshes, the one
//! path by which a commit reaches the ledger, the journal and Redis, the shutdown spill, and the
//! ids of everything PostgreSQL lacks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, error, warn};

use super::{journal_all, CacheSupervisor, Outcome, Stores, SupervisorError};
use crate::doc::{combine, DocId, Version};
use crate::durability::announce::announced;
use crate::durability::flush::{flushed, Dirty, Flushed};
use crate::durability::state::Settle;
use crate::metrics as m;
use crate::storage::{CacheError, Claimed, Commit, Pending};

/// What a flush persists from Redis: every document in `modifiedDocs` and every one of `mine`
/// (the ledger's entries durable in Redis), except `skip` (the ledger's journaled ones, which
/// the flusher writes itself). Each one is claimed for this replica's flush (another replica
/// flushing it now is skipped), read whole — compacted content and log, completed with
/// PostgreSQL's where that is only log entries — and its TTLs refreshed.
#[derive(Message, Default)]
#[rtype(result = "Collected")]
pub struct CollectDirty {
    pub mine: Vec<DocId>,
    pub skip: HashSet<DocId>,
    /// Also `modifiedDocs` (a full flush), not only `mine` (a room's leave flush).
    pub everything: bool,
    /// Leave out documents PostgreSQL took within this long (the periodic flush: another
    /// replica flushes them; see [`Claimed::Fresh`]). `None` when this flush must persist them
    /// now (a room's leave, the shutdown drain, an operator's flush).
    pub fresh: Option<Duration>,
}

#[derive(Default)]
pub struct Collected {
    pub dirty: Vec<Dirty>,
    /// Commits that need no write: nothing in the log after the point PostgreSQL recorded (as
    /// the cache knows it), which is all they carry.
    pub settled: Vec<Commit>,
    /// Documents of `mine` Redis could not give (unreachable, or it lost them): the flusher
    /// writes the ledger's version.
    pub unread: Vec<DocId>,
}

/// PostgreSQL could not take these documents yet: keep their cache entries from expiring.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeepCached {
    pub docs: Vec<DocId>,
}

/// PostgreSQL committed these: the one path by which the ledger, the journal and Redis (its
/// `modifiedDocs`, compaction and log trimming) learn it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed {
    pub done: Vec<Commit>,
}

/// Shutdown with PostgreSQL unavailable: journal these so the next start recovers them; with
/// `redis_too`, also everything only Redis holds (the drain ran out of time): the ledger's
/// entries durable there and every dirty document Redis holds, read as a flush reads them.
/// Answers how many versions were journaled.
#[derive(Message, Default)]
#[rtype(result = "Result<usize, SupervisorError>")]
pub struct Spill {
    pub versions: Vec<Version>,
    pub redis_too: bool,
}

/// Ids of every document PostgreSQL does not have yet: the ledger's and Redis's.
#[derive(Message)]
#[rtype(result = "Vec<DocId>")]
pub struct DirtyIds;

impl Handler<CollectDirty> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Collected>;

    /// Reads what Redis holds for the flush (see [`CollectDirty`]).
    fn handle(&mut self, msg: CollectDirty, _: &mut Context<Self>) -> Self::Result {
        if !self.allows_redis() {
            return Box::pin(fut::ready(Collected {
                unread: msg.mine,
                ..Collected::default()
            }));
        }
        let stores = self.stores.clone();
        let mine = msg.mine.clone();
        let fut = async move {
            let mut docs: Vec<DocId> = match msg.everything {
                true => stores.cache.dirty_docs().await?,
                false => Vec::new(),
            };
            docs.retain(|d| !msg.skip.contains(d));
            docs.extend(msg.mine.iter().cloned());
            docs.sort();
            docs.dedup();
            let started = std::time::Instant::now();
            let claimed = stores.cache.claim(&docs, msg.fresh).await?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            debug!(docs = docs.len(), ms, "claimed and read for a flush");
            let mut out = Collected::default();
            let mut orphans = Vec::new();
            let mine: HashSet<&DocId> = msg.mine.iter().collect();
            for (doc, claim) in docs.iter().zip(claimed) {
                match claim {
                    Claimed::Busy => {}
                    // Another replica flushed it moments ago: this replica's saves up to there
                    // are in PostgreSQL (the ledger keeps only later ones); the rest waits for
                    // that replica's next flush, or this one's once the window has passed.
                    Claimed::Fresh { persisted } => {
                        metrics::counter!(m::DOCS_LEFT_FRESH).increment(1);
                        if mine.contains(doc) {
                            out.settled.push(Commit {
                                recorded: Some(persisted),
                                ..Commit::of(doc.clone(), String::new())
                            });
                        }
                    }
                    Claimed::Missing if mine.contains(doc) => out.unread.push(doc.clone()),
                    Claimed::Missing => orphans.push(Commit::of(doc.clone(), String::new())),
                    Claimed::Found(pending) => match dirty(&stores, doc.clone(), *pending).await {
                        Ok(Flushed::Write(d)) => out.dirty.push(d),
                        Ok(Flushed::Settled(c)) => out.settled.push(c),
                        Err(e) => {
                            warn!(doc = %doc, error = %e, "cached content unusable, the flush skips it");
                            if mine.contains(doc) {
                                out.unread.push(doc.clone());
                            }
                        }
                    },
                }
            }
            // A dirty id without content can only mean the entry expired, which the TTL
            // refresh exists to prevent; say so loudly and stop carrying the id.
            if !orphans.is_empty() {
                error!(docs = ?orphans.iter().map(|c| &c.doc).collect::<Vec<_>>(), "dirty documents had no cached content");
                stores.cache.committed(&orphans).await?;
            }
            Ok::<_, CacheError>(out)
        };
        let fut: futures_util::future::BoxFuture<'static, _> = match &self.flush_thread {
            None => Box::pin(fut),
            Some(thread) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                thread.spawn(async move {
                    let _ = tx.send(fut.await);
                });
                Box::pin(async move {
                    rx.await.unwrap_or_else(|_| {
                        Err(CacheError::Unreachable("the flush thread stopped".into()))
                    })
                })
            }
        };
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            act.account(Outcome::from(&res), ctx);
            res.unwrap_or_else(|e| {
                warn!(error = %e, "reading dirty documents from redis failed");
                Collected {
                    unread: mine,
                    ..Collected::default()
                }
            })
        }))
    }
}

/// What a flush does with a document Redis holds (see [`flushed`]), once a compaction that
/// found no compacted content in the cache is completed with PostgreSQL's content.
async fn dirty(stores: &Stores, doc: DocId, mut p: Pending) -> Result<Flushed, SupervisorError> {
    metrics::histogram!(m::LOG_LENGTH).record(p.log_len as f64);
    let (compacted, folded) = match p.compaction.take() {
        None => (None, 0),
        Some(c) if c.whole => (Some(c.version), c.folded),
        Some(c) => {
            let stored = stores
                .store
                .load(&doc)
                .await
                .map_err(|e| SupervisorError::Unloadable(Arc::new(e)))?;
            (combine(stored.into_iter().chain([c.version]))?, c.folded)
        }
    };
    Ok(flushed(doc, p, compacted, folded))
}

impl Handler<Committed> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    /// Clears what PostgreSQL committed from the ledger, the journal and `modifiedDocs`. A
    /// journaled version PostgreSQL took before it was moved back into Redis is filled into
    /// the cache instead, so readers find it there.
    fn handle(&mut self, msg: Committed, ctx: &mut Context<Self>) -> Self::Result {
        let compactions = msg.done.iter().filter(|c| c.compacted.is_some()).count();
        metrics::counter!(m::COMPACTIONS).increment(compactions as u64);
        let after = self.durability.committed(&msg.done);
        self.settle(after.settle, ctx);
        let (done, announce) = (msg.done, after.announce);
        if !self.allows_redis() {
            return Box::pin(fut::ready(()));
        }
        let cache = self.stores.cache.clone();
        let (unannounced, committed) = (announce.clone(), done.clone());
        let call = async move {
            let started = std::time::Instant::now();
            for a in &announce {
                cache.restore(&a.version).await?;
            }
            let stale = cache.committed(&done).await;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            debug!(
                docs = done.len(),
                restores = announce.len(),
                ms,
                "commits told to redis"
            );
            stale
        };
        // A failed call leaves its documents owed to Redis until the next move back: without
        // that the other replicas' rooms and the cache would hold older content until its TTL
        // ran out.
        Box::pin(call.into_actor(self).map(move |res, act, ctx| {
            let settle = match &res {
                Ok(stale) => Settle {
                    forget: announced(&unannounced),
                    owe: act.durability.lost_logs(&committed, Some(stale)),
                },
                Err(e) => {
                    warn!(error = %e, "clearing flushed documents from redis failed");
                    act.durability.missed(unannounced, &committed)
                }
            };
            act.settle(settle, ctx);
            act.account(Outcome::from(&res), ctx);
        }))
    }
}

impl CacheSupervisor {
    /// The journal records what Redis is owed and lets what PostgreSQL committed go, in the
    /// background ([`crate::fallback::Fallback::settle`]).
    pub(super) fn settle(&self, settle: Settle, ctx: &mut Context<Self>) {
        if settle.is_empty() {
            return;
        }
        let fallback = self.stores.fallback.clone();
        ctx.spawn(
            async move {
                if let Err(e) = fallback.settle(settle.owe, &settle.forget).await {
                    warn!(error = %e, "dropping committed documents from the journal failed");
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<Spill> for CacheSupervisor {
    type Result = ResponseFuture<Result<usize, SupervisorError>>;

    /// Journals what PostgreSQL could not take at shutdown, as one group (one sync).
    fn handle(&mut self, msg: Spill, ctx: &mut Context<Self>) -> Self::Result {
        let stores = self.stores.clone();
        let mut versions = msg.versions;
        if msg.redis_too {
            versions.extend(self.durability.spill());
        }
        let me = ctx.address();
        Box::pin(async move {
            if msg.redis_too {
                let everything = CollectDirty {
                    everything: true,
                    ..CollectDirty::default()
                };
                let collected = me.send(everything).await.unwrap_or_default();
                versions.extend(collected.dirty.into_iter().map(|d| d.version));
            }
            let n = versions.len();
            let answers = journal_all(&stores, versions).await;
            let failed = answers.iter().filter(|a| a.is_err()).count();
            match answers.into_iter().find_map(Result::err) {
                None => Ok(n),
                Some(e) => {
                    error!(error = %e, failed, "journal write failed during shutdown");
                    Err(e)
                }
            }
        })
    }
}

impl Handler<DirtyIds> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Vec<DocId>>;

    /// The ledger's documents, plus `modifiedDocs` when Redis is in use.
    fn handle(&mut self, _: DirtyIds, _: &mut Context<Self>) -> Self::Result {
        let mut ids: Vec<DocId> = self.stores.ledger.docs();
        if !self.allows_redis() {
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
        if !self.allows_redis() || msg.docs.is_empty() {
            return Box::pin(fut::ready(()));
        }
        let cache = self.stores.cache.clone();
        self.best_effort(
            "refreshing the ttl of waiting documents failed",
            async move { cache.touch(&msg.docs).await },
        )
    }
}
