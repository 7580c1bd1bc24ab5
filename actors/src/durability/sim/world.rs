//! The simulated deployment: the replicas, the one model Redis and the one model PostgreSQL,
//! the calls in flight, the faults, the oracle and the trace, on one virtual clock.
//!
//! A replica's procedures are [`Task`]s: step machines whose every step is one call to a
//! model store (or one synchronous piece of the actor that takes its answer). A task in
//! flight is a [`Job`]; the schedule runs one step of a job it draws, so any other replica's
//! steps can come between two of a procedure's: that is how replies are delayed and reordered.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::faults::{Conn, Faults, Reach};
use super::flush::Flush;
use super::oracle::{Oracle, Violation};
use super::recovery::{MoveBack, Ping, Probe, Read, Spill};
use super::replica::{Life, Replica};
use super::rng::Rng;
use super::save::Save;
use crate::doc::{DocId, Kind};
use crate::durability::flush::Dirty;
use crate::durability::state::Settle;
use crate::storage::memory::{MemoryCache, MemoryStore};
use crate::storage::{CacheResult, DocStore, StoreAnswer, Write};

/// What a seed draws once: the world's size and its replicas' breaker settings (virtual ms).
pub(super) struct Settings {
    pub replicas: usize,
    pub docs: usize,
    pub events: usize,
    pub threshold: u32,
    pub open_for: u64,
    pub health_check: u64,
    pub retry_base: u64,
    pub retry_max: u64,
}

/// One procedure in flight at one replica.
pub(super) enum Task {
    Save(Save),
    Flush(Box<Flush>),
    Spill(Spill),
    Move(Box<MoveBack>),
    Probe(Probe),
    Ping(Ping),
    Read(Read),
    /// `KeepCached`: refresh the TTLs of what PostgreSQL refused, releasing the claims.
    Touch(Vec<DocId>),
    /// The journal records what Redis is owed and drops what PostgreSQL committed (the
    /// `Committed` handler's spawn).
    Settle(Settle),
    /// The journal records the debts a move back paid.
    Paid(Vec<DocId>),
}

pub(super) struct Job {
    pub replica: usize,
    pub task: Task,
}

pub(super) struct World {
    pub rng: Rng,
    pub settings: Settings,
    /// Virtual milliseconds.
    pub now: u64,
    /// Events so far (the trace's first column).
    pub step: u64,
    base: Instant,
    /// The model Redis, seen without faults.
    pub redis: MemoryCache,
    pub pg: MemoryStore,
    /// Redis restarts so far.
    pub wipes: u64,
    pub replicas: Vec<Replica>,
    pub jobs: Vec<Job>,
    pub faults: Faults,
    pub oracle: Oracle,
    pub docs: Vec<(DocId, Kind)>,
    pub next_marker: u64,
    /// The first invariant broken during the run (checked after every PostgreSQL write).
    pub violation: Option<Violation>,
    trace: Option<Vec<String>>,
    echo: bool,
}

impl World {
    /// The world seed `seed` draws. `trace`: keep every line; `echo`: print each at once.
    pub fn new(seed: u64, trace: bool, echo: bool) -> World {
        let mut rng = Rng::new(seed);
        let settings = Settings {
            replicas: rng.between(2, 3) as usize,
            docs: rng.between(1, 3) as usize,
            events: rng.between(60, 140) as usize,
            threshold: rng.between(1, 3) as u32,
            open_for: rng.between(10, 60),
            health_check: rng.between(5, 30),
            retry_base: 5,
            retry_max: 40,
        };
        let redis = MemoryCache::default();
        let replicas = (0..settings.replicas)
            .map(|i| {
                let skew = rng.below(40);
                Replica::new(&redis, i, skew)
            })
            .collect();
        // One JSON document always (the stamps' story), then Yjs ones, then another JSON one.
        let docs = (0..settings.docs)
            .map(|i| {
                let kind = if i == 1 { Kind::Yjs } else { Kind::Json };
                let name = format!("{}{i}", if kind == Kind::Json { "j" } else { "y" });
                (DocId::parse(&name).expect("a valid id"), kind)
            })
            .collect();
        World {
            faults: Faults::new(settings.replicas),
            settings,
            rng,
            now: 0,
            step: 0,
            base: Instant::now(),
            redis,
            pg: MemoryStore::default(),
            wipes: 0,
            replicas,
            jobs: Vec::new(),
            oracle: Oracle::default(),
            docs,
            next_marker: 0,
            violation: None,
            trace: trace.then(Vec::new),
            echo,
        }
    }

    /// The virtual clock as an `Instant`, for the real breaker.
    pub fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.now)
    }

    pub fn life(&mut self, r: usize) -> &mut Life {
        self.replicas[r]
            .life
            .as_mut()
            .expect("a job runs only on a live replica")
    }

    pub fn spawn(&mut self, replica: usize, task: Task) {
        self.jobs.push(Job { replica, task });
    }

    /// Runs one step of a job drawn at random.
    pub fn step_job(&mut self) {
        let i = self.rng.index(self.jobs.len());
        let job = self.jobs.swap_remove(i);
        let r = job.replica;
        let next = match job.task {
            Task::Save(s) => s.step(self, r).map(Task::Save),
            Task::Flush(f) => f.step(self, r).map(Task::Flush),
            Task::Spill(s) => s.step(self, r).map(Task::Spill),
            Task::Move(m) => m.step(self, r).map(|m| Task::Move(Box::new(m))),
            Task::Probe(p) => p.step(self, r).map(Task::Probe),
            Task::Ping(p) => p.step(self, r).map(Task::Ping),
            Task::Read(x) => x.step(self, r).map(Task::Read),
            Task::Touch(docs) => super::recovery::touch(self, r, docs),
            Task::Settle(settle) => super::recovery::settle(self, r, settle),
            Task::Paid(docs) => super::recovery::paid(self, r, docs),
        };
        if let Some(task) = next {
            self.jobs.push(Job { replica: r, task });
        }
    }

    /// A line of the trace (built only when a trace is kept).
    pub fn note(&mut self, r: Option<usize>, text: impl FnOnce() -> String) {
        if self.trace.is_none() && !self.echo {
            return;
        }
        let who = r.map_or_else(|| "  ".to_string(), |r| format!("r{r}"));
        let line = format!("{:>5} t={:<5} {who} {}", self.step, self.now, text());
        if self.echo {
            eprintln!("{line}");
        }
        if let Some(lines) = &mut self.trace {
            lines.push(line);
        }
    }

    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.take().unwrap_or_default()
    }

    /// One call to Redis by replica `r` on `conn`, through the faults: `None` when it failed
    /// (before taking effect, or after it: a lost reply).
    pub fn redis<T>(
        &mut self,
        r: usize,
        conn: Conn,
        what: &str,
        call: impl FnOnce(&MemoryCache) -> CacheResult<T>,
    ) -> Option<T> {
        let cache = self.replicas[r].cache.clone();
        cache.set_now(self.instant());
        let reach = self.faults.redis(r, conn, self.now);
        let answer = match reach {
            Reach::Down(_) => None,
            Reach::Lost => call(&cache).ok().and(None),
            Reach::Up => call(&cache).ok(),
        };
        self.note(Some(r), || {
            format!("redis {what}: {}", fared(reach, answer.is_some()))
        });
        answer
    }

    /// One PostgreSQL read, through the faults.
    pub fn pg_load(&mut self, r: usize, doc: &DocId) -> Option<Option<crate::doc::Version>> {
        let reach = self.faults.pg(self.now);
        let answer = match reach {
            Reach::Down(_) => None,
            Reach::Lost => None,
            Reach::Up => ok(at_once(self.pg.load(doc))),
        };
        self.note(Some(r), || {
            format!("postgres load {doc}: {}", fared(reach, answer.is_some()))
        });
        answer
    }

    /// One PostgreSQL transaction writing `writes`, through the faults; once it took effect,
    /// the oracle checks that nothing went back.
    pub fn pg_write(&mut self, r: usize, writes: &[Dirty]) -> Option<Vec<StoreAnswer>> {
        let reach = self.faults.pg(self.now);
        let batch: Vec<Write<'_>> = writes
            .iter()
            .map(|d| Write {
                version: &d.version,
                includes: d.includes,
            })
            .collect();
        let answer = match reach {
            Reach::Down(_) => None,
            Reach::Lost => ok(at_once(self.pg.write(&batch))).and(None),
            Reach::Up => ok(at_once(self.pg.write(&batch))),
        };
        self.note(Some(r), || {
            let what: Vec<String> = writes
                .iter()
                .map(|d| {
                    format!(
                        "{} {} incl {:?}",
                        d.version.doc,
                        short(&d.version),
                        d.includes
                    )
                })
                .collect();
            format!(
                "postgres write {what:?}: {} {answer:?}",
                fared(reach, answer.is_some())
            )
        });
        if !matches!(reach, Reach::Down(_)) {
            let docs: Vec<DocId> = writes.iter().map(|d| d.version.doc.clone()).collect();
            if let Err(v) = self.oracle.pg_wrote(&self.pg, &docs) {
                self.violation.get_or_insert(v);
            }
        }
        answer
    }
}

fn fared(reach: Reach, answered: bool) -> &'static str {
    match (reach, answered) {
        (Reach::Down(why), _) => why,
        (Reach::Lost, _) => "took effect, reply lost",
        (Reach::Up, true) => "ok",
        (Reach::Up, false) => "error",
    }
}

fn ok<T, E>(res: Result<T, E>) -> Option<T> {
    res.ok()
}

/// A version in a trace: JSON its content and stamp, Yjs its markers.
pub(super) fn short(v: &crate::doc::Version) -> String {
    match v.kind {
        Kind::Json => format!(
            "{}@{}",
            String::from_utf8_lossy(&v.content),
            v.stamp.as_ref().map_or("-".into(), |s| s.to_string())
        ),
        Kind::Yjs => format!("yjs{:?}", super::oracle::markers(v)),
    }
}

/// The in-memory models answer on their first poll (their own faults are never used: the
/// simulation decides how each call fares).
pub(super) fn at_once<F: Future>(f: F) -> F::Output {
    f.now_or_never()
        .expect("the in-memory stores answer at once")
}

/// The journal answers from its writer thread: wait for it, parked.
pub(super) fn wait<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
