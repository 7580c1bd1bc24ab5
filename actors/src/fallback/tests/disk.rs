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
