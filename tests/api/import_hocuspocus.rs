//! `docroom import-hocuspocus` (issue 13): a table in the layout of Hocuspocus's Database
//! extension, in a database of its own and written from real Yjs states, moved into docroom's
//! `documents` by the built binary. New documents are imported, ones docroom holds as Yjs are
//! merged, JSON ones and bad rows are reported and left alone, and a re-run changes nothing.

use std::process::{Command, Output};

use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

use crate::harness::storage::{drop_database, pg_connect};
use crate::harness::{random_suffix, sha256, TestApp};

/// A Hocuspocus database: a PostgreSQL database of its own, dropped at the end.
struct HocuspocusDb {
    name: String,
    client: tokio_postgres::Client,
}

impl HocuspocusDb {
    /// A fresh database holding `table` (`name` text, `data` bytea, both nullable).
    async fn create(table: &str) -> HocuspocusDb {
        let name = format!("docroom_t_{}_hp", random_suffix());
        pg_connect("postgres")
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let client = pg_connect(&name).await.unwrap();
        if let Some((schema, _)) = table.split_once('.') {
            client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
        }
        client
            .batch_execute(&format!("CREATE TABLE {table} (name text, data bytea)"))
            .await
            .unwrap();
        HocuspocusDb { name, client }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    async fn insert(&self, table: &str, name: Option<&str>, data: Option<Vec<u8>>) {
        self.client
            .execute(
                &format!("INSERT INTO {table} (name, data) VALUES ($1, $2)"),
                &[&name, &data],
            )
            .await
            .unwrap();
    }
}

impl Drop for HocuspocusDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime: drop the database from a thread with its own.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(drop_database(&name))
        })
        .join();
    }
}

/// What a Hocuspocus provider's document holds after typing `text`: its whole state as
/// `Y.encodeStateAsUpdate` gives it, which is what the Database extension stores.
fn yjs_state(client_id: u64, text: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client_id);
    let t = doc.get_or_insert_text("t");
    t.insert(&mut doc.transact_mut(), 0, text);
    let txn = doc.transact();
    txn.encode_state_as_update_v1(&Default::default())
}

fn text_of(state: &[u8]) -> String {
    let doc = Doc::new();
    let t = doc.get_or_insert_text("t");
    doc.transact_mut()
        .apply_update(Update::decode_v1(state).unwrap())
        .unwrap();
    let txn = doc.transact();
    t.get_string(&txn)
}

/// Runs `docroom import-hocuspocus --database-url SOURCE ARGS...` against `app`'s database.
async fn import(app: &TestApp, source: &HocuspocusDb, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docroom"));
    cmd.arg("import-hocuspocus")
        .arg("--database-url")
        .arg(source.url())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DOCROOM") {
            cmd.env_remove(key);
        }
    }
    cmd.env(
        "DOCROOM_DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:5432/{}", app.db_name),
    )
    .env("DOCROOM_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run docroom import-hocuspocus");
    eprintln!(
        "import stdout:\n{}\nimport stderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every row of docroom's `documents`, as text, in id order.
async fn documents(app: &TestApp) -> Vec<(String, String, Option<String>, String, String)> {
    app.pg()
        .await
        .query(
            "SELECT doc_id, kind, content::text, encode(coalesce(state, ''), 'hex'), \
             content_hash || ' ' || updated_at::text FROM documents ORDER BY doc_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

async fn stored_state(app: &TestApp, doc: &str) -> Vec<u8> {
    app.pg()
        .await
        .query_one(
            "SELECT state FROM documents WHERE doc_id = $1 AND kind = 'yjs'",
            &[&doc],
        )
        .await
        .unwrap_or_else(|e| panic!("no yjs row for {doc}: {e}"))
        .get(0)
}

#[tokio::test]
async fn a_hocuspocus_table_is_imported_merged_and_bad_rows_skipped_and_a_rerun_changes_nothing() {
    let app = TestApp::start().await;
    let pg = app.pg().await;
    // docroom already holds "shared" as Yjs and "settings" as JSON.
    let held = yjs_state(2, "typed in docroom");
    pg.execute(
        "INSERT INTO documents (doc_id, kind, state, content_hash) VALUES ('shared', 'yjs', $1, $2)",
        &[&held, &sha256::hex(&held)],
    )
    .await
    .unwrap();
    let json = r#"{"theme":"dark"}"#;
    pg.execute(
        "INSERT INTO documents (doc_id, kind, content, content_hash) \
         VALUES ('settings', 'json', $1::text::jsonb, $2)",
        &[&json, &sha256::hex(json.as_bytes())],
    )
    .await
    .unwrap();
    let source = HocuspocusDb::create("documents").await;
    let t = "documents";
    source
        .insert(t, Some("org/notes"), Some(yjs_state(1, "from hocuspocus")))
        .await;
    source
        .insert(t, Some("shared"), Some(yjs_state(3, "typed in hocuspocus")))
        .await;
    source
        .insert(t, Some("settings"), Some(yjs_state(4, "yjs settings")))
        .await;
    source
        .insert(
            t,
            Some("corrupt"),
            Some(b"\xff\xfe not a yjs update".to_vec()),
        )
        .await;
    source.insert(t, Some("empty"), None).await;
    source
        .insert(t, Some("bad\nname"), Some(yjs_state(5, "x")))
        .await;

    let first = import(&app, &source, &[]).await;

    assert_eq!(first.status.code(), Some(3), "rows were skipped");
    let out = stdout(&first);
    for line in [
        "skipped \"corrupt\": data is not a Yjs update",
        "skipped \"empty\": data is NULL",
        "skipped \"bad\\nname\": invalid document id",
        "skipped \"settings\": docroom holds this document as JSON",
        "done: 6 rows: imported 1, merged 1, unchanged 0, skipped 4 \
         (held as json 1, invalid name 1, no data 1, undecodable yjs 1)",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(
        text_of(&stored_state(&app, "org/notes").await),
        "from hocuspocus"
    );
    let shared = text_of(&stored_state(&app, "shared").await);
    assert!(
        shared.contains("typed in docroom") && shared.contains("typed in hocuspocus"),
        "{shared:?}"
    );
    assert_eq!(
        app.pg_content("settings").await,
        Some(serde_json::json!({"theme": "dark"}))
    );
    let ids: Vec<String> = documents(&app).await.into_iter().map(|r| r.0).collect();
    assert_eq!(ids, ["org/notes", "settings", "shared"]);
    let served = app.get_doc("org%2Fnotes").await;
    assert_eq!(served.status, 200, "{}", served.text);
    assert_eq!(served.body["kind"], "yjs");
    assert_eq!(served.body["content"]["t"], "from hocuspocus");

    let before = documents(&app).await;
    let second = import(&app, &source, &[]).await;

    assert_eq!(second.status.code(), Some(3));
    assert!(
        stdout(&second).contains("done: 6 rows: imported 0, merged 0, unchanged 2, skipped 4"),
        "{}",
        stdout(&second)
    );
    assert_eq!(documents(&app).await, before, "a re-run wrote nothing");
}

#[tokio::test]
async fn a_schema_qualified_table_is_read_in_batches_with_progress_lines() {
    let app = TestApp::start().await;
    let source = HocuspocusDb::create("hp.\"Docs\"").await;
    for i in 0..5 {
        source
            .insert(
                "hp.\"Docs\"",
                Some(&format!("doc:{i}")),
                Some(yjs_state(10 + i, &format!("text {i}"))),
            )
            .await;
    }

    let output = import(
        &app,
        &source,
        &[
            "--table",
            "hp.Docs",
            "--batch-rows",
            "2",
            "--progress-every",
            "2",
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(0));
    let out = stdout(&output);
    assert!(out.contains("progress: 2 rows: imported 2"), "{out}");
    assert!(out.contains("progress: 4 rows: imported 4"), "{out}");
    assert!(
        out.contains("done: 5 rows: imported 5, merged 0, unchanged 0, skipped 0\n"),
        "{out}"
    );
    for i in 0..5 {
        assert_eq!(
            text_of(&stored_state(&app, &format!("doc:{i}")).await),
            format!("text {i}")
        );
    }
}

#[tokio::test]
async fn a_bad_table_name_a_missing_table_or_a_wrong_column_type_stops_the_import() {
    let app = TestApp::start().await;
    let source = HocuspocusDb::create("documents").await;
    source
        .client
        .batch_execute("CREATE TABLE texts (name text, data text)")
        .await
        .unwrap();

    for (table, says) in [
        ("a.b.c", "use NAME or SCHEMA.NAME"),
        ("missing", "reading table \"missing\""),
        ("texts", "column data of \"texts\" is text, not bytea"),
    ] {
        let output = import(&app, &source, &["--table", table]).await;
        assert_eq!(output.status.code(), Some(1), "--table {table}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "--table {table}: {stderr}");
    }
    assert!(documents(&app).await.is_empty());
}
