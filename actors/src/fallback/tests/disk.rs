//! A disk that fails: removed files, a full disk, a failed compaction.

use super::*;

#[tokio::test]
async fn put_into_a_removed_directory_fails_and_leaves_memory_unchanged() {
    // Removing the directory works as root too, where permission bits would not stop us.
    let dir = TestDir::new("removed");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("a", "1")).await.unwrap();
    std::fs::remove_dir_all(&dir.0).unwrap();

    // The first write lands in the unlinked file; the next cannot even rebuild it.
    for content in ["2", "3"] {
        let result = fallback.put(v("a", content)).await;
        assert!(matches!(result, Err(JournalError::Io { .. })), "{result:?}");
        assert_eq!(fallback.dirty(), vec![v("a", "1")]);
    }
    assert!(fallback.put(v("b", "1")).await.is_err());
    assert_eq!(fallback.get(&id("b")), None);
}

#[tokio::test]
async fn a_removed_journal_file_is_rebuilt_from_memory() {
    let dir = TestDir::new("rebuilt");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("a", "1")).await.unwrap();
    std::fs::remove_file(dir.0.join("journal.log")).unwrap();
    assert!(fallback.put(v("b", "1")).await.is_err());

    fallback.put(v("c", "1")).await.unwrap();
    drop(fallback);

    let reopened = Fallback::open(&dir.0).unwrap();
    assert_eq!(sorted(reopened.dirty()), vec![v("a", "1"), v("c", "1")]);
}

fn on_faulty_disk(dir: &TestDir) -> (Fallback, Faults) {
    let (io, faults) = FaultyIo::new(FileIo::open(&dir.0).unwrap());
    (Fallback::open_with(io).unwrap(), faults)
}

fn is_disk_full(result: &Result<(), JournalError>) -> bool {
    matches!(result, Err(JournalError::Io { cause, .. })
        if cause.kind() == std::io::ErrorKind::StorageFull)
}

#[tokio::test]
async fn a_put_on_a_full_disk_fails_changes_nothing_and_lands_once_space_returns() {
    let dir = TestDir::new("full-put");
    let (fallback, faults) = on_faulty_disk(&dir);
    fallback.put(v("a", "1")).await.unwrap();
    let bytes = fallback.journal_bytes();
    faults.fill_disk();

    let a2 = fallback.put(v("a", "2")).await;
    let b1 = fallback.put(v("b", "1")).await;

    assert!(is_disk_full(&a2) && is_disk_full(&b1), "{a2:?} {b1:?}");
    assert_eq!(faults.refused(), 2);
    assert_eq!(fallback.dirty(), vec![v("a", "1")]);
    assert_eq!(fallback.journal_bytes(), bytes);
    let on_disk = std::fs::metadata(dir.journal()).unwrap().len();
    assert_eq!(on_disk, bytes, "the half-written records are cut off");

    faults.free_disk();
    fallback.put(v("a", "2")).await.unwrap();
    drop(fallback);
    let reopened = Fallback::open(&dir.0).unwrap();
    assert_eq!(reopened.dirty(), vec![v("a", "2")]);
    assert_eq!(reopened.replay_report().skipped, 0);
    assert_eq!(reopened.replay_report().truncated_bytes, 0);
}

#[tokio::test]
async fn a_failed_compaction_then_a_reopen_returns_no_stale_version() {
    let dir = TestDir::new("failed-compaction");
    let (fallback, faults) = on_faulty_disk(&dir);
    let stale = v("a", "\"stale\"");
    fallback.put(stale.clone()).await.unwrap();
    fallback.put(v("b", "1")).await.unwrap();
    faults.fail_replaces();

    // PostgreSQL committed a; the compaction that follows cannot rewrite the file.
    fallback
        .committed(&[(id("a"), stale.hash.clone(), stale.stamp.clone())])
        .await
        .unwrap();

    assert_eq!(faults.refused(), 1, "the compaction was tried and failed");
    assert_eq!(fallback.get(&id("a")), None);
    let file = std::fs::read(dir.journal()).unwrap();
    assert!(
        file.windows(7).any(|w| w == b"\"stale\""),
        "a's record is still there"
    );
    drop(fallback);
    let reopened = Fallback::open(&dir.0).unwrap();
    assert_eq!(reopened.dirty(), vec![v("b", "1")]);
}

#[tokio::test]
async fn a_commit_that_cannot_be_recorded_keeps_the_entry_until_it_can() {
    let dir = TestDir::new("full-commit");
    let (fallback, faults) = on_faulty_disk(&dir);
    let a = v("a", "1");
    fallback.put(a.clone()).await.unwrap();
    faults.fill_disk();

    let result = fallback
        .committed(&[(id("a"), a.hash.clone(), a.stamp.clone())])
        .await;

    assert!(is_disk_full(&result), "{result:?}");
    assert_eq!(fallback.get(&id("a")), Some(a.clone()));

    faults.free_disk();
    fallback
        .committed(&[(id("a"), a.hash, a.stamp)])
        .await
        .unwrap();
    assert!(fallback.is_empty());
    assert_eq!(fallback.journal_bytes(), 0);
    drop(fallback);
    assert!(Fallback::open(&dir.0).unwrap().is_empty());
}

#[tokio::test]
async fn a_compaction_cut_short_by_a_crash_leaves_the_old_journal_whole() {
    let dir = TestDir::new("crashed-compaction");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("a", "1")).await.unwrap();
    drop(fallback);
    // The temp file of a rewrite that never reached its rename.
    std::fs::write(dir.0.join("journal.log.tmp"), b"half a compaction").unwrap();

    let reopened = Fallback::open(&dir.0).unwrap();

    assert_eq!(reopened.dirty(), vec![v("a", "1")]);
    assert!(!dir.0.join("journal.log.tmp").exists());
}

#[tokio::test]
async fn a_journal_in_use_is_refused_to_a_second_opener_until_the_first_closes() {
    let dir = TestDir::new("in-use");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("a", "1")).await.unwrap();

    let second = Fallback::open(&dir.0);

    assert!(
        matches!(&second, Err(JournalError::InUse { dir: held }) if *held == dir.0),
        "{:?}",
        second.err()
    );
    drop(fallback);
    let reopened = Fallback::open(&dir.0).unwrap();
    assert_eq!(reopened.dirty(), vec![v("a", "1")]);
}
