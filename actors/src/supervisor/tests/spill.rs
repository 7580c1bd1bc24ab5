//! The spills at shutdown: one group commit, a full disk, and everything only Redis holds.

use super::*;

#[actix::test]
async fn the_shutdown_spill_journals_two_thousand_documents_under_one_sync() {
    let disk = MemoryIo::new();
    let rig = rig_on("shutdown-spill-group", disk.clone());
    let versions = many(2_000);
    let before = disk.syncs();

    let spill = Spill {
        versions,
        redis_too: false,
    };
    let spilled = rig.supervisor.send(spill).await.unwrap();

    assert_eq!(spilled.ok(), Some(2_000));
    assert_eq!(disk.syncs() - before, 1, "syncs the spill cost");
    assert_eq!(rig.fallback.len(), 2_000);
    assert_eq!(rig.ledger.count(Durable::Journal), 2_000);
}

#[actix::test]
async fn a_shutdown_spill_onto_a_full_disk_fails_and_marks_nothing_journaled() {
    let (io, faults) = FaultyIo::new(MemoryIo::new());
    let rig = rig_on("shutdown-spill-full", io);
    faults.fill_disk();

    let spill = Spill {
        versions: many(50),
        redis_too: false,
    };
    let spilled = rig.supervisor.send(spill).await;

    assert!(matches!(spilled, Ok(Err(SupervisorError::Unwritable(_)))));
    assert_eq!(faults.refused(), 1, "one write for the whole spill");
    assert!(rig.fallback.is_empty());
    assert_eq!(rig.ledger.count(Durable::Journal), 0);
}

/// The drain ran out of time: what only Redis holds is journaled with the rooms' content —
/// this replica's saves there, and another replica's dirty document too.
#[actix::test]
async fn a_spill_of_everything_journals_what_only_redis_holds() {
    let rig = rig_on("shutdown-spill-redis", MemoryIo::new());
    let mine = stamped("mine", "1", 1);
    assert_eq!(save(&rig, &mine).await, Stored::Cache);
    let theirs = stamped("theirs", "2", 2);
    let other = rig.cache.for_replica("other");
    crate::storage::DocumentLog::save(&other, &theirs)
        .await
        .unwrap();
    let unsaved = stamped("unsaved", "3", 3);

    let spill = Spill {
        versions: vec![unsaved.clone()],
        redis_too: true,
    };
    let spilled = rig.supervisor.send(spill).await.unwrap();

    assert!(spilled.is_ok_and(|n| n >= 3), "every version journaled");
    for v in [&mine, &theirs, &unsaved] {
        assert_eq!(
            rig.fallback.get(&v.doc),
            Some(v.clone()),
            "{} journaled",
            v.doc
        );
    }
}
