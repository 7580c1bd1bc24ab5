//! The durability state's rules, with time passed in.

use std::time::{Duration, Instant};

use super::*;
use crate::breaker::ForceMode;
use crate::fallback::MemoryIo;

fn json(doc: &str, content: &'static str, millis: u64) -> Version {
    crate::testing::stamped(doc, content, millis)
}

fn state() -> Durability {
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    let breaker = Breaker::new(3, Duration::from_secs(30));
    let retry = (Duration::from_millis(10), Duration::from_millis(80));
    Durability::new(Ledger::default(), breaker, &fallback, retry)
}

#[test]
fn a_document_whose_newest_version_is_only_journaled_keeps_saving_to_the_journal() {
    let mut d = state();
    let (journaled, other) = (json("j", "1", 1), json("o", "1", 1));
    d.ledger().saved(&journaled, Durable::Journal, None);

    assert_eq!(d.route(&journaled.doc), Route::Journal);
    assert!(matches!(d.route(&other.doc), Route::Redis { .. }));

    d.force(ForceMode::Open, Instant::now());
    assert_eq!(d.route(&other.doc), Route::Journal, "breaker open");
}

#[test]
fn a_save_answered_after_a_newer_redis_failure_is_journaled_too() {
    let mut d = state();
    let v = json("d", "1", 1);
    let Route::Redis { failures } = d.route(&v.doc) else {
        panic!("redis while the breaker is closed");
    };
    let saved = Saved {
        written: Written::Stored,
        position: None,
    };
    let accounted = d.account(Some(false), Instant::now());
    assert!(accounted.spill, "the first failure of a streak spills");

    assert_eq!(d.saved(&v, failures, saved), None, "journal it");
    assert_eq!(
        d.saved(&v, d.breaker().failures(), saved),
        Some(Stored::Cache)
    );
}

#[test]
fn while_redis_is_out_of_use_the_journal_lets_go_and_the_announcement_waits() {
    let mut d = state();
    let v = json("j", "1", 1);
    d.ledger().saved(&v, Durable::Journal, None);
    d.force(ForceMode::Open, Instant::now());

    let after = d.committed(&[Commit::written(&v)]);

    assert!(after.announce.is_empty(), "nothing to write into Redis now");
    assert!(after.forget.iter().any(|(doc, ..)| *doc == v.doc));
    assert_eq!(d.fallback_docs(), 1, "the announcement waits");
    assert!(d.move_back(Instant::now()).is_none(), "not while open");

    d.force(ForceMode::Auto, Instant::now());
    d.account(Some(true), Instant::now());
    let moves = d.move_back(Instant::now()).expect("a move back is due");
    assert_eq!(moves.announce.len(), 1);
    assert_eq!(moves.announce[0].version, v);
}

#[test]
fn while_redis_is_in_use_the_journal_keeps_what_an_announcement_rests_on_until_written() {
    let mut d = state();
    let v = json("j", "1", 1);
    d.ledger().saved(&v, Durable::Journal, None);

    let after = d.committed(&[Commit::written(&v)]);

    assert!(after.forget.iter().all(|(doc, ..)| *doc != v.doc));
    assert_eq!(after.announce.len(), 1);
    let forget = announced(&after.announce);
    assert!(forget.iter().any(|(doc, ..)| *doc == v.doc), "once written");
}

#[test]
fn a_failed_move_back_backs_off_and_a_closing_breaker_ends_the_backoff() {
    let mut d = state();
    d.ledger().saved(&json("j", "1", 1), Durable::Journal, None);
    let now = Instant::now();
    let moves = d.move_back(now).expect("due");

    let wait = d.moved_back(false, moves.announce, now).unwrap_err();
    assert_eq!(wait, Duration::from_millis(10));
    assert!(d.move_back(now).is_none(), "backing off");
    assert!(d.move_back(now + wait).is_some());

    let wait = d.moved_back(false, Vec::new(), now).unwrap_err();
    assert_eq!(wait, Duration::from_millis(20), "doubles");
    d.force(ForceMode::Open, now);
    d.force(ForceMode::Closed, now);
    assert!(d.move_back(now).is_some(), "Redis answers again: at once");
}

/// A spill read the entry, and a save stored in Redis joined it before the journal answered:
/// the entry stays durable in Redis (only Redis holds that save), so the next failure's spill
/// journals it again (the simulation's seed 81133 lost it to a Redis restarted empty and a
/// crash). Without a save in between, the spill marks it journaled.
#[test]
fn a_spill_marks_an_entry_journaled_only_if_no_save_joined_it_meanwhile() {
    use crate::log::LogPos;
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    let ledger = Ledger::default();
    let (one, two) = (
        crate::testing::yjs_edit("y", 1, "one "),
        crate::testing::yjs_edit("y", 2, "two "),
    );
    ledger.saved(&one, Durable::Cache, Some(LogPos { ms: 1, seq: 0 }));
    let read = ledger.get(&one.doc).unwrap().version;
    ledger.saved(&two, Durable::Cache, Some(LogPos { ms: 2, seq: 0 }));

    spilled(&ledger, &fallback, &read);
    assert_eq!(ledger.durable(&one.doc), Some(Durable::Cache));

    let read = ledger.get(&one.doc).unwrap().version;
    spilled(&ledger, &fallback, &read);
    assert_eq!(ledger.durable(&one.doc), Some(Durable::Journal));
}
