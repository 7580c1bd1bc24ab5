//! `LogReader`: this replica's one reader of the document logs. Each room follows its
//! document's log from the position its content includes; the reader runs one blocking
//! `XREAD` over every followed log at a time (on a connection of its own, see
//! `Cache::read_logs`) and hands each room the entries other replicas appended. Its own
//! replica's entries only move the position: the room that appended them has them already.
//!
//! A read that fails (Redis down) is retried with backoff; once reads work again every room is
//! told to [`Resync`]: it reloads its document and merges what it lacks, so nothing appended or
//! trimmed while the reader was away is missed. Live fan-out pauses during an outage and
//! resumes after it, without clients reconnecting (SPEC §8).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, info, warn};

use super::{LogEntry, LogPos};
use crate::doc::DocId;
use crate::metrics as m;
use crate::storage::Cache;

/// Entries of a followed document's log, appended by other replicas, in log order.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Apply {
    pub entries: Vec<LogEntry>,
}

/// The reader could not read for a while: reload the document and merge in what is missing.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Resync;

/// A room's subscription to its document's log, from `from` on. A later `Follow` for the same
/// document replaces it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Follow {
    pub doc: DocId,
    pub from: LogPos,
    pub room: Recipient<Apply>,
    pub resync: Recipient<Resync>,
}

/// The room of `doc` stopped; `room` tells it from a newer room of the same document.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unfollow {
    pub doc: DocId,
    pub room: Recipient<Apply>,
}

struct Following {
    position: LogPos,
    room: Recipient<Apply>,
    resync: Recipient<Resync>,
}

pub struct LogReader {
    cache: Arc<dyn Cache>,
    replica: Arc<str>,
    block: Duration,
    follows: HashMap<DocId, Following>,
    failures: u32,
}

impl LogReader {
    pub fn new(cache: Arc<dyn Cache>, replica: &str, block: Duration) -> Self {
        LogReader {
            cache,
            replica: replica.into(),
            block,
            follows: HashMap::new(),
            failures: 0,
        }
    }

    /// One read, then the next; a failure waits (100 ms doubling up to 5 s) before retrying.
    fn read(&mut self, ctx: &mut Context<Self>) {
        let from: Vec<(DocId, LogPos)> = self
            .follows
            .iter()
            .map(|(doc, f)| (doc.clone(), f.position))
            .collect();
        let (cache, block) = (self.cache.clone(), self.block);
        let fut = async move { cache.read_logs(&from, block).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            match res {
                Ok(found) => {
                    if act.failures > 0 {
                        info!(
                            rooms = act.follows.len(),
                            "document logs readable again, rooms resync"
                        );
                        act.failures = 0;
                        for f in act.follows.values() {
                            f.resync.do_send(Resync);
                        }
                    }
                    act.deliver(found);
                    act.read(ctx);
                }
                Err(e) => {
                    act.failures = act.failures.saturating_add(1);
                    if act.failures == 1 {
                        warn!(error = %e, "reading the document logs failed, fan-out from other replicas pauses");
                    } else {
                        debug!(error = %e, "reading the document logs failed again");
                    }
                    let wait = Duration::from_millis(100)
                        .saturating_mul(2u32.saturating_pow(act.failures.min(6)))
                        .min(Duration::from_secs(5));
                    ctx.run_later(wait, |act, ctx| act.read(ctx));
                }
            }
        }));
    }

    fn deliver(&mut self, found: Vec<(DocId, Vec<LogEntry>)>) {
        for (doc, entries) in found {
            let Some(f) = self.follows.get_mut(&doc) else {
                continue; // unfollowed while the read was in flight
            };
            let fresh: Vec<LogEntry> = entries.into_iter().filter(|e| e.pos > f.position).collect();
            let Some(last) = fresh.last() else { continue };
            f.position = last.pos;
            let foreign: Vec<LogEntry> = fresh
                .into_iter()
                .filter(|e| e.replica != self.replica)
                .collect();
            if !foreign.is_empty() {
                metrics::counter!(m::LOG_ENTRIES_RECEIVED).increment(foreign.len() as u64);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                for e in &foreign {
                    let lag = now.saturating_sub(e.pos.ms) as f64 / 1e3;
                    metrics::histogram!(m::LOG_READ_LAG).record(lag);
                }
                f.room.do_send(Apply { entries: foreign });
            }
        }
    }
}

impl Actor for LogReader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.read(ctx);
    }
}

impl Handler<Follow> for LogReader {
    type Result = ();

    /// Starts (or restarts) following a document's log; the next read includes it.
    fn handle(&mut self, msg: Follow, _: &mut Context<Self>) {
        self.follows.insert(
            msg.doc,
            Following {
                position: msg.from,
                room: msg.room,
                resync: msg.resync,
            },
        );
        metrics::gauge!(m::LOG_FOLLOWED).set(self.follows.len() as f64);
    }
}

impl Handler<Unfollow> for LogReader {
    type Result = ();

    fn handle(&mut self, msg: Unfollow, _: &mut Context<Self>) {
        if self
            .follows
            .get(&msg.doc)
            .is_some_and(|f| f.room == msg.room)
        {
            self.follows.remove(&msg.doc);
        }
        metrics::gauge!(m::LOG_FOLLOWED).set(self.follows.len() as f64);
    }
}
