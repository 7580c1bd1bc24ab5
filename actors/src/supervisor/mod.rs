//! The cache supervisor: the one actor that talks to Redis, so the circuit breaker sees every
//! success and failure, and the one that owns the journaled fallback and records every save in
//! the [ledger](crate::ledger).
//!
//! Routing rule for a save: Redis while the breaker is closed, the journal otherwise — and the
//! journal also while the ledger says the document's newest version is only journaled (not yet
//! moved back into Redis by [`recovery`]), so that a document has one place its saves go until
//! the move is done. Stamps (SPEC §6) make every Redis write conditional, so a late or repeated
//! write can never replace later content.
//!
//! - [`read`]: the read path (ledger, Redis, then PostgreSQL under the cache-fill lock).
//! - [`recovery`]: the health check, the half-open probe, the spill of Redis-only content to the
//!   journal when Redis is suspect, and the move of journaled content back into Redis.

mod read;
mod recovery;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use crate::breaker::{Breaker, BreakerState, ForceMode, Transition};
use crate::doc::{CombineError, DocId, Version};
use crate::fallback::{Fallback, JournalError};
use crate::ledger::{Durable, Ledger};
use crate::metrics as m;
use crate::storage::{Cache, DocStore, StoreError};

/// Where an acknowledged version went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Cache,
    Fallback,
    Duplicate,
}

impl Stored {
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Cache => "cache",
            Stored::Fallback => "fallback",
            Stored::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SupervisorError {
    #[error("neither redis nor the journal accepted the update: {0}")]
    Unwritable(#[source] JournalError),
    #[error("document could not be loaded: {0}")]
    Unloadable(#[source] Arc<StoreError>),
    #[error("document could not be loaded: {0}")]
    Uncombinable(#[from] CombineError),
}

/// Stores a version: Redis, or the journal. Answers only once it is stored.
#[derive(Message)]
#[rtype(result = "Result<Stored, SupervisorError>")]
pub struct Save {
    pub version: Version,
}

/// The latest version of a document: the ledger's and Redis's combined (SPEC §6), else
/// PostgreSQL's (under the cache-fill lock). `None` if it was never stored.
#[derive(Message)]
#[rtype(result = "Result<Option<Version>, SupervisorError>")]
pub struct Load {
    pub doc: DocId,
}

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

#[derive(Message)]
#[rtype(result = "BreakerView")]
pub struct GetBreaker;

#[derive(Message)]
#[rtype(result = "BreakerView")]
pub struct ForceBreaker {
    pub mode: ForceMode,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BreakerView {
    pub state: &'static str,
    pub forced: bool,
    pub consecutive_failures: u32,
    pub opened_at: Option<DateTime<Utc>>,
    pub fallback_docs: usize,
}

#[derive(Clone, Debug)]
pub struct SupervisorSettings {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub lock_poll: Duration,
    pub lock_wait: Duration,
    /// A Redis that died is noticed within about this long (SPEC §1.1): the health check.
    pub health_check: Duration,
    /// Backoff between failed attempts to move journaled documents back into Redis.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// The stores the supervisor drives. Cloning is shallow.
#[derive(Clone)]
pub struct Stores {
    pub cache: Arc<dyn Cache>,
    pub store: Arc<dyn DocStore>,
    pub fallback: Fallback,
    pub ledger: Ledger,
}

pub struct CacheSupervisor {
    stores: Stores,
    breaker: Breaker,
    settings: SupervisorSettings,
    recovery: recovery::Recovery,
    /// Wall-clock twin of the breaker's `opened_at`, for the admin view.
    opened_wall: Option<DateTime<Utc>>,
}

/// How a Redis call went, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Untried,
    Ok,
    Failed,
}

impl<T, E> From<&Result<T, E>> for Outcome {
    fn from(res: &Result<T, E>) -> Self {
        match res {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Failed,
        }
    }
}

impl CacheSupervisor {
    /// The journal's entries are what PostgreSQL lacked when this process last stopped: they
    /// seed the ledger.
    pub fn new(stores: Stores, settings: SupervisorSettings) -> Self {
        for v in stores.fallback.dirty() {
            stores.ledger.absorbed(v, Durable::Journal);
        }
        CacheSupervisor {
            breaker: Breaker::new(settings.failure_threshold, settings.open_for),
            recovery: recovery::Recovery::new(settings.retry_base, settings.retry_max),
            stores,
            settings,
            opened_wall: None,
        }
    }

    fn account(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match outcome {
            Outcome::Untried => {}
            Outcome::Failed => {
                metrics::counter!(m::REDIS_ERRORS).increment(1);
                let first = self.breaker.consecutive_failures() == 0;
                let t = self.breaker.on_failure(now);
                self.transitioned(t);
                if first {
                    // The first failure of a streak already means Redis may have lost data.
                    self.spill(ctx);
                }
            }
            Outcome::Ok => {
                let t = self.breaker.on_success(now);
                self.transitioned(t);
            }
        }
    }

    fn transitioned(&mut self, t: Option<Transition>) {
        let Some(t) = t else { return };
        let level = match t.to {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!(m::BREAKER_STATE).set(level);
        metrics::counter!(m::BREAKER_TRANSITIONS, "to" => t.to.as_str()).increment(1);
        match t.to {
            BreakerState::Open => {
                self.opened_wall = Some(Utc::now());
                warn!(
                    from = t.from.as_str(),
                    "breaker open, writes go to the journaled fallback"
                )
            }
            BreakerState::HalfOpen => info!("breaker half-open, probing redis"),
            BreakerState::Closed => {
                self.opened_wall = None;
                info!(from = t.from.as_str(), "breaker closed, writes go to redis")
            }
        }
    }

    fn view(&self) -> BreakerView {
        BreakerView {
            state: self.breaker.state().as_str(),
            forced: self.breaker.forced(),
            consecutive_failures: self.breaker.consecutive_failures(),
            opened_at: self.breaker.opened_at().and(self.opened_wall),
            fallback_docs: self.stores.ledger.count(Durable::Journal),
        }
    }

    /// Runs a Redis call nobody waits on: a failure is logged with `failure` and, like a
    /// success, counted by the breaker.
    fn best_effort<E: std::fmt::Display + 'static>(
        &self,
        failure: &'static str,
        call: impl std::future::Future<Output = Result<(), E>> + 'static,
    ) -> ResponseActFuture<Self, ()> {
        Box::pin(call.into_actor(self).map(move |res, act, ctx| {
            if let Err(e) = &res {
                warn!(error = %e, "{failure}");
            }
            act.account(Outcome::from(&res), ctx);
        }))
    }
}

impl Actor for CacheSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let tick = (self.settings.open_for / 4)
            .min(self.settings.health_check)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        ctx.run_interval(tick, |act, ctx| act.tick(ctx));
        // The first command makes the shared connection, and its driver task lives on the thread
        // that made it: here, beside the supervisor, so a save's round trip stays on one thread.
        let cache = self.stores.cache.clone();
        ctx.spawn(
            async move {
                if let Err(e) = cache.ping().await {
                    warn!(error = %e, "redis unreachable at start, serving from the fallback until it answers");
                }
            }
            .into_actor(self),
        );
        if !self.stores.fallback.is_empty() {
            info!(
                docs = self.stores.fallback.len(),
                "journal replayed into the fallback"
            );
        }
    }
}

impl Handler<Save> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Result<Stored, SupervisorError>>;

    /// Stores one version; see the module doc for the routing rule.
    fn handle(&mut self, msg: Save, _: &mut Context<Self>) -> Self::Result {
        let journaled = self
            .stores
            .ledger
            .get(&msg.version.doc)
            .is_some_and(|e| e.durable == Durable::Journal);
        let to_redis = self.breaker.allows_redis() && !journaled;
        let stores = self.stores.clone();
        let version = msg.version;
        let attempt = async move {
            let res = match to_redis {
                true => Some(stores.cache.save(&version).await),
                false => None,
            };
            (res, version)
        };
        Box::pin(attempt.into_actor(self).then(move |(res, version), act, ctx| {
            let outcome = match &res {
                Some(res) => Outcome::from(res),
                None => Outcome::Untried,
            };
            if let Some(Err(e)) = &res {
                warn!(doc = %version.doc, error = %e, "redis save failed, using the fallback");
            }
            act.account(outcome, ctx);
            let stores = act.stores.clone();
            async move {
                if outcome == Outcome::Ok {
                    stores.ledger.saved(&version, Durable::Cache);
                    return Ok(Stored::Cache);
                }
                journal(&stores, version).await.map(|()| Stored::Fallback)
            }
            .into_actor(act)
        }))
    }
}

/// Puts `version` into the journal and records what the journal now holds for its document
/// (the journal merges Yjs states and keeps the later JSON stamp) in the ledger.
async fn journal(stores: &Stores, version: Version) -> Result<(), SupervisorError> {
    let doc = version.doc.clone();
    stores
        .fallback
        .put(version.clone())
        .await
        .map_err(SupervisorError::Unwritable)?;
    match stores.fallback.get(&doc) {
        Some(held) if held.hash != version.hash => stores.ledger.absorbed(held, Durable::Journal),
        _ => stores.ledger.saved(&version, Durable::Journal),
    }
    Ok(())
}

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

impl Handler<GetBreaker> for CacheSupervisor {
    type Result = MessageResult<GetBreaker>;

    /// The admin view of the breaker.
    fn handle(&mut self, _: GetBreaker, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.view())
    }
}

impl Handler<ForceBreaker> for CacheSupervisor {
    type Result = MessageResult<ForceBreaker>;

    /// Operator override: force open (Redis maintenance), force closed, or back to auto.
    fn handle(&mut self, msg: ForceBreaker, ctx: &mut Context<Self>) -> Self::Result {
        let t = self.breaker.force(msg.mode, Instant::now());
        info!(mode = ?msg.mode, "breaker forced by operator");
        self.transitioned(t);
        if msg.mode == ForceMode::Open {
            self.spill(ctx);
        }
        MessageResult(self.view())
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
