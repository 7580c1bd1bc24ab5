//! Yjs increments: a save appends its update, not the document; the writer merges increments
//! when they are due, replay and compaction merge them the same way, and a commit lets an entry
//! go only when it holds nothing PostgreSQL lacks.

use bytes::Bytes;
use yrs::{GetString, ReadTxn, Text, Transact};

use super::*;
use crate::doc::{combine, sha256_hex};

/// One editor of a Yjs document, whose every edit is the update a room's save would carry.
struct Typist {
    doc: DocId,
    ydoc: yrs::Doc,
}

impl Typist {
    fn new(doc: &str) -> Typist {
        Typist {
            doc: id(doc),
            ydoc: yrs::Doc::with_client_id(7),
        }
    }

    /// Appends `text` to the root text `t`: the update holding only that.
    fn types(&self, text: &str) -> Version {
        let t = self.ydoc.get_or_insert_text("t");
        let before = self.ydoc.transact().state_vector();
        {
            let mut txn = self.ydoc.transact_mut();
            let end = t.len(&txn);
            t.insert(&mut txn, end, text);
        }
        let update = self.ydoc.transact().encode_state_as_update_v1(&before);
        Version::new(self.doc.clone(), Kind::Yjs, Bytes::from(update))
    }

    /// Everything typed so far, as one update.
    fn state(&self) -> Version {
        let state = self
            .ydoc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        Version::new(self.doc.clone(), Kind::Yjs, Bytes::from(state))
    }
}

/// The root text `t` of a Yjs version.
fn text(version: &Version) -> String {
    use yrs::updates::decoder::Decode;
    let ydoc = yrs::Doc::new();
    let t = ydoc.get_or_insert_text("t");
    let update = yrs::Update::decode_v1(&version.content).unwrap();
    ydoc.transact_mut().apply_update(update).unwrap();
    let text = t.get_string(&ydoc.transact());
    text
}

/// Waits until the writer has done everything queued before this call (a merge a put made due
/// comes after the put's answer): an empty commit goes through the same queue.
async fn settled(fallback: &Fallback) {
    fallback.committed(&[]).await.unwrap();
}

/// A document of about `kib` KiB and the typist who wrote it, put into `fallback`.
async fn large(fallback: &Fallback, doc: &str, kib: usize) -> Typist {
    let typist = Typist::new(doc);
    typist.types(&"x".repeat(kib * 1024));
    fallback.put(typist.state()).await.unwrap();
    typist
}

#[tokio::test]
async fn a_yjs_save_on_a_large_document_journals_the_update_not_the_document() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    let typist = large(&fallback, "y", 256).await;
    let before = fallback.journal_bytes();

    let mut updates = Vec::new();
    for i in 0..100 {
        let update = typist.types(&format!(" word{i}"));
        fallback.put(update.clone()).await.unwrap();
        updates.push(update);
    }

    let appended = fallback.journal_bytes() - before;
    let each: u64 = updates.iter().map(record::increment_len).sum();
    assert_eq!(appended, each, "the journal grew by the updates' records");
    assert!(appended < 20 * 1024, "{appended} bytes for 100 words");
    let parts = fallback.parts(&id("y"));
    assert_eq!(parts.len(), 101, "held as the base and 100 increments");
    assert_eq!(parts[1..], updates[..]);
    let held = fallback.get(&id("y")).unwrap();
    assert_eq!(text(&held), text(&typist.state()));
    assert_eq!(held.hash, sha256_hex(&held.content));
}

#[tokio::test]
async fn increments_that_add_up_to_the_document_are_merged_after_their_put_is_answered() {
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    let typist = large(&fallback, "y", 64).await;

    // Each record is about 150 bytes: 64 KiB of them make a merge due.
    let mut n = 0;
    while fallback.parts(&id("y")).len() == n + 1 {
        n += 1;
        fallback
            .put(typist.types(&format!("{n:05} ")))
            .await
            .unwrap();
        settled(&fallback).await;
        assert!(n < 2_000, "no merge after {n} increments");
    }

    assert!(n > 100, "merged after only {n} increments");
    assert_eq!(fallback.parts(&id("y")).len(), 1, "one merged version");
    assert_eq!(
        text(&fallback.get(&id("y")).unwrap()),
        text(&typist.state())
    );
}

#[tokio::test]
async fn increments_replay_after_a_crash() {
    let dir = TestDir::new("increments-crash");
    let fallback = Fallback::open(&dir.0).unwrap();
    let typist = large(&fallback, "y", 16).await;
    fallback.put(v("j", "1")).await.unwrap();
    for word in ["one ", "two ", "three "] {
        fallback.put(typist.types(word)).await.unwrap();
    }
    let held = fallback.get(&id("y")).unwrap();
    drop(fallback);

    let reopened = Fallback::open(&dir.0).unwrap();

    assert_eq!(reopened.get(&id("y")), Some(held.clone()));
    assert!(text(&held).ends_with("one two three "), "{}", text(&held));
    assert_eq!(reopened.parts(&id("y")).len(), 1, "merged at the start");
    assert_eq!(reopened.get(&id("j")), Some(v("j", "1")));
    let report = reopened.replay_report();
    assert_eq!((report.records, report.skipped), (5, 0));
    // The replay merged in memory only: the journal is as it was, and replays again.
    drop(reopened);
    let again = Fallback::open(&dir.0).unwrap();
    assert_eq!(again.get(&id("y")), Some(held));
}

#[tokio::test]
async fn a_torn_increment_at_the_tail_is_cut_off_and_the_whole_ones_kept() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    let typist = large(&fallback, "y", 16).await;
    fallback.put(typist.types("kept ")).await.unwrap();
    let whole = disk.bytes();
    let kept = typist.state();
    let torn_update = typist.types("torn");
    fallback.put(torn_update.clone()).await.unwrap();
    drop(fallback);
    let journal = disk.bytes();
    // The crash came in the middle of the last increment's write, before its sync returned.
    let cut = whole.len() + (journal.len() - whole.len()) / 2;
    let torn = MemoryIo::with_bytes(journal[..cut].to_vec());

    let reopened = Fallback::open_with(torn.clone()).unwrap();

    let held = reopened.get(&id("y")).unwrap();
    assert_eq!(text(&held), text(&kept));
    let report = reopened.replay_report();
    assert_eq!(report.truncated_bytes, (cut - whole.len()) as u64);
    assert_eq!(torn.bytes(), whole, "cut back to the last whole record");
    // The torn save was never answered: the room's next save carries its update too.
    let retry = combine([torn_update, typist.types("again")])
        .unwrap()
        .unwrap();
    reopened.put(retry).await.unwrap();
    drop(reopened);
    let again = Fallback::open_with(torn).unwrap();
    assert!(text(&again.get(&id("y")).unwrap()).ends_with("kept tornagain"));
}

/// Each record of a format-2 journal.
fn records(journal: &[u8]) -> Vec<record::Record> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < journal.len() {
        let len = u32::from_le_bytes(journal[at + 4..at + 8].try_into().unwrap()) as usize;
        let end = at + record::HEADER as usize + len;
        out.push(record::decode(&journal[end - len..end]).unwrap());
        at = end;
    }
    out
}

#[tokio::test]
async fn compaction_writes_each_entry_as_one_record_its_increments_merged() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    let typist = large(&fallback, "y", 8).await;
    for word in ["one ", "two "] {
        fallback.put(typist.types(word)).await.unwrap();
    }
    assert!(matches!(
        records(&disk.bytes())[..],
        [
            record::Record::Put(_),
            record::Record::Increment(_),
            record::Record::Increment(_)
        ]
    ));

    // A JSON document rewritten until the superseded bytes call for a compaction.
    let big = |i: usize| v("j", &format!("\"{}\"", i.to_string().repeat(5_000)));
    let mut i = 0;
    while records(&disk.bytes()).len() > 2 {
        i += 1;
        fallback.put(big(i)).await.unwrap();
        assert!(i < 100, "no compaction after {i} puts");
    }

    let [record::Record::Put(a), record::Record::Put(b)] = &records(&disk.bytes())[..] else {
        panic!("two put records")
    };
    let y = if a.doc == id("y") { a } else { b };
    assert_eq!(text(y), text(&typist.state()));
    assert_eq!(fallback.parts(&id("y")), vec![y.clone()]);
    drop(fallback);
    let reopened = Fallback::open_with(disk).unwrap();
    assert_eq!(reopened.get(&id("y")).as_ref(), Some(y));
    assert_eq!(reopened.get(&id("j")), Some(big(i)));
}

#[tokio::test]
async fn a_commit_racing_an_increment_put_after_the_flush_read_keeps_that_increment() {
    let dir = TestDir::new("commit-race");
    let fallback = Fallback::open(&dir.0).unwrap();
    let typist = large(&fallback, "y", 16).await;
    fallback.put(typist.types("read ")).await.unwrap();
    // The flush reads the document, PostgreSQL commits what it read...
    let read = fallback.get(&id("y")).unwrap();
    // ...and meanwhile a save lands.
    fallback.put(typist.types("late")).await.unwrap();

    fallback
        .committed(&[(id("y"), read.hash.clone(), None)])
        .await
        .unwrap();

    let held = fallback.get(&id("y")).expect("the entry stays");
    assert!(text(&held).ends_with("read late"), "{}", text(&held));
    drop(fallback);
    // Replay checks the committed record against the whole entry too.
    let reopened = Fallback::open(&dir.0).unwrap();
    assert_eq!(reopened.get(&id("y")), Some(held.clone()));

    reopened
        .committed(&[(id("y"), held.hash.clone(), None)])
        .await
        .unwrap();

    assert!(reopened.is_empty());
    assert_eq!(reopened.journal_bytes(), 0);
}

#[tokio::test]
async fn a_commit_of_the_same_content_merged_elsewhere_in_other_steps_lets_the_entry_go() {
    let disk = MemoryIo::new();
    let fallback = Fallback::open_with(disk.clone()).unwrap();
    let typist = large(&fallback, "y", 16).await;
    let base = fallback.get(&id("y")).unwrap();
    let updates: Vec<Version> = ["a ", "b ", "c "].map(|w| typist.types(w)).into();
    for update in &updates {
        fallback.put(update.clone()).await.unwrap();
    }

    // The ledger merges its parts when a flush reads them: here two reads, two merges.
    let first = combine([base, updates[0].clone()]).unwrap().unwrap();
    let flushed = combine([first, updates[1].clone(), updates[2].clone()])
        .unwrap()
        .unwrap();
    fallback
        .committed(&[(id("y"), flushed.hash.clone(), None)])
        .await
        .unwrap();

    assert!(fallback.is_empty());
    drop(fallback);
    assert!(Fallback::open_with(disk).unwrap().is_empty());
}

#[tokio::test]
async fn a_repeated_or_undecodable_yjs_put_writes_nothing() {
    let fallback = Fallback::open_with(MemoryIo::new()).unwrap();
    let typist = large(&fallback, "y", 1).await;
    let update = typist.types("once");
    fallback.put(update.clone()).await.unwrap();
    let bytes = fallback.journal_bytes();

    fallback.put(update).await.unwrap();
    let garbage = Version::new(id("y"), Kind::Yjs, Bytes::from_static(&[0xFF, 0xFF, 0x01]));
    let refused = fallback.put(garbage).await;

    assert!(
        matches!(refused, Err(JournalError::Combine(_))),
        "{refused:?}"
    );
    assert_eq!(fallback.journal_bytes(), bytes);
    assert_eq!(fallback.parts(&id("y")).len(), 2);
}
