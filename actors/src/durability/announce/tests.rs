//! What a commit announces, and what the journal keeps until the announcement is in Redis.

use super::*;
use crate::ledger::Ledger;
use crate::log::LogPos;

fn json(doc: &str, content: &'static str, millis: u64) -> Version {
    crate::testing::stamped(doc, content, millis)
}

fn content(v: &Version) -> CommittedContent {
    (v.doc.clone(), v.hash.clone(), v.stamp.clone())
}

/// The ledger's answer to `done`, with `saved` held before it.
fn commit(saved: &[(&Version, Durable)], done: &[Commit]) -> Vec<Entry> {
    let ledger = Ledger::default();
    for (v, durable) in saved {
        let position = (*durable == Durable::Cache).then_some(LogPos { ms: 1, seq: 0 });
        ledger.saved(v, *durable, position);
    }
    ledger.committed(done)
}

#[test]
fn a_journaled_version_postgres_took_is_announced_and_the_journal_keeps_it_until_then() {
    let (journaled, cached) = (json("j", "1", 5), json("c", "1", 5));
    let done = [Commit::written(&journaled), Commit::written(&cached)];
    let left = commit(
        &[(&journaled, Durable::Journal), (&cached, Durable::Cache)],
        &done,
    );

    let (now, announced_) = after_commit(&done, left);

    assert_eq!(now, vec![content(&cached), content(&cached)]);
    assert_eq!(
        announced_,
        vec![Announcement {
            version: journaled.clone(),
            forget: vec![content(&journaled), content(&journaled)],
        }]
    );
    assert_eq!(announced(&announced_), vec![content(&journaled); 2]);
}

#[test]
fn a_write_that_lost_announces_what_postgres_kept_instead_of_itself() {
    let (written, kept) = (json("j", "older", 3), json("j", "newer", 9));
    let done = [Commit {
        kept: Some(kept.clone()),
        ..Commit::written(&written)
    }];
    let left = commit(&[(&written, Durable::Journal)], &done);

    let (now, announced_) = after_commit(&done, left);

    assert!(
        now.is_empty(),
        "the journal keeps {now:?} until the announcement"
    );
    assert_eq!(announced_.len(), 1);
    assert_eq!(announced_[0].version, kept);
    assert_eq!(announced_[0].forget, vec![content(&written); 2]);
}

#[test]
fn content_only_redis_held_is_not_announced() {
    let cached = json("c", "1", 5);
    let done = [Commit::written(&cached)];
    let left = commit(&[(&cached, Durable::Cache)], &done);

    let (now, announced_) = after_commit(&done, left);

    assert_eq!(now.len(), 2);
    assert!(announced_.is_empty());
}

#[test]
fn debts_are_one_per_document_and_taken_out_whole() {
    let (first, other) = (json("j", "1", 3), json("k", "1", 1));
    let mut owed = Owed::default();
    owed.owe([first.doc.clone(), other.doc.clone()]);
    owed.owe([first.doc.clone()]);

    assert_eq!(owed.len(), 2);
    assert!(owed.contains(&first.doc));
    assert_eq!(owed.take(), vec![first.doc, other.doc]);
    assert!(owed.is_empty());
}
