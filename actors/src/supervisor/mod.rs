//! The cache supervisor: the one actor that talks to Redis, so the circuit breaker sees every
//! success and failure, and the one that owns the journaled fallback. What to do — where a save
//! goes, what its answer means, what a commit lets go, what to spill and to move back — is
//! decided by the replica's [`Durability`], pure code that holds the ledger and the breaker;
//! this actor carries it out. Stamps (SPEC §6) make every Redis write conditional, so a late or
//! repeated write can never replace later content.
//!
//! - [`inbox`]: how rooms hand over their saves, gathered, without waking this actor for each.
//! - [`persisting`]: what the flusher asks: Redis's dirty documents, the one `Committed` path,
//!   TTL refreshes, the shutdown spill.
//! - [`events`]: awareness and stateless messages for the other replicas, best effort.
//! - [`read`]: the read path (ledger, Redis, then PostgreSQL under the cache-fill lock).
//! - [`recovery`]: the health check, the half-open probe, the spill of Redis-only content to the
//!   journal when Redis is suspect, and the move of journaled content back into Redis.
//! - [`replicas`]: the replica heartbeats (`replica:{id}`).

mod events;
mod inbox;
mod persisting;
mod read;
mod recovery;
mod replicas;

pub use crate::durability::flush::Dirty;
pub use crate::durability::state::{SaveAnswer, Stored};
pub use events::Publish;
pub use inbox::{SaveInbox, Unanswered};
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
use crate::doc::{CombineError, DocId, Version};
use crate::durability::state::{journaled, spilled, Durability, Route};
use crate::fallback::{Fallback, JournalError};
use crate::ledger::Ledger;
use crate::log::LogPos;
use crate::metrics as m;
use crate::storage::{Cache, DocStore, StoreError};

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
#[rtype(result = "Result<SaveAnswer, SupervisorError>")]
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
    /// How long saves gather in the [`SaveInbox`] before they go, at most (see `inbox`).
    pub save_linger: Duration,
    /// The same while the cache says no other replica follows any document
    /// ([`crate::storage::DocumentLog::others_may_follow`]): no replica waits to hear of the
    /// saves then, so they gather longer, into fewer calls.
    pub save_linger_alone: Duration,
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
    durability: Durability,
    settings: SupervisorSettings,
    recovery: recovery::Recovery,
    /// Wall-clock twin of the breaker's `opened_at`, for the admin view.
    opened_wall: Option<DateTime<Utc>>,
    /// Where a flush's reads of Redis run (their answers are large): not on this actor's thread,
    /// where saves would wait behind them. `None`: here.
    flush_thread: Option<ArbiterHandle>,
    /// The rooms' saves waiting (see `inbox`).
    draining: inbox::Draining,
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
        let durability = Durability::new(
            stores.ledger.clone(),
            Breaker::new(settings.failure_threshold, settings.open_for),
            &stores.fallback,
            (settings.retry_base, settings.retry_max),
        );
        CacheSupervisor {
            durability,
            recovery: recovery::Recovery::default(),
            stores,
            settings,
            opened_wall: None,
            flush_thread: None,
            draining: inbox::Draining::default(),
        }
    }

    /// Drains `inbox`, the rooms' saves.
    pub fn with_inbox(self, inbox: &SaveInbox) -> Self {
        CacheSupervisor {
            draining: inbox.draining(),
            ..self
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
        let ok = match outcome {
            Outcome::Untried => None,
            Outcome::Ok => Some(true),
            Outcome::Failed => Some(false),
        };
        if ok == Some(false) {
            metrics::counter!(m::REDIS_ERRORS).increment(1);
        }
        let accounted = self.durability.account(ok, Instant::now());
        self.transitioned(accounted.transition);
        if accounted.spill {
            self.spill(ctx);
        }
    }

    /// Whether Redis is asked at all (the breaker is not open).
    fn allows_redis(&self) -> bool {
        self.durability.breaker().allows_redis()
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
            state: self.durability.breaker().state().as_str(),
            forced: self.durability.breaker().forced(),
            consecutive_failures: self.durability.breaker().consecutive_failures(),
            opened_at: self.durability.breaker().opened_at().and(self.opened_wall),
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
    type Result = ResponseActFuture<Self, Result<SaveAnswer, SupervisorError>>;

    fn handle(&mut self, msg: Save, _: &mut Context<Self>) -> Self::Result {
        self.save(msg.version)
    }
}

impl CacheSupervisor {
    /// Stores one version where [`Durability::route`] says, journaled if Redis's answer
    /// calls for it ([`Durability::saved`]).
    fn save(
        &mut self,
        version: Version,
    ) -> ResponseActFuture<Self, Result<SaveAnswer, SupervisorError>> {
        let route = self.durability.route(&version.doc);
        let stores = self.stores.clone();
        let attempt = async move {
            let res = match route {
                Route::Redis { .. } => Some(stores.cache.save(&version).await),
                Route::Journal => None,
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
            let stored = match (route, res) {
                (Route::Redis { failures }, Some(Ok(saved))) => {
                    act.durability.saved(&version, failures, saved)
                }
                _ => None,
            };
            let stores = act.stores.clone();
            async move {
                let doc = version.doc.clone();
                let stored = match stored {
                    Some(stored) => stored,
                    None => {
                        journal(&stores, version).await?;
                        Stored::Fallback
                    }
                };
                let foreign = stores.ledger.foreign(&doc);
                Ok(SaveAnswer { stored, foreign })
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
    journaled(&stores.ledger, &stores.fallback, &version);
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
            spilled(&stores.ledger, &stores.fallback, version);
            Ok(())
        })
        .collect()
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
        let t = self.durability.force(msg.mode, Instant::now());
        info!(mode = ?msg.mode, "breaker forced by operator");
        self.transitioned(t);
        if msg.mode == ForceMode::Open {
            self.spill(ctx);
        }
        MessageResult(self.view())
    }
}
