//! A deterministic simulation of the durability protocol, in the spirit of FoundationDB's and
//! TigerBeetle's simulators: a seeded loop plays several replicas against one model Redis
//! ([`MemoryCache`](crate::storage::memory::MemoryCache)) and one model PostgreSQL
//! ([`MemoryStore`](crate::storage::memory::MemoryStore)), with faults, and checks after
//! quiescence that no acknowledged update was lost or rolled back.
//!
//! Why a simulation: the two acknowledged-write losses that issue 25 measured (a flush that
//! settled at a position it read after its claim; equal JSON content that kept an old stamp)
//! lived in interleavings of multi-step procedures of different replicas, which example tests
//! do not search. Here every step of a save, a flush, a spill or a move back is one call to a
//! model store, and a seed decides which step of which replica runs next, which fault strikes
//! and when, so a seed is one schedule and replays exactly.
//!
//! What is real and what is mirrored: every decision is the crate's own code — the replica's
//! [`Durability`] (the ledger, the breaker, where a save goes and what Redis's answer means,
//! what a commit lets go and announces, what a spill journals and a move back writes, the move
//! back's backoff), the journal (on memory, reopened and replayed after a crash), the HLC
//! clock, the flush's decision ([`flushed`]), the merge of a flush's writes
//! ([`one_write_per_document`]), what the ledger learns from a journal put ([`journaled`]), and
//! the model stores with the Lua scripts' and the SQL's rules. What is mirrored is only the
//! actors' order of calls around them (a save, `CollectDirty`, `Committed`, the spill, the move
//! back, the probe), step by step in [`save`], [`flush`] and [`recovery`], since actix
//! schedules on a real clock.
//!
//! - [`schedule`]: one seed's run, quiescence and the end-state checks.
//! - [`world`]: the deployment, the calls in flight and the virtual clock.
//! - [`replica`]: what a crash keeps and what it takes; the supervisor's timer and breaker.
//! - [`faults`]: Redis restarted empty, frozen, cut or dropping connections; PostgreSQL down;
//!   replies lost after taking effect; crashes and restarts.
//! - [`oracle`]: the promise, and which faults it covers.
//! - [`rng`]: the seeded source of every choice.
//!
//! Running: `cargo test -p docroom-actors durability::sim` (part of the suite) plays
//! `DOCROOM_SIM_SEEDS` seeds (10,000 by default) from `DOCROOM_SIM_FROM` (0), on `DOCROOM_SIM_THREADS` threads (1);
//! `DOCROOM_SIM_SEED=n` replays seed `n` and prints its whole trace; `scripts/simulate` is the
//! long run, in release.
//!
//! [`flushed`]: crate::durability::flush::flushed
//! [`one_write_per_document`]: crate::flusher::one_write_per_document
//! [`journaled`]: crate::durability::state::journaled
//! [`Durability`]: crate::durability::state::Durability

mod faults;
mod flush;
mod oracle;
mod recovery;
mod replica;
mod rng;
mod save;
mod schedule;
mod world;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use schedule::play;

/// Lines of a failing seed's trace its panic message shows (the replay prints them all).
const TRACE_TAIL: usize = 200;

fn env(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    Some(raw.trim().replace('_', "").parse().unwrap_or_else(|_| {
        panic!("{name}={raw} is not a number");
    }))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn replay_command(seed: u64) -> String {
    format!("DOCROOM_SIM_SEED={seed} cargo test -p docroom-actors durability::sim -- --nocapture")
}

/// The message of a failing seed: the broken invariant, the tail of the trace, the replay.
fn failure(seed: u64, invariant: &str, detail: &str, trace: &[String]) -> String {
    let tail = &trace[trace.len().saturating_sub(TRACE_TAIL)..];
    format!(
        "seed {seed} broke an invariant: {invariant}\n  {detail}\n\nlast {} lines of its trace:\n{}\n\nreplay: {}",
        tail.len(),
        tail.join("\n"),
        replay_command(seed)
    )
}

/// How a seed failed: the invariant it broke (or that it panicked), and the report to print.
struct Failed {
    invariant: String,
    report: String,
}

/// Plays one seed; a broken invariant or a panic comes back as the report to print.
fn try_seed(seed: u64) -> Result<usize, Failed> {
    let played = catch_unwind(AssertUnwindSafe(|| play(seed, false, false)));
    match played {
        Ok(p) if p.result.is_ok() => Ok(p.acks),
        Ok(p) => {
            let invariant = p
                .result
                .err()
                .map(|v| v.invariant)
                .unwrap_or_default()
                .into();
            // Played again with its trace kept: the same seed plays the same schedule.
            let again = play(seed, true, false);
            let v = again.result.expect_err("a seed that failed fails again");
            let report = failure(seed, v.invariant, &v.detail, &again.trace);
            Err(Failed { invariant, report })
        }
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let report = format!(
                "seed {seed} panicked: {why}\nreplay (its trace prints up to the panic): {}",
                replay_command(seed)
            );
            Err(Failed {
                invariant: format!("no panic ({why})"),
                report,
            })
        }
    }
}

/// The first 10,000 seeds (`DOCROOM_SIM_SEEDS`, from `DOCROOM_SIM_FROM`), or one seed with its
/// whole trace (`DOCROOM_SIM_SEED`); `scripts/simulate` plays a long run in release.
#[test]
fn no_schedule_loses_or_rolls_back_an_acknowledged_update() {
    if let Some(seed) = env("DOCROOM_SIM_SEED") {
        let played = play(seed, false, true);
        if let Err(v) = played.result {
            panic!(
                "seed {seed} broke an invariant: {}\n  {}",
                v.invariant, v.detail
            );
        }
        eprintln!(
            "seed {seed}: every invariant holds ({} acknowledged updates)",
            played.acks
        );
        return;
    }
    let from = env("DOCROOM_SIM_FROM").unwrap_or(0);
    let seeds = env("DOCROOM_SIM_SEEDS").unwrap_or(10_000);
    let threads = env("DOCROOM_SIM_THREADS").unwrap_or(1).max(1);
    // Every seed, tallying what failed how, instead of stopping at the first failure.
    let keep_going = env("DOCROOM_SIM_KEEP_GOING").unwrap_or(0) > 0;
    let started = Instant::now();
    let (next, acks) = (AtomicU64::new(from), AtomicUsize::new(0));
    let failed = Mutex::new(BTreeMap::<String, (Vec<u64>, String)>::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                let stop = !keep_going && !lock(&failed).is_empty();
                if seed >= from + seeds || stop {
                    return;
                }
                match try_seed(seed) {
                    Ok(n) => {
                        acks.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(f) => {
                        let mut failed = lock(&failed);
                        let tally = failed.entry(f.invariant).or_default();
                        if tally.0.iter().all(|&s| seed < s) {
                            tally.1 = f.report;
                        }
                        tally.0.push(seed);
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some((_, (_, report))) = failed.iter().next() {
        let tally: Vec<String> = failed
            .iter()
            .map(|(invariant, (seeds, _))| {
                let (n, mut seeds) = (seeds.len(), seeds.clone());
                seeds.sort();
                seeds.truncate(12);
                format!("{n} seeds broke: {invariant} (seeds {seeds:?}…)")
            })
            .collect();
        panic!("{report}\n\n{}", tally.join("\n"));
    }
    eprintln!(
        "simulation: seeds {from}..{}, {} acknowledged updates, every invariant held, {:.1} s",
        from + seeds,
        acks.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_seed_replays_exactly_the_same_schedule() {
    let first = play(2_024, true, false);
    let again = play(2_024, true, false);
    let other = play(2_025, true, false);
    assert!(first.trace.len() > 50, "a schedule worth comparing");
    assert_eq!(first.trace, again.trace);
    assert_ne!(first.trace, other.trace);
}
