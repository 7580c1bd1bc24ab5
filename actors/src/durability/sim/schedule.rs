//! One seed's schedule: a run of events drawn from the seed (a step of a call in flight, a
//! client's save or read, a flush, the supervisor's timer, a fault), then quiescence (every
//! fault healed, every replica up, timers and full flushes until nothing changes), then the
//! invariants of the end state.

use super::faults::strike;
use super::oracle::{markers, pg_summary, violation, Violation};
use super::recovery::client_read;
use super::replica::{flush, restart, start, tick};
use super::save::client_save;
use super::world::{at_once, World};
use crate::doc::Kind;
use crate::storage::memory::CLAIM_TTL;
use crate::storage::DocumentLog;

/// Full flushes and timer rounds quiescence may take before it counts as stuck.
const QUIET_ROUNDS: usize = 12;
/// Steps one drain of the calls in flight may take.
const DRAIN_STEPS: usize = 20_000;

/// What a seed's run came to.
pub(super) struct Played {
    pub result: Result<(), Violation>,
    pub trace: Vec<String>,
    pub acks: usize,
}

/// Plays seed `seed`; `trace` keeps every line, `echo` prints each as it happens.
pub(super) fn play(seed: u64, trace: bool, echo: bool) -> Played {
    let mut w = World::new(seed, trace, echo);
    let s = &w.settings;
    let (replicas, docs, events) = (s.replicas, s.docs, s.events);
    let (threshold, open_for) = (s.threshold, s.open_for);
    w.note(None, || {
        format!("seed {seed}: {replicas} replicas, {docs} documents, {events} events, breaker opens after {threshold} failures for {open_for} ms")
    });
    let result = run(&mut w);
    Played {
        result,
        acks: w.oracle.acks(),
        trace: w.take_trace(),
    }
}

fn run(w: &mut World) -> Result<(), Violation> {
    for r in 0..w.replicas.len() {
        start(w, r);
    }
    for _ in 0..w.settings.events {
        w.step += 1;
        w.now += w.rng.below(3);
        event(w);
        if let Some(v) = w.violation.take() {
            return Err(v);
        }
    }
    quiesce(w)?;
    // A journal entry whose every part the ledger did not learn stays until the next start
    // replays it (fallback/mod.rs): restart those replicas, and settle again.
    let journaling: Vec<usize> = (0..w.replicas.len())
        .filter(|&r| !w.life(r).fallback().is_empty())
        .collect();
    if !journaling.is_empty() {
        for &r in &journaling {
            w.jobs.retain(|j| j.replica != r);
            w.replicas[r].life = None;
            restart(w, r);
        }
        quiesce(w)?;
    }
    check(w)
}

fn event(w: &mut World) {
    let r = w.rng.index(w.replicas.len());
    let live = w.replicas[r].life.is_some();
    match w.rng.below(100) {
        0..=44 if !w.jobs.is_empty() => w.step_job(),
        45..=61 if live => client_save(w, r),
        62..=68 if live => {
            let fresh = w.rng.chance(50);
            flush(w, r, fresh);
        }
        69..=80 if live => tick(w, r),
        81..=84 if live => client_read(w, r),
        85..=91 => strike(w),
        _ if !live && w.rng.chance(40) => restart(w, r),
        _ if !w.jobs.is_empty() => w.step_job(),
        _ => {}
    }
}

/// Heals everything, then lets every replica recover and flush until nothing changes.
fn quiesce(w: &mut World) -> Result<(), Violation> {
    w.step += 1;
    w.note(None, || "quiescence: every fault healed".into());
    w.faults.heal();
    for r in 0..w.replicas.len() {
        if w.replicas[r].life.is_none() {
            restart(w, r);
        }
    }
    let mut last = None;
    for _ in 0..QUIET_ROUNDS {
        // Past every flush claim a commit left behind (`PX`, as in Redis): one whose Redis
        // call failed or was never made (the breaker was open).
        w.now += CLAIM_TTL.as_millis() as u64;
        drain(w)?;
        // Past every open breaker's period and every move's backoff, twice: open, half-open
        // and probed, then closed and moving back.
        for _ in 0..2 {
            w.now += 1_000;
            for r in 0..w.replicas.len() {
                tick(w, r);
            }
            drain(w)?;
        }
        for r in 0..w.replicas.len() {
            flush(w, r, false);
            drain(w)?;
        }
        let now = fingerprint(w);
        if last.as_ref() == Some(&now) {
            return Ok(());
        }
        last = Some(now);
    }
    Err(violation(
        "quiescence: with every fault healed, the replicas settle",
        format!("still changing after {QUIET_ROUNDS} rounds: {last:?}"),
    ))
}

/// Runs every call in flight, and whatever they start, to its end.
fn drain(w: &mut World) -> Result<(), Violation> {
    for _ in 0..DRAIN_STEPS {
        if w.jobs.is_empty() {
            return Ok(());
        }
        w.step += 1;
        w.step_job();
        if let Some(v) = w.violation.take() {
            return Err(v);
        }
    }
    Err(violation(
        "quiescence: calls in flight come to an end",
        format!("{} jobs after {DRAIN_STEPS} steps", w.jobs.len()),
    ))
}

/// Everything quiescence waits on to stop changing.
fn fingerprint(w: &World) -> Vec<String> {
    let mut print = Vec::new();
    for (doc, _) in &w.docs {
        let (hash, marks) = pg_summary(&w.pg, doc);
        let cached = w.redis.peek(doc).map(|v| v.hash);
        let dirty = w.redis.is_dirty(doc);
        print.push(format!(
            "{doc} pg {hash} {marks:?} {:?} redis {cached:?} dirty {dirty}",
            w.pg.point(doc)
        ));
    }
    for (i, r) in w.replicas.iter().enumerate() {
        let life = r.life.as_ref().expect("every replica is up in quiescence");
        print.push(format!(
            "r{i} ledger {} journal {} breaker {:?}",
            life.ledger().len(),
            life.fallback().len(),
            life.durability.breaker().state()
        ));
    }
    print
}

/// The end state: every acknowledged update kept, every ledger and journal empty, Redis
/// clean and holding what PostgreSQL holds.
fn check(w: &mut World) -> Result<(), Violation> {
    w.oracle.check()?;
    for (i, replica) in w.replicas.iter().enumerate() {
        let life = replica
            .life
            .as_ref()
            .expect("every replica is up in quiescence");
        let left: Vec<String> = life
            .ledger()
            .entries(None)
            .iter()
            .map(|e| format!("{} {:?} at {:?}", e.version.doc, e.durable, e.position))
            .collect();
        if !left.is_empty() {
            let detail = format!("r{i} still holds {left:?}");
            return Err(violation("every replica's ledger empties", detail));
        }
        let journaled: Vec<String> = life
            .fallback()
            .dirty()
            .iter()
            .map(|v| v.doc.to_string())
            .collect();
        if !journaled.is_empty() {
            let detail = format!("r{i}'s journal still holds {journaled:?}");
            return Err(violation("every replica's journal empties", detail));
        }
    }
    for (doc, kind) in w.docs.clone() {
        let Some(cached) = at_once(w.redis.load(&doc)).expect("the model answers") else {
            continue;
        };
        let (hash, stored) = pg_summary(&w.pg, &doc);
        let agree = match kind {
            Kind::Json => cached.version.hash == hash,
            Kind::Yjs if cached.whole => markers(&cached.version) == stored,
            Kind::Yjs => markers(&cached.version).is_subset(&stored),
        };
        if cached.dirty || !agree {
            let detail = format!(
                "{doc}: redis holds {} (dirty {}), postgres {hash} {stored:?}",
                super::world::short(&cached.version),
                cached.dirty
            );
            return Err(violation(
                "redis, where it holds a document, agrees with postgres",
                detail,
            ));
        }
    }
    Ok(())
}
