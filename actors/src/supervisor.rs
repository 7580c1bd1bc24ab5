//! The cache supervisor: the one actor that talks to Redis, so the circuit breaker sees every
//! success and failure, and the one that owns the journaled fallback.
//!
//! Routing rule for a save: Redis while the breaker is closed, the fallback otherwise, and also
//! the fallback while the fallback still holds an older version of that document. That last rule
//! keeps one writer per document in Redis: fallback entries reach Redis only through
//! [`migration`](CacheSupervisor::migrate), which runs when the breaker is closed and writes each
//! entry before removing it, so a stale fallback version can never overwrite a newer Redis one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tracing::{debug, error, info, warn};

use crate::breaker::{Breaker, BreakerState, ForceMode, Transition};
use crate::doc::{DocId, Version};
use crate::fallback::Fallback;
use crate::metrics as m;
use crate::storage::{PgStore, RedisCache};

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
    Unwritable(String),
    #[error("document could not be loaded: {0}")]
    Unloadable(String),
}

/// Stores a version: Redis, or the journaled fallback. Answers only once it is stored.
#[derive(Message)]
#[rtype(result = "Result<Stored, SupervisorError>")]
pub struct Save {
    pub version: Version,
    /// Skip Redis: used to spill a room's content when Redis is suspected to have lost it.
    pub to_fallback: bool,
}

/// The latest stored version of a document: fallback, then Redis, then PostgreSQL (under the
/// cache-fill lock). `None` if it was never stored.
#[derive(Message)]
#[rtype(result = "Result<Option<Version>, SupervisorError>")]
pub struct Load {
    pub doc: DocId,
}

/// Everything not yet in PostgreSQL, from the fallback and (breaker closed) from Redis, whose
/// TTLs are refreshed on the way so waiting content never expires. Documents in `skip` (the
/// open rooms' own, newer copies, which the flusher writes itself) are left out.
#[derive(Message, Default)]
#[rtype(result = "Vec<Version>")]
pub struct CollectDirty {
    pub skip: std::collections::HashSet<DocId>,
}

/// PostgreSQL could not take these documents yet: keep their cache entries from expiring while
/// they wait (the ones `CollectDirty` skipped were not refreshed on the way).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeepCached {
    pub docs: Vec<DocId>,
}

/// PostgreSQL committed these (doc, hash) pairs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persisted {
    pub done: Vec<(DocId, String)>,
}

/// Shutdown with PostgreSQL unavailable: journal these so the next start recovers them.
#[derive(Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct Spill {
    pub versions: Vec<Version>,
}

/// Ids of every document the fallback or Redis holds that PostgreSQL does not have yet.
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

/// Told to the listener (the room registry) when Redis may have lost what it held: rooms then
/// spill their unpersisted content into the journal.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct CacheSuspect;

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetListener {
    pub listener: Recipient<CacheSuspect>,
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
    /// Backoff between failed attempts to move fallback entries back into Redis.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

pub struct CacheSupervisor {
    cache: RedisCache,
    store: PgStore,
    fallback: Fallback,
    breaker: Breaker,
    settings: SupervisorSettings,
    /// Fallback entries PostgreSQL already holds (doc → hash): not dirty any more, but kept
    /// until migrated, because Redis may still hold an older version of them.
    persisted: HashMap<DocId, String>,
    listener: Option<Recipient<CacheSuspect>>,
    probing: bool,
    /// After a failed migration, none is tried before this (exponential backoff): a Redis that
    /// the breaker still lets through (forced closed) must not keep the mailbox blocked.
    migrate_failures: u32,
    next_migration: Option<Instant>,
    /// Wall-clock twin of the breaker's `opened_at`, for the admin view.
    opened_wall: Option<DateTime<Utc>>,
}

/// How the Redis calls inside one async step went, applied to the breaker afterwards.
#[derive(Default, Clone, Copy)]
struct Outcome {
    ok: bool,
    failed: bool,
}

impl CacheSupervisor {
    /// Runs a Redis call nobody waits on: a failure is logged with `failure` and, like a
    /// success, counted by the breaker.
    fn best_effort(
        &self,
        failure: &'static str,
        call: impl std::future::Future<Output = Result<(), crate::storage::CacheError>> + 'static,
    ) -> ResponseActFuture<Self, ()> {
        Box::pin(call.into_actor(self).map(move |res, act, _| {
            if let Err(e) = &res {
                warn!(error = %e, "{failure}");
            }
            act.account(Outcome {
                ok: res.is_ok(),
                failed: res.is_err(),
            });
        }))
    }

    pub fn new(
        cache: RedisCache,
        store: PgStore,
        fallback: Fallback,
        settings: SupervisorSettings,
    ) -> Self {
        CacheSupervisor {
            breaker: Breaker::new(settings.failure_threshold, settings.open_for),
            cache,
            store,
            fallback,
            settings,
            persisted: HashMap::new(),
            listener: None,
            probing: false,
            migrate_failures: 0,
            next_migration: None,
            opened_wall: None,
        }
    }

    fn account(&mut self, outcome: Outcome) {
        let now = Instant::now();
        if outcome.failed {
            metrics::counter!(m::REDIS_ERRORS).increment(1);
            let first = self.breaker.consecutive_failures() == 0;
            let t = self.breaker.on_failure(now);
            self.transitioned(t);
            if first {
                // The first failure of a streak already means Redis may have lost data.
                if let Some(l) = &self.listener {
                    l.do_send(CacheSuspect);
                }
            }
        } else if outcome.ok {
            let t = self.breaker.on_success(now);
            self.transitioned(t);
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
            fallback_docs: self.fallback.len(),
        }
    }

    /// Every tick: run the half-open probe when due, and move fallback entries into Redis
    /// while the breaker is closed.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!(m::FALLBACK_DOCS).set(self.fallback.len() as f64);
        metrics::gauge!(m::JOURNAL_BYTES).set(self.fallback.journal_bytes() as f64);
        if let Some(t) = self.breaker.probe_due(Instant::now()) {
            self.transitioned(Some(t));
        }
        if self.breaker.state() == BreakerState::HalfOpen && !self.probing {
            self.probing = true;
            let cache = self.cache.clone();
            ctx.wait(
                async move { cache.ping().await }
                    .into_actor(self)
                    .map(|res, act, ctx| {
                        act.probing = false;
                        if let Err(e) = &res {
                            debug!(error = %e, "breaker probe failed");
                        }
                        act.account(Outcome {
                            ok: res.is_ok(),
                            failed: res.is_err(),
                        });
                        if act.breaker.allows_redis() {
                            act.migrate(ctx);
                        }
                    }),
            );
        } else if self.breaker.allows_redis()
            && !self.fallback.is_empty()
            && self.next_migration.is_none_or(|at| Instant::now() >= at)
        {
            self.migrate(ctx);
        }
    }

    /// Writes every fallback entry into Redis (dirty ones marked dirty there, persisted ones as
    /// plain cache fills), then drops the entries that did not change meanwhile. Runs with the
    /// mailbox paused so no save for these documents interleaves.
    fn migrate(&mut self, ctx: &mut Context<Self>) {
        let entries = self.fallback.dirty();
        if entries.is_empty() {
            return;
        }
        let persisted: Vec<bool> = entries
            .iter()
            .map(|v| self.persisted.get(&v.doc) == Some(&v.hash))
            .collect();
        let cache = self.cache.clone();
        let fallback = self.fallback.clone();
        let fut = async move {
            let mut moved = Vec::with_capacity(entries.len());
            for (v, clean) in entries.iter().zip(persisted) {
                let res = if clean {
                    cache.fill(v).await
                } else {
                    cache.save(v).await
                };
                if let Err(e) = res {
                    return (moved, Err(e.to_string()));
                }
                moved.push((v.doc.clone(), v.hash.clone()));
            }
            let res = fallback.committed(&moved).await.map_err(|e| e.to_string());
            (moved, res)
        };
        ctx.wait(fut.into_actor(self).map(|(moved, res), act, _| {
            match &res {
                Ok(()) => {
                    for (doc, _) in &moved {
                        act.persisted.remove(doc);
                    }
                    act.migrate_failures = 0;
                    act.next_migration = None;
                    info!(docs = moved.len(), "fallback documents moved back to redis");
                }
                Err(e) => {
                    act.migrate_failures = act.migrate_failures.saturating_add(1);
                    let exp = act.migrate_failures.saturating_sub(1).min(16);
                    let wait = (act.settings.retry_base * 2u32.pow(exp)).min(act.settings.retry_max);
                    act.next_migration = Some(Instant::now() + wait);
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "moving fallback documents to redis failed");
                }
            }
            act.account(Outcome {
                ok: res.is_ok(),
                failed: res.is_err(),
            });
        }));
    }
}

impl Actor for CacheSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let tick =
            (self.settings.open_for / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        ctx.run_interval(tick, |act, ctx| act.tick(ctx));
        // The first command makes the shared connection, and its driver task lives on the thread
        // that made it: here, beside the supervisor, so a save's round trip stays on one thread.
        let cache = self.cache.clone();
        ctx.spawn(
            async move {
                if let Err(e) = cache.ping().await {
                    warn!(error = %e, "redis unreachable at start, serving from the fallback until it answers");
                }
            }
            .into_actor(self),
        );
        if !self.fallback.is_empty() {
            info!(
                docs = self.fallback.len(),
                "journal replayed into the fallback"
            );
        }
    }
}

impl Handler<Save> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Result<Stored, SupervisorError>>;

    /// Stores one version; see the module doc for the routing rule.
    fn handle(&mut self, msg: Save, _: &mut Context<Self>) -> Self::Result {
        let to_redis = !msg.to_fallback
            && self.breaker.allows_redis()
            && self.fallback.get(&msg.version.doc).is_none();
        let cache = self.cache.clone();
        let fallback = self.fallback.clone();
        let version = msg.version;
        let attempt = async move {
            let res = if to_redis {
                Some(cache.save(&version).await)
            } else {
                None
            };
            (res, version)
        };
        Box::pin(attempt.into_actor(self).then(move |(res, version), act, _| {
            let cached = match res {
                Some(Ok(())) => {
                    act.account(Outcome { ok: true, failed: false });
                    true
                }
                Some(Err(e)) => {
                    warn!(doc = %version.doc, error = %e, "redis save failed, using the fallback");
                    act.account(Outcome { ok: false, failed: true });
                    false
                }
                None => false,
            };
            act.persisted.remove(&version.doc);
            async move {
                if cached {
                    return Ok(Stored::Cache);
                }
                fallback
                    .put(version)
                    .await
                    .map(|()| Stored::Fallback)
                    .map_err(|e| SupervisorError::Unwritable(e.to_string()))
            }
            .into_actor(act)
        }))
    }
}

impl Handler<Load> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Result<Option<Version>, SupervisorError>>;

    /// Reads a document, filling the cache from PostgreSQL under `lock:{id}` on a miss.
    fn handle(&mut self, msg: Load, _: &mut Context<Self>) -> Self::Result {
        if let Some(v) = self.fallback.get(&msg.doc) {
            return Box::pin(fut::ready(Ok(Some(v))));
        }
        let use_redis = self.breaker.allows_redis();
        let (cache, store, settings) = (
            self.cache.clone(),
            self.store.clone(),
            self.settings.clone(),
        );
        let fut = async move {
            let mut outcome = Outcome::default();
            let res = if use_redis {
                load_through_cache(&cache, &store, &settings, &msg.doc, &mut outcome).await
            } else {
                store.load(&msg.doc).await.map_err(|e| e.to_string())
            };
            (res.map_err(SupervisorError::Unloadable), outcome)
        };
        Box::pin(fut.into_actor(self).map(|(res, outcome), act, _| {
            act.account(outcome);
            res
        }))
    }
}

/// The read path with the stampede guard: only the holder of `lock:{id}` reads PostgreSQL and
/// fills the cache; the others poll the cache until the lock is released, then read it (or, if
/// the holder found nothing or failed, PostgreSQL).
async fn load_through_cache(
    cache: &RedisCache,
    store: &PgStore,
    settings: &SupervisorSettings,
    doc: &DocId,
    outcome: &mut Outcome,
) -> Result<Option<Version>, String> {
    let from_pg = || async { store.load(doc).await.map_err(|e| e.to_string()) };
    match cache.load(doc).await {
        Ok(Some(v)) => {
            outcome.ok = true;
            return Ok(Some(v));
        }
        Ok(None) => outcome.ok = true,
        Err(e) => {
            debug!(doc = %doc, error = %e, "cache read failed, reading postgres");
            outcome.failed = true;
            return from_pg().await;
        }
    }
    match cache.try_lock(doc).await {
        Ok(true) => {
            let res = match cache.load(doc).await {
                Ok(Some(v)) => Ok(Some(v)),
                _ => {
                    let loaded = from_pg().await;
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
            from_pg().await
        }
        Err(e) => {
            debug!(doc = %doc, error = %e, "cache lock failed, reading postgres");
            outcome.failed = true;
            from_pg().await
        }
    }
}

impl Handler<CollectDirty> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Vec<Version>>;

    /// Fallback entries win over Redis for the same document: they are newer by construction.
    fn handle(&mut self, msg: CollectDirty, _: &mut Context<Self>) -> Self::Result {
        let held = self.fallback.dirty();
        let in_fallback: std::collections::HashSet<DocId> =
            held.iter().map(|v| v.doc.clone()).collect();
        let mut out: Vec<Version> = held
            .into_iter()
            .filter(|v| self.persisted.get(&v.doc) != Some(&v.hash) && !msg.skip.contains(&v.doc))
            .collect();
        if !self.breaker.allows_redis() {
            return Box::pin(fut::ready(out));
        }
        let cache = self.cache.clone();
        let fut = async move {
            let docs: Vec<DocId> = cache
                .dirty_docs()
                .await?
                .into_iter()
                .filter(|d| !in_fallback.contains(d) && !msg.skip.contains(d))
                .collect();
            let found = cache.load_dirty(&docs).await?;
            // A dirty id without content can only mean the entry expired, which the TTL
            // refresh above exists to prevent; say so loudly and stop carrying the id.
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
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            match res {
                Ok(found) => {
                    act.account(Outcome {
                        ok: true,
                        failed: false,
                    });
                    out.extend(found.into_iter().flatten());
                }
                Err(e) => {
                    warn!(error = %e, "reading dirty documents from redis failed");
                    act.account(Outcome {
                        ok: false,
                        failed: true,
                    });
                }
            }
            out
        }))
    }
}

impl Handler<Persisted> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    /// Clears what PostgreSQL committed from `modifiedDocs` and marks fallback entries clean.
    fn handle(&mut self, msg: Persisted, _: &mut Context<Self>) -> Self::Result {
        for (doc, hash) in &msg.done {
            if self.fallback.get(doc).is_some_and(|v| &v.hash == hash) {
                self.persisted.insert(doc.clone(), hash.clone());
            }
        }
        if !self.breaker.allows_redis() {
            return Box::pin(fut::ready(()));
        }
        let cache = self.cache.clone();
        self.best_effort("clearing flushed documents from redis failed", async move {
            cache.mark_clean(&msg.done).await
        })
    }
}

impl Handler<Spill> for CacheSupervisor {
    type Result = ResponseFuture<Result<(), SupervisorError>>;

    /// Journals versions PostgreSQL could not take at shutdown.
    fn handle(&mut self, msg: Spill, _: &mut Context<Self>) -> Self::Result {
        for v in &msg.versions {
            self.persisted.remove(&v.doc);
        }
        let fallback = self.fallback.clone();
        Box::pin(async move {
            let puts = msg.versions.into_iter().map(|v| fallback.put(v));
            for res in futures_util::future::join_all(puts).await {
                res.map_err(|e| {
                    error!(error = %e, "journal write failed during shutdown");
                    SupervisorError::Unwritable(e.to_string())
                })?;
            }
            Ok(())
        })
    }
}

impl Handler<DirtyIds> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Vec<DocId>>;

    /// Fallback entries not yet persisted, plus `modifiedDocs` when Redis is in use.
    fn handle(&mut self, _: DirtyIds, _: &mut Context<Self>) -> Self::Result {
        let mut ids: Vec<DocId> = self
            .fallback
            .dirty()
            .into_iter()
            .filter(|v| self.persisted.get(&v.doc) != Some(&v.hash))
            .map(|v| v.doc)
            .collect();
        if !self.breaker.allows_redis() {
            return Box::pin(fut::ready(ids));
        }
        let cache = self.cache.clone();
        Box::pin(
            async move { cache.dirty_docs().await }
                .into_actor(self)
                .map(move |res, act, _| {
                    act.account(Outcome {
                        ok: res.is_ok(),
                        failed: res.is_err(),
                    });
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
    fn handle(&mut self, msg: ForceBreaker, _: &mut Context<Self>) -> Self::Result {
        let t = self.breaker.force(msg.mode, Instant::now());
        info!(mode = ?msg.mode, "breaker forced by operator");
        self.transitioned(t);
        if msg.mode == ForceMode::Open {
            if let Some(l) = &self.listener {
                l.do_send(CacheSuspect);
            }
        }
        MessageResult(self.view())
    }
}

impl Handler<SetListener> for CacheSupervisor {
    type Result = ();

    /// Registers who hears about suspected cache loss.
    fn handle(&mut self, msg: SetListener, _: &mut Context<Self>) {
        self.listener = Some(msg.listener);
    }
}

impl Handler<KeepCached> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    /// Refreshes the TTLs (breaker closed only; a failure counts against the breaker).
    fn handle(&mut self, msg: KeepCached, _: &mut Context<Self>) -> Self::Result {
        if !self.breaker.allows_redis() || msg.docs.is_empty() {
            return Box::pin(fut::ready(()));
        }
        let cache = self.cache.clone();
        self.best_effort(
            "refreshing the ttl of waiting documents failed",
            async move { cache.touch(&msg.docs).await },
        )
    }
}
