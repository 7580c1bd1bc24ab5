//! `docroom replay-journal --data-dir DIR` (SPEC §2): the journal of a replica killed while
//! neither Redis nor PostgreSQL took its writes is persisted by the command, once; a running
//! replica's journal and a path without a journal are refused with clear messages and their
//! documented exit codes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use crate::harness::{ensure, eventually, Proxy, TestApp, TestOptions, WsClient};

const WITHIN: Duration = Duration::from_secs(20);

/// Runs `docroom replay-journal --data-dir DIR` against `app`'s database, straight to the
/// shared PostgreSQL; answers the exit code and what it printed.
async fn replay(app: &TestApp, dir: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docroom"));
    cmd.arg("replay-journal")
        .arg("--data-dir")
        .arg(dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DOCROOM") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1").env(
        "DOCROOM_DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:5432/{}", app.db_name),
    );
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::task::spawn_blocking(move || cmd.output().expect("run docroom replay-journal"))
        .await
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    eprintln!("[replay-journal] {printed}");
    (status.code(), printed)
}

/// A y-protocols update frame inserting `text` into root `text` of a fresh document.
fn yjs_update_frame(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let root = doc.get_or_insert_text("text");
    root.insert(&mut doc.transact_mut(), 0, text);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

fn text_of_state(state: &[u8]) -> String {
    let doc = Doc::new();
    let root = doc.get_or_insert_text("text");
    let update = Update::decode_v1(state).expect("the state decodes");
    doc.transact_mut()
        .apply_update(update)
        .expect("the state applies");
    let txn = doc.transact();
    root.get_string(&txn)
}

#[tokio::test]
async fn a_killed_replicas_journal_is_persisted_by_replay_journal_once() {
    // The replica reaches PostgreSQL through a proxy the test cuts, and its breaker is forced
    // open: what it acknowledges then lives in its journal alone. The rooms are opened first,
    // while PostgreSQL still answers their loads.
    let proxy = Proxy::to_postgres();
    let opts = TestOptions::new().process().database_through(proxy.addr);
    let mut app = TestApp::spawn(opts).await;
    let mut json_client = WsClient::connect(&app, "json-doc").await;
    let yjs = WsClient::open(&app, "/yjs/yjs-doc", &[]).await.unwrap();
    eventually(WITHIN, "both rooms open", async || {
        let rooms = app.admin().rooms().await;
        ensure!(rooms.len() == 2, "{rooms:?}");
        Ok(())
    })
    .await;
    proxy.cut();
    assert_eq!(app.admin().set_breaker("open").await.status, 200);
    let content = json!({"title": "acknowledged while redis and postgres were away"});
    let ack = json_client.update(content.clone(), "1").await;
    assert_eq!(ack["stored"], "fallback", "{ack}");
    yjs.send_binary(yjs_update_frame("typed into the journal"));
    eventually(WITHIN, "both documents in the journal", async || {
        let breaker = app.admin().breaker().await;
        ensure!(breaker["fallback_docs"] == 2, "{breaker}");
        Ok(())
    })
    .await;
    app.sigkill().await;
    assert_eq!(app.pg_content("json-doc").await, None, "postgres lacks it");

    let (code, printed) = replay(&app, &app.data_dir).await;

    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("2 documents to persist"), "{printed}");
    assert!(printed.contains("done: 2 documents persisted"), "{printed}");
    assert_eq!(app.pg_content("json-doc").await, Some(content.clone()));
    let state = app.pg_yjs_state("yjs-doc").await.expect("the yjs row");
    assert_eq!(text_of_state(&state), "typed into the journal");

    let (code, printed) = replay(&app, &app.data_dir).await;

    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("nothing to replay"), "{printed}");
    assert_eq!(app.pg_content("json-doc").await, Some(content));
}

#[tokio::test]
async fn the_journal_of_a_running_replica_is_refused_with_exit_code_3() {
    let app = TestApp::start().await;
    assert_eq!(app.admin().set_breaker("open").await.status, 200);
    let put = app.put_doc("held", &json!({"held": true})).await;
    assert_eq!(put.body["stored"], "fallback", "{}", put.text);

    let (code, printed) = replay(&app, &app.data_dir).await;

    assert_eq!(code, Some(3), "{printed}");
    assert!(
        printed.contains("in use by another docroom process"),
        "{printed}"
    );
    // The replica goes on journaling.
    let put = app.put_doc("held", &json!({"held": "still"})).await;
    assert_eq!(put.body["stored"], "fallback", "{}", put.text);
}

#[tokio::test]
async fn a_missing_directory_or_one_without_a_journal_is_refused_with_exit_code_2() {
    let app = TestApp::start().await;
    let missing = app.data_dir.join("no-such-dir");
    let empty = app.data_dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();

    let (missing_code, missing_printed) = replay(&app, &missing).await;
    let (empty_code, empty_printed) = replay(&app, &empty).await;

    assert_eq!(missing_code, Some(2), "{missing_printed}");
    assert!(
        missing_printed.contains("is not a directory"),
        "{missing_printed}"
    );
    assert_eq!(empty_code, Some(2), "{empty_printed}");
    assert!(
        empty_printed.contains("holds no journal"),
        "{empty_printed}"
    );
    assert!(
        !empty.join("journal.log").exists(),
        "no journal was created"
    );
}
