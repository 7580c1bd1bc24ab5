//! `LogReader`: this replica's one reader of the document logs. Each room follows its
//! document's log from the position its content includes, and its events stream (awareness,
//! stateless) from about now; the reader runs one blocking `XREAD` over every followed stream at
//! a time (on a connection of its own, see `Cache::read_logs`) and hands each room what other
//! replicas appended. Its own replica's entries only move the position: the room that appended
//! them has them already.
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

use super::{Event, Found, LogEntry, LogPos, Stream};

/// How far back a new follower reads its document's events.
const EVENTS_LOOKBACK_MS: u64 = 1_000;
use crate::doc::DocId;
use crate::metrics as m;
use crate::storage::Cache;

/// Entries of a followed document's log (or events), appended by other replicas, in order.
#[derive(Message, Debug, Default)]
#[rtype(result = "()")]
pub struct Apply {
    pub entries: Vec<LogEntry>,
    pub events: Vec<Event>,
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
    /// Where its events stream was read to.
    events: LogPos,
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
        let from: Vec<(DocId, Stream, LogPos)> = self
            .follows
            .iter()
            .flat_map(|(doc, f)| {
                [
                    (doc.clone(), Stream::Log, f.position),
                    (doc.clone(), Stream::Events, f.events),
                ]
            })
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

    fn deliver(&mut self, found: Vec<(DocId, Found)>) {
        for (doc, found) in found {
            let Some(f) = self.follows.get_mut(&doc) else {
                continue; // unfollowed while the read was in flight
            };
            let mine = |replica: &Arc<str>| *replica == self.replica;
            let apply = match found {
                Found::Log(entries) => {
                    let fresh: Vec<LogEntry> =
                        entries.into_iter().filter(|e| e.pos > f.position).collect();
                    let Some(last) = fresh.last() else { continue };
                    f.position = last.pos;
                    let entries: Vec<LogEntry> =
                        fresh.into_iter().filter(|e| !mine(&e.replica)).collect();
                    record_lag(entries.iter().map(|e| e.pos));
                    Apply {
                        entries,
                        ..Apply::default()
                    }
                }
                Found::Events(events) => {
                    let Some(last) = events.last() else { continue };
                    f.events = f.events.max(last.pos);
                    Apply {
                        events: events.into_iter().filter(|e| !mine(&e.replica)).collect(),
                        ..Apply::default()
                    }
                }
            };
            if !apply.entries.is_empty() || !apply.events.is_empty() {
                metrics::counter!(m::LOG_ENTRIES_RECEIVED).increment(apply.entries.len() as u64);
                f.room.do_send(apply);
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long after their append log entries are read (entry ids are append times).
fn record_lag(positions: impl Iterator<Item = LogPos>) {
    let now = now_ms();
    for pos in positions {
        let lag = now.saturating_sub(pos.ms) as f64 / 1e3;
        metrics::histogram!(m::LOG_READ_LAG).record(lag);
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
        // Events older than the room are of no use to it: read them from about now (a little
        // before, for clocks that differ between here and Redis).
        let events = LogPos {
            ms: now_ms().saturating_sub(EVENTS_LOOKBACK_MS),
            seq: 0,
        };
        self.follows.insert(
            msg.doc,
            Following {
                position: msg.from,
                events,
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
