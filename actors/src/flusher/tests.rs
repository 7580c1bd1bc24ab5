//! The flusher over the in-memory stores: what a run writes, and how it settles.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use super::*;
use crate::doc::Kind;
use crate::fallback::test_dir::TestDir;
use crate::fallback::Fallback;
use crate::ledger::Durable;
use crate::storage::memory::{MemoryCache, MemoryStore};
use crate::storage::DocumentLog;
use crate::supervisor::{Save, Stores};
use crate::testing::{stamped, supervisor_settings};

struct Rig {
    supervisor: Addr<CacheSupervisor>,
    flusher: Addr<Flusher>,
    cache: MemoryCache,
    store: MemoryStore,
    ledger: Ledger,
    _dir: TestDir,
}

fn rig(name: &str) -> Rig {
    let dir = TestDir::new(name);
    let (cache, store, ledger) = (
        MemoryCache::default(),
        MemoryStore::default(),
        Ledger::default(),
    );
    let stores = Stores {
        cache: Arc::new(cache.clone()),
        store: Arc::new(store.clone()),
        fallback: Fallback::open(&dir.0).unwrap(),
        ledger: ledger.clone(),
    };
    let supervisor = CacheSupervisor::new(stores, supervisor_settings()).start();
    let hour = Duration::from_secs(3600);
    let flusher = Flusher::new(
        Arc::new(store.clone()),
        ledger.clone(),
        supervisor.clone(),
        FlusherSettings {
            base_period: hour,
            error_period: hour * 2,
            max_period: hour * 3,
            batch_size: 2,
            parallel_batches: 2,
        },
    )
    .start();
    Rig {
        supervisor,
        flusher,
        cache,
        store,
        ledger,
        _dir: dir,
    }
}

fn json(content: &'static str, millis: u64) -> Version {
    stamped("d", content, millis)
}

async fn save(rig: &Rig, v: &Version) {
    rig.supervisor
        .send(Save { version: v.clone() })
        .await
        .unwrap()
        .unwrap();
}

#[actix::test]
async fn a_leave_flush_queued_behind_a_slow_flush_never_writes_an_older_version_last() {
    let rig = rig("leave-flush-order");
    let (v2, v3) = (json("2", 2), json("3", 3));
    save(&rig, &v2).await;
    rig.store.faults.pause();

    // A periodic flush holds the gate with PostgreSQL slow; the room goes idle and its leave
    // flush queues behind it; then a PUT makes v3.
    let periodic = rig.flusher.send(FlushNow);
    rig.store.faults.until_calls(1).await;
    let leave = rig.flusher.send(PersistNow {
        doc: v2.doc.clone(),
    });
    save(&rig, &v3).await;
    rig.store.faults.resume();
    periodic.await.unwrap();
    leave.await.unwrap().unwrap();
    let settled = rig.flusher.send(FlushNow).await.unwrap();

    assert_eq!(settled.failed, 0);
    assert_eq!(
        rig.store.peek(&v3.doc),
        Some(v3.clone()),
        "postgres rolled back"
    );
    assert!(!rig.ledger.lacks(&v3.doc));
    assert!(!rig.cache.is_dirty(&v3.doc));
}

#[actix::test]
async fn a_failed_flush_keeps_everything_waiting_and_backs_off_until_one_succeeds() {
    let rig = rig("settle");
    let v = json("1", 1);
    save(&rig, &v).await;
    rig.store.faults.fail(true);

    let report = rig.flusher.send(FlushNow).await.unwrap();

    assert_eq!((report.flushed, report.failed), (0, 1));
    assert!(rig.ledger.lacks(&v.doc));
    assert!(rig.cache.is_dirty(&v.doc));
    let view = rig.flusher.send(GetFlusher).await.unwrap();
    assert_eq!(view.consecutive_errors, 1);
    assert_eq!(view.period_ms, 7_200_000, "the period after one error");
    assert_eq!(view.pending_docs, 1);

    rig.store.faults.fail(false);
    let report = rig.flusher.send(FlushNow).await.unwrap();

    assert_eq!((report.flushed, report.failed), (1, 0));
    let view = rig.flusher.send(GetFlusher).await.unwrap();
    assert_eq!((view.consecutive_errors, view.period_ms), (0, 3_600_000));
    assert_eq!(rig.store.peek(&v.doc), Some(v.clone()));
    for _ in 0..100 {
        if !rig.cache.is_dirty(&v.doc) && !rig.ledger.lacks(&v.doc) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the commit did not reach the ledger and redis");
}

#[actix::test]
async fn a_flush_writes_what_only_redis_holds_as_well_as_the_ledger() {
    let rig = rig("redis-only");
    let other = Version::new(
        DocId::parse("elsewhere").unwrap(),
        Kind::Json,
        Bytes::from("7"),
    );
    // Saved by another process: in Redis, not in this ledger.
    rig.cache.save(&other).await.unwrap();
    let mine = json("1", 1);
    save(&rig, &mine).await;
    assert_eq!(rig.ledger.get(&mine.doc).unwrap().durable, Durable::Cache);

    let report = rig.flusher.send(FlushNow).await.unwrap();

    assert_eq!(report.flushed, 2);
    assert_eq!(rig.store.peek(&other.doc), Some(other));
    assert_eq!(rig.store.peek(&mine.doc), Some(mine));
}

#[test]
fn a_jittered_period_is_never_longer_than_the_period_nor_shorter_than_nine_tenths() {
    let period = Duration::from_secs(10);
    let periods: Vec<Duration> = (0..200).map(|_| super::jittered(period)).collect();
    assert!(periods
        .iter()
        .all(|p| *p <= period && *p >= period.mul_f64(0.9)));
    // Replicas started together drift apart: the periods are not all one value.
    assert!(periods.iter().any(|p| *p != periods[0]));
}
