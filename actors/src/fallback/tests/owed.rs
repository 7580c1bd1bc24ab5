//! Debts to Redis: documents whose PostgreSQL content Redis is owed, recorded with the commit
//! that let the journal's content go, kept through compaction and a restart until paid.

use super::*;

#[tokio::test]
async fn a_debt_recorded_with_a_commit_survives_a_restart_and_compaction_until_paid() {
    let dir = TestDir::new("owed");
    let fallback = Fallback::open(&dir.0).unwrap();
    let (a, b) = (v("a", "1"), v("b", "1"));
    fallback.put(a.clone()).await.unwrap();
    fallback.put(b.clone()).await.unwrap();
    let done = [(a.doc.clone(), a.hash.clone(), None)];

    fallback.settle(vec![a.doc.clone()], &done).await.unwrap();

    assert_eq!(fallback.get(&a.doc), None, "the content left");
    assert_eq!(fallback.owed(), vec![a.doc.clone()]);
    drop(fallback);
    let fallback = Fallback::open(&dir.0).unwrap();
    assert_eq!(fallback.owed(), vec![a.doc.clone()], "after a restart");
    assert_eq!(fallback.dirty(), vec![b.clone()]);

    // The commit of the last entry compacts the journal: the debt is rewritten, not dropped.
    let done = [(b.doc.clone(), b.hash.clone(), None)];
    fallback.committed(&done).await.unwrap();
    assert!(fallback.is_empty());
    assert!(fallback.journal_bytes() > 0, "the debt is still recorded");
    drop(fallback);
    let fallback = Fallback::open(&dir.0).unwrap();
    assert_eq!(fallback.owed(), vec![a.doc.clone()], "after compaction");

    fallback.announced(vec![a.doc.clone()]).await.unwrap();

    assert!(fallback.owed().is_empty());
    assert_eq!(fallback.journal_bytes(), 0, "nothing left to keep");
    drop(fallback);
    assert!(Fallback::open(&dir.0).unwrap().owed().is_empty());
}

#[tokio::test]
async fn a_debt_is_recorded_once_and_paying_what_is_not_owed_writes_nothing() {
    let dir = TestDir::new("owed-once");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.settle(vec![id("a")], &[]).await.unwrap();
    let once = fallback.journal_bytes();

    fallback.settle(vec![id("a")], &[]).await.unwrap();
    fallback.announced(vec![id("b")]).await.unwrap();

    assert_eq!(fallback.journal_bytes(), once);
    assert_eq!(fallback.owed(), vec![id("a")]);
}
