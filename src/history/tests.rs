//! The history against a real PostgreSQL (127.0.0.1:5432, user postgres): each test creates a
//! database of its own and drops it when done.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use docroom_actors::doc::{canonical_json, sha256_hex, DocId, Kind};
use docroom_actors::protocol::yjs::YjsDoc;
use docroom_actors::storage::PgStore;
use serde_json::{json, Value};
use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
use yrs::{GetString, ReadTxn, StateVector, Text, Transact, WriteTxn, XmlFragmentRef};

use super::{CutReason, CutVersion, History};
use crate::settings::HistorySettings;

mod chains;
mod writer;

const PG: &str = "127.0.0.1:5432";

/// A database of this test's own, dropped (its connections cut) when the value is.
struct TestDb {
    name: String,
    pool: Pool,
}

impl TestDb {
    async fn new() -> TestDb {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "docroom_history_t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = Self::url(&name);
        crate::db::ensure_database(&url, None)
            .await
            .expect("create the test database");
        let db = TestDb {
            pool: Self::store(&name).pool().clone(),
            name,
        };
        crate::db::migrate(&Self::store(&db.name))
            .await
            .expect("migrate the test database");
        db
    }

    fn url(name: &str) -> String {
        format!("postgres://postgres@{PG}/{name}")
    }

    fn store(name: &str) -> PgStore {
        PgStore::connect(&Self::url(name), None, 4, Duration::from_secs(10)).expect("pool")
    }

    fn history(&self, interval_ms: u64, retention_days: u64) -> History {
        History::new(
            self.pool.clone(),
            HistorySettings {
                interval_ms,
                retention_days,
            },
        )
    }

    async fn sql(&self, statement: &str) {
        let client = self.pool.get().await.expect("connection");
        client.batch_execute(statement).await.expect(statement);
    }

    async fn count(&self, query: &str) -> i64 {
        let client = self.pool.get().await.expect("connection");
        client.query_one(query, &[]).await.expect(query).get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        assert!(name.starts_with("docroom_history_t_"));
        // On a thread of its own: the test's runtime may be the one being dropped.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let (client, conn) =
                    tokio_postgres::connect(&TestDb::url("postgres"), tokio_postgres::NoTls)
                        .await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("test database {} not dropped: {dropped:?}", self.name);
        }
    }
}

fn doc(id: &str) -> DocId {
    DocId::parse(id).expect("a valid id")
}

fn proposal(id: &str, kind: Kind, content: Bytes, users: &[&str], why: CutReason) -> CutVersion {
    CutVersion {
        doc: doc(id),
        kind,
        hash: sha256_hex(&content),
        content,
        users: users.iter().map(|u| u.to_string()).collect(),
        why,
    }
}

fn yjs(id: &str, content: Bytes) -> CutVersion {
    proposal(id, Kind::Yjs, content, &["ada"], CutReason::Left)
}

fn json_version(id: &str, value: &Value) -> CutVersion {
    let content = Bytes::from(canonical_json(value));
    proposal(id, Kind::Json, content, &["ada"], CutReason::Left)
}

fn state(d: &yrs::Doc) -> Bytes {
    Bytes::from(
        d.transact()
            .encode_state_as_update_v1(&StateVector::default()),
    )
}

/// What a Yjs state shows: every root rendered.
fn rendered(state: &[u8]) -> Value {
    YjsDoc::load(state)
        .expect("a loadable state")
        .to_json()
        .expect("renderable")
}

/// A Tiptap-like document: paragraphs of text in the `default` fragment.
fn paragraphs(d: &yrs::Doc, texts: &[&str]) -> XmlFragmentRef {
    let mut txn = d.transact_mut();
    let fragment = txn.get_or_insert_xml_fragment("default");
    for (i, text) in texts.iter().enumerate() {
        let p = fragment.insert(&mut txn, i as u32, XmlElementPrelim::empty("paragraph"));
        p.insert(&mut txn, 0, XmlTextPrelim::new(*text));
    }
    fragment
}

#[tokio::test]
async fn yjs_versions_read_back_as_they_were_cut() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    let d = yrs::Doc::new();
    let text = d.get_or_insert_text("title");
    let mut cuts = Vec::new();

    text.insert(&mut d.transact_mut(), 0, "Meeting notes");
    paragraphs(&d, &["first point", "second point"]);
    cuts.push(state(&d));
    text.insert(&mut d.transact_mut(), 13, " (draft)");
    cuts.push(state(&d));
    text.remove_range(&mut d.transact_mut(), 0, 8);
    cuts.push(state(&d));
    {
        let mut txn = d.transact_mut();
        let fragment = txn.get_or_insert_xml_fragment("default");
        fragment.remove_range(&mut txn, 0, 1);
        let p = fragment.insert(&mut txn, 1, XmlElementPrelim::empty("heading"));
        p.insert(&mut txn, 0, XmlTextPrelim::new("a heading"));
    }
    cuts.push(state(&d));

    for (i, content) in cuts.iter().enumerate() {
        let cut = history.cut(&yjs("notes", content.clone())).await.unwrap();
        assert_eq!(cut, Some(i as i64 + 1));
    }

    for (i, content) in cuts.iter().enumerate() {
        let (kind, read) = history
            .read(&doc("notes"), i as i64 + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kind, Kind::Yjs);
        assert_eq!(rendered(&read), rendered(content), "version {}", i + 1);
    }
    assert_eq!(rendered(&cuts[2])["title"], json!("notes (draft)"));
    assert_eq!(history.read(&doc("notes"), 5).await.unwrap(), None);
    assert_eq!(history.read(&doc("other"), 1).await.unwrap(), None);

    let listed = history.list(&doc("notes"), 10, None).await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.version).collect::<Vec<_>>(),
        [4, 3, 2, 1]
    );
    assert_eq!(listed[0].hash, sha256_hex(&cuts[3]));
    assert_eq!(listed[0].bytes, cuts[3].len() as i64);
    assert_eq!(listed[0].users, ["ada"]);
    assert!(chrono::DateTime::parse_from_rfc3339(&listed[0].at).is_ok());
    assert!(listed.windows(2).all(|w| w[0].at >= w[1].at));
    let page = history.list(&doc("notes"), 2, Some(4)).await.unwrap();
    assert_eq!(page.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2]);
    // Only the first is whole: the others are the changes since.
    let whole = db
        .count("SELECT count(*) FROM document_versions WHERE checkpoint")
        .await;
    assert_eq!(whole, 1);
}

#[tokio::test]
async fn json_versions_read_back_as_canonical_text() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    let values = [
        json!({"title": "plan", "items": [1, 2, 3], "meta": {"owner": "ada"}}),
        json!({"title": "plan", "items": [1, 3, 4, 5], "meta": {"owner": "ada", "é文": 1.5}}),
        json!({"title": "plan b", "items": [], "meta": null}),
        json!([{"a": "x"}, "y"]),
        json!("just text"),
        json!({"back": {"to": ["an", "object"]}}),
    ];
    for (i, value) in values.iter().enumerate() {
        let cut = history.cut(&json_version("plan", value)).await.unwrap();
        assert_eq!(cut, Some(i as i64 + 1));
    }
    for (i, value) in values.iter().enumerate() {
        let (kind, read) = history
            .read(&doc("plan"), i as i64 + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kind, Kind::Json);
        assert_eq!(read, canonical_json(value), "version {}", i + 1);
    }
}

#[tokio::test]
async fn a_document_that_changes_kind_or_starts_over_is_stored_whole() {
    let db = TestDb::new().await;
    let history = db.history(60_000, 30);
    let first = json!({"a": 1});
    history.cut(&json_version("d", &first)).await.unwrap();
    let a = yrs::Doc::new();
    a.get_or_insert_text("t")
        .insert(&mut a.transact_mut(), 0, "from a");
    history.cut(&yjs("d", state(&a))).await.unwrap();
    // Another document under the same id (not a continuation of the first).
    let b = yrs::Doc::new();
    b.get_or_insert_text("t")
        .insert(&mut b.transact_mut(), 0, "from b");
    history.cut(&yjs("d", state(&b))).await.unwrap();

    let id = doc("d");
    let read = |v| history.read(&id, v);
    assert_eq!(read(1).await.unwrap().unwrap().1, canonical_json(&first));
    assert_eq!(rendered(&read(2).await.unwrap().unwrap().1)["t"], "from a");
    assert_eq!(rendered(&read(3).await.unwrap().unwrap().1)["t"], "from b");
    let whole = db
        .count("SELECT count(*) FROM document_versions WHERE checkpoint")
        .await;
    assert_eq!(whole, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_cutting_at_once_never_share_a_number() {
    let db = TestDb::new().await;
    let racer = |name: &'static str| {
        let history = db.history(60_000, 30);
        tokio::spawn(async move {
            let mut numbers = Vec::new();
            for i in 0..25 {
                let value = json!({"by": name, "n": i});
                numbers.push(history.cut(&json_version("race", &value)).await.unwrap());
            }
            numbers
        })
    };
    let (a, b) = (racer("a"), racer("b"));
    let mut numbers: Vec<i64> = [a.await.unwrap(), b.await.unwrap()]
        .concat()
        .into_iter()
        .map(|n| n.expect("every content differs from the last"))
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=50).collect::<Vec<_>>());

    let history = db.history(60_000, 30);
    let listed = history.list(&doc("race"), 100, None).await.unwrap();
    assert_eq!(listed.len(), 50);
    let last = history.read(&doc("race"), 50).await.unwrap().unwrap().1;
    assert_eq!(sha256_hex(&last), listed[0].hash);
}

#[tokio::test]
async fn interval_and_unchanged_proposals_are_skipped() {
    let db = TestDb::new().await;
    let history = db.history(300, 30);
    let v = |n: i64, why| proposal("d", Kind::Json, Bytes::from(format!("{n}")), &["ada"], why);

    assert_eq!(
        history.cut(&v(1, CutReason::Interval)).await.unwrap(),
        Some(1)
    );
    // Too soon after the last version for the interval ...
    assert_eq!(history.cut(&v(2, CutReason::Interval)).await.unwrap(), None);
    // ... but a retirement or a restore is cut whatever the interval.
    assert_eq!(history.cut(&v(2, CutReason::Left)).await.unwrap(), Some(2));
    assert_eq!(
        history.cut(&v(3, CutReason::Restore)).await.unwrap(),
        Some(3)
    );
    // Unchanged content is never cut again.
    assert_eq!(history.cut(&v(3, CutReason::Left)).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(history.cut(&v(3, CutReason::Interval)).await.unwrap(), None);
    assert_eq!(
        history.cut(&v(4, CutReason::Interval)).await.unwrap(),
        Some(4)
    );
    // Numbers are per document.
    let other = proposal("e", Kind::Json, Bytes::from("1"), &[], CutReason::Interval);
    assert_eq!(history.cut(&other).await.unwrap(), Some(1));
    // A proposal not cut (another replica cut one moments ago) names its users on that one.
    let by_bob = proposal(
        "e",
        Kind::Json,
        Bytes::from("2"),
        &["bob"],
        CutReason::Interval,
    );
    assert_eq!(history.cut(&by_bob).await.unwrap(), None);
    let listed = history.list(&doc("e"), 10, None).await.unwrap();
    assert_eq!(listed[0].users, vec!["bob".to_owned()]);
}

#[tokio::test]
async fn no_retention_keeps_no_history() {
    let db = TestDb::new().await;
    let on = db.history(60_000, 30);
    on.cut(&json_version("d", &json!(1))).await.unwrap();
    let off = db.history(60_000, 0);
    assert!(!off.enabled());
    assert_eq!(off.cut(&json_version("d", &json!(2))).await.unwrap(), None);
    assert_eq!(off.list(&doc("d"), 10, None).await.unwrap(), []);
    assert_eq!(off.read(&doc("d"), 1).await.unwrap(), None);
    assert_eq!(off.prune().await.unwrap(), 1);
    assert_eq!(on.list(&doc("d"), 10, None).await.unwrap(), []);
}

/// Text edits on a `yrs` document with `paragraphs` of text: what the tests of long histories
/// cut.
fn edit(d: &yrs::Doc, rng: &mut impl rand::Rng) {
    let mut txn = d.transact_mut();
    let fragment = txn.get_or_insert_xml_fragment("default");
    let n = fragment.len(&txn);
    let p = fragment.get(&txn, rng.random_range(0..n)).unwrap();
    let p = p.into_xml_element().unwrap();
    let t = p.get(&txn, 0).unwrap().into_xml_text().unwrap();
    let len = t.get_string(&txn).chars().count() as u32;
    match rng.random_range(0..4) {
        0 if len > 10 => {
            let at = rng.random_range(0..len - 5);
            t.remove_range(&mut txn, at, rng.random_range(1..5));
        }
        1 => {
            let at = rng.random_range(0..=n);
            let p = fragment.insert(&mut txn, at, XmlElementPrelim::empty("paragraph"));
            p.insert(&mut txn, 0, XmlTextPrelim::new("a new paragraph"));
        }
        _ => {
            let at = rng.random_range(0..=len);
            t.insert(&mut txn, at, "typed ");
        }
    }
}

#[test]
fn history_settings_default_and_come_from_the_environment() {
    use crate::settings::Settings;
    let defaults = Settings::load_from(None, Vec::new()).unwrap().history;
    assert_eq!(
        (defaults.interval_ms, defaults.retention_days),
        (60_000, 30)
    );
    let vars = [
        ("DOCROOM__HISTORY__INTERVAL_MS", "250"),
        ("DOCROOM__HISTORY__RETENTION_DAYS", "0"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let set = Settings::load_from(None, vars).unwrap().history;
    assert_eq!((set.interval_ms, set.retention_days), (250, 0));
    assert!(!set.enabled());
    let too_long = [(
        "DOCROOM__HISTORY__RETENTION_DAYS".to_string(),
        "36501".to_string(),
    )];
    assert!(Settings::load_from(None, too_long).is_err());
}
