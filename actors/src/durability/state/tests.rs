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
fn while_redis_is_out_of_use_the_journal_lets_go_and_records_the_debt() {
    let mut d = state();
    let v = json("j", "1", 1);
    d.ledger().saved(&v, Durable::Journal, None);
    d.force(ForceMode::Open, Instant::now());

    let after = d.committed(&[Commit::written(&v)]);

    assert!(after.announce.is_empty(), "nothing to write into Redis now");
    assert!(after.settle.forget.iter().any(|(doc, ..)| *doc == v.doc));
    assert_eq!(after.settle.owe, vec![v.doc.clone()], "the journal records");
    assert_eq!(d.fallback_docs(), 1, "the announcement waits");
    assert!(d.move_back(Instant::now()).is_none(), "not while open");

    d.force(ForceMode::Auto, Instant::now());
    d.account(Some(true), Instant::now());
    let moves = d.move_back(Instant::now()).expect("a move back is due");
    assert_eq!(moves.announce, vec![v.doc.clone()]);
    assert_eq!(
        d.fallback_docs(),
        1,
        "unpaid while the move back is on its way"
    );
    let moved = Moved {
        redis_ok: true,
        announced: moves.announce,
        unannounced: Vec::new(),
    };
    assert_eq!(d.moved_back(moved, Instant::now()), (vec![v.doc], None));
    assert_eq!(d.fallback_docs(), 0);
}

/// The journal's debts are what Redis is owed at start: a crash between the commit and the
/// move back keeps the announcement.
#[tokio::test]
async fn a_debt_the_journal_recorded_is_owed_again_after_a_restart() {
    let io = MemoryIo::new();
    let doc = json("j", "1", 1).doc;
    let fallback = Fallback::open_with(io.clone()).unwrap();
    fallback.settle(vec![doc.clone()], &[]).await.unwrap();
    drop(fallback);

    let fallback = Fallback::open_with(io).unwrap();
    let breaker = Breaker::new(3, Duration::from_secs(30));
    let retry = (Duration::from_millis(10), Duration::from_millis(80));
    let mut d = Durability::new(Ledger::default(), breaker, &fallback, retry);

    let moves = d.move_back(Instant::now()).expect("a move back is due");
    assert_eq!(moves.announce, vec![doc]);
}

/// A document owed again while its announcement was on its way stays owed: the content
/// announced was loaded before the later commit.
#[test]
fn a_debt_incurred_again_during_a_move_back_is_not_paid_by_it() {
    let mut d = state();
    let v = json("j", "1", 1);
    let owe = |d: &mut Durability| {
        d.unannounced(vec![Announcement {
            version: v.clone(),
            forget: Vec::new(),
        }])
    };
    owe(&mut d);
    let moves = d.move_back(Instant::now()).expect("due");
    owe(&mut d);

    let moved = Moved {
        redis_ok: true,
        announced: moves.announce,
        unannounced: Vec::new(),
    };
    let (paid, retry) = d.moved_back(moved, Instant::now());

    assert!(paid.is_empty());
    assert_eq!(retry, None);
    assert_eq!(d.fallback_docs(), 1, "still owed");
}

#[test]
fn while_redis_is_in_use_the_journal_keeps_what_an_announcement_rests_on_until_written() {
    let mut d = state();
    let v = json("j", "1", 1);
    d.ledger().saved(&v, Durable::Journal, None);

    let after = d.committed(&[Commit::written(&v)]);

    assert!(after.settle.forget.iter().all(|(doc, ..)| *doc != v.doc));
    assert!(after.settle.owe.is_empty());
    assert_eq!(after.announce.len(), 1);
    let forget = super::super::announce::announced(&after.announce);
    assert!(forget.iter().any(|(doc, ..)| *doc == v.doc), "once written");
}

#[test]
fn a_failed_move_back_backs_off_and_a_closing_breaker_ends_the_backoff() {
    let mut d = state();
    d.ledger().saved(&json("j", "1", 1), Durable::Journal, None);
    let now = Instant::now();
    let moves = d.move_back(now).expect("due");

    let failed = |announce| Moved {
        redis_ok: false,
        announced: Vec::new(),
        unannounced: announce,
    };
    let wait = d.moved_back(failed(moves.announce), now).1.unwrap();
    assert_eq!(wait, Duration::from_millis(10));
    assert!(d.move_back(now).is_none(), "backing off");
    assert!(d.move_back(now + wait).is_some());

    let wait = d.moved_back(failed(Vec::new()), now).1.unwrap();
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
