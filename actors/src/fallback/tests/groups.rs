//! Groups: many versions put at once (the spills), written with one append and one sync.

use super::*;

/// `n` JSON documents, one version each.
fn many(n: usize) -> Vec<Version> {
    (0..n)
        .map(|i| v(&format!("doc-{i}"), &i.to_string()))
        .collect()
}

fn put_record(version: &Version) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode_put(version, &mut out).unwrap();
    out
}

/// Each format-2 record of `journal`: where it ends, and what it puts.
fn records(journal: &[u8]) -> Vec<(usize, Version)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < journal.len() {
        let len = u32::from_le_bytes(journal[at + 4..at + 8].try_into().unwrap()) as usize;
        let end = at + record::HEADER as usize + len;
        let Ok(record::Record::Put(version)) = record::decode(&journal[end - len..end]) else {
            panic!("a put record at {at}")
        };
        out.push((end, version));
        at = end;
    }
    out
}

#[tokio::test]
async fn two_thousand_versions_put_as_a_group_cost_one_sync_and_survive_a_reopen() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    fallback.put(v("before", "1")).await.unwrap();
    assert!(fallback.put_all(Vec::new()).await.is_empty());
    let before = disk.syncs();

    let answers = fallback.put_all(many(2_000)).await;

    assert_eq!(answers.len(), 2_000);
    assert!(
        answers.iter().all(Result::is_ok),
        "{:?}",
        answers.iter().find(|a| a.is_err())
    );
    assert_eq!(disk.syncs() - before, 1, "syncs the group cost");
    assert_eq!(fallback.len(), 2_001);
    let held = sorted(fallback.dirty());
    drop(fallback);
    let reopened = Fallback::open_with(disk).unwrap();
    assert_eq!(sorted(reopened.dirty()), held);
    let report = reopened.replay_report();
    assert_eq!(
        (report.records, report.skipped, report.truncated_bytes),
        (2_001, 0, 0)
    );
}

#[tokio::test]
async fn each_version_of_a_group_follows_the_rules_a_single_put_does() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    fallback.put(stamped("a", "2", 20)).await.unwrap();
    let mut lying = v("c", "1");
    lying.hash = v("c", "2").hash;
    let mut unframable = stamped("d", "1", 1);
    unframable.stamp.as_mut().unwrap().replica = "r".repeat(256).into();
    let before = disk.syncs();

    let answers = fallback
        .put_all(vec![
            v("b", "1"),
            lying,
            stamped("a", "1", 10),
            yjs_edit("y", 1, "left"),
            unframable,
            yjs_edit("y", 2, "right"),
        ])
        .await;

    // The refused versions fail alone; the older JSON one is answered without a write.
    let refused: Vec<bool> = answers.iter().map(Result::is_err).collect();
    assert_eq!(
        refused,
        [false, true, false, false, true, false],
        "{answers:?}"
    );
    assert!(matches!(answers[1], Err(JournalError::HashMismatch { .. })));
    assert!(matches!(answers[4], Err(JournalError::TooLarge { .. })));
    assert_eq!(disk.syncs() - before, 1);
    assert_eq!(fallback.get(&id("a")), Some(stamped("a", "2", 20)));
    assert_eq!(fallback.get(&id("b")), Some(v("b", "1")));
    assert_eq!(fallback.get(&id("c")), None);
    assert_eq!(fallback.get(&id("d")), None);
    let text = yjs_text(&fallback.get(&id("y")).unwrap());
    assert!(text.contains("left") && text.contains("right"), "{text}");
}

#[tokio::test]
async fn a_group_on_a_full_disk_fails_every_version_and_the_journal_replays_as_before() {
    let dir = TestDir::new("full-group");
    let (io, faults) = FaultyIo::new(FileIo::open(&dir.0).unwrap());
    let fallback = Fallback::open_with(io).unwrap();
    fallback.put(v("a", "1")).await.unwrap();
    let bytes = fallback.journal_bytes();
    faults.fill_disk();
    let mut group = many(100);
    group.push(v("a", "2"));

    let answers = fallback.put_all(group.clone()).await;

    assert_eq!(answers.len(), group.len());
    for answer in &answers {
        assert!(
            matches!(answer, Err(JournalError::Io { cause, .. })
                if cause.kind() == std::io::ErrorKind::StorageFull),
            "{answer:?}"
        );
    }
    assert_eq!(faults.refused(), 1, "the group was one write");
    assert_eq!(
        fallback.dirty(),
        vec![v("a", "1")],
        "none of the group entered"
    );
    let on_disk = std::fs::metadata(dir.journal()).unwrap().len();
    assert_eq!(on_disk, bytes, "the half-written group is cut off");
    drop(fallback);

    let reopened = Fallback::open(&dir.0).unwrap();

    assert_eq!(reopened.dirty(), vec![v("a", "1")]);
    let report = reopened.replay_report();
    assert_eq!((report.skipped, report.truncated_bytes), (0, 0));
    let answers = reopened.put_all(group).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(reopened.len(), 101);
}

/// A crash in the middle of a group's write, before its sync returned (so before any of it was
/// answered): replay keeps every record wholly written before the tear — the ones before the
/// group, and those of the group that made it — and cuts the torn one off.
#[tokio::test]
async fn a_group_torn_by_a_crash_replays_the_whole_records_before_the_tear() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    let first = v("first", "1");
    fallback.put(first.clone()).await.unwrap();
    let answers = fallback.put_all(many(10)).await;
    assert!(answers.iter().all(Result::is_ok));
    drop(fallback);
    let journal = disk.bytes();
    let written = records(&journal);
    assert_eq!(written[0], (put_record(&first).len(), first.clone()));

    // Inside the group's first record's header, in the middle of the group, one byte short of
    // its end.
    let (group_start, fourth_end) = (written[0].0, written[4].0);
    for cut in [group_start + 5, fourth_end + 30, journal.len() - 1] {
        let torn = MemoryIo::with_bytes(journal[..cut].to_vec());

        let reopened = Fallback::open_with(torn.clone()).unwrap();

        let whole: Vec<Version> = written
            .iter()
            .take_while(|(end, _)| *end <= cut)
            .map(|(_, version)| version.clone())
            .collect();
        let kept = whole.len();
        assert_eq!(sorted(reopened.dirty()), sorted(whole), "cut at {cut}");
        let report = reopened.replay_report();
        let valid = written[kept - 1].0;
        assert_eq!(
            (report.records, report.skipped, report.truncated_bytes),
            (kept as u64, 0, (cut - valid) as u64),
            "cut at {cut}"
        );
        assert_eq!(torn.bytes(), journal[..valid], "cut at {cut}");
        reopened.put(v("after", "1")).await.unwrap();
        drop(reopened);
        let again = Fallback::open_with(torn).unwrap();
        assert_eq!(again.len(), kept + 1, "cut at {cut}");
        assert_eq!(again.replay_report().truncated_bytes, 0);
    }
}
