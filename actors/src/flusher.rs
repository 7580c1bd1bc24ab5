//! The flusher: persists dirty documents to PostgreSQL and re-times its own schedule.
//!
//! Every PostgreSQL write goes through here (periodic flushes, a room's last-member flush, the
//! shutdown drain) behind one gate, so an older version read from Redis by one run can never be
//! written after a newer version written by another.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::doc::{DocId, Version};
use crate::metrics as m;
use crate::schedule::FlushSchedule;
use crate::storage::PgStore;
use crate::supervisor::{CacheSupervisor, CollectDirty, DirtyIds, KeepCached, Persisted, Spill};

/// Flush now (admin); answers what was flushed.
#[derive(Message)]
#[rtype(result = "FlushReport")]
pub struct FlushNow;

/// Persist these versions at once (a room whose last member left).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct PersistNow {
    pub versions: Vec<Version>,
}

/// Shutdown: persist everything dirty plus the rooms' versions; journal what PostgreSQL refuses.
#[derive(Message)]
#[rtype(result = "DrainReport")]
pub struct Drain {
    pub versions: Vec<Version>,
}

#[derive(Message)]
#[rtype(result = "FlusherView")]
pub struct GetFlusher;

/// Told to the room registry after every commit, so rooms learn they are clean.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct DocsPersisted {
    pub done: Arc<Vec<(DocId, String)>>,
}

/// Asked of the room registry by every flush: the content of every room PostgreSQL does not
/// have yet. Rooms are the newest copy, and the one that survives a Redis that lost its data or
/// a cache entry that expired.
#[derive(Message)]
#[rtype(result = "Vec<Version>")]
pub struct DirtyRooms;

/// Connects the flusher to the rooms (the registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRooms {
    pub persisted: Recipient<DocsPersisted>,
    pub dirty: Recipient<DirtyRooms>,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FlushReport {
    pub flushed: usize,
    pub failed: usize,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DrainReport {
    pub persisted: usize,
    pub journaled: usize,
    pub lost: usize,
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

pub struct Flusher {
    store: PgStore,
    supervisor: Addr<CacheSupervisor>,
    rooms: Option<SetRooms>,
    schedule: FlushSchedule,
    batch_size: usize,
    parallel_batches: usize,
    /// Serializes every PostgreSQL write (see the module doc).
    gate: Arc<tokio::sync::Mutex<()>>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    timer: Option<SpawnHandle>,
}

/// What one run did, applied to the actor's state afterwards.
#[derive(Default)]
struct RunResult {
    report: FlushReport,
    committed: Vec<(DocId, String)>,
    uncommitted: Vec<Version>,
    error: Option<String>,
}

impl Flusher {
    pub fn new(
        store: PgStore,
        supervisor: Addr<CacheSupervisor>,
        settings: FlusherSettings,
    ) -> Self {
        Flusher {
            store,
            supervisor,
            rooms: None,
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
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.timer.take() {
            ctx.cancel_future(old);
        }
        let period = self.schedule.period();
        self.timer = Some(ctx.run_later(period, |act, ctx| {
            act.timer = None;
            let run = act.run(Vec::new(), true);
            ctx.spawn(run.map(|_, act, ctx| act.arm(ctx)));
        }));
    }

    /// One flush: upsert `extra` and, with `collect`, every dirty version: the open rooms' first
    /// (theirs is the newest copy; `extra` wins over them), while the supervisor reads back the
    /// rest from the fallback and Redis, which follows. Then tell the supervisor and the rooms
    /// what was committed. Every document is written by one statement of the run, so the
    /// parts' order does not matter.
    fn run(
        &mut self,
        extra: Vec<Version>,
        collect: bool,
    ) -> impl ActorFuture<Self, Output = RunResult> {
        let (store, supervisor, gate, batch, parallel) = (
            self.store.clone(),
            self.supervisor.clone(),
            self.gate.clone(),
            self.batch_size,
            self.parallel_batches,
        );
        let rooms = self.rooms.as_ref().map(|r| r.dirty.clone());
        let fut = async move {
            let _turn = gate.lock().await;
            let started = std::time::Instant::now();
            // First what the caller passed (it wins over all), then the rooms' versions; both
            // are upserted while the supervisor reads the rest, which then follows.
            let mut first: HashMap<DocId, Version> = HashMap::new();
            if let (true, Some(rooms)) = (collect, rooms) {
                for v in rooms.send(DirtyRooms).await.unwrap_or_default() {
                    first.insert(v.doc.clone(), v);
                }
            }
            for v in extra {
                first.insert(v.doc.clone(), v);
            }
            let skip: HashSet<DocId> = first.keys().cloned().collect();
            let first: Vec<Version> = first.into_values().collect();
            let rest = async {
                if !collect {
                    return RunResult::default();
                }
                let stored = supervisor
                    .send(CollectDirty { skip })
                    .await
                    .unwrap_or_default();
                upsert_batches(&store, stored, batch, parallel).await
            };
            let (mut res, rest) =
                futures_util::future::join(upsert_batches(&store, first, batch, parallel), rest)
                    .await;
            res.absorb(rest);
            let took = started.elapsed();
            metrics::histogram!(m::FLUSH_DURATION).record(took.as_secs_f64());
            if res.report.flushed + res.report.failed > 0 {
                debug!(
                    flushed = res.report.flushed,
                    failed = res.report.failed,
                    ms = took.as_secs_f64() * 1e3,
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
        if !res.committed.is_empty() {
            let done = Arc::new(res.committed.clone());
            self.supervisor.do_send(Persisted {
                done: done.to_vec(),
            });
            if let Some(rooms) = &self.rooms {
                rooms.persisted.do_send(DocsPersisted { done });
            }
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

impl RunResult {
    /// Adds what another part of the same run did (the first error wins).
    fn absorb(&mut self, other: RunResult) {
        self.report.flushed += other.report.flushed;
        self.report.failed += other.report.failed;
        self.committed.extend(other.committed);
        self.uncommitted.extend(other.uncommitted);
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

/// Upserts `versions` in statements of at most `batch` rows, `parallel` of them in flight. The
/// batches hold distinct documents, so their order does not matter; after the first failure no
/// further batch is started (PostgreSQL is likely down) and the rest counts as failed.
async fn upsert_batches(
    store: &PgStore,
    versions: Vec<Version>,
    batch: usize,
    parallel: usize,
) -> RunResult {
    let mut res = RunResult {
        report: FlushReport::default(),
        committed: Vec::with_capacity(versions.len()),
        uncommitted: Vec::new(),
        error: None,
    };
    let failed = Cell::new(false);
    let mut runs = futures_util::stream::iter(versions.chunks(batch))
        .map(|chunk| {
            let failed = &failed;
            async move {
                let outcome = match failed.get() {
                    true => None,
                    false => Some(store.upsert(chunk).await),
                };
                if let Some(Err(_)) = &outcome {
                    failed.set(true);
                }
                (chunk, outcome)
            }
        })
        .buffer_unordered(parallel);
    while let Some((chunk, outcome)) = runs.next().await {
        match outcome {
            Some(Ok(_)) => {
                res.report.flushed += chunk.len();
                res.committed
                    .extend(chunk.iter().map(|v| (v.doc.clone(), v.hash.clone())));
                continue;
            }
            Some(Err(e)) => {
                res.error.get_or_insert_with(|| e.to_string());
            }
            None => {}
        }
        res.report.failed += chunk.len();
        res.uncommitted.extend_from_slice(chunk);
    }
    res
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
        Box::pin(self.run(Vec::new(), true).map(|res, _, _| res.report))
    }
}

impl Handler<PersistNow> for Flusher {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    /// Persists a leaving room's content right now (only that: the periodic flush does the rest).
    fn handle(&mut self, msg: PersistNow, _: &mut Context<Self>) -> Self::Result {
        let docs: Vec<(DocId, String)> = msg
            .versions
            .iter()
            .map(|v| (v.doc.clone(), v.hash.clone()))
            .collect();
        Box::pin(self.run(msg.versions, false).map(move |res, _, _| {
            let all_in = docs.iter().all(|d| res.committed.contains(d));
            match res.error {
                Some(e) if !all_in => Err(e),
                _ => Ok(()),
            }
        }))
    }
}

impl Handler<Drain> for Flusher {
    type Result = ResponseActFuture<Self, DrainReport>;

    /// The shutdown drain: PostgreSQL first, the journal for anything it refuses.
    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let supervisor = self.supervisor.clone();
        Box::pin(self.run(msg.versions, true).then(move |res, act, _| {
            let mut report = DrainReport {
                persisted: res.committed.len(),
                ..DrainReport::default()
            };
            let spill = res.uncommitted;
            async move {
                if !spill.is_empty() {
                    let n = spill.len();
                    match supervisor.send(Spill { versions: spill }).await {
                        Ok(Ok(())) => report.journaled = n,
                        _ => report.lost = n,
                    }
                }
                report
            }
            .into_actor(act)
        }))
    }
}

impl Handler<GetFlusher> for Flusher {
    type Result = ResponseActFuture<Self, FlusherView>;

    /// The admin view of the flusher; `pending_docs` counts what waits for PostgreSQL now.
    fn handle(&mut self, _: GetFlusher, _: &mut Context<Self>) -> Self::Result {
        let supervisor = self.supervisor.clone();
        let rooms = self.rooms.as_ref().map(|r| r.dirty.clone());
        let fut = async move {
            let mut pending: std::collections::HashSet<DocId> = supervisor
                .send(DirtyIds)
                .await
                .unwrap_or_default()
                .into_iter()
                .collect();
            if let Some(rooms) = rooms {
                let live = rooms.send(DirtyRooms).await.unwrap_or_default();
                pending.extend(live.into_iter().map(|v| v.doc));
            }
            pending.len()
        };
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

impl Handler<SetRooms> for Flusher {
    type Result = ();

    /// Connects the room registry: told about commits, asked for live content.
    fn handle(&mut self, msg: SetRooms, _: &mut Context<Self>) {
        self.rooms = Some(msg);
    }
}
