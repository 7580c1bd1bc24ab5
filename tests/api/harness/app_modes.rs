//! The two ways a `TestApp` runs, checked on their own: an in-process app's log holds its own
//! lines and panics and no other app's, stops and restarts with its data, and refuses what only
//! a child process can do.

use std::sync::Arc;
use std::time::Duration;

use actix_web::rt::System;
use serde_json::json;

use super::logs::{self, Sink};
use super::{TestApp, TestOptions, WsClient};

#[tokio::test]
async fn each_in_process_app_logs_only_its_own_lines() {
    let first = TestApp::start().await;
    let second = TestApp::start().await;

    let own = format!("addr={}", first.addr);
    let other = format!("addr={}", second.addr);
    first.wait_for_log(&own, Duration::from_secs(5)).await;

    assert!(
        !first.logs().iter().any(|line| line.contains(&other)),
        "the first app's log holds a line of the second: {:#?}",
        first.logs()
    );
}

#[test]
fn a_panic_on_a_thread_of_an_apps_system_lands_in_that_apps_log() {
    logs::install();
    let sink: Sink = Arc::default();
    let (sink_for_app, sink_for_other) = (sink.clone(), Sink::default());

    let app = std::thread::spawn(move || {
        let _runner = System::new();
        let system = System::current().id();
        logs::register(system, sink_for_app);
        let same_system = System::current();
        let worker = std::thread::spawn(move || {
            // A thread of the same System, as an arbiter or an HTTP worker is.
            System::set_current(same_system);
            panic!("deliberate panic for the log capture test");
        });
        let _ = worker.join();
        logs::unregister(system);
    });
    let _ = app.join();

    let lines = sink.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("panicked") && l.contains("deliberate panic")),
        "{lines:#?}"
    );
    assert!(sink_for_other.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_in_process_restart_drains_and_serves_the_same_data_again() {
    // The flusher never runs by itself: only the drain of the stop can put it in PostgreSQL.
    let mut app = TestApp::spawn(TestOptions::new().flusher_paused()).await;
    let content = json!({"kept": true});
    let mut client = WsClient::connect(&app, "kept").await;
    assert_eq!(
        client.update(content.clone(), "k-1").await["stored"],
        "cache"
    );
    assert_eq!(app.pg_content("kept").await, None);

    app.restart().await;

    assert_eq!(app.pg_content("kept").await, Some(content.clone()));
    app.redis_delete_all().await;
    let reply = app.get_doc("kept").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["content"], content);
}

#[tokio::test]
#[should_panic(expected = "needs the app in a child process")]
async fn a_process_only_method_on_an_in_process_app_panics_clearly() {
    let app = TestApp::start().await;

    app.signal("TERM");
}

#[tokio::test]
async fn a_child_process_app_serves_on_the_port_the_harness_picked() {
    let app = TestApp::spawn(TestOptions::new().process()).await;

    assert!(app.pid().is_some());
    assert_eq!(app.get("/healthz").await.status, 200);
}
