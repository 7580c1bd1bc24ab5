//! A join storm (issue 26, item 3): a document of a few MiB, then fifty providers join it at
//! once, over `/yjs` and `/hocuspocus`, each announcing its presence as a provider does. The
//! per-member backlog is set to a third of the document's size, yet every joiner syncs to the
//! whole document and none is closed: a joiner's own sync is not a backlog. They all share one
//! encoding of the document, the one a read of it made just before (counted by
//! `docroom_sync_answers_total`, process-wide: the binary runs as a child process). No story
//! asserts a timing.

use std::time::Duration;

use docroom_actors::protocol::hocuspocus::Frame as HpFrame;
use futures_util::future::join_all;
use serde_json::json;
use yrs::{GetString, Text, Transact};

use super::{assert_still_open, kib_of_text, KIB};
use crate::harness::yclient::YClient;
use crate::harness::{eventually, random_suffix, TestApp, TestOptions};
use crate::hocuspocus::HpClient;

const MIB: usize = 1024 * KIB;
/// Pasted in 256 KiB updates, each well within the backlog.
const DOCUMENT: usize = 3 * MIB;
const YJS_JOINERS: usize = 40;
const HP_JOINERS: usize = 10;

/// `docroom_sync_answers_total` for `encoding` ("new" or "shared"), from `GET /metrics`.
async fn answers(app: &TestApp, encoding: &str) -> f64 {
    let series = format!("docroom_sync_answers_total{{encoding=\"{encoding}\"}} ");
    let text = app.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series}in /metrics"))
}

/// The root text "t" of a client's document.
fn text_of(doc: &yrs::Doc) -> String {
    let t = doc.get_or_insert_text("t");
    let text = t.get_string(&doc.transact());
    text
}

/// A y-websocket provider joining: it announces its presence, answers the server's step 1 and
/// sends its own, then waits for the whole document.
async fn yjs_joiner(app: &TestApp, doc: &str, n: usize, seeded: &str) -> YClient {
    let mut joiner = YClient::open(app, doc).await;
    let me = 1_000 + n as u64;
    joiner.set_awareness(me, 1, &json!({ "user": format!("joiner {n}") }));
    joiner.next_messages().await;
    joiner.sync().await;
    joiner
        .until("the whole document", |j| {
            text_of(&j.doc).len() >= seeded.len()
        })
        .await;
    joiner
}

/// A Hocuspocus provider joining, and the text it synced to.
async fn hp_joiner(app: &TestApp, doc: &str) -> (HpClient, String) {
    let mut joiner = HpClient::open(app).await;
    joiner.join(doc, "").await;
    let text = joiner.text(doc);
    (joiner, text)
}

#[tokio::test]
async fn fifty_providers_join_a_3_mib_document_at_once_and_each_syncs_without_being_closed() {
    let app = TestApp::spawn(
        TestOptions::new()
            .process()
            .env("DOCROOM__LIMITS__MEMBER_BACKLOG_BYTES", MIB),
    )
    .await;
    let doc = format!("join-storm-{}", random_suffix());
    let mut writer = YClient::connect(&app, &doc).await;
    let t = writer.doc.get_or_insert_text("t");
    let mut seeded = String::new();
    for paste in 0..DOCUMENT / (256 * KIB) {
        let chunk: String = (0..256).map(|k| kib_of_text(paste * 256 + k)).collect();
        writer.edit(|_, txn| {
            let end = t.len(txn);
            t.insert(txn, end, &chunk);
        });
        seeded.push_str(&chunk);
    }
    // A read of the whole document, once the room holds it all.
    eventually(Duration::from_secs(30), "the seeded document", async || {
        let read = app.get_doc(&doc).await;
        let held = read.body["content"]["t"].as_str().map_or(0, str::len);
        match held == seeded.len() {
            true => Ok(()),
            false => Err(format!("{held} of {} bytes", seeded.len())),
        }
    })
    .await;
    let (new_before, shared_before) = (answers(&app, "new").await, answers(&app, "shared").await);

    let yjs = join_all((0..YJS_JOINERS).map(|n| yjs_joiner(&app, &doc, n, &seeded)));
    let hp = join_all((0..HP_JOINERS).map(|_| hp_joiner(&app, &doc)));
    let (mut yjs, mut hp) = tokio::join!(yjs, hp);

    for (n, joiner) in yjs.iter_mut().enumerate() {
        assert!(
            text_of(&joiner.doc) == seeded,
            "joiner {n} has the document"
        );
        assert_still_open(joiner, &format!("joiner {n}")).await;
    }
    for (n, (_, text)) in hp.iter().enumerate() {
        assert!(*text == seeded, "hocuspocus joiner {n} has the document");
    }
    let joiners = (YJS_JOINERS + HP_JOINERS) as f64;
    assert_eq!(
        answers(&app, "new").await - new_before,
        0.0,
        "no joiner's answer was encoded for it"
    );
    assert_eq!(answers(&app, "shared").await - shared_before, joiners);

    // Every joiner is still a member: the next edit reaches them all.
    writer.edit(|_, txn| {
        let end = t.len(txn);
        t.insert(txn, end, " and on");
    });
    for joiner in &mut yjs {
        joiner
            .until("the writer's next edit", |j| {
                text_of(&j.doc).ends_with(" and on")
            })
            .await;
    }
    for (joiner, _) in &mut hp {
        while !joiner.text(&doc).ends_with(" and on") {
            joiner
                .until("the writer's next edit", |f| {
                    matches!(f, HpFrame::Sync { .. })
                })
                .await;
        }
    }
    assert_still_open(&mut writer, "the writer").await;
}
