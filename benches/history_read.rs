//! Reading an old version of a large document (SPEC §10): what `History::read` takes for a
//! 1 MiB Yjs document with 1,000 versions.
//!
//! A Tiptap-like document (paragraphs of ~1 KiB of words drawn at random in the `default` XML
//! fragment, 1 MiB encoded) gets 1,000 versions of small edits (a word typed, a few characters deleted, now and
//! then a new paragraph; another editor's session every 50 versions), each cut through
//! `History::cut` as a room's writer cuts them, into a PostgreSQL database of the bench's own
//! (127.0.0.1:5432, user postgres; created, migrated as the service migrates, dropped at the
//! end). Then `History::read` of versions 1, 500, 999 and 1,000 (each read `REPEATS` times after
//! one unmeasured read) and of a random sample of versions (each read once), timed one by one:
//! median and p95 per read. A version is rebuilt from the last checkpoint at or before it and
//! the changes after it (a checkpoint at least every 50 versions), so reading costs one
//! checkpoint and at most 49 changes: version 1 is a checkpoint, 500 and 1,000 the longest
//! chains, 999 one change short of that. What the history stores is reported as
//! `src/history/tests/chains.rs` measures it (the octets of the stored rows), and on disk.
//!
//! Wall-clock time on whatever else the machine is doing: report the load average with it.
//!
//! `cargo bench --bench history_read`; settings from the environment:
//! `HISTORY_READ_MIB` (1), `HISTORY_READ_VERSIONS` (1000), `HISTORY_READ_REPEATS` (20),
//! `HISTORY_READ_SAMPLE` (100), `HISTORY_READ_PG` (`127.0.0.1:5432`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use docroom::history::{CutReason, CutVersion, History};
use docroom::settings::HistorySettings;
use docroom_actors::doc::{sha256_hex, DocId, Kind};
use docroom_actors::protocol::yjs::YjsDoc;
use docroom_actors::storage::PgStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact, WriteTxn};

const KIB: usize = 1024;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bench's database, dropped (its connections cut) when the value is, also on a panic.
struct Db {
    pg: String,
    name: String,
}

impl Db {
    fn url(pg: &str, name: &str) -> String {
        format!("postgres://postgres@{pg}/{name}")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (pg, name) = (self.pg.clone(), self.name.clone());
        assert!(name.starts_with("docroom_history_read_"));
        // On a thread of its own: the bench's runtime may be the one being dropped.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let (client, conn) =
                    tokio_postgres::connect(&Db::url(&pg, "postgres"), tokio_postgres::NoTls)
                        .await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        match dropped {
            Ok(Ok(())) => eprintln!("history_read: database {} dropped", self.name),
            other => eprintln!(
                "history_read: database {} not dropped: {other:?}",
                self.name
            ),
        }
    }
}

fn state(d: &yrs::Doc) -> Bytes {
    Bytes::from(
        d.transact()
            .encode_state_as_update_v1(&StateVector::default()),
    )
}

/// Words for the document's text: drawn at random, so the text compresses about as prose does
/// (PostgreSQL compresses what it stores), not as one repeated phrase would.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "document",
    "editor",
    "version",
    "history",
    "paragraph",
    "meeting",
    "notes",
    "project",
    "review",
    "change",
    "decision",
    "budget",
    "quarter",
    "release",
    "customer",
    "server",
    "draft",
    "summary",
    "question",
    "answer",
    "schedule",
    "deadline",
    "design",
    "team",
    "plan",
    "report",
];

/// ~1 KiB of words.
fn prose(rng: &mut impl Rng) -> String {
    let mut text = String::with_capacity(KIB + 16);
    while text.len() < KIB {
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        text.push(' ');
    }
    text
}

/// `bytes` of text as paragraphs of ~1 KiB in the `default` fragment (Tiptap's shape).
fn document(bytes: usize, rng: &mut impl Rng) -> yrs::Doc {
    let d = yrs::Doc::with_client_id(1);
    {
        let mut txn = d.transact_mut();
        let fragment = txn.get_or_insert_xml_fragment("default");
        for i in 0..bytes / KIB {
            let p = fragment.insert(&mut txn, i as u32, XmlElementPrelim::empty("paragraph"));
            p.insert(&mut txn, 0, XmlTextPrelim::new(prose(rng)));
        }
    }
    d
}

/// One small edit somewhere: a word typed, a few characters deleted, or a new paragraph.
fn edit(d: &yrs::Doc, rng: &mut impl Rng) {
    let mut txn = d.transact_mut();
    let fragment = txn.get_or_insert_xml_fragment("default");
    let n = fragment.len(&txn);
    let p = fragment.get(&txn, rng.random_range(0..n)).unwrap();
    let p = p.into_xml_element().unwrap();
    let t = p.get(&txn, 0).unwrap().into_xml_text().unwrap();
    let len = t.get_string(&txn).chars().count() as u32;
    match rng.random_range(0..6) {
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

fn rendered(state: &[u8]) -> serde_json::Value {
    YjsDoc::load(state)
        .expect("a loadable state")
        .to_json()
        .expect("renderable")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (median, p95, max) of `times` in ms (nearest rank).
fn summary(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort();
    let rank = |q: f64| {
        let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
        ms(times[i])
    };
    let median = if times.len() % 2 == 1 {
        ms(times[times.len() / 2])
    } else {
        (ms(times[times.len() / 2 - 1]) + ms(times[times.len() / 2])) / 2.0
    };
    (median, rank(0.95), ms(times[times.len() - 1]))
}

fn main() {
    let mib = setting("HISTORY_READ_MIB", 1);
    let versions = setting("HISTORY_READ_VERSIONS", 1000).max(2) as i64;
    let repeats = setting("HISTORY_READ_REPEATS", 20).max(1);
    let sample = setting("HISTORY_READ_SAMPLE", 100);
    let pg = std::env::var("HISTORY_READ_PG").unwrap_or_else(|_| "127.0.0.1:5432".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");

    let db = Db {
        pg: pg.clone(),
        name: format!(
            "docroom_history_read_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        ),
    };
    let url = Db::url(&pg, &db.name);
    rt.block_on(async {
        docroom::db::ensure_database(&url, None)
            .await
            .expect("create the bench's database");
        let store =
            PgStore::connect(&url, None, 4, Duration::from_secs(10)).expect("a postgres pool");
        docroom::db::migrate(&store)
            .await
            .expect("migrate the bench's database");
        let pool = store.pool().clone();
        let history = History::new(
            pool.clone(),
            HistorySettings {
                interval_ms: 60_000,
                retention_days: 30,
            },
        );
        let id = DocId::parse("history-read-bench").unwrap();

        // The document and its versions.
        let mut rng = StdRng::seed_from_u64(1000);
        let mut d = document(mib << 20, &mut rng);
        let fixed: Vec<i64> = [1, versions / 2, versions - 1, versions]
            .into_iter()
            .filter(|v| *v >= 1)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut kept = Vec::new(); // (version, rendered) of the fixed versions
        let mut first_len = 0;
        let mut cut_times = Vec::new();
        let started = Instant::now();
        for v in 1..=versions {
            if v > 1 && v % 50 == 0 {
                // Another editor's session: another client id.
                let next = yrs::Doc::with_client_id(v as u64 + 1);
                let update = yrs::Update::decode_v1(&state(&d)).unwrap();
                next.transact_mut().apply_update(update).unwrap();
                d = next;
            }
            if v > 1 {
                edit(&d, &mut rng);
            }
            let content = state(&d);
            if v == 1 {
                first_len = content.len();
            }
            if fixed.contains(&v) {
                kept.push((v, rendered(&content)));
            }
            let proposal = CutVersion {
                doc: id.clone(),
                kind: Kind::Yjs,
                hash: sha256_hex(&content),
                content,
                users: vec!["ada".into()],
                why: CutReason::Left,
            };
            let t = Instant::now();
            let cut = history.cut(&proposal).await.expect("a cut");
            cut_times.push(t.elapsed());
            assert_eq!(cut, Some(v), "version {v} cut");
            if v % 100 == 0 {
                eprintln!("history_read: {v} versions cut ({:.0?})", started.elapsed());
            }
        }
        let last_len = state(&d).len();
        let client = pool.get().await.unwrap();
        let one = |q: &'static str| {
            let client = &client;
            async move { client.query_one(q, &[]).await.expect(q).get::<_, i64>(0) }
        };
        let stored = one(
            "SELECT sum(octet_length(doc_id) + octet_length(kind) + octet_length(hash)
                        + octet_length(data) + coalesce(octet_length(state_vector), 0)
                        + pg_column_size(users) + 8 * 5 + 1 + 4)::bigint
             FROM document_versions",
        )
        .await;
        let heads = one(
            "SELECT coalesce(sum(octet_length(doc_id) + coalesce(octet_length(delete_set), 0)
                                 + 8), 0)::bigint
             FROM document_version_heads",
        )
        .await;
        let checkpoints = one("SELECT count(*) FROM document_versions WHERE checkpoint").await;
        let change_avg = one(
            "SELECT (avg(octet_length(data)) FILTER (WHERE NOT checkpoint))::bigint
             FROM document_versions",
        )
        .await;
        let on_disk = one("SELECT (pg_total_relation_size('document_versions')
                     + pg_total_relation_size('document_version_heads'))::bigint")
        .await;
        drop(client);

        // The reads.
        let mut rows = Vec::new();
        for (v, expected) in &kept {
            let (_, read) = history.read(&id, *v).await.unwrap().expect("a version");
            assert_eq!(&rendered(&read), expected, "version {v} reads back as cut");
            let mut times = Vec::new();
            for _ in 0..repeats {
                let t = Instant::now();
                let got = history.read(&id, *v).await.unwrap();
                times.push(t.elapsed());
                assert!(got.is_some());
            }
            let chain = (v - 1) % 50;
            rows.push((
                format!("version {v} ({chain} changes after a checkpoint)"),
                times,
            ));
        }
        let mut times = Vec::new();
        for _ in 0..sample {
            let v = rng.random_range(1..=versions);
            let t = Instant::now();
            let got = history.read(&id, v).await.unwrap();
            times.push(t.elapsed());
            assert!(got.is_some());
        }
        if sample > 0 {
            rows.push((format!("{sample} versions at random, once each"), times));
        }

        println!();
        println!(
            "History of a {:.2} MiB Yjs document (paragraphs in an XML fragment): {versions} \
             versions of small edits cut in {:.1} s (cut median {:.1} ms, p95 {:.1} ms); \
             {:.2} MiB at the last version.",
            first_len as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64(),
            summary(&mut cut_times).0,
            summary(&mut cut_times).1,
            last_len as f64 / (1 << 20) as f64,
        );
        println!();
        println!("| read | reads | median ms | p95 ms | max ms |");
        println!("| --- | --- | --- | --- | --- |");
        for (what, mut times) in rows {
            let (median, p95, max) = summary(&mut times);
            println!(
                "| {what} | {} | {median:.1} | {p95:.1} | {max:.1} |",
                times.len()
            );
        }
        println!();
        println!(
            "Stored: {stored} bytes in document_versions ({:.2} MiB, {:.2}x the last version; \
             {checkpoints} checkpoints, changes of {change_avg} bytes on average) and {heads} \
             bytes in document_version_heads; {:.2} MiB on disk (both tables, TOAST-compressed, \
             with their indexes).",
            stored as f64 / (1 << 20) as f64,
            stored as f64 / last_len as f64,
            on_disk as f64 / (1 << 20) as f64,
        );
        pool.close();
    });
    drop(rt);
    drop(db);
}
