//! Puts and commits: what the entries hold, what the journal holds, and how big it gets.

use super::*;

#[tokio::test]
async fn replay_after_a_crash_restores_the_last_put_per_document() {
    let dir = TestDir::new("replay");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("a", "1")).await.unwrap();
    fallback.put(v("b", "1")).await.unwrap();
    fallback.put(v("a", "2")).await.unwrap();
    let before = sorted(fallback.dirty());
    drop(fallback);

    let reopened = Fallback::open(&dir.0).unwrap();

    assert_eq!(sorted(reopened.dirty()), before);
    assert_eq!(reopened.get(&id("a")), Some(v("a", "2")));
    assert_eq!(reopened.len(), 2);
}

#[tokio::test]
async fn committed_drops_only_matching_hashes_and_empties_the_journal() {
    let dir = TestDir::new("committed");
    let fallback = Fallback::open(&dir.0).unwrap();
    let old = v("a", "old");
    fallback.put(old.clone()).await.unwrap();
    fallback.put(v("b", "1")).await.unwrap();
    fallback.put(v("a", "new")).await.unwrap();

    // PostgreSQL committed a's old version and b: a's newer put must stay.
    let b = v("b", "1");
    let done = [
        (id("a"), old.hash.clone(), old.stamp.clone()),
        (id("b"), b.hash, b.stamp),
    ];
    fallback.committed(&done).await.unwrap();

    assert_eq!(fallback.dirty(), vec![v("a", "new")]);
    let mut one = Vec::new();
    record::encode_put(&v("a", "new"), &mut one).unwrap();
    assert_eq!(fallback.journal_bytes(), one.len() as u64);
    drop(fallback);
    let fallback = Fallback::open(&dir.0).unwrap();
    assert_eq!(fallback.dirty(), vec![v("a", "new")]);

    fallback
        .committed(&[(id("a"), v("a", "new").hash, v("a", "new").stamp)])
        .await
        .unwrap();

    assert!(fallback.is_empty());
    assert_eq!(fallback.journal_bytes(), 0);
    let file_len = std::fs::metadata(dir.0.join("journal.log")).unwrap().len();
    assert_eq!(file_len, 0);
    drop(fallback);
    assert!(Fallback::open(&dir.0).unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_puts_all_land_and_survive_a_reopen() {
    let dir = TestDir::new("concurrent");
    let fallback = Fallback::open(&dir.0).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let fallback = fallback.clone();
            tokio::spawn(async move { fallback.put(v(&format!("doc-{i}"), "{}")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(fallback.len(), 200);
    drop(fallback);

    let reopened = Fallback::open(&dir.0).unwrap();

    assert_eq!(reopened.len(), 200);
    assert_eq!(reopened.get(&id("doc-199")), Some(v("doc-199", "{}")));
}

#[tokio::test]
async fn a_version_with_a_wrong_hash_is_refused() {
    let dir = TestDir::new("wrong-hash");
    let fallback = Fallback::open(&dir.0).unwrap();
    let mut lying = v("a", "1");
    lying.hash = v("a", "2").hash;

    let result = fallback.put(lying).await;

    assert!(matches!(result, Err(JournalError::HashMismatch { .. })));
    assert!(fallback.is_empty());
    assert_eq!(fallback.journal_bytes(), 0);
}

#[tokio::test]
async fn the_journal_stays_bounded_under_ten_thousand_puts_to_ten_documents() {
    // In memory: ten thousand fsyncs would take most of a minute and prove nothing more.
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    let mut largest = 0;
    // PostgreSQL down: nothing is committed for the first half.
    for i in 0..5_000 {
        fallback
            .put(v(&format!("d{}", i % 10), &i.to_string()))
            .await
            .unwrap();
        largest = largest.max(fallback.journal_bytes());
    }
    // PostgreSQL back, committing versions a little behind the latest puts.
    let mut lagging = Vec::new();
    for i in 5_000..10_000 {
        let version = v(&format!("d{}", i % 10), &i.to_string());
        lagging.push((
            version.doc.clone(),
            version.hash.clone(),
            version.stamp.clone(),
        ));
        fallback.put(version).await.unwrap();
        if i % 100 == 0 {
            fallback.committed(&lagging).await.unwrap();
            lagging.clear();
        }
        largest = largest.max(fallback.journal_bytes());
    }

    // Compaction keeps dead bytes under the live bytes (about a kilobyte here) plus 64 KiB.
    assert!(largest < 72 * 1024, "journal grew to {largest} bytes");
    assert_eq!(fallback.len(), 10);
    let held: Vec<_> = fallback
        .dirty()
        .into_iter()
        .map(|v| (v.doc, v.hash, v.stamp))
        .collect();
    fallback.committed(&held).await.unwrap();
    assert!(fallback.is_empty());
    assert_eq!(fallback.journal_bytes(), 0);
}

#[tokio::test]
async fn an_older_json_put_leaves_the_newer_entry_and_writes_nothing() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    fallback.put(stamped("a", "2", 20)).await.unwrap();
    let bytes = fallback.journal_bytes();

    let older = fallback.put(stamped("a", "1", 10)).await;

    assert!(
        older.is_ok(),
        "a superseded put is not a failure: {older:?}"
    );
    assert_eq!(fallback.get(&id("a")), Some(stamped("a", "2", 20)));
    assert_eq!(fallback.journal_bytes(), bytes);

    fallback.put(stamped("a", "3", 30)).await.unwrap();
    assert_eq!(fallback.get(&id("a")), Some(stamped("a", "3", 30)));
    drop(fallback);
    let reopened = Fallback::open_with(disk).unwrap();
    assert_eq!(reopened.get(&id("a")), Some(stamped("a", "3", 30)));
}

#[tokio::test]
async fn a_stamped_put_replaces_an_unstamped_entry_but_not_the_reverse() {
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    fallback.put(v("a", "\"legacy\"")).await.unwrap();

    fallback.put(stamped("a", "\"new\"", 1)).await.unwrap();
    fallback.put(v("a", "\"legacy again\"")).await.unwrap();

    assert_eq!(fallback.get(&id("a")), Some(stamped("a", "\"new\"", 1)));
}

#[tokio::test]
async fn a_yjs_put_merges_into_the_held_state_so_no_edit_is_lost() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    fallback.put(yjs_edit("y", 1, "left")).await.unwrap();

    fallback.put(yjs_edit("y", 2, "right")).await.unwrap();

    let held = fallback.get(&id("y")).unwrap();
    let text = yjs_text(&held);
    assert!(text.contains("left") && text.contains("right"), "{text}");
    assert_eq!(held.hash, crate::doc::sha256_hex(&held.content));
    drop(fallback);
    let reopened = Fallback::open_with(disk).unwrap();
    assert_eq!(reopened.get(&id("y")), Some(held));
}

#[tokio::test]
async fn yjs_puts_in_one_batch_all_merge() {
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    let puts = (0..20).map(|i| fallback.put(yjs_edit("y", i + 1, &format!("w{i}:"))));

    for result in futures_util::future::join_all(puts).await {
        result.unwrap();
    }

    let text = yjs_text(&fallback.get(&id("y")).unwrap());
    for i in 0..20 {
        assert!(text.contains(&format!("w{i}:")), "w{i} missing from {text}");
    }
}

#[tokio::test]
async fn a_put_of_the_other_kind_is_refused_and_changes_nothing() {
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    fallback.put(v("a", "1")).await.unwrap();
    let bytes = fallback.journal_bytes();

    let result = fallback.put(yjs_edit("a", 1, "x")).await;

    assert!(
        matches!(result, Err(JournalError::Combine(_))),
        "{result:?}"
    );
    assert_eq!(fallback.get(&id("a")), Some(v("a", "1")));
    assert_eq!(fallback.journal_bytes(), bytes);
}

/// Equal JSON content under a larger stamp is a later version: a commit of the same content
/// under a smaller stamp does not let the entry go, on the writer's thread or after a reopen.
#[tokio::test]
async fn a_commit_of_equal_content_under_a_smaller_stamp_keeps_the_later_entry() {
    let dir = TestDir::new("fallback-equal-content-stamps");
    let fallback = Fallback::open(&dir.0).unwrap();
    let (early, late) = (
        crate::testing::stamped("a", "\"C\"", 30),
        crate::testing::stamped("a", "\"C\"", 102),
    );
    fallback.put(late.clone()).await.unwrap();

    let commit = |v: &Version| (v.doc.clone(), v.hash.clone(), v.stamp.clone());
    fallback.committed(&[commit(&early)]).await.unwrap();

    assert_eq!(fallback.get(&late.doc), Some(late.clone()));
    drop(fallback);
    let reopened = Fallback::open(&dir.0).unwrap();
    assert_eq!(reopened.get(&late.doc), Some(late.clone()));
    reopened.committed(&[commit(&late)]).await.unwrap();
    assert!(reopened.is_empty());
}
