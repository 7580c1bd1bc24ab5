//! `Recorder`: writes this replica's webhook events into the outbox.
//!
//! `document.changed`: rooms report every landed save that carried changes ([`Changed`]), up
//! to one per update on a busy document, so nothing is written per change. The recorder
//! gathers each document's changes (users, first and last change) and upserts the document's
//! open window in PostgreSQL when the document has none of its making yet, then, while changes
//! keep coming, once more shortly ([`margin`](Recorder::margin)) before the due time it last
//! wrote would pass: a window is extended before it closes, and every replica extends the same
//! row, so the deployment sends one event per window. A document edited without pause costs a
//! write per debounce period, not one per change nor one per fraction of the period: at W1's
//! 500 documents the window writes were most of what webhooks cost an update. Client events
//! are written as they come, in order.
//!
//! What could not be written (PostgreSQL down) stays here and is written again every second,
//! so an outage loses nothing. Changes held here until their window's next write are as
//! durable as the changes (the Redis change marks, `marks.rs`): a SIGKILL delays their event
//! (another replica adopts the marks), it does not lose it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use docroom_actors::doc::{DocId, Kind};
use docroom_actors::room::Changed;
use tracing::{info, warn};

use docroom_actors::storage::{ChangeMark, RedisCache};

use super::marks::Marks;
use super::outbox::{EventRow, Outbox, WindowRow};
use crate::settings::WebhookSettings;

/// A client connected to or left a document on this replica.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ClientEvent {
    pub connected: bool,
    pub doc: DocId,
    pub kind: Kind,
    /// The client token's `sub`, if any.
    pub user: Option<String>,
}

impl ClientEvent {
    /// Tells `recorder`, if webhooks are on, that a client of `doc` connected or left.
    pub fn tell(
        recorder: Option<&Addr<Recorder>>,
        connected: bool,
        doc: &DocId,
        kind: Kind,
        user: Option<&str>,
    ) {
        if let Some(recorder) = recorder {
            recorder.do_send(ClientEvent {
                connected,
                doc: doc.clone(),
                kind,
                user: user.map(str::to_owned),
            });
        }
    }
}

/// Write everything held now (shutdown); answered once written or refused.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushEvents;

/// One document's changes not yet in its window row.
struct Gathered {
    kind: Kind,
    users: BTreeSet<String>,
    first: Instant,
    last: Instant,
}

impl Gathered {
    fn merge(&mut self, other: Gathered) {
        self.users.extend(other.users);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// A window this recorder wrote: when it is due (its last change written plus the debounce
/// period) and when it ends whatever comes (its first change plus `max_wait_ms`).
struct Open {
    due: Instant,
    ends: Instant,
}

/// After a failed write, the next one waits this long.
const RETRY: Duration = Duration::from_secs(1);

pub struct Recorder {
    outbox: Outbox,
    replica: String,
    debounce: Duration,
    max_wait: Duration,
    gathered: HashMap<DocId, Gathered>,
    /// The windows written from here that are still open: when each closes unless extended.
    written: HashMap<DocId, Open>,
    clients: VecDeque<EventRow>,
    /// A write is in flight: one at a time, so writes land in the order taken.
    writing: bool,
    /// The last write failed: none before this.
    retry_at: Option<Instant>,
    /// Where saves mark documents changed (see `marks.rs`); `None` in tests without Redis.
    redis: Option<RedisCache>,
    marks: Marks,
    /// A sweep of the marks is running, or when the last one started.
    sweeping: bool,
    swept_at: Option<Instant>,
    /// How many writes were taken; the documents of the one in flight.
    writes: u64,
    in_flight: std::collections::HashSet<DocId>,
}

impl Recorder {
    pub fn start_with(
        outbox: Outbox,
        redis: Option<RedisCache>,
        w: &WebhookSettings,
        replica: &str,
    ) -> Addr<Recorder> {
        Recorder {
            outbox,
            replica: replica.to_owned(),
            debounce: Duration::from_millis(w.debounce_ms),
            max_wait: Duration::from_millis(w.max_wait_ms),
            gathered: HashMap::new(),
            written: HashMap::new(),
            clients: VecDeque::new(),
            writing: false,
            retry_at: None,
            redis,
            marks: Marks::default(),
            sweeping: false,
            swept_at: None,
            writes: 0,
            in_flight: Default::default(),
        }
        .start()
    }

    /// How long before a written window's due time its extension is written: room for the
    /// write's round trip and the tick, so the row is never closed while changes keep coming.
    fn margin(&self) -> Duration {
        (self.debounce / 5).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// How often the change marks are swept.
    fn sweep_every(&self) -> Duration {
        self.debounce / 3
    }

    /// Starts a write of what is due (every client event; the windows not written within a
    /// third of the debounce period), unless one is in flight or the last failed moments ago.
    fn write_due(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if let Some(batch) = self.take(false) {
            self.writing = true;
            ctx.spawn(self.write(batch).map(|(), act, ctx| {
                act.writing = false;
                act.write_due(ctx);
            }));
        }
    }

    /// Takes what is due, or everything (`all`); `None` if nothing is.
    fn take(&mut self, all: bool) -> Option<Batch> {
        let now = Instant::now();
        self.written.retain(|_, open| open.due > now && !all);
        let soon = now + self.margin();
        let due: Vec<DocId> = self
            .gathered
            .keys()
            .filter(|d| self.written.get(*d).is_none_or(|open| open.due <= soon))
            .cloned()
            .collect();
        let windows: Vec<(DocId, Gathered)> = due
            .into_iter()
            .filter_map(|d| self.gathered.remove_entry(&d))
            .collect();
        let clients: Vec<EventRow> = self.clients.drain(..).collect();
        if windows.is_empty() && clients.is_empty() {
            return None;
        }
        self.writes += 1;
        self.in_flight = windows.iter().map(|(doc, _)| doc.clone()).collect();
        Some(Batch {
            windows,
            clients,
            number: self.writes,
        })
    }

    /// Writes `batch`: client events first, in order, then the windows. What fails is kept.
    fn write(&mut self, batch: Batch) -> impl ActorFuture<Self, Output = ()> {
        let now = Instant::now();
        let rows: Vec<WindowRow> = batch
            .windows
            .iter()
            .map(|(doc, g)| WindowRow {
                doc: doc.to_string(),
                kind: g.kind.as_str(),
                users: g.users.iter().cloned().collect(),
                due_ms: ms_left(self.debounce, now - g.last),
                ends_ms: ms_left(self.max_wait, now - g.first),
            })
            .collect();
        let (outbox, events) = (self.outbox.clone(), batch.clients.clone());
        let fut = async move {
            if !events.is_empty() {
                outbox.insert_events(&events).await?;
            }
            if !rows.is_empty() {
                outbox.upsert_windows(&rows).await?;
            }
            Ok::<_, super::outbox::OutboxError>(())
        };
        fut.into_actor(self)
            .map(move |res, act, ctx| act.landed(res, batch, ctx))
    }

    /// A write's outcome: windows written are spaced, what failed is kept for a retry.
    fn landed(
        &mut self,
        res: Result<(), super::outbox::OutboxError>,
        batch: Batch,
        ctx: &mut Context<Self>,
    ) {
        let Batch {
            windows,
            clients,
            number,
        } = batch;
        self.in_flight.clear();
        match res {
            Ok(()) => {
                if self.retry_at.take().is_some() {
                    info!("webhook events written to postgres again");
                }
                let adopted = self
                    .marks
                    .written(number, windows.iter().map(|(doc, _)| doc));
                self.clear_marks(adopted, ctx);
                metrics::counter!(super::WINDOW_WRITES).increment(windows.len() as u64);
                for (doc, g) in windows {
                    let ends = match self.written.get(&doc) {
                        Some(open) => open.ends,
                        None => g.first + self.max_wait,
                    };
                    let due = (g.last + self.debounce).min(ends);
                    self.written.insert(doc, Open { due, ends });
                }
            }
            Err(e) => {
                if self.retry_at.is_none() {
                    warn!(error = %e, "webhook events not written, kept to retry");
                }
                self.retry_at = Some(Instant::now() + RETRY);
                // Client events go back in front of any that came meanwhile, in order.
                for event in clients.into_iter().rev() {
                    self.clients.push_front(event);
                }
                for (doc, mut g) in windows {
                    if let Some(later) = self.gathered.remove(&doc) {
                        g.merge(later);
                    }
                    self.gathered.insert(doc, g);
                }
            }
        }
    }
}

/// Events taken for one write, the `number`th.
struct Batch {
    windows: Vec<(DocId, Gathered)>,
    clients: Vec<EventRow>,
    number: u64,
}

impl Recorder {
    /// Looks at the change marks in Redis, every third of the debounce period (see `marks.rs`).
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        if self.sweeping
            || self
                .swept_at
                .is_some_and(|at| at.elapsed() < self.sweep_every())
        {
            return;
        }
        self.sweeping = true;
        self.swept_at = Some(Instant::now());
        let read = async move { redis.change_marks().await };
        ctx.spawn(read.into_actor(self).map(|read, act, ctx| {
            act.sweeping = false;
            let Ok(found) = read else { return };
            let (gathered, in_flight) = (&act.gathered, &act.in_flight);
            let waiting = |doc: &DocId| gathered.contains_key(doc) || in_flight.contains(doc);
            let swept = act
                .marks
                .sweep(found, &act.replica, waiting, act.writes + 1);
            let now = Instant::now();
            for (doc, kind) in swept.gather {
                act.gathered.entry(doc).or_insert_with(|| Gathered {
                    kind,
                    users: BTreeSet::new(),
                    first: now,
                    last: now,
                });
            }
            act.clear_marks(swept.clear, ctx);
            act.write_due(ctx);
        }));
    }

    /// Clears marks whose windows are written (best effort: one left is cleared next time).
    fn clear_marks(&self, marks: Vec<ChangeMark>, ctx: &mut Context<Self>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        if marks.is_empty() {
            return;
        }
        ctx.spawn(actix::fut::wrap_future(async move {
            let _ = redis.clear_change_marks(&marks).await;
        }));
    }
}

/// What is left of `period` after `elapsed`, in milliseconds.
fn ms_left(period: Duration, elapsed: Duration) -> i64 {
    period.saturating_sub(elapsed).as_millis() as i64
}

impl Actor for Recorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Retries after a failure, and extensions of windows about to close.
        let tick = (self.margin() / 2).clamp(Duration::from_millis(20), RETRY);
        ctx.run_interval(tick, |act, ctx| {
            act.write_due(ctx);
            act.sweep(ctx);
        });
    }
}

impl Handler<Changed> for Recorder {
    type Result = ();

    /// Gathers a landed save's changes into the document's window.
    fn handle(&mut self, msg: Changed, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let g = Gathered {
            kind: msg.kind,
            users: msg.users.into_iter().collect(),
            first: now,
            last: now,
        };
        match self.gathered.get_mut(&msg.doc) {
            Some(held) => held.merge(g),
            None => {
                // A new window is written at once; an open one's extension waits for the tick
                // (a scan of every gathered document per change cost more than the write).
                let new_window = !self.written.contains_key(&msg.doc);
                self.gathered.insert(msg.doc, g);
                if new_window {
                    self.write_due(ctx);
                }
            }
        }
    }
}

impl Handler<ClientEvent> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: ClientEvent, ctx: &mut Context<Self>) {
        self.clients.push_back(EventRow {
            event: match msg.connected {
                true => "client.connected",
                false => "client.disconnected",
            },
            doc: msg.doc.to_string(),
            kind: msg.kind.as_str(),
            users: msg.user.into_iter().collect(),
            replica: self.replica.clone(),
            at: Utc::now(),
        });
        self.write_due(ctx);
    }
}

impl Handler<FlushEvents> for Recorder {
    type Result = ResponseActFuture<Self, ()>;

    /// Writes everything held at once, due or not and retry pauses aside (shutdown; the caller
    /// bounds the wait), then answers.
    fn handle(&mut self, _: FlushEvents, _: &mut Context<Self>) -> Self::Result {
        match self.take(true) {
            Some(batch) => Box::pin(self.write(batch)),
            None => Box::pin(actix::fut::ready(())),
        }
    }
}
