//! A new document's first save: Redis knows no entry before it, so the answer cannot tell the
//! replica's reader that the entry follows on where the room stands. The reader reads the log
//! at once instead of waiting for its poll. Before, a flush that trimmed the log first left the
//! readers of such documents behind the trimmed log, and their rooms reloaded at the next poll
//! (W5's flush of 10,000 new documents: thousands of reloads).

use std::time::Duration;

use serde_json::json;

use crate::harness::{random_suffix, TestApp, TestOptions, WsClient};

const DOCS: usize = 300;

#[tokio::test]
async fn a_flush_right_after_a_new_documents_first_save_does_not_leave_its_room_behind() {
    // Trim whatever PostgreSQL holds (no retention); poll every second, so a reader left
    // behind finds out within the test.
    let app = TestApp::spawn(
        TestOptions::new()
            .flusher_paused()
            .env("DOCROOM__CACHE__LOG_RETENTION_MS", "0")
            .env("DOCROOM__CACHE__LOG_POLL_MS", "1000"),
    )
    .await;
    // Many documents at once, as a flush of many finds them: their rooms open, subscribe and
    // read while the first saves land.
    let prefix = format!("first-save-{}", random_suffix());
    let writers = (0..DOCS).map(|i| {
        let (app, doc) = (&app, format!("{prefix}-{i}"));
        async move {
            let mut writer = WsClient::connect(app, &doc).await;
            let ack = writer.update(json!({ "n": 1 }), "first").await;
            assert_eq!(ack["type"], "ack", "{doc}: {ack}");
            writer
        }
    });
    let mut writers = futures_util::future::join_all(writers).await;
    // The read the answer starts is a round trip to Redis; the flush below is several.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flushed = app.admin().flush_now().await;
    assert!(flushed["flushed"].as_u64() >= Some(1), "flush: {flushed}");
    // Two polls.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let behind: Vec<String> = app
        .logs()
        .into_iter()
        .filter(|l| l.contains("fell behind the trimmed log"))
        .collect();
    assert!(behind.is_empty(), "the room had to reload: {behind:?}");
    // And the room goes on from where it stands.
    let ack = writers[0].update(json!({ "n": 2 }), "second").await;
    assert_eq!(ack["type"], "ack", "{ack}");
}
