//! The flusher: persists what PostgreSQL lacks and re-times its own schedule.
//!
//! It reads the [ledger](crate::ledger) (what this replica accepted) itself, and asks the cache
//! supervisor only for Redis's dirty documents the ledger does not hold. After every run it
//! reports the commits to the supervisor (`Committed`), the one path by which the ledger, the
//! journal and Redis learn them. Every PostgreSQL write goes through here (periodic flushes, a
//! room's last-member flush, the shutdown drain) behind one gate; the store's version rule
//! (SPEC §6) makes a write of older content a no-op, whatever order runs end in.

mod batches;
mod drain;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use crate::doc::{later, DocId, Version};
use crate::ledger::{Durable, Ledger, Waiting};
use crate::metrics as m;
use crate::schedule::FlushSchedule;
use crate::storage::DocStore;
use crate::supervisor::{
    CacheSupervisor, CollectDirty, Collected, Committed, DirtyIds, KeepCached,
};
pub(crate) use batches::one_write_per_document;
use batches::{upsert_batches, RunResult};
pub use drain::{Drain, DrainReport};

/// Flush now (admin); answers what was flushed.
#[derive(Message)]
#[rtype(result = "FlushReport")]
pub struct FlushNow;

/// Persist one document's waiting version at once (a room whose last member left). Answers
/// `Ok` once PostgreSQL has it.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct PersistNow {
    pub doc: DocId,
}

/// Nobody edits the document here any more (its room retired): fold the Yjs updates PostgreSQL
/// holds for it into its stored state, so the row holds the whole document while it rests.
/// Best effort: a later fold includes whatever this one missed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fold {
    pub doc: DocId,
}

#[derive(Message)]
#[rtype(result = "FlusherView")]
pub struct GetFlusher;

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FlushReport {
    pub flushed: usize,
    pub failed: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FlusherView {
    pub period_ms: u64,
    pub consecutive_errors: u32,
    pub pending_docs: usize,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FlusherSettings {
    pub base_period: Duration,
    pub error_period: Duration,
    pub max_period: Duration,
    pub batch_size: usize,
    /// Upsert statements of one flush in flight at once (each on its own pooled connection).
    pub parallel_batches: usize,
}

/// Which documents a run writes.
enum Scope {
    /// The periodic flush: everything waiting, except documents another replica flushed within
    /// the last half period (see [`Claimed::Fresh`](crate::storage::Claimed)); with several
    /// replicas each document is then written about once per period, not once per replica.
    Due,
    /// Everything waiting: the ledger's and Redis's.
    All,
    /// One document's ledger entry (a room's leave flush).
    One(DocId),
}

pub struct Flusher {
    store: Arc<dyn DocStore>,
    ledger: Ledger,
    supervisor: Addr<CacheSupervisor>,
    schedule: FlushSchedule,
    batch_size: usize,
    parallel_batches: usize,
    /// Serializes PostgreSQL writes, so two runs never write one document at once.
    gate: Arc<tokio::sync::Mutex<()>>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    timer: Option<SpawnHandle>,
    /// Documents whose rooms retired, waiting for a fold (see [`Fold`]); one batch at a time.
    resting: HashSet<DocId>,
    folding: bool,
}

impl Flusher {
    pub fn new(
        store: Arc<dyn DocStore>,
        ledger: Ledger,
        supervisor: Addr<CacheSupervisor>,
        settings: FlusherSettings,
    ) -> Self {
        Flusher {
            store,
            ledger,
            supervisor,
            schedule: FlushSchedule::new(
                settings.base_period,
                settings.error_period,
                settings.max_period,
            ),
            batch_size: settings.batch_size.max(1),
            parallel_batches: settings.parallel_batches.max(1),
            gate: Arc::new(tokio::sync::Mutex::new(())),
            last_success_at: None,
            last_error: None,
            timer: None,
            resting: HashSet::new(),
            folding: false,
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.timer.take() {
            ctx.cancel_future(old);
        }
        let period = jittered(self.schedule.period());
        self.timer = Some(ctx.run_later(period, |act, ctx| {
            act.timer = None;
            let run = act.run(Scope::Due, Vec::new());
            ctx.spawn(run.map(|_, act, ctx| act.arm(ctx)));
        }));
    }

    /// One flush. The ledger's entries durable in Redis, and Redis's other dirty documents, are
    /// read from Redis (whole: compacted content plus every replica's log entries) and claimed
    /// for this replica; the ledger's journaled entries (and `extra`, which the caller could not
    /// save) are written as the ledger holds them. Everything is read once the gate is held, so
    /// a run never writes a version that an earlier run already replaced.
    fn run(
        &mut self,
        scope: Scope,
        extra: Vec<Version>,
    ) -> impl ActorFuture<Self, Output = RunResult> {
        let fresh = match scope {
            Scope::Due => Some(self.schedule.base_period() / 2),
            Scope::All | Scope::One(_) => None,
        };
        let (store, ledger, supervisor, gate, batch, parallel) = (
            self.store.clone(),
            self.ledger.clone(),
            self.supervisor.clone(),
            self.gate.clone(),
            self.batch_size,
            self.parallel_batches,
        );
        let fut = async move {
            let _turn = gate.lock().await;
            let started = std::time::Instant::now();
            metrics::gauge!(m::OLDEST_UNPERSISTED).set(ledger.oldest().as_secs_f64());
            let waiting: Vec<Waiting> = match &scope {
                Scope::Due | Scope::All => ledger.waiting(),
                Scope::One(doc) => ledger.waiting_of(doc).into_iter().collect(),
            };
            // Saves in the log are read from Redis; only the others' content is read here.
            let (logged, direct): (Vec<Waiting>, Vec<Waiting>) = waiting
                .into_iter()
                .partition(|w| w.durable == Durable::Cache && w.position.is_some());
            let mut local: HashMap<DocId, Version> = direct
                .iter()
                .filter_map(|w| ledger.get(&w.doc))
                .map(|e| (e.version.doc.clone(), e.version))
                .collect();
            let everything = matches!(scope, Scope::Due | Scope::All);
            let mine: Vec<DocId> = logged.into_iter().map(|w| w.doc).collect();
            let collected = match everything || !mine.is_empty() {
                false => Collected::default(),
                true => supervisor
                    .send(CollectDirty {
                        mine: mine.clone(),
                        skip: local.keys().cloned().collect(),
                        everything,
                        fresh,
                    })
                    .await
                    .unwrap_or(Collected {
                        unread: mine,
                        ..Collected::default()
                    }),
            };
            let unread = collected.unread.iter().filter_map(|d| ledger.get(d));
            for v in extra.into_iter().chain(unread.map(|e| e.version)) {
                let v = match local.remove(&v.doc) {
                    Some(held) => later(v.clone(), held).unwrap_or(v),
                    None => v,
                };
                local.insert(v.doc.clone(), v);
            }
            let read = started.elapsed();
            let writes = one_write_per_document(local, collected.dirty);
            let mut res = upsert_batches(&*store, writes, batch, parallel).await;
            let written = started.elapsed();
            res.committed.extend(collected.settled);
            if !res.committed.is_empty() {
                // Answered once the ledger, the journal and Redis know it: whoever asked for
                // this flush (an operator, a room's leave, the drain) finds the documents
                // clean when it is answered.
                let done = res.committed.clone();
                if supervisor.send(Committed { done }).await.is_err() {
                    warn!("the cache supervisor stopped before learning a flush's commits");
                }
            }
            let took = started.elapsed();
            metrics::histogram!(m::FLUSH_DURATION).record(took.as_secs_f64());
            if res.report.flushed + res.report.failed > 0 {
                debug!(
                    flushed = res.report.flushed,
                    failed = res.report.failed,
                    ms = took.as_secs_f64() * 1e3,
                    read_ms = read.as_secs_f64() * 1e3,
                    write_ms = (written - read).as_secs_f64() * 1e3,
                    "flush"
                );
            }
            res
        };
        fut.into_actor(self).map(|res, act, _| {
            act.settle(&res);
            res
        })
    }

    /// Applies a run's outcome: commits reported, TTLs of what waits refreshed, schedule
    /// re-timed.
    fn settle(&mut self, res: &RunResult) {
        metrics::counter!(m::DOCS_FLUSHED).increment(res.report.flushed as u64);
        metrics::counter!(m::DOCS_FLUSH_FAILED).increment(res.report.failed as u64);
        if res.error.is_some() {
            metrics::counter!(m::POSTGRES_ERRORS).increment(1);
        }
        if !res.uncommitted.is_empty() {
            self.supervisor.do_send(KeepCached {
                docs: res.uncommitted.iter().map(|v| v.doc.clone()).collect(),
            });
        }
        let changed = match &res.error {
            None => {
                self.last_success_at = Some(Utc::now());
                self.schedule.on_success()
            }
            Some(e) => {
                self.last_error = Some(e.clone());
                self.schedule.on_error()
            }
        };
        metrics::gauge!(m::FLUSHER_PERIOD).set(self.schedule.period().as_secs_f64());
        if let Some(period) = changed {
            match &res.error {
                None => info!(
                    period_ms = period.as_millis() as u64,
                    "flusher back to its base period"
                ),
                Some(e) => warn!(
                    period_ms = period.as_millis() as u64,
                    errors = self.schedule.consecutive_errors(),
                    error = %e,
                    "flush failed, flusher backs off"
                ),
            }
        }
    }
}

/// The period less up to a tenth, at random: replicas started together (a deployment) drift
/// apart instead of flushing in lockstep and loading Redis and PostgreSQL at the same moments;
/// the first to flush a document writes it, the others find it fresh. Never longer than the
/// period, which is what the schedule promises.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 - rand::random_range(0.0..0.1))
}

impl Actor for Flusher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.arm(ctx);
        let (store, n) = (self.store.clone(), self.parallel_batches);
        ctx.spawn(async move { store.warm(n).await }.into_actor(self));
    }
}

impl Handler<FlushNow> for Flusher {
    type Result = ResponseActFuture<Self, FlushReport>;

    /// Flushes at once (the regular timer keeps its rhythm).
    fn handle(&mut self, _: FlushNow, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.run(Scope::All, Vec::new()).map(|res, _, _| res.report))
    }
}

impl Handler<PersistNow> for Flusher {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    /// Persists one document's waiting version right now (the periodic flush does the rest);
    /// answers at once if nothing of it waits.
    fn handle(&mut self, msg: PersistNow, _: &mut Context<Self>) -> Self::Result {
        if !self.ledger.lacks(&msg.doc) {
            return Box::pin(fut::ready(Ok(())));
        }
        let doc = msg.doc.clone();
        Box::pin(
            self.run(Scope::One(msg.doc), Vec::new())
                .map(move |res, _, _| match res.error {
                    Some(e) if !res.committed.iter().any(|c| c.doc == doc) => Err(e),
                    _ => Ok(()),
                }),
        )
    }
}

impl Handler<Fold> for Flusher {
    type Result = ();

    /// Queues the document for a fold of its waiting Yjs updates into its stored state.
    fn handle(&mut self, msg: Fold, ctx: &mut Context<Self>) {
        self.resting.insert(msg.doc);
        self.fold_some(ctx);
    }
}

/// Documents one fold statement takes at most: folds run one batch at a time on one pooled
/// connection, so many rooms retiring at once (clients moving after a deploy) never crowd the
/// flushes out of the pool.
const FOLD_BATCH: usize = 25;

impl Flusher {
    fn fold_some(&mut self, ctx: &mut Context<Self>) {
        if self.folding || self.resting.is_empty() {
            return;
        }
        self.folding = true;
        let batch: Vec<DocId> = self.resting.iter().take(FOLD_BATCH).cloned().collect();
        for doc in &batch {
            self.resting.remove(doc);
        }
        let store = self.store.clone();
        ctx.spawn(
            async move {
                if let Err(e) = store.fold(&batch).await {
                    debug!(docs = batch.len(), error = %e, "folding updates into the state failed");
                }
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.folding = false;
                act.fold_some(ctx);
            }),
        );
    }
}

impl Handler<GetFlusher> for Flusher {
    type Result = ResponseActFuture<Self, FlusherView>;

    /// The admin view of the flusher; `pending_docs` counts what waits for PostgreSQL now.
    fn handle(&mut self, _: GetFlusher, _: &mut Context<Self>) -> Self::Result {
        let supervisor = self.supervisor.clone();
        let fut = async move { supervisor.send(DirtyIds).await.unwrap_or_default().len() };
        Box::pin(
            fut.into_actor(self)
                .map(|pending_docs, act, _| FlusherView {
                    period_ms: act.schedule.period().as_millis() as u64,
                    consecutive_errors: act.schedule.consecutive_errors(),
                    pending_docs,
                    last_success_at: act.last_success_at,
                    last_error: act.last_error.clone(),
                }),
        )
    }
}
