//! SyncStatus (SPEC §5b): one per content-carrying Sync message; `1` only once the content is
//! stored; on a read-only document `1` for what adds nothing and `0` (dropped) for the rest.

use std::time::Duration;

use docroom_actors::protocol::hocuspocus::Frame;
use yrs::sync::SyncMessage;
use yrs::{ReadTxn, Transact};

use super::{empty_sv, is_sync_status, token, HpClient, SECRET};
use crate::harness::{random_suffix, TestApp, TestOptions};

fn status(frame: &Frame) -> bool {
    match frame {
        Frame::SyncStatus { applied, .. } => *applied,
        other => panic!("not a SyncStatus: {other:?}"),
    }
}

/// A save held back far longer than a SyncStatus sent on apply would take (the room's save
/// budget spent first, one save per 1.5 s after that): if the answer came before the save, a
/// SIGKILL right after it would lose the update.
#[tokio::test]
async fn sync_status_1_arrives_only_once_the_update_is_stored_so_a_sigkill_loses_nothing() {
    let mut app = TestApp::spawn(
        TestOptions::new()
            .process()
            .env("DOCROOM__ROOMS__YJS_SAVE_INTERVAL_MS", 1500),
    )
    .await;
    let doc = format!("hp-durable-{}", random_suffix());
    let mut client = HpClient::open(&app).await;
    client.join(&doc, "").await;

    let burst = docroom_actors::room::SaveBudget::BURST as usize;
    for _ in 0..burst {
        client.type_text(&doc, ".");
        let answer = client
            .until("sync status", |f| is_sync_status(f, &doc))
            .await;
        assert!(status(&answer));
    }
    client.type_text(&doc, "kept");
    let answer = client
        .until("sync status", |f| is_sync_status(f, &doc))
        .await;
    assert!(status(&answer));
    app.sigkill().await;
    app.restart().await;

    let mut after = HpClient::open(&app).await;
    after.join(&doc, "").await;
    assert_eq!(after.text(&doc), format!("{}kept", ".".repeat(burst)));
}

#[tokio::test]
async fn every_content_message_gets_exactly_one_sync_status_with_the_breaker_forced_open() {
    let app = TestApp::start().await;
    assert_eq!(app.admin().set_breaker("open").await.status, 200);
    let doc = format!("hp-journal-{}", random_suffix());
    let mut client = HpClient::open(&app).await;
    client.join(&doc, "").await;

    for word in ["one ", "two ", "three"] {
        client.type_text(&doc, word);
    }
    // A step 2 that adds nothing (what the client has, the server has) and a step 1.
    let state = client
        .doc(&doc)
        .transact()
        .encode_state_as_update_v1(&empty_sv());
    client.sync(&doc, SyncMessage::SyncStep2(state));
    client.step1(&doc);

    let mut answers = Vec::new();
    while answers.len() < 4 {
        let f = client
            .until("sync status", |f| is_sync_status(f, &doc))
            .await;
        answers.push(status(&f));
    }
    assert_eq!(answers, vec![true; 4]);
    let extra = client.drain(Duration::from_millis(500)).await;
    assert!(
        !extra.iter().any(|f| is_sync_status(f, &doc)),
        "one each: {extra:?}"
    );
    let breaker = app.admin().breaker().await;
    assert!(
        breaker["fallback_docs"].as_u64() >= Some(1),
        "stored in the journal: {breaker}"
    );
}

#[tokio::test]
async fn a_read_only_document_gets_0_for_a_change_that_reaches_nobody_and_1_for_nothing_new() {
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await;
    let doc = format!("hp-ro-{}", random_suffix());
    let mut writer = HpClient::open(&app).await;
    writer.join(&doc, &token(&[&doc], "rw")).await;
    writer.type_text(&doc, "from the writer");
    writer
        .until("sync status", |f| is_sync_status(f, &doc))
        .await;
    let mut reader = HpClient::open(&app).await;
    assert_eq!(reader.join(&doc, &token(&[&doc], "ro")).await, "readonly");

    reader.type_text(&doc, " and the reader");
    let refused = reader
        .until("sync status", |f| is_sync_status(f, &doc))
        .await;
    let state = writer
        .doc(&doc)
        .transact()
        .encode_state_as_update_v1(&empty_sv());
    reader.sync(&doc, SyncMessage::SyncStep2(state));
    let nothing_new = reader
        .until("sync status", |f| is_sync_status(f, &doc))
        .await;

    assert!(!status(&refused));
    assert!(status(&nothing_new));
    let seen = writer.drain(Duration::from_millis(500)).await;
    assert!(
        !seen.iter().any(|f| matches!(f, Frame::Sync { .. })),
        "{seen:?}"
    );
    assert_eq!(writer.text(&doc), "from the writer");
}
