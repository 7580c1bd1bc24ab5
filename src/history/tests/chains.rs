//! Long histories: checkpoints, pruning, and what a history costs in PostgreSQL.

use rand::{Rng, SeedableRng};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use super::*;

#[tokio::test]
async fn every_one_of_120_versions_reads_back_as_it_was() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    let d = yrs::Doc::with_client_id(1);
    let texts: Vec<String> = (0..40)
        .map(|i| format!("paragraph {i} ").repeat(20))
        .collect();
    paragraphs(&d, &texts.iter().map(String::as_str).collect::<Vec<_>>());
    let mut rng = rand::rngs::StdRng::seed_from_u64(120);
    let mut shown = Vec::new();
    for i in 0..120 {
        edit(&d, &mut rng);
        let content = state(&d);
        shown.push(rendered(&content));
        let cut = history.cut(&yjs("long", content)).await.unwrap();
        assert_eq!(cut, Some(i + 1));
    }

    for (i, expected) in shown.iter().enumerate() {
        let (_, read) = history
            .read(&doc("long"), i as i64 + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&rendered(&read), expected, "version {}", i + 1);
    }
    // A checkpoint every 50 versions at most, and changes in between.
    let whole: Vec<i64> = checkpoints(&db, "long").await;
    assert!(whole.len() >= 3, "checkpoints at {whole:?}");
    assert!(whole.len() < 20, "checkpoints at {whole:?}");
    assert!(whole.windows(2).all(|w| w[1] - w[0] <= 50), "{whole:?}");
}

#[tokio::test]
async fn json_checkpoints_come_when_changes_outgrow_the_document() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    let mut value = json!({"items": []});
    for i in 0..60 {
        value["items"]
            .as_array_mut()
            .unwrap()
            .push(json!({"n": i, "text": "x".repeat(40)}));
        if i % 7 == 0 {
            value["items"].as_array_mut().unwrap().remove(0);
        }
        history.cut(&json_version("list", &value)).await.unwrap();
        let (_, read) = history.read(&doc("list"), i + 1).await.unwrap().unwrap();
        assert_eq!(read, canonical_json(&value), "version {}", i + 1);
    }
    let whole = checkpoints(&db, "list").await;
    assert!(
        whole.len() > 1 && whole.len() < 30,
        "checkpoints at {whole:?}"
    );
}

#[tokio::test]
async fn pruning_keeps_every_later_version_readable() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    let d = yrs::Doc::with_client_id(1);
    paragraphs(&d, &["one", "two", "three"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut shown = Vec::new();
    for _ in 0..10 {
        edit(&d, &mut rng);
        shown.push(rendered(&state(&d)));
        history.cut(&yjs("old", state(&d))).await.unwrap();
    }
    history.cut(&json_version("gone", &json!(1))).await.unwrap();
    assert_eq!(checkpoints(&db, "old").await, [1]);
    // Versions 1 to 5 are 40 days old; so is every version of "gone".
    db.sql(
        "UPDATE document_versions SET at = at - interval '40 days'
         WHERE (doc_id = 'old' AND version <= 5) OR doc_id = 'gone'",
    )
    .await;

    // Past retention, they are out of sight before they are pruned ...
    let listed = history.list(&doc("old"), 100, None).await.unwrap();
    assert_eq!(listed.iter().map(|v| v.version).min(), Some(6));
    assert_eq!(history.read(&doc("old"), 5).await.unwrap(), None);
    // ... and gone after.
    assert_eq!(history.prune().await.unwrap(), 6);
    assert_eq!(checkpoints(&db, "old").await, [6]);
    for v in 6..=10 {
        let (_, read) = history.read(&doc("old"), v).await.unwrap().unwrap();
        assert_eq!(rendered(&read), shown[v as usize - 1], "version {v}");
    }
    assert_eq!(history.prune().await.unwrap(), 0);
    // A document whose every version was pruned still never reuses a number.
    assert_eq!(history.list(&doc("gone"), 10, None).await.unwrap(), []);
    let again = history.cut(&json_version("gone", &json!(1))).await.unwrap();
    assert_eq!(again, Some(2));
    // And the chain goes on from the new checkpoint.
    edit(&d, &mut rng);
    assert_eq!(history.cut(&yjs("old", state(&d))).await.unwrap(), Some(11));
    let (_, read) = history.read(&doc("old"), 11).await.unwrap().unwrap();
    assert_eq!(rendered(&read), rendered(&state(&d)));
}

#[tokio::test]
async fn a_megabyte_document_grows_history_by_what_changed() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    // 1024 paragraphs of 1 KiB, typos deleted here and there: a 1 MiB state whose delete set
    // (every deletion ever made) is far larger than an edit.
    let mut d = yrs::Doc::with_client_id(1);
    let block: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(1044)
        .collect();
    let fragment = paragraphs(&d, &vec![block.as_str(); 1024]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(100);
    for i in 0..1024 {
        let mut txn = d.transact_mut();
        let p = fragment.get(&txn, i).unwrap().into_xml_element().unwrap();
        let t = p.get(&txn, 0).unwrap().into_xml_text().unwrap();
        for _ in 0..20 {
            let len = t.get_string(&txn).len() as u32;
            t.remove_range(&mut txn, rng.random_range(0..len), 1);
        }
    }
    let first = state(&d);
    let deletions = yrs::Update::decode_v1(&first)
        .unwrap()
        .delete_set()
        .encode_v1();
    assert!(first.len() >= 1 << 20, "a state of {} bytes", first.len());

    for i in 0..100 {
        if i % 10 == 9 {
            // Another editor's session: another client id.
            let next = yrs::Doc::with_client_id(i + 2);
            let update = yrs::Update::decode_v1(&state(&d)).unwrap();
            next.transact_mut().apply_update(update).unwrap();
            d = next;
        }
        edit(&d, &mut rng);
        edit(&d, &mut rng);
        history.cut(&yjs("big", state(&d))).await.unwrap();
    }

    let stored = db
        .count(
            "SELECT sum(octet_length(doc_id) + octet_length(kind) + octet_length(hash)
                        + octet_length(data) + coalesce(octet_length(state_vector), 0)
                        + pg_column_size(users) + 8 * 5 + 1 + 4)::bigint
             FROM document_versions",
        )
        .await;
    let changes = db
        .count(
            "SELECT (avg(octet_length(data)) FILTER (WHERE NOT checkpoint))::bigint
             FROM document_versions",
        )
        .await;
    let on_disk = db
        .count("SELECT pg_total_relation_size('document_versions')")
        .await;
    let last = state(&d);
    println!(
        "history of a {} byte yjs document ({} bytes of delete set), 100 versions of small \
         edits: {} bytes stored ({:.2} MiB, {:.1}x the document; {} bytes on disk, \
         compressed, with the index); checkpoints at {:?}, changes of {} bytes on average",
        last.len(),
        deletions.len(),
        stored,
        stored as f64 / (1 << 20) as f64,
        stored as f64 / last.len() as f64,
        on_disk,
        checkpoints(&db, "big").await,
        changes,
    );
    assert!(stored < 10 << 20, "{stored} bytes");
    let (_, read) = history.read(&doc("big"), 100).await.unwrap().unwrap();
    assert_eq!(rendered(&read), rendered(&last));
}

/// The versions of `id` stored whole.
async fn checkpoints(db: &TestDb, id: &str) -> Vec<i64> {
    let client = db.pool.get().await.unwrap();
    client
        .query(
            "SELECT version FROM document_versions WHERE doc_id = $1 AND checkpoint ORDER BY 1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
