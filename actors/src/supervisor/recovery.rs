//! What the supervisor does around a Redis outage, on its own timer:
//!
//! - **health check**: while the breaker is closed, one PING per `health_check`, so a Redis that
//!   died is noticed within about that long even when nobody is saving (SPEC §1.1);
//! - **spill**: on the first failure of a streak (or a forced open), every ledger entry that is
//!   durable only in Redis is journaled, since Redis may have lost it;
//! - **probe**: when the breaker turns half-open, one attempt on a fresh connection;
//! - **move back**: while the breaker is closed, journaled entries are written into Redis
//!   (conditionally: JSON by stamp, Yjs merged with what Redis holds), a bounded number at a
//!   time, off the save path — no ack waits for it. An entry leaves the journal only once
//!   PostgreSQL has committed it, never when it reaches Redis.

use std::time::Instant;

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::{journal_all, CacheSupervisor, Outcome, Stores};
use crate::breaker::BreakerState;
use crate::doc::Version;
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
        let (announce, journaled) = (moves.announce.clone(), moves.journaled);
        let fut = async move {
            for a in &announce {
                if let Err(e) = stores.cache.restore(&a.version).await {
                    return (0, Some(e));
                }
            }
            let moves = futures_util::stream::iter(journaled)
                .map(|v| {
                    let stores = stores.clone();
                    async move { move_one(&stores, v).await }
                })
                .buffer_unordered(MOVE_CONCURRENCY);
            let results: Vec<Result<bool, CacheError>> = moves.collect().await;
            let moved = results.iter().filter(|r| matches!(r, Ok(true))).count();
            let failed = results.into_iter().find_map(Result::err);
            (moved, failed)
        };
        let announce = moves.announce;
        ctx.spawn(fut.into_actor(self).map(|(moved, failed), act, ctx| {
            act.recovery.moving = false;
            let now = Instant::now();
            match act.durability.moved_back(failed.is_none(), announce, now) {
                Ok(forget) => {
                    act.forget(forget, ctx);
                    if moved > 0 {
                        info!(docs = moved, "journaled documents moved back to redis");
                    }
                    act.account(Outcome::Ok, ctx);
                }
                Err(wait) => {
                    let e = failed.map(|e| e.to_string()).unwrap_or_default();
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "moving journaled documents to redis failed");
                    act.account(Outcome::Failed, ctx);
                }
            }
        }));
    }
}

/// Moves one journaled version into Redis: appended to the document's log (JSON by stamp,
/// equal content under a larger stamp included: [`crate::storage::DocumentLog::restore`]),
/// where every replica reads it and merges it in (SPEC §8). True if the ledger entry was still
/// that version and is now durable in Redis.
async fn move_one(stores: &Stores, v: Version) -> Result<bool, CacheError> {
    let saved = stores.cache.restore(&v).await?;
    Ok(stores.ledger.moved(&v, Durable::Cache, saved.position))
}
