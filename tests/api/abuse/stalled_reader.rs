//! Item 9: a member that stops reading is dropped from its room; the server's memory stays
//! bounded.

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{members, rss_kib, WITHIN};
use crate::harness::{TestApp, TestOptions, WsClient};

#[tokio::test]
async fn a_member_that_stops_reading_is_dropped_from_the_room_and_memory_stays_bounded() {
    // The server's memory is read from /proc, so it runs as a process of its own.
    let app = TestApp::spawn(
        TestOptions::new()
            .process()
            .env("DOCROOM__LIMITS__MEMBER_BACKLOG_BYTES", 2_000_000)
            .env("DOCROOM__LIMITS__MEMBER_BACKLOG_MESSAGES", 1000)
            .env("DOCROOM__LIMITS__MESSAGES_PER_SEC", 10_000),
    )
    .await;
    let doc = "stalled-reader";
    let mut writer = WsClient::connect(&app, doc).await;
    // Upgrades, reads its snapshot, then never reads again (a hung tab, or an attacker).
    let (mut stalled, _) = tokio_tungstenite::connect_async(app.ws_url(&format!("/docs/{doc}/ws")))
        .await
        .expect("connect the stalled reader");
    let snapshot = stalled.next().await.expect("a snapshot").expect("read it");
    assert!(snapshot.to_text().unwrap().contains("snapshot"));
    assert_eq!(members(&app, doc).await, Some(2));
    let rss_before = rss_kib(&app);

    // 256 KB updates: kernel buffers fill after a few dozen, then the server-side backlog grows.
    let filler = "x".repeat(256 * 1024);
    let mut sent = 0;
    while members(&app, doc).await == Some(2) {
        assert!(
            sent < 400,
            "the stalled reader is still a member after {sent} updates (service RSS {} KiB, \
             {rss_before} KiB before)",
            rss_kib(&app)
        );
        writer
            .update(json!({"n": sent, "fill": filler}), &format!("u{sent}"))
            .await;
        sent += 1;
    }
    let dropped_after = sent;
    // The writer goes on; the stalled member is gone and gets nothing more.
    for n in sent..sent + 200 {
        writer
            .update(json!({"n": n, "fill": filler}), &format!("u{n}"))
            .await;
    }
    let rss_after = rss_kib(&app);
    eprintln!(
        "stalled reader dropped after {dropped_after} updates of 256 KiB; service RSS {} KiB \
         before, {} KiB after {} more updates",
        rss_before, rss_after, 200
    );
    assert_eq!(members(&app, doc).await, Some(1), "only the writer is left");

    // Once it reads again it finds its connection closed with 1008 (after what was queued).
    let closed = tokio::time::timeout(WITHIN, async {
        while let Some(frame) = stalled.next().await {
            match frame {
                Ok(WsMessage::Close(close)) => return close.map(|c| u16::from(c.code)),
                Ok(_) => {}
                Err(e) => panic!("the stalled reader's connection broke: {e}"),
            }
        }
        panic!("the stalled reader's connection ended without a Close frame")
    })
    .await
    .expect("a Close frame once the stalled reader reads again");
    assert_eq!(closed, Some(1008));
}
