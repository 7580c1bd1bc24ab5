//! The ledger's rules: commits by hash and by log position, JSON stamps, Yjs parts.

use super::*;

fn json(doc: &str, content: &'static str, millis: u64) -> Version {
    crate::testing::stamped(doc, content, millis)
}

#[test]
fn a_commit_clears_only_entries_still_at_the_committed_hash() {
    let ledger = Ledger::default();
    let (a1, a2, b) = (json("a", "1", 1), json("a", "2", 2), json("b", "1", 1));
    ledger.saved(&a1, Durable::Journal, None);
    ledger.saved(&b, Durable::Journal, None);
    ledger.saved(&a2, Durable::Journal, None);

    let left = ledger.committed(&[Commit::written(&a1), Commit::written(&b)]);

    let left: Vec<Version> = left.into_iter().map(|e| e.version).collect();
    assert_eq!(left, vec![b.clone()]);
    assert_eq!(ledger.get(&a1.doc).unwrap().version, a2, "a2 still waits");
    assert!(!ledger.lacks(&b.doc));
}

#[test]
fn an_older_json_save_never_replaces_a_later_one() {
    let ledger = Ledger::default();
    let (old, new) = (json("a", "old", 1), json("a", "new", 2));
    ledger.saved(&new, Durable::Cache, Some(pos(1)));
    ledger.saved(&old, Durable::Journal, None);
    let entry = ledger.get(&new.doc).unwrap();
    assert_eq!(entry.version, new);
    assert_eq!(entry.durable, Durable::Cache);
    assert_eq!(entry.position, Some(pos(1)));
}

#[test]
fn moving_an_entry_needs_it_unchanged() {
    let ledger = Ledger::default();
    let (a1, a2) = (json("a", "1", 1), json("a", "2", 2));
    ledger.saved(&a1, Durable::Journal, None);
    ledger.saved(&a2, Durable::Journal, None);
    assert!(!ledger.moved(&a1, Durable::Cache, Some(pos(1))));
    assert!(ledger.moved(&a2, Durable::Cache, Some(pos(2))));
    assert_eq!(ledger.get(&a2.doc).unwrap().durable, Durable::Cache);
}

fn pos(ms: u64) -> LogPos {
    LogPos { ms, seq: 0 }
}

#[test]
fn a_commit_of_the_log_clears_every_save_it_includes_whoever_flushed_it() {
    let ledger = Ledger::default();
    let (a, b) = (json("a", "1", 1), json("b", "1", 1));
    ledger.saved(&a, Durable::Cache, Some(pos(5)));
    ledger.saved(&b, Durable::Cache, Some(pos(9)));
    let other = |v: &Version, at| Commit {
        recorded: Some(crate::log::LogMark {
            incarnation: crate::log::Incarnation(1),
            position: pos(at),
        }),
        ..Commit::of(v.doc.clone(), "another replica's content".into())
    };

    let left = ledger.committed(&[other(&a, 7), other(&b, 7)]);

    assert_eq!(
        left.len(),
        1,
        "a's save at 5 is included in the log up to 7"
    );
    assert!(!ledger.lacks(&a.doc));
    assert!(ledger.lacks(&b.doc), "b's save at 9 is not");
}

#[test]
fn yjs_saves_are_increments_and_merge_into_the_entry() {
    use crate::testing::{yjs_edit, yjs_text};
    let ledger = Ledger::default();
    let (one, two) = (yjs_edit("y", 1, "one"), yjs_edit("y", 2, "two"));
    ledger.saved(&one, Durable::Cache, Some(pos(1)));
    ledger.saved(&two, Durable::Cache, Some(pos(2)));
    let entry = ledger.get(&one.doc).unwrap();
    let text = yjs_text(&entry.version);
    assert!(text.contains("one") && text.contains("two"), "{text}");
    assert_eq!(entry.position, Some(pos(2)));
}

#[test]
fn a_commit_of_the_log_short_of_the_newest_save_drops_the_saves_it_includes() {
    use crate::testing::{yjs_edit, yjs_text};
    let ledger = Ledger::default();
    let (one, two, three) = (
        yjs_edit("y", 1, "one"),
        yjs_edit("y", 2, "two"),
        yjs_edit("y", 3, "three"),
    );
    ledger.saved(&one, Durable::Cache, Some(pos(1)));
    ledger.saved(&two, Durable::Cache, Some(pos(2)));
    let read = ledger.get(&one.doc).unwrap(); // a flush reads it: the parts merge
    assert!(yjs_text(&read.version).contains("two"));
    ledger.saved(&three, Durable::Cache, Some(pos(3)));
    let commit = |at| Commit {
        recorded: Some(crate::log::LogMark {
            incarnation: crate::log::Incarnation(1),
            position: pos(at),
        }),
        ..Commit::of(one.doc.clone(), "the log's content".into())
    };

    let left = ledger.committed(&[commit(2)]);

    assert_eq!(
        left.iter().map(|e| &e.version).collect::<Vec<_>>(),
        vec![&read.version],
        "the merged saves up to 2 left"
    );
    let entry = ledger.get(&one.doc).unwrap();
    let text = yjs_text(&entry.version);
    assert!(
        text.contains("three") && !text.contains("one") && !text.contains("two"),
        "only the save at 3 waits: {text}"
    );
    assert_eq!(entry.position, Some(pos(3)));
    ledger.committed(&[commit(3)]);
    assert!(!ledger.lacks(&one.doc));
}

/// Equal JSON content under a larger stamp is a later version: a commit of the same content
/// under a smaller stamp (a journal's, flushed late) does not settle it, or an older write
/// stamped in between would win in PostgreSQL over this acknowledged one.
#[test]
fn a_commit_of_equal_content_under_a_smaller_stamp_leaves_the_later_save_waiting() {
    let ledger = Ledger::default();
    let (early, late) = (json("a", "C", 30), json("a", "C", 102));
    ledger.saved(&late, Durable::Cache, Some(pos(5)));
    let commit = Commit::written;

    assert!(ledger.committed(&[commit(&early)]).is_empty());
    assert!(ledger.lacks(&late.doc));
    assert!(
        !ledger.moved(&early, Durable::Journal, None),
        "another version"
    );

    assert_eq!(ledger.committed(&[commit(&late)]).len(), 1);
    assert!(!ledger.lacks(&late.doc));
}

#[test]
fn content_from_elsewhere_is_handed_to_the_room_once_each_time_more_comes_in() {
    let ledger = Ledger::default();
    let (own, elsewhere, more) = (
        json("a", "own", 1),
        json("a", "there", 2),
        json("a", "more", 3),
    );
    ledger.saved(&own, Durable::Journal, None);
    assert_eq!(ledger.foreign(&own.doc), None, "nothing from elsewhere");

    ledger.absorbed(elsewhere.clone(), Durable::Journal);
    assert_eq!(ledger.foreign(&own.doc), Some(vec![elsewhere]));
    assert_eq!(ledger.foreign(&own.doc), None, "handed once");

    ledger.absorbed(more.clone(), Durable::Journal);
    assert_eq!(ledger.foreign(&own.doc), Some(vec![more]));
}
