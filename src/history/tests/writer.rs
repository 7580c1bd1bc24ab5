//! The actor rooms send their proposals to.

use actix::Actor;

use super::*;
use crate::history::HistoryWriter;

/// Waits until `id`'s newest version is `hash`, answering the versions then.
async fn until_newest(history: &History, id: &str, hash: &str) -> Vec<super::super::VersionInfo> {
    for _ in 0..100 {
        if let Ok(listed) = history.list(&doc(id), 10, None).await {
            if listed.first().is_some_and(|v| v.hash == hash) {
                return listed;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no version of {id} with hash {hash} in 5 s");
}

fn numbered(n: i64, user: &str, why: CutReason) -> CutVersion {
    proposal("d", Kind::Json, Bytes::from(n.to_string()), &[user], why)
}

#[actix::test]
async fn proposals_of_one_document_land_in_order_those_that_waited_merged() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    let writer = HistoryWriter::new(history.clone()).start();

    writer.do_send(numbered(1, "ada", CutReason::Interval));
    writer.do_send(numbered(2, "bob", CutReason::Interval));
    writer.do_send(numbered(3, "cy", CutReason::Left));

    let last = numbered(3, "cy", CutReason::Left);
    let listed = until_newest(&history, "d", &last.hash).await;
    // The first was written at once; the two that waited for it as one, with both users (and
    // cut though within the interval: one of them is a retirement).
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].users, ["bob", "cy"]);
    assert_eq!(listed[1].users, ["ada"]);
}

#[actix::test]
async fn a_version_refused_while_postgres_is_away_lands_once_it_is_back() {
    // A database that does not exist yet: every connection is refused.
    let name = format!("docroom_history_t_{}_away", std::process::id());
    let db = TestDb {
        pool: TestDb::store(&name).pool().clone(),
        name,
    };
    let history = db.history(60_000, 30);
    let writer = HistoryWriter::new(history.clone())
        .with_retry_first(Duration::from_millis(100))
        .start();
    let v = numbered(1, "ada", CutReason::Left);
    writer.do_send(v.clone());

    tokio::time::sleep(Duration::from_millis(300)).await;
    crate::db::ensure_database(&TestDb::url(&db.name), None)
        .await
        .unwrap();
    crate::db::migrate(&TestDb::store(&db.name)).await.unwrap();

    let listed = until_newest(&history, "d", &v.hash).await;
    assert_eq!(listed.len(), 1);
}
