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
//! - [`persisting`]: what the flusher asks: Redis's dirty documents, the one `Committed` path,
//!   TTL refreshes, the shutdown spill.
//! - [`events`]: awareness and stateless messages for the other replicas, best effort.
//! - [`read`]: the read path (ledger, Redis, then PostgreSQL under the cache-fill lock).
//! - [`recovery`]: the health check, the half-open probe, the spill of Redis-only content to the
//!   journal when Redis is suspect, and the move of journaled content back into Redis.
//! - [`replicas`]: the replica heartbeats (`replica:{id}`).

mod events;
mod persisting;
mod read;
mod recovery;
mod replicas;

pub use crate::durability::flush::Dirty;
pub use events::Publish;
pub use persisting::{CollectDirty, Collected, Committed, DirtyIds, KeepCached, Spill};
pub use replicas::{Beat, ListReplicas, ReplicasUnknown, Retire};
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::breaker::{Breaker, BreakerState, ForceMode, Transition};
use crate::doc::{CombineError, DocId, Kind, Version};
use crate::fallback::{Fallback, JournalError};
use crate::ledger::{Durable, Ledger};
use crate::log::LogPos;
use crate::metrics as m;
use crate::storage::{Cache, DocStore, StoreError, Written};

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

/// The latest version of a document: the ledger's, Redis's (compacted content and log) and,
/// where those are not the whole document, PostgreSQL's, combined (SPEC §6).
#[derive(Message)]
#[rtype(result = "Result<Loaded, SupervisorError>")]
pub struct Load {
    pub doc: DocId,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// `None` if the document was never stored.
    pub version: Option<Version>,
    /// The last entry of the document's log that `version` includes: a reader of the log
    /// continues from there.
    pub position: LogPos,
}

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
    /// Where a flush's reads of Redis run (their answers are large): not on this actor's thread,
    /// where saves would wait behind them. `None`: here.
    flush_thread: Option<ArbiterHandle>,
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
            flush_thread: None,
        }
    }

    /// Runs the flush's reads of Redis on `thread` (the flusher's).
    pub fn with_flush_thread(self, thread: ArbiterHandle) -> Self {
        CacheSupervisor {
            flush_thread: Some(thread),
            ..self
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
            fallback_docs: self.fallback_docs(),
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
        let journaled = self.stores.ledger.durable(&msg.version.doc) == Some(Durable::Journal);
        let to_redis = self.breaker.allows_redis() && !journaled;
        let failures = self.breaker.failures();
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
            // Redis failed since the save was sent: it may have restarted empty after taking
            // the save, and the spill that journals what only Redis held may be over.
            let failed_since = act.breaker.failures() != failures;
            let stores = act.stores.clone();
            async move {
                if let Some(Ok(saved)) = res {
                    match saved.written {
                        // Journaled too if the spill journaled the entry meanwhile: the
                        // document's saves go to the journal until it is moved back.
                        Written::Stored
                            if !failed_since
                                && stores.ledger.durable(&version.doc)
                                    != Some(Durable::Journal) =>
                        {
                            stores
                                .ledger
                                .saved(&version, Durable::Cache, saved.position);
                            return Ok(Stored::Cache);
                        }
                        Written::Stored => {}
                        // A later version is cached, but its own save may never be
                        // acknowledged (its replica may die before journaling it): this one
                        // waits until PostgreSQL holds it or a later one.
                        Written::Superseded => {
                            stores.ledger.saved(&version, Durable::Cache, None);
                            return Ok(Stored::Cache);
                        }
                        Written::Duplicate => return Ok(Stored::Duplicate),
                    }
                }
                journal(&stores, version).await.map(|()| Stored::Fallback)
            }
            .into_actor(act)
        }))
    }
}

/// Puts `version` into the journal and records in the ledger what the journal now holds for
/// its document (see [`journaled`]).
async fn journal(stores: &Stores, version: Version) -> Result<(), SupervisorError> {
    stores
        .fallback
        .put(version.clone())
        .await
        .map_err(SupervisorError::Unwritable)?;
    journaled(stores, &version);
    Ok(())
}

/// [`journal`] for many versions under one sync of the journal (the spills): one result per
/// version, in order. A failed write fails them all and leaves the ledger as it was.
async fn journal_all(stores: &Stores, versions: Vec<Version>) -> Vec<Result<(), SupervisorError>> {
    let answers = stores.fallback.put_all(versions.clone()).await;
    versions
        .iter()
        .zip(answers)
        .map(|(version, answer)| {
            answer.map_err(SupervisorError::Unwritable)?;
            journaled(stores, version);
            Ok(())
        })
        .collect()
}

/// The journal took `version`: the ledger learns what the journal now holds for its document,
/// so that what the flusher writes from the ledger is what the journal holds, and the commit of
/// it lets the journal's entry go.
///
/// - JSON: the journal keeps the later stamp, which may be an older put's.
/// - Yjs: the journal appended the save as an increment, and so does the ledger: neither copies
///   the document on a save's path. While the ledger's entry is journaled it has had every
///   earlier increment too. When it is not (no entry, or one whose saves went to Redis), the
///   journal's other parts join it as content from elsewhere, parts unmerged (the ledger merges
///   them when it is read, off the save's path). Checked after the put, with no `.await` before
///   the ledger takes the save: ledger entries leave in the `Committed` handler, on this actor's
///   thread, so none leaves in between. Only the flushes' progress rests on this: the journal
///   drops an entry only once PostgreSQL committed all of it, so an entry the ledger lacks part
///   of waits in the journal (until the next start replays it), it is never lost.
pub(crate) fn journaled(stores: &Stores, version: &Version) {
    let (doc, ledger) = (&version.doc, &stores.ledger);
    if version.kind == Kind::Json {
        match stores.fallback.get(doc) {
            Some(held) if held.hash != version.hash => ledger.absorbed(held, Durable::Journal),
            _ => ledger.saved(version, Durable::Journal, None),
        }
        return;
    }
    if ledger.durable(doc) != Some(Durable::Journal) {
        let parts = stores.fallback.parts(doc).into_iter();
        for part in parts.filter(|p| p.hash != version.hash) {
            ledger.absorbed(part, Durable::Journal);
        }
    }
    ledger.saved(version, Durable::Journal, None);
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
