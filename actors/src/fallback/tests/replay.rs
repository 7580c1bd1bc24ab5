//! Replay: journals of earlier releases, corrupt records, torn tails.

use super::*;

#[tokio::test]
async fn a_torn_tail_after_a_crash_keeps_earlier_puts_and_accepts_new_ones() {
    let dir = TestDir::new("torn-tail");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("a", "1")).await.unwrap();
    drop(fallback);
    let path = dir.0.join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[42, 0, 0, 0, 1, 2]);
    std::fs::write(&path, &bytes).unwrap();

    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("b", "1")).await.unwrap();
    drop(fallback);

    let reopened = Fallback::open(&dir.0).unwrap();
    assert_eq!(sorted(reopened.dirty()), vec![v("a", "1"), v("b", "1")]);
}

#[tokio::test]
async fn a_corrupt_record_in_the_middle_is_skipped_and_later_records_replay() {
    let dir = TestDir::new("skip-middle");
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback.put(v("a", "\"first\"")).await.unwrap();
    fallback.put(v("b", "\"second\"")).await.unwrap();
    fallback.put(v("c", "\"third\"")).await.unwrap();
    drop(fallback);
    let path = dir.0.join("journal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(8).position(|w| w == b"\"second\"").unwrap();
    bytes[at + 1] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let reopened = Fallback::open(&dir.0).unwrap();

    assert_eq!(reopened.get(&id("a")), Some(v("a", "\"first\"")));
    assert_eq!(reopened.get(&id("b")), None);
    assert_eq!(reopened.get(&id("c")), Some(v("c", "\"third\"")));
}

/// The journal a format-1 release wrote: doc-a `{"n":1}`, notes.y "hello", doc-b `["b"]`,
/// doc-a `{"n":2}`, notes.y "hello world".
const FORMAT_1: &[u8] = include_bytes!("../testdata/journal-v1.log");

/// A format-2 frame around `payload`, with a correct checksum.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = record::MAGIC.to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn put_record(version: &Version) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode_put(version, &mut out).unwrap();
    out
}

#[tokio::test]
async fn a_journal_written_by_the_format_1_release_replays() {
    let fallback = Fallback::open_with(MemoryIo::with_bytes(FORMAT_1.to_vec())).unwrap();

    assert_eq!(fallback.len(), 3);
    assert_eq!(fallback.get(&id("doc-a")), Some(v("doc-a", r#"{"n":2}"#)));
    assert_eq!(fallback.get(&id("doc-b")), Some(v("doc-b", r#"["b"]"#)));
    let notes = fallback.get(&id("notes.y")).unwrap();
    assert_eq!((notes.kind, notes.stamp.clone()), (Kind::Yjs, None));
    assert!(yjs_text(&notes).contains("hello world"), "{notes:?}");
    let report = fallback.replay_report();
    assert_eq!(
        (report.records, report.skipped, report.truncated_bytes),
        (5, 0, 0)
    );
}

#[tokio::test]
async fn format_2_records_after_format_1_ones_replay_together() {
    let dir = TestDir::new("mixed");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.journal(), FORMAT_1).unwrap();
    let fallback = Fallback::open(&dir.0).unwrap();
    fallback
        .put(stamped("doc-a", r#"{"n":3}"#, 5))
        .await
        .unwrap();
    fallback
        .put(yjs_edit("notes.y", 99, "again "))
        .await
        .unwrap();
    let notes = fallback.get(&id("notes.y")).unwrap();
    drop(fallback);

    let reopened = Fallback::open(&dir.0).unwrap();

    assert_eq!(
        reopened.get(&id("doc-a")),
        Some(stamped("doc-a", r#"{"n":3}"#, 5))
    );
    assert_eq!(reopened.get(&id("doc-b")), Some(v("doc-b", r#"["b"]"#)));
    assert_eq!(reopened.get(&id("notes.y")), Some(notes.clone()));
    let text = yjs_text(&notes);
    assert!(
        text.contains("again") && text.contains("hello world"),
        "{text}"
    );
    assert_eq!(reopened.replay_report().skipped, 0);
}

#[tokio::test]
async fn a_format_1_record_with_a_bad_checksum_is_skipped() {
    let mut bytes = FORMAT_1.to_vec();
    let at = bytes.windows(5).position(|w| w == br#"["b"]"#).unwrap();
    bytes[at + 2] = b'c';

    let fallback = Fallback::open_with(MemoryIo::with_bytes(bytes)).unwrap();

    assert_eq!(fallback.get(&id("doc-b")), None);
    assert_eq!(fallback.get(&id("doc-a")), Some(v("doc-a", r#"{"n":2}"#)));
    assert!(fallback.get(&id("notes.y")).is_some());
    assert_eq!(fallback.replay_report().skipped, 1);
}

#[tokio::test]
async fn records_of_an_unknown_format_or_with_a_bad_id_or_hash_are_skipped() {
    let hash = v("b", "1").hash;
    let mut unknown_format = vec![9, 0, 1, b'b', 64];
    unknown_format.extend_from_slice(hash.as_bytes());
    let mut invalid_id = vec![2, 0, 3, b'b', b'\n', b'c', 64];
    invalid_id.extend_from_slice(hash.as_bytes());
    invalid_id.extend_from_slice(b"\x001");
    let mut wrong_hash = vec![2, 0, 1, b'b', 64];
    wrong_hash.extend_from_slice(v("b", "2").hash.as_bytes());
    wrong_hash.extend_from_slice(b"\x001");
    let mut bytes = put_record(&v("a", "1"));
    for bad in [&unknown_format, &invalid_id, &wrong_hash] {
        bytes.extend_from_slice(&frame(bad));
    }
    bytes.extend_from_slice(&put_record(&v("c", "1")));
    let disk = MemoryIo::with_bytes(bytes.clone());

    let fallback = Fallback::open_with(disk.clone()).unwrap();

    assert_eq!(sorted(fallback.dirty()), vec![v("a", "1"), v("c", "1")]);
    let report = fallback.replay_report();
    assert_eq!(
        (report.records, report.skipped, report.truncated_bytes),
        (2, 3, 0)
    );
    assert_eq!(disk.bytes(), bytes, "nothing is cut out of the middle");
}

#[tokio::test]
async fn a_garbage_length_in_the_middle_is_skipped_up_to_the_next_record() {
    let (a, b, c) = (v("a", "1"), v("b", "\"two\""), v("c", "1"));
    let first = put_record(&a).len();
    let mut good = put_record(&a);
    good.extend_from_slice(&put_record(&b));
    good.extend_from_slice(&put_record(&c));
    // Past the end of the file, then short enough to land inside the record.
    for garbage in [0xFFFF_FF00_u32, 10] {
        let mut bytes = good.clone();
        bytes[first + 4..first + 8].copy_from_slice(&garbage.to_le_bytes());

        let fallback = Fallback::open_with(MemoryIo::with_bytes(bytes)).unwrap();

        assert_eq!(
            sorted(fallback.dirty()),
            vec![a.clone(), c.clone()],
            "{garbage}"
        );
        let report = fallback.replay_report();
        assert_eq!(
            (report.skipped, report.truncated_bytes),
            (1, 0),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn a_torn_last_record_is_truncated_and_earlier_records_kept() {
    let first = v("a", "1");
    let good = put_record(&first);
    let mut whole = good.clone();
    whole.extend_from_slice(&put_record(&v("b", "22")));
    // Inside the header, inside the payload, a flipped bit in the last record, and garbage
    // without a magic.
    let mut flipped = whole.clone();
    *flipped.last_mut().unwrap() ^= 0x20;
    let garbage = [good.clone(), b"\xff\xff\xff\x7fnot a record".to_vec()].concat();
    for bytes in [
        whole[..good.len() + 3].to_vec(),
        whole[..whole.len() - 1].to_vec(),
        flipped,
        garbage,
    ] {
        let disk = MemoryIo::with_bytes(bytes.clone());

        let fallback = Fallback::open_with(disk.clone()).unwrap();

        assert_eq!(fallback.dirty(), vec![first.clone()]);
        let cut = (bytes.len() - good.len()) as u64;
        assert_eq!(fallback.replay_report().truncated_bytes, cut);
        assert_eq!(disk.bytes(), good);
        assert_eq!(fallback.journal_bytes(), good.len() as u64);
    }
}
