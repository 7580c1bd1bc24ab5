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
