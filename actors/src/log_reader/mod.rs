//! `LogReader`: this replica's one reader of the document logs, and its one listener on the
//! document channels (SPEC §8). Each room follows its document's log from the position its
//! content includes; the reader subscribes to the document's channel on a pub/sub connection of
//! its own (`Cache::listen`) and
//!
//! - hands each event another replica published (awareness, stateless) to the room at once;
//! - on a notice of an append that carries its entry and follows on the room's position (its
//!   `prev` is that position), hands the room the entry at once: every entry before it the room
//!   has, so no read is needed. Its own replica's entries only move the position: the room that
//!   appended them has them (restored entries name no replica, [`crate::log::RESTORED`]: every
//!   room is handed them);
//! - on any other replica's notice of an append after the position, marks the document moved
//!   and reads the logs of the documents that moved from their positions (non-blocking
//!   `XREAD`s of up to [`READ_DOCS`] logs, oldest move first, batched over whatever moved while
//!   a read was in flight), handing each room the other replicas' entries;
//! - reads a document's log once as soon as its subscription is in effect: what was appended
//!   between the room's load and then was announced to no one here;
//! - reads every followed log every `poll` whatever the notices said, so a lost notice costs at
//!   most that long, and pings the listening connection then: a frozen Redis or a cut network
//!   would leave it silent, not closed.
//!
//! A failed read or a lost listening connection is retried with backoff (a new connection
//! subscribes to every followed channel again); once both work again every room is told to
//! [`Resync`]: it reloads its document and merges what it lacks, so nothing appended or trimmed
//! while the reader was away is missed. Live fan-out pauses during an outage and resumes after
//! it, without clients reconnecting (SPEC §8). Events published meanwhile are lost, as they may
//! be (SPEC §5b).

mod listening;
mod moved;
#[cfg(test)]
mod tests;

use foldhash::{HashMap, HashMapExt, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, info, warn};

use crate::doc::DocId;
use crate::log::{Event, LogEntry, LogPos, LogRead, READ_COUNT, READ_DOCS};
use crate::metrics as m;
use crate::storage::{Cache, CacheError, Channels};
use moved::Moved;

/// Entries of a followed document's log, appended by other replicas, in order; and events other
/// replicas published for it.
#[derive(Message, Debug, Default)]
#[rtype(result = "()")]
pub struct Apply {
    pub entries: Vec<LogEntry>,
    pub events: Vec<Event>,
}

/// The reader could not read or listen for a while: reload the document and merge in what is
/// missing.
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

enum Listening {
    /// No connection: one is being made, or will be after a backoff.
    Down,
    Up(Ears),
}

struct Ears {
    channels: Arc<dyn Channels>,
    /// The stream of what it hears, cancelled when the connection is given up.
    heard: SpawnHandle,
    /// Channels whose subscription is in effect on this connection.
    subscribed: HashSet<DocId>,
    /// A subscription or an unsubscription is in flight. One at a time, so they reach Redis in
    /// the order they were decided (a room closed and reopened is subscribed last).
    busy: bool,
}

pub struct LogReader {
    cache: Arc<dyn Cache>,
    replica: Arc<str>,
    poll: Duration,
    follows: HashMap<DocId, Following>,
    /// Documents the next reads read, in the order they moved: a notice came, a subscription
    /// took effect, the poll.
    moved: Moved,
    /// A read is in flight or waits out its backoff: `moved` gathers for the next one.
    reading: bool,
    listening: Listening,
    /// Numbers the listening connections, so what a given-up one still reports is ignored.
    generation: u64,
    /// Consecutive failures (reads, listening); the backoff grows with them.
    failures: u32,
    /// Something failed since the rooms last resynced.
    impaired: bool,
}

impl LogReader {
    /// `poll`: how often every followed log is read whatever the notices said.
    pub fn new(cache: Arc<dyn Cache>, replica: &str, poll: Duration) -> Self {
        LogReader {
            cache,
            replica: replica.into(),
            poll,
            follows: HashMap::new(),
            moved: Moved::default(),
            reading: false,
            listening: Listening::Down,
            generation: 0,
            failures: 0,
            impaired: false,
        }
    }
}

impl LogReader {
    /// Reads the logs of the documents that moved ([`READ_DOCS`] at a time), unless a read is in
    /// flight (which reads again when it is done); a failure waits out the backoff.
    fn read(&mut self, ctx: &mut Context<Self>) {
        if self.reading {
            return;
        }
        let from: Vec<(DocId, LogPos)> = self
            .moved
            .take(READ_DOCS)
            .into_iter()
            .filter_map(|doc| {
                let position = self.follows.get(&doc)?.position;
                Some((doc, position))
            })
            .collect();
        if from.is_empty() {
            // Only unfollowed documents in this batch: on to the next, if any.
            if !self.moved.is_empty() {
                self.read(ctx);
            }
            return;
        }
        self.reading = true;
        let cache = self.cache.clone();
        let fut = async move {
            let res = cache.read_logs(&from).await;
            (res, from)
        };
        ctx.spawn(fut.into_actor(self).map(|(res, from), act, ctx| match res {
            Ok(found) => {
                act.reading = false;
                act.deliver(found);
                if act.impaired && matches!(act.listening, Listening::Up(_)) {
                    act.recovered();
                }
                act.read(ctx);
            }
            Err(e) => {
                act.failed("reading the document logs", &e);
                act.moved.extend(from.into_iter().map(|(doc, _)| doc));
                ctx.run_later(act.backoff(), |act, ctx| {
                    act.reading = false;
                    act.read(ctx);
                });
            }
        }));
    }

    fn deliver(&mut self, found: Vec<(DocId, LogRead)>) {
        for (doc, LogRead { entries, behind }) in found {
            let Some(f) = self.follows.get_mut(&doc) else {
                continue; // unfollowed while the read was in flight
            };
            if behind {
                // Entries it never read were trimmed: only a reload has them.
                warn!(doc = %doc, "the log reader fell behind the trimmed log, the room reloads");
                f.resync.do_send(Resync);
            }
            if entries.len() >= READ_COUNT {
                self.moved.insert(doc); // and more may follow
            }
            let fresh: Vec<LogEntry> = entries.into_iter().filter(|e| e.pos > f.position).collect();
            let Some(last) = fresh.last() else { continue };
            f.position = last.pos;
            let entries: Vec<LogEntry> = fresh
                .into_iter()
                .filter(|e| e.replica != self.replica)
                .collect();
            if entries.is_empty() {
                continue;
            }
            record_lag(entries.iter().map(|e| e.pos));
            metrics::counter!(m::LOG_ENTRIES_RECEIVED).increment(entries.len() as u64);
            f.room.do_send(Apply {
                entries,
                events: Vec::new(),
            });
        }
    }

    /// Every followed log is read, and the listening connection pinged.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        self.moved.extend(self.follows.keys().cloned());
        self.read(ctx);
        let Listening::Up(ears) = &self.listening else {
            return;
        };
        let (channels, generation) = (ears.channels.clone(), self.generation);
        let following: Vec<DocId> = self.follows.keys().cloned().collect();
        let fut = async move {
            let (renewed, pinged) = tokio::join!(channels.renew(&following), channels.ping());
            if let Err(e) = renewed {
                // The lease outlasts many polls; a ping that fails says the rest.
                debug!(error = %e, "renewing the followed documents failed");
            }
            pinged
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if let Err(e) = res {
                act.lost(generation, &e, ctx);
            }
        }));
    }

    fn failed(&mut self, what: &str, error: &CacheError) {
        self.failures = self.failures.saturating_add(1);
        if self.impaired {
            debug!(error = %error, "{what} failed again");
        } else {
            warn!(error = %error, "{what} failed, fan-out from other replicas pauses");
        }
        self.impaired = true;
    }

    /// Reading and listening work again: every room reloads what it may have missed.
    fn recovered(&mut self) {
        info!(
            rooms = self.follows.len(),
            "fan-out from other replicas resumes, rooms resync"
        );
        self.impaired = false;
        self.failures = 0;
        for f in self.follows.values() {
            f.resync.do_send(Resync);
        }
    }

    /// 100 ms doubling with each failure, up to 5 s.
    fn backoff(&self) -> Duration {
        Duration::from_millis(100)
            .saturating_mul(2u32.saturating_pow(self.failures.min(6)))
            .min(Duration::from_secs(5))
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
        self.listen(ctx);
        ctx.run_interval(self.poll, |act, ctx| act.poll(ctx));
    }
}

impl Handler<Follow> for LogReader {
    type Result = ();

    /// Starts (or restarts) following a document's log: read from `from` once its channel's
    /// subscription is in effect (at once if it is already).
    fn handle(&mut self, msg: Follow, ctx: &mut Context<Self>) {
        let doc = msg.doc.clone();
        self.follows.insert(
            msg.doc,
            Following {
                position: msg.from,
                room: msg.room,
                resync: msg.resync,
            },
        );
        metrics::gauge!(m::LOG_FOLLOWED).set(self.follows.len() as f64);
        match &self.listening {
            Listening::Up(ears) if ears.subscribed.contains(&doc) => {
                self.moved.insert(doc);
                self.read(ctx);
            }
            _ => self.sync(ctx),
        }
    }
}

impl Handler<Unfollow> for LogReader {
    type Result = ();

    fn handle(&mut self, msg: Unfollow, ctx: &mut Context<Self>) {
        if self
            .follows
            .get(&msg.doc)
            .is_some_and(|f| f.room == msg.room)
        {
            self.follows.remove(&msg.doc);
            self.sync(ctx);
        }
        metrics::gauge!(m::LOG_FOLLOWED).set(self.follows.len() as f64);
    }
}
