//! `HistoryWriter`: the actor rooms send their version proposals to (fire and forget).
//!
//! It writes them with [`History::cut`] one document at a time: a proposal arriving while the
//! document's last one is being written waits, merged with any other that arrives meanwhile, so
//! a write retried after PostgreSQL came back never lands after a later one. A write PostgreSQL
//! refused is tried again with backoff for about half a minute (a restart, a failover); past
//! that the version is lost and logged (its changes are in the document's next version, with
//! its users). It also deletes versions past retention about hourly.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use docroom_actors::doc::DocId;
use tracing::{error, info, warn};

use super::{CutReason, CutVersion, History};

/// A write PostgreSQL refused is tried again this long after, then twice as long each time ...
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// ... this many times in all (waiting 1 + 2 + 4 + 8 + 16 s).
const ATTEMPTS: u32 = 6;
/// Versions past retention are deleted this often ...
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// ... first this long after start, so a replica restarted often prunes too.
const FIRST_PRUNE_AFTER: Duration = Duration::from_secs(60);

pub struct HistoryWriter {
    history: History,
    retry_first: Duration,
    /// Documents with a write in flight, each with what was proposed for it since (merged into
    /// one proposal), written next.
    writing: HashMap<DocId, Option<CutVersion>>,
    /// A prune is running: the next waits for the next hour.
    pruning: bool,
    /// Shutdown waits for the writes in flight ([`FlushVersions`]).
    idle: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Answered once no write is in flight (shutdown: the rooms' last versions, proposed as they
/// closed, land before the process ends; the caller bounds the wait).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushVersions;

impl HistoryWriter {
    pub fn new(history: History) -> Self {
        HistoryWriter {
            history,
            retry_first: RETRY_FIRST,
            writing: HashMap::new(),
            pruning: false,
            idle: Vec::new(),
        }
    }

    /// Tests wait milliseconds between attempts, not seconds.
    #[cfg(test)]
    pub(super) fn with_retry_first(mut self, first: Duration) -> Self {
        self.retry_first = first;
        self
    }

    fn write(&mut self, v: CutVersion, ctx: &mut Context<Self>) {
        self.writing.insert(v.doc.clone(), None);
        let (history, first) = (self.history.clone(), self.retry_first);
        let fut = async move {
            let written = write_with_retries(&history, &v, first).await;
            (v, written)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(|(v, written), act, ctx| act.written(v, written, ctx)),
        );
    }

    /// The document's write is done: the proposal that waited for it goes next. A version
    /// lost leaves its users to the next one, which holds its changes.
    fn written(&mut self, v: CutVersion, written: bool, ctx: &mut Context<Self>) {
        match self.writing.remove(&v.doc).flatten() {
            Some(next) if written => self.write(next, ctx),
            Some(next) => self.write(merged(v, next), ctx),
            None => {}
        }
        if self.writing.is_empty() {
            for waiter in self.idle.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn prune(&mut self, ctx: &mut Context<Self>) {
        if self.pruning {
            return;
        }
        self.pruning = true;
        let history = self.history.clone();
        let fut = async move { history.prune().await };
        ctx.spawn(fut.into_actor(self).map(|result, act, _| {
            act.pruning = false;
            match result {
                Ok(0) => {}
                Ok(deleted) => info!(deleted, "history versions past retention deleted"),
                Err(e) => warn!(error = %e, "history not pruned, trying again in an hour"),
            }
        }));
    }
}

impl Actor for HistoryWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(FIRST_PRUNE_AFTER, |act, ctx| {
            act.prune(ctx);
            ctx.run_interval(PRUNE_INTERVAL, |act, ctx| act.prune(ctx));
        });
    }
}

impl Handler<FlushVersions> for HistoryWriter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: FlushVersions, _: &mut Context<Self>) -> Self::Result {
        if self.writing.is_empty() {
            return Box::pin(async {});
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.idle.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<CutVersion> for HistoryWriter {
    type Result = ();

    /// A room's proposal: written now, or after the document's write in flight.
    fn handle(&mut self, v: CutVersion, ctx: &mut Context<Self>) {
        match self.writing.get_mut(&v.doc) {
            Some(waiting) => {
                *waiting = Some(match waiting.take() {
                    Some(earlier) => merged(earlier, v),
                    None => v,
                })
            }
            None => self.write(v, ctx),
        }
    }
}

/// Two proposals of one document as one: the later content, everyone's users, and the
/// earlier reason when the later one is only the interval (a retirement or a restore is cut
/// whatever the interval).
fn merged(earlier: CutVersion, later: CutVersion) -> CutVersion {
    let mut users = earlier.users;
    users.extend(later.users);
    users.sort();
    users.dedup();
    let why = match later.why {
        CutReason::Interval => earlier.why,
        why => why,
    };
    CutVersion {
        users,
        why,
        ..later
    }
}

/// Cuts `v`, trying again while PostgreSQL refuses; false when the version is lost.
async fn write_with_retries(history: &History, v: &CutVersion, first: Duration) -> bool {
    let mut delay = first;
    for attempt in 1..=ATTEMPTS {
        match history.cut(v).await {
            Ok(_) => {
                if attempt > 1 {
                    info!(doc_id = %v.doc, attempt, "history version written after retries");
                }
                return true;
            }
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                warn!(doc_id = %v.doc, attempt, error = %e, "history version not written, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                error!(doc_id = %v.doc, hash = %v.hash, attempt, error = %e, "history version lost");
                return false;
            }
        }
    }
    false
}
