//! The supervisor's routing and recovery, in process, over the in-memory stores.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use super::*;
use crate::doc::Kind;
use crate::fallback::test_dir::TestDir;
use crate::fallback::{FaultyIo, JournalIo, MemoryIo};
use crate::ledger::Durable;
use crate::storage::memory::{MemoryCache, MemoryStore};
use crate::storage::{Commit, DocStore};
use crate::testing::{stamped, supervisor_settings, until};

struct Rig {
    supervisor: Addr<CacheSupervisor>,
    cache: MemoryCache,
    store: MemoryStore,
    ledger: Ledger,
    fallback: Fallback,
    _dir: TestDir,
}

fn rig(name: &str) -> Rig {
    let dir = TestDir::new(name);
    let fallback = Fallback::open(&dir.0).unwrap();
    rig_with(dir, fallback)
}

/// A rig whose journal is `io` (in memory, or a disk that fills up on command).
fn rig_on(name: &str, io: impl JournalIo) -> Rig {
    rig_with(TestDir::new(name), Fallback::open_with(io).unwrap())
}

fn rig_with(dir: TestDir, fallback: Fallback) -> Rig {
    let (cache, store) = (MemoryCache::default(), MemoryStore::default());
    let ledger = Ledger::default();
    let stores = Stores {
        cache: Arc::new(cache.clone()),
        store: Arc::new(store.clone()),
        fallback: fallback.clone(),
        ledger: ledger.clone(),
    };
    Rig {
        supervisor: CacheSupervisor::new(stores, supervisor_settings()).start(),
        cache,
        store,
        ledger,
        fallback,
        _dir: dir,
    }
}

fn json(content: &'static str, millis: u64) -> Version {
    stamped("d", content, millis)
}

async fn save(rig: &Rig, v: &Version) -> Stored {
    rig.supervisor
        .send(Save { version: v.clone() })
        .await
        .unwrap()
        .unwrap()
        .stored
}

#[actix::test]
async fn saves_go_to_redis_while_it_answers_and_to_the_journal_once_it_fails() {
    let rig = rig("routing");
    let v1 = json("1", 1);
    assert_eq!(save(&rig, &v1).await, Stored::Cache);
    assert_eq!(rig.cache.peek(&v1.doc), Some(v1.clone()));
    assert_eq!(rig.ledger.get(&v1.doc).unwrap().durable, Durable::Cache);

    rig.cache.faults.fail(true);
    let v2 = json("2", 2);

    assert_eq!(save(&rig, &v2).await, Stored::Fallback);
    assert_eq!(rig.fallback.get(&v2.doc), Some(v2.clone()));
    let entry = rig.ledger.get(&v2.doc).unwrap();
    assert_eq!((entry.version, entry.durable), (v2, Durable::Journal));
}

#[actix::test]
async fn a_journaled_document_saves_to_the_journal_until_it_is_moved_back_into_redis() {
    let rig = rig("move-back");
    rig.cache.faults.fail(true);
    let v1 = json("1", 1);
    assert_eq!(save(&rig, &v1).await, Stored::Fallback);
    rig.cache.faults.pause();
    rig.cache.faults.fail(false);

    // Redis answers again but the move back is held: the document's saves stay journaled.
    let v2 = json("2", 2);
    assert_eq!(save(&rig, &v2).await, Stored::Fallback);
    rig.cache.faults.resume();

    until("the move back", || {
        rig.ledger
            .get(&v2.doc)
            .is_some_and(|e| e.durable == Durable::Cache)
    })
    .await;
    assert_eq!(rig.cache.peek(&v2.doc), Some(v2.clone()));
    assert_eq!(
        rig.fallback.get(&v2.doc),
        Some(v2.clone()),
        "the journal keeps it until postgres has it"
    );
    assert_eq!(save(&rig, &json("3", 3)).await, Stored::Cache);
}

#[actix::test]
async fn a_failing_health_check_journals_what_only_redis_held() {
    let rig = rig("spill");
    let v = json("1", 1);
    assert_eq!(save(&rig, &v).await, Stored::Cache);

    // Nobody saves; only the health check can notice.
    rig.cache.faults.fail(true);

    until("the spill", || rig.fallback.get(&v.doc).is_some()).await;
    until("the ledger to say journaled", || {
        rig.ledger
            .get(&v.doc)
            .is_some_and(|e| e.durable == Durable::Journal)
    })
    .await;
}

/// Redis turns suspect with thousands of idle documents only it holds: the spill hands them to
/// the journal as one group, so the ★ window (SPEC §1.1) does not grow with their number times
/// the disk's sync latency.
#[actix::test]
async fn a_spill_of_two_thousand_cached_documents_costs_the_journal_one_sync() {
    let disk = MemoryIo::new();
    let rig = rig_on("spill-group", disk.clone());
    let cached = many(2_000);
    for v in &cached {
        assert_eq!(save(&rig, v).await, Stored::Cache);
    }
    let before = disk.syncs();

    rig.cache.faults.fail(true);

    until("every cached document journaled", || {
        rig.ledger.count(Durable::Journal) == cached.len()
    })
    .await;
    assert_eq!(disk.syncs() - before, 1, "syncs the spill cost");
    assert_eq!(rig.fallback.len(), cached.len());
}

/// `n` JSON documents, one version each.
fn many(n: usize) -> Vec<Version> {
    (0..n)
        .map(|i| stamped(&format!("doc-{i}"), &i.to_string(), 1))
        .collect()
}

#[actix::test]
async fn a_commit_of_journaled_content_clears_the_ledger_and_the_journal_not_the_logs_mark() {
    let rig = rig("committed");
    rig.cache.faults.fail(true);
    let v = json("1", 1);
    save(&rig, &v).await;
    rig.cache.faults.fail(false);
    until("the move back", || {
        rig.ledger
            .get(&v.doc)
            .is_some_and(|e| e.durable == Durable::Cache)
    })
    .await;
    assert!(rig.cache.is_dirty(&v.doc));

    rig.supervisor
        .send(Committed {
            done: vec![Commit::written(&v)],
        })
        .await
        .unwrap();

    assert!(!rig.ledger.lacks(&v.doc));
    assert!(
        rig.cache.is_dirty(&v.doc),
        "the moved-back entry is after the point PostgreSQL recorded: a flush of the log clears it"
    );
    until("the journal to let go", || {
        rig.fallback.get(&v.doc).is_none()
    })
    .await;
}

/// Small Yjs updates of one document, one per client, as rooms save them.
fn yjs_saves(n: u64) -> Vec<Version> {
    (1..=n)
        .map(|i| crate::testing::yjs_edit("y", i, &format!("w{i} ")))
        .collect()
}

/// PostgreSQL took `v`, and the supervisor is told.
async fn commit(rig: &Rig, v: &Version) {
    rig.store.upsert(std::slice::from_ref(v)).await.unwrap();
    let done = vec![Commit::written(v)];
    rig.supervisor.send(Committed { done }).await.unwrap();
}

/// Redis down (and PostgreSQL with it: nothing flushes until the test says so). The journal
/// and the ledger each take a Yjs save as the increment it is, so neither copies the document
/// per save; what the flusher reads from the ledger is what the journal holds, so its commit
/// lets the journal's entry go.
#[actix::test]
async fn journaled_yjs_saves_reach_the_ledger_as_increments_and_their_commit_clears_both() {
    let rig = rig_on("yjs-increments", MemoryIo::new());
    rig.cache.faults.fail(true);
    let saves = yjs_saves(5);
    for v in &saves {
        assert_eq!(save(&rig, v).await, Stored::Fallback);
    }
    let doc = saves[0].doc.clone();
    assert_eq!(rig.fallback.parts(&doc), saves, "journaled as they came");

    let read = rig.ledger.get(&doc).unwrap();

    assert_eq!(read.durable, Durable::Journal);
    assert!(!read.foreign, "nothing came back from the journal");
    let text = crate::testing::yjs_text(&read.version);
    assert!((1..=5).all(|i| text.contains(&format!("w{i} "))), "{text}");
    commit(&rig, &read.version).await;
    assert!(!rig.ledger.lacks(&doc));
    // PostgreSQL has it: the journal lets go though Redis is away, and Redis gets it once back.
    until("the journal to let go", || rig.fallback.is_empty()).await;
    rig.cache.faults.fail(false);
    until("the announcement in Redis", || {
        rig.cache.peek(&doc).is_some()
    })
    .await;
}

/// A save lands between the flush's read of the ledger and the commit of what it read: the
/// ledger and the journal both keep it, and the next flush's commit clears both.
#[actix::test]
async fn a_yjs_save_journaled_after_the_flush_read_waits_for_the_next_flush() {
    let rig = rig_on("yjs-race", MemoryIo::new());
    rig.cache.faults.fail(true);
    let mut saves = yjs_saves(4);
    let late = saves.pop().unwrap();
    for v in &saves {
        save(&rig, v).await;
    }
    let read = rig.ledger.get(&late.doc).unwrap().version;
    save(&rig, &late).await;

    commit(&rig, &read).await;

    assert!(rig.ledger.lacks(&late.doc));
    // The journal checks a commit against its whole entry, merged: one part once it has.
    until("the journal to take the commit", || {
        rig.fallback.parts(&late.doc).len() == 1
    })
    .await;
    let held = rig.fallback.get(&late.doc).unwrap();
    assert!(crate::testing::yjs_text(&held).contains("w4 "));
    let next = rig.ledger.get(&late.doc).unwrap().version;
    assert_eq!(next, held, "the ledger holds what the journal holds");
    commit(&rig, &next).await;
    assert!(!rig.ledger.lacks(&late.doc));
    rig.cache.faults.fail(false);
    until("the journal to let go", || rig.fallback.is_empty()).await;
}

#[actix::test]
async fn a_load_prefers_the_later_of_the_ledger_and_redis() {
    let rig = rig("load");
    let (old, new) = (json("old", 1), json("new", 2));
    rig.ledger.absorbed(old.clone(), Durable::Journal);
    assert_eq!(save(&rig, &new).await, Stored::Fallback, "journaled doc");
    rig.ledger.absorbed(old.clone(), Durable::Journal);

    let loaded = rig
        .supervisor
        .send(Load {
            doc: old.doc.clone(),
        })
        .await
        .unwrap()
        .unwrap();

    assert_eq!(loaded.version, Some(new));
}

#[actix::test]
async fn a_save_is_not_held_up_by_moving_journaled_documents_back_into_redis() {
    let rig = rig("move-back-off-path");
    rig.cache.faults.fail(true);
    for i in 0..600 {
        let doc = DocId::parse(&format!("journaled-{i}")).unwrap();
        let v = Version::new(doc, Kind::Json, Bytes::from(format!("{i}")));
        rig.supervisor
            .send(Save { version: v })
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(rig.ledger.count(Durable::Journal), 600);
    // Every Redis call now takes a while: moving 600 documents back takes many of them.
    rig.cache.faults.slow(Duration::from_millis(20));
    rig.cache.faults.fail(false);
    until("the move back to start", || {
        rig.ledger.count(Durable::Journal) < 600
    })
    .await;

    let fresh = Version::new(DocId::parse("fresh").unwrap(), Kind::Json, Bytes::from("1"));
    let stored = save(&rig, &fresh).await;

    assert_eq!(stored, Stored::Cache);
    assert!(
        rig.ledger.count(Durable::Journal) > 0,
        "the save waited for the whole move back"
    );
}

async fn collect(
    supervisor: &Addr<CacheSupervisor>,
    mine: &DocId,
    fresh: Option<Duration>,
) -> Collected {
    supervisor
        .send(CollectDirty {
            mine: vec![mine.clone()],
            skip: Default::default(),
            everything: true,
            fresh,
        })
        .await
        .unwrap()
}

/// Two replicas on one cache: a periodic flush (with a window) leaves a document the other
/// replica flushed moments ago, settling this replica's saves up to there; a flush that must
/// persist now still reads it.
#[actix::test]
async fn a_periodic_flush_leaves_what_another_replica_just_flushed_and_settles_up_to_it() {
    let a = rig("fresh-a");
    let dir = TestDir::new("fresh-b");
    let b_ledger = Ledger::default();
    let b = CacheSupervisor::new(
        Stores {
            cache: Arc::new(a.cache.for_replica("r2")),
            store: Arc::new(MemoryStore::default()),
            fallback: Fallback::open(&dir.0).unwrap(),
            ledger: b_ledger.clone(),
        },
        supervisor_settings(),
    )
    .start();
    let first = crate::testing::yjs_edit("d", 1, "one");
    let doc = first.doc.clone();
    b.send(Save { version: first }).await.unwrap().unwrap();

    // Replica a flushes the document: PostgreSQL records the point it read.
    let read = collect(&a.supervisor, &doc, None).await;
    let [flushed] = &read.dirty[..] else {
        panic!("a reads the document: {:?}", read.dirty.len())
    };
    a.supervisor
        .send(Committed {
            done: vec![Commit {
                recorded: flushed.includes,
                ..flushed.commit.clone()
            }],
        })
        .await
        .unwrap();
    let second = crate::testing::yjs_edit("d", 2, "two");
    b.send(Save { version: second }).await.unwrap().unwrap();

    let window = Some(Duration::from_secs(3600));
    let left = collect(&b, &doc, window).await;
    assert!(
        left.dirty.is_empty(),
        "left to the replica that just flushed it"
    );
    assert_eq!(left.settled.len(), 1);
    assert_eq!(left.settled[0].recorded, flushed.includes);
    b.send(Committed { done: left.settled }).await.unwrap();
    assert!(b_ledger.lacks(&doc), "the save after a's flush still waits");

    let now = collect(&b, &doc, None).await;
    assert_eq!(now.dirty.len(), 1, "a flush that must persist now reads it");
}

/// PostgreSQL commits a journaled version while Redis fails the call that would announce it
/// (write it into the cache, for the other replicas' rooms): the journal records the debt,
/// and the next move back announces what PostgreSQL holds, instead of the cache keeping older
/// content until its TTL runs out; then the journal records it paid.
#[actix::test]
async fn an_announcement_whose_call_fails_is_made_by_the_next_move_back() {
    let rig = rig("announce-retry");
    let v = json("journaled", 5);
    rig.ledger.absorbed(v.clone(), Durable::Journal);
    rig.cache.faults.fail(true);

    commit(&rig, &v).await;
    assert!(!rig.ledger.lacks(&v.doc), "PostgreSQL has it");
    until("the debt in the journal", || {
        rig.fallback.owed() == [v.doc.clone()]
    })
    .await;
    rig.cache.faults.fail(false);

    until("the next move back", || {
        rig.cache.peek(&v.doc) == Some(v.clone())
    })
    .await;
    until("the debt paid", || rig.fallback.owed().is_empty()).await;
}

/// The same, with a crash before Redis answers again: the journal let go of the content, but
/// its debt survives the restart, and the move back announces PostgreSQL's content.
#[actix::test]
async fn a_debt_to_redis_outlives_a_crash() {
    let io = MemoryIo::new();
    let rig = rig_on("announce-after-crash", io.clone());
    let v = json("journaled", 5);
    rig.ledger.absorbed(v.clone(), Durable::Journal);
    rig.cache.faults.fail(true);
    commit(&rig, &v).await;
    until("the debt in the journal", || {
        rig.fallback.owed() == [v.doc.clone()]
    })
    .await;
    drop(rig);

    let rig = rig_on("announce-after-crash", io);
    rig.store.upsert(std::slice::from_ref(&v)).await.unwrap();

    until("the move back after the restart", || {
        rig.cache.peek(&v.doc) == Some(v.clone())
    })
    .await;
    until("the debt paid", || rig.fallback.owed().is_empty()).await;
}

mod inbox;
mod spill;
