//! Replicas killed or restarted under JSON traffic (SPEC §1.1 with several replicas): writers
//! number their updates and, when their replica goes away, reconnect to another — as clients do
//! through a load balancer. Whatever a replica acknowledged before it died, PostgreSQL ends up
//! with it (or a later update of the same document), also when only periodic flushes run.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::app::SHARED_PG_ADDR;
use crate::harness::yclient::{text_of_state, YClient};
use crate::harness::{ensure, eventually, Proxy, TestApp, TestOptions};

const WITHIN: Duration = Duration::from_secs(30);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A writer of `{"seq": N}` to one document that fails over between replicas.
struct Writer {
    doc: String,
    socket: Option<Socket>,
    /// The highest sequence number acknowledged.
    acked: u64,
}

impl Writer {
    fn new(doc: &str) -> Writer {
        Writer {
            doc: doc.into(),
            socket: None,
            acked: 0,
        }
    }

    /// Sends the next update through `app` (connecting first if needed); true once it is
    /// acknowledged. A connection that fails or closes is dropped: the next call reconnects.
    async fn step(&mut self, app: &TestApp) -> bool {
        let seq = self.acked + 1;
        let attempt = async {
            if self.socket.is_none() {
                let url = app.ws_url(&format!("/docs/{}/ws", self.doc));
                let (socket, _) = tokio_tungstenite::connect_async(url).await.ok()?;
                self.socket = Some(socket);
            }
            let socket = self.socket.as_mut()?;
            let update = json!({"type": "update", "content": {"seq": seq}, "ref": seq.to_string()});
            socket.send(Message::text(update.to_string())).await.ok()?;
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(text) = frame else { continue };
                let m: Value = serde_json::from_str(&text).ok()?;
                if m["ref"].as_str() == Some(seq.to_string().as_str()) {
                    return Some(m["type"] == "ack");
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Some(true)) => {
                self.acked = seq;
                true
            }
            _ => {
                self.socket = None;
                false
            }
        }
    }
}

/// One update from every writer: even ones on `a`, odd ones on `b`, each on the other replica
/// if its own does not acknowledge.
async fn round(writers: &mut [Writer], a: &TestApp, b: &TestApp) {
    for (i, w) in writers.iter_mut().enumerate() {
        let (first, second) = if i % 2 == 0 { (a, b) } else { (b, a) };
        if !w.step(first).await {
            w.step(second).await;
        }
    }
}

/// PostgreSQL (read through `app`) holds at least every writer's last acknowledged update.
async fn verify(writers: &[Writer], app: &TestApp) {
    app.admin().flush_now().await;
    for w in writers {
        assert!(w.acked >= 15, "{} barely wrote: {}", w.doc, w.acked);
        eventually(WITHIN, &format!("{} persisted", w.doc), async || {
            let held = app.pg_content(&w.doc).await;
            let seq = held.as_ref().and_then(|c| c["seq"].as_u64()).unwrap_or(0);
            ensure!(
                seq >= w.acked,
                "PostgreSQL holds {held:?}, {} was acknowledged",
                w.acked
            );
            Ok(())
        })
        .await;
    }
}

/// Two replicas as processes, with their storage actors on an HTTP worker's thread (as a replica
/// given one core runs them), so a kill meets that placement too.
async fn two_replicas() -> (TestApp, TestApp, Vec<Writer>) {
    let a = TestApp::spawn(TestOptions::new().process().storage_on_worker()).await;
    let b = TestApp::spawn(a.replica_options().process().storage_on_worker()).await;
    let writers = (0..6).map(|i| Writer::new(&format!("seq-{i}"))).collect();
    (a, b, writers)
}

#[tokio::test]
async fn a_replica_sigkilled_under_traffic_loses_no_acknowledged_update() {
    let (mut a, b, mut writers) = two_replicas().await;
    for _ in 0..10 {
        round(&mut writers, &a, &b).await;
    }

    a.sigkill().await;
    for _ in 0..10 {
        round(&mut writers, &a, &b).await;
    }

    verify(&writers, &b).await;
}

#[tokio::test]
async fn a_rolling_restart_under_traffic_loses_nothing_and_each_replica_exits_cleanly() {
    let (mut a, mut b, mut writers) = two_replicas().await;
    for _ in 0..5 {
        round(&mut writers, &a, &b).await;
    }

    for turn in 0..2 {
        let app = if turn == 0 { &mut a } else { &mut b };
        let status = app.sigterm().await;
        assert!(
            status.success(),
            "replica {turn}: SIGTERM exit status {status:?}"
        );
        for _ in 0..5 {
            round(&mut writers, &a, &b).await;
        }
        let app = if turn == 0 { &mut a } else { &mut b };
        app.restart().await;
        for _ in 0..5 {
            round(&mut writers, &a, &b).await;
        }
    }

    verify(&writers, &a).await;
}

/// Two replicas flush one document at once while one of them has a stalled PostgreSQL
/// connection: its flush of older content lands last, and PostgreSQL refuses it (SPEC §6 "no
/// store goes back"), so the row never shows an older version.
#[tokio::test]
async fn concurrent_flushes_with_a_stalled_database_connection_never_move_the_row_back() {
    let proxy = Proxy::to_postgres();
    let fast_claims = [("DOCROOM__CACHE__CLAIM_MS", "300")];
    let mut options = TestOptions::new().database_through(proxy.addr);
    for (k, v) in fast_claims {
        options = options.env(k, v);
    }
    let a = TestApp::spawn(options).await;
    let mut options = a.replica_options().env(
        "DOCROOM_DATABASE_URL",
        format!("postgres://postgres@{SHARED_PG_ADDR}/{}", a.db_name),
    );
    for (k, v) in fast_claims {
        options = options.env(k, v);
    }
    let b = TestApp::spawn(options).await;
    let mut writer = Writer::new("stalled");
    for _ in 0..5 {
        assert!(writer.step(&a).await);
    }
    a.admin().flush_now().await;

    // a's next flush of seq 6 hangs on the stalled connection; b then persists 7..10.
    proxy.stall();
    assert!(writer.step(&a).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut on_b = Writer {
        socket: None,
        ..Writer::new("stalled")
    };
    on_b.acked = writer.acked;
    for _ in 0..4 {
        assert!(on_b.step(&b).await);
    }
    b.admin().flush_now().await;
    let seen = watch_row(&b, "stalled", Duration::from_millis(100)).await;
    assert_eq!(seen.last(), Some(&10), "b's flush: {seen:?}");

    proxy.restore();
    let seen = watch_row(&b, "stalled", Duration::from_secs(3)).await;
    assert!(
        seen.iter().all(|s| *s == 10),
        "the row went back after the stalled flush landed: {seen:?}"
    );
}

/// The `seq` of a document's row, read every 20 ms for `during`.
async fn watch_row(app: &TestApp, doc: &str, during: Duration) -> Vec<u64> {
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + during;
    while tokio::time::Instant::now() < until {
        let held = app.pg_content(doc).await;
        seen.push(held.and_then(|c| c["seq"].as_u64()).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// An edit reaches a member on another replica through the log: it is appended before any other
/// replica shows it. The replica it came from is SIGKILLed as soon as a member elsewhere has the
/// edit, and PostgreSQL still gets what every member was shown.
#[tokio::test]
async fn an_edit_shown_on_another_replica_survives_the_sending_replica_dying() {
    let mut a = TestApp::spawn(TestOptions::new().process()).await;
    let b = TestApp::spawn(a.replica_options().process()).await;
    let alice = YClient::connect(&a, "relayed").await;
    let mut bob = YClient::connect(&b, "relayed").await;
    // b hears events once its room's channel subscription is in effect: a moment.
    tokio::time::sleep(Duration::from_millis(600)).await;

    alice.type_text("<shown on b before a saved it>");
    bob.until("a's edit on replica b", |y| {
        y.text().contains("<shown on b before a saved it>")
    })
    .await;
    a.sigkill().await;

    eventually(WITHIN, "PostgreSQL to hold the edit b showed", async || {
        b.admin().flush_now().await;
        let state = b.pg_yjs_state("relayed").await;
        let text = state.map(|s| text_of_state(&s)).unwrap_or_default();
        ensure!(
            text.contains("<shown on b before a saved it>"),
            "PostgreSQL has {text:?}"
        );
        Ok(())
    })
    .await;
}

/// A periodic flush leaves a document another replica's flush took moments ago (the second of
/// two flushes close together finds it fresh); then that replica dies. With no operator flush,
/// the survivor's own periodic flushes still bring PostgreSQL up to every acknowledged update.
#[tokio::test]
async fn documents_left_to_a_replica_that_dies_are_flushed_by_the_survivors_periodic_flush() {
    // Both flush every 200 ms (the test default); a dead replica's claims last a second.
    let alike = |o: TestOptions| o.process().env("DOCROOM__CACHE__CLAIM_MS", "1000");
    let mut a = TestApp::spawn(alike(TestOptions::new())).await;
    let b = TestApp::spawn(alike(a.replica_options())).await;
    let mut writers: Vec<Writer> = (0..6).map(|i| Writer::new(&format!("left-{i}"))).collect();

    // Writers on both replicas keep every document dirty: of each two flushes less than half a
    // period apart, the second leaves the documents to the first.
    let deadline = tokio::time::Instant::now() + WITHIN;
    while left_fresh(&a).await + left_fresh(&b).await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no periodic flush left a document another had just flushed"
        );
        round(&mut writers, &a, &b).await;
    }
    for _ in 0..5 {
        round(&mut writers, &a, &b).await;
    }
    a.sigkill().await;
    for _ in 0..5 {
        round(&mut writers, &b, &b).await;
    }
    let acked: Vec<u64> = writers.iter().map(|w| w.acked).collect();

    // The writers go on (on b): their rooms stay open, so no leave flush persists anything;
    // only b's periodic flushes can.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let mut behind = Vec::new();
        for (w, acked) in writers.iter().zip(&acked) {
            let held = b.pg_content(&w.doc).await;
            let seq = held.as_ref().and_then(|c| c["seq"].as_u64()).unwrap_or(0);
            if seq < *acked {
                behind.push(format!("{}: {seq} of {acked}", w.doc));
            }
        }
        if behind.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's periodic flushes never persisted what was acknowledged: {behind:?}"
        );
        round(&mut writers, &b, &b).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `docroom_docs_left_fresh_total` of `app`'s process.
async fn left_fresh(app: &TestApp) -> f64 {
    let text = app.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix("docroom_docs_left_fresh_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
