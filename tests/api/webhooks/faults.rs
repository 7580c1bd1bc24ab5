//! Webhooks under faults: a replica SIGKILLed between a change and its webhook, and a
//! PostgreSQL outage while changes happen. Each event still arrives.

use std::time::Duration;

use serde_json::json;

use super::receiver::Receiver;
use super::{client_as, put_as, with_webhooks, WITHIN};
use crate::harness::{ensure, eventually, Proxy, TestApp, TestOptions};

#[tokio::test]
async fn a_window_of_a_replica_killed_before_its_webhook_is_sent_by_another() {
    let receiver = Receiver::start();
    // A long window, so the kill lands well before the webhook is due.
    let slow = |opts: TestOptions| {
        with_webhooks(opts, &receiver).env("DOCROOM__WEBHOOKS__DEBOUNCE_MS", 2000)
    };
    let mut doomed = TestApp::spawn(slow(TestOptions::new().process())).await;
    let survivor = TestApp::spawn(slow(doomed.replica_options())).await;
    let doc = "orphaned-window";

    put_as(&doomed, doc, "erin", &json!({"before": "the kill"})).await;
    let pg = survivor.pg().await;
    eventually(WITHIN, "the window in the outbox", async || {
        let rows = pg
            .query(
                "SELECT 1 FROM webhook_deliveries WHERE doc_id = $1 AND state = 'window'",
                &[&doc],
            )
            .await
            .map_err(|e| e.to_string())?;
        ensure!(!rows.is_empty(), "no window yet");
        Ok(())
    })
    .await;
    doomed.sigkill().await;
    assert!(
        receiver
            .hits_for(doc)
            .iter()
            .all(|h| h.event != "document.changed"),
        "sent before the kill: the story needs a longer window"
    );

    let changed = receiver.accepted(doc, "document.changed", WITHIN).await;
    assert!(changed.signed());
    assert_eq!(changed.json["users"], json!(["erin"]));
}

#[tokio::test]
async fn events_during_a_postgres_outage_arrive_once_it_is_back() {
    let receiver = Receiver::start();
    let proxy = Proxy::to_postgres();
    let opts = TestOptions::new().database_through(proxy.addr);
    let app = TestApp::spawn(with_webhooks(opts, &receiver)).await;
    let doc = "through-the-outage";
    // Known to Redis before the outage, so a client can open it meanwhile.
    put_as(&app, doc, "frank", &json!({"v": 0})).await;
    receiver.accepted(doc, "document.stored", WITHIN).await;
    receiver.accepted(doc, "document.changed", WITHIN).await;

    proxy.cut();
    let mut grace = client_as(&app, doc, "grace").await;
    grace.update(json!({"v": 1}), "1").await;
    grace.close().await;
    put_as(&app, doc, "frank", &json!({"v": 2})).await;
    // Long enough for the recorder's writes and the flusher to fail at least once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = receiver.hits_for(doc).len();
    proxy.restore();

    let changed = receiver
        .accepted_after(doc, "document.changed", before, WITHIN)
        .await;
    let users = changed.json["users"].as_array().unwrap().clone();
    assert!(
        users.contains(&json!("grace")) && users.contains(&json!("frank")),
        "{users:?} in {:?}",
        receiver
            .hits_for(doc)
            .iter()
            .map(|h| &h.body)
            .collect::<Vec<_>>()
    );
    for event in ["client.connected", "client.disconnected"] {
        let hit = receiver.accepted(doc, event, WITHIN).await;
        assert_eq!(hit.json["users"], json!(["grace"]));
    }
    eventually(WITHIN, "the stored content after the outage", async || {
        let stored = receiver
            .hits_for(doc)
            .into_iter()
            .rfind(|h| h.event == "document.stored" && h.status == 200);
        let hash = stored.map(|h| h.json["hash"].clone()).unwrap_or_default();
        let want = crate::harness::content_hash(&json!({"v": 2}));
        ensure!(hash == json!(want), "last stored {hash}");
        Ok(())
    })
    .await;
}

/// The change is acknowledged (in Redis) while PostgreSQL is away, so the replica holds its
/// window in memory only; it is SIGKILLed before PostgreSQL returns. The save's mark in Redis
/// makes another replica write the window: the change still gets its `document.changed`.
#[tokio::test]
async fn a_change_held_in_memory_when_its_replica_is_killed_still_gets_its_webhook() {
    let receiver = Receiver::start();
    let proxy = Proxy::to_postgres();
    let mut doomed = TestApp::spawn(with_webhooks(
        TestOptions::new().process().database_through(proxy.addr),
        &receiver,
    ))
    .await;
    let doc = "killed-with-its-window";
    // Known to Redis before the outage, so its room opens meanwhile.
    put_as(&doomed, doc, "gil", &json!({"v": 0})).await;
    receiver.accepted(doc, "document.changed", WITHIN).await;
    let before = receiver.hits_for(doc).len();
    proxy.cut();
    put_as(
        &doomed,
        doc,
        "hana",
        &json!({"acknowledged": "while postgres was away"}),
    )
    .await;
    // Past a few of the recorder's attempts to write the window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    doomed.sigkill().await;
    proxy.restore();
    let during: Vec<_> = receiver.hits_for(doc).into_iter().skip(before).collect();
    assert!(
        during.iter().all(|h| h.event != "document.changed"),
        "{during:?}"
    );

    let survivor = TestApp::spawn(with_webhooks(doomed.replica_options(), &receiver)).await;

    let hit = receiver
        .accepted_after(doc, "document.changed", before, WITHIN)
        .await;
    assert!(
        hit.signed(),
        "the killed replica's document.changed is unsigned"
    );
    drop(survivor);
}
