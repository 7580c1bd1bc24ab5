//! What the supervisor does around a Redis outage, on its own timer:
//!
//! - **health check**: while the breaker is closed, one PING per `health_check`, so a Redis that
//!   died is noticed within about that long even when nobody is saving (SPEC §1.1);
//! - **spill**: on the first failure of a streak (or a forced open), every ledger entry that is
//!   durable only in Redis is journaled, since Redis may have lost it;
//! - **probe**: when the breaker turns half-open, one attempt on a fresh connection;
//! - **move back**: while the breaker is closed, what PostgreSQL holds of each document Redis
//!   is owed is announced (loaded, and written by stamp), then journaled entries are written
//!   into Redis (conditionally: JSON by stamp, Yjs merged with what Redis holds), a bounded
//!   number at a time, off the save path — no ack waits for it. An entry leaves the journal
//!   only once PostgreSQL has committed it, never when it reaches Redis.

use std::time::Instant;

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::{journal_all, CacheSupervisor, Outcome, Stores};
use crate::breaker::BreakerState;
use crate::doc::{DocId, Version};
use crate::durability::state::Moved;
use crate::ledger::Durable;
use crate::metrics as m;
use crate::storage::CacheError;

/// Journaled documents written into Redis at once while moving them back.
const MOVE_CONCURRENCY: usize = 32;

/// The recovery work in flight (what to do is [`crate::durability::state::Durability`]'s).
#[derive(Default)]
pub(super) struct Recovery {
    probing: bool,
    checking: bool,
    moving: bool,
    last_check: Option<Instant>,
}

impl CacheSupervisor {
    pub(super) fn fallback_docs(&self) -> usize {
        self.durability.fallback_docs()
    }

    /// Every tick: the half-open probe when due, the health check, the move back.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!(m::FALLBACK_DOCS).set(self.fallback_docs() as f64);
        metrics::gauge!(m::JOURNAL_BYTES).set(self.stores.fallback.journal_bytes() as f64);
        let now = Instant::now();
        if let Some(t) = self.durability.breaker_mut().probe_due(now) {
            self.transitioned(Some(t));
        }
        match self.durability.breaker().state() {
            BreakerState::HalfOpen => self.probe(ctx),
            BreakerState::Closed => {
                let due = self
                    .recovery
                    .last_check
                    .is_none_or(|at| now.duration_since(at) >= self.settings.health_check);
                if due && !self.recovery.checking {
                    self.health_check(ctx);
                }
                self.move_back(ctx);
            }
            BreakerState::Open => {}
        }
    }

    fn health_check(&mut self, ctx: &mut Context<Self>) {
        self.recovery.checking = true;
        self.recovery.last_check = Some(Instant::now());
        let cache = self.stores.cache.clone();
        ctx.spawn(
            async move { cache.ping().await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.recovery.checking = false;
                    if let Err(e) = &res {
                        warn!(error = %e, "redis health check failed");
                    }
                    act.account(Outcome::from(&res), ctx);
                }),
        );
    }

    /// One real attempt on a fresh connection; closes the breaker if it works.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.recovery.probing {
            return;
        }
        self.recovery.probing = true;
        let cache = self.stores.cache.clone();
        ctx.spawn(
            async move { cache.probe().await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.recovery.probing = false;
                    if let Err(e) = &res {
                        debug!(error = %e, "breaker probe failed");
                    }
                    act.account(Outcome::from(&res), ctx);
                    if act.allows_redis() {
                        act.move_back(ctx);
                    }
                }),
        );
    }

    /// Redis may have lost what it held: journal every entry that is durable only there, as
    /// one group (one sync however many there are), since a SIGKILL from the moment the breaker
    /// has noticed must lose none of them (SPEC §1.1 ★).
    pub(super) fn spill(&mut self, ctx: &mut Context<Self>) {
        let cached = self.durability.spill();
        if cached.is_empty() {
            return;
        }
        info!(
            docs = cached.len(),
            "redis suspect, journaling what only it held"
        );
        let stores = self.stores.clone();
        ctx.spawn(
            async move {
                let started = Instant::now();
                let docs = cached.len();
                let answers = journal_all(&stores, cached).await;
                let failed = answers.iter().filter(|a| a.is_err()).count();
                let elapsed_ms = started.elapsed().as_millis() as u64;
                match answers.into_iter().find_map(Result::err) {
                    None => info!(docs, elapsed_ms, "journaled what only redis held"),
                    Some(e) => {
                        warn!(error = %e, docs, failed, "journaling redis-only content failed")
                    }
                }
            }
            .into_actor(self),
        );
    }

    /// Writes journaled entries into Redis; each one that did not change meanwhile is then
    /// durable in Redis too, and its document's saves go to Redis again.
    fn move_back(&mut self, ctx: &mut Context<Self>) {
        if self.recovery.moving {
            return;
        }
        let Some(moves) = self.durability.move_back(Instant::now()) else {
            return;
        };
        self.recovery.moving = true;
        let stores = self.stores.clone();
        let (owed, journaled) = (moves.announce, moves.journaled);
        let fut = async move {
            let mut moved = announce_owed(&stores, owed).await;
            if !moved.redis_ok {
                return (0, moved);
            }
            let moves = futures_util::stream::iter(journaled)
                .map(|v| {
                    let stores = stores.clone();
                    async move { move_one(&stores, v).await }
                })
                .buffer_unordered(MOVE_CONCURRENCY);
            let results: Vec<Result<bool, CacheError>> = moves.collect().await;
            let count = results.iter().filter(|r| matches!(r, Ok(true))).count();
            if let Some(e) = results.into_iter().find_map(Result::err) {
                warn!(error = %e, "moving journaled documents to redis failed");
                moved.redis_ok = false;
            }
            (count, moved)
        };
        ctx.spawn(fut.into_actor(self).map(|(count, moved), act, ctx| {
            act.recovery.moving = false;
            let redis_ok = moved.redis_ok;
            let (paid, retry) = act.durability.moved_back(moved, Instant::now());
            if !paid.is_empty() {
                let fallback = act.stores.fallback.clone();
                ctx.spawn(
                    async move {
                        if let Err(e) = fallback.announced(paid).await {
                            warn!(error = %e, "recording announcements in the journal failed");
                        }
                    }
                    .into_actor(act),
                );
            }
            match retry {
                None if count > 0 => info!(docs = count, "journaled documents moved back to redis"),
                None => {}
                Some(wait) => {
                    let retry_in_ms = wait.as_millis() as u64;
                    warn!(
                        retry_in_ms,
                        "the move back to redis did not finish, will retry"
                    );
                }
            }
            let outcome = if redis_ok {
                Outcome::Ok
            } else {
                Outcome::Failed
            };
            act.account(outcome, ctx);
        }));
    }
}

/// Announces into Redis what PostgreSQL holds of each document Redis is owed (written by
/// stamp: later content Redis holds stays). Stops at the first Redis failure; a document
/// PostgreSQL could not load stays owed.
async fn announce_owed(stores: &Stores, owed: Vec<DocId>) -> Moved {
    let mut moved = Moved {
        redis_ok: true,
        ..Moved::default()
    };
    let mut owed = owed.into_iter();
    for doc in owed.by_ref() {
        let stored = match stores.store.load(&doc).await {
            Ok(stored) => stored,
            Err(e) => {
                warn!(%doc, error = %e, "loading content redis is owed failed");
                moved.unannounced.push(doc);
                continue;
            }
        };
        if let Some(v) = stored {
            if let Err(e) = stores.cache.restore(&v).await {
                warn!(%doc, error = %e, "announcing content into redis failed");
                moved.redis_ok = false;
                moved.unannounced.push(doc);
                break;
            }
        }
        moved.announced.push(doc);
    }
    moved.unannounced.extend(owed);
    moved
}

/// Moves one journaled version into Redis: appended to the document's log (JSON by stamp,
/// equal content under a larger stamp included: [`crate::storage::DocumentLog::restore`]),
/// where every replica reads it and merges it in (SPEC §8). True if the ledger entry was still
/// that version and is now durable in Redis.
async fn move_one(stores: &Stores, v: Version) -> Result<bool, CacheError> {
    let saved = stores.cache.restore(&v).await?;
    Ok(stores.ledger.moved(&v, Durable::Cache, saved.position))
}
