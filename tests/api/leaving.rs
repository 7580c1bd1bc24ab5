//! Rooms end when their last member goes, by closing or by going silent, and persist on the way
//! out. The flusher is paused in these tests, so only the room itself can be writing PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{
    assert_fields, content_hash, ensure, eventually, MuteClient, TestApp, TestOptions, WsClient,
};

#[tokio::test]
async fn the_last_member_leaving_persists_the_document_and_closes_the_room() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let mut alice = WsClient::connect(&app, "notes").await;
    let bob = WsClient::connect(&app, "notes").await;
    let content = json!({"notes": ["buy milk", "call mum"]});
    alice.update(content.clone(), "1").await;
    let room = app.admin().room("notes").await.expect("a room for notes");
    assert_fields(
        &room,
        json!({"doc": "notes", "kind": "json", "members": 2, "dirty": true}),
    );

    alice.close().await;
    eventually(Duration::from_secs(10), "one member left", async || {
        let room = app.admin().room("notes").await;
        ensure!(
            room.as_ref().is_some_and(|r| r["members"] == 1),
            "room is {room:?}"
        );
        Ok(())
    })
    .await;

    bob.close().await;
    eventually(
        Duration::from_secs(10),
        "the room gone and its content persisted",
        async || {
            let room = app.admin().room("notes").await;
            ensure!(room.is_none(), "room still there: {room:?}");
            let row = app.pg_row("notes").await;
            ensure!(
                row.as_ref().and_then(|r| r.content.as_ref()) == Some(&content),
                "row {row:?}"
            );
            Ok(())
        },
    )
    .await;
    assert_eq!(
        app.pg_row("notes").await.unwrap().content_hash,
        content_hash(&content)
    );
    assert!(
        !app.is_modified("notes").await,
        "persisted but still in modifiedDocs"
    );

    // The next join starts a fresh room with the persisted content.
    let carol = WsClient::connect(&app, "notes").await;
    assert_fields(&carol.snapshot, json!({"content": content}));
    assert_fields(
        &app.admin().room("notes").await.expect("a new room"),
        json!({"members": 1, "dirty": false}),
    );
}

#[tokio::test]
async fn an_abrupt_disconnect_counts_as_leaving() {
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let mut client = WsClient::connect(&app, "dropped").await;
    let content = json!({"draft": "the tab crashed after this"});
    client.update(content.clone(), "1").await;
    drop(client); // TCP connection dropped without a Close frame

    eventually(
        Duration::from_secs(10),
        "the room gone and its content persisted",
        async || {
            ensure!(
                app.admin().room("dropped").await.is_none(),
                "room still there"
            );
            let content_now = app.pg_content("dropped").await;
            ensure!(
                content_now.as_ref() == Some(&content),
                "row content {content_now:?}"
            );
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_its_document_persisted() {
    // Harness timers: a Ping every 100 ms, closed after 1000 ms of silence.
    let app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let mut mute = MuteClient::connect(&app, "quiet").await;
    let content = json!({"last words": "then the laptop lid closed"});
    let ack = mute.update(content.clone(), "1").await;
    assert_fields(&ack, json!({"type": "ack", "stored": "cache"}));
    // A client that answers Pings but sends nothing else, on another document, for comparison.
    let mut idle = WsClient::connect(&app, "idle").await;
    let idle_since = Instant::now();

    // From here on nobody reads `mute`'s socket, so its Pongs stop.
    eventually(
        Duration::from_secs(15),
        "the silent client dropped",
        async || {
            let room = app.admin().room("quiet").await;
            ensure!(room.is_none(), "room still there: {room:?}");
            let persisted = app.pg_content("quiet").await;
            ensure!(
                persisted.as_ref() == Some(&content),
                "row content {persisted:?}"
            );
            Ok(())
        },
    )
    .await;

    // The client that kept answering Pings outlives the timeout and is still served.
    tokio::time::sleep_until((idle_since + Duration::from_millis(1500)).into()).await;
    idle.ping().await;
    assert_fields(
        &app.admin()
            .room("idle")
            .await
            .expect("the idle client's room"),
        json!({"members": 1}),
    );
    drop(mute);
}
