//! Large documents (SPEC §5): with the default settings a Yjs document may grow to 64 MiB, and a
//! frame on `/yjs` and `/hocuspocus` may carry a whole state. An update that would take a
//! document past the limit is refused alone — the document unchanged, that connection closed
//! with 1009, logged once, counted every time — and a client resending it cannot make the
//! document unusable for the others (`refusals`). Fifty providers joining a document of a few
//! MiB at once all sync, share one encoding of it, and none is taken for a slow reader
//! (`join_storm`). No story asserts a timing.

use std::time::Duration;

use docroom_actors::protocol::hocuspocus::Frame as HpFrame;

use crate::harness::yclient::YClient;
use crate::harness::{random_suffix, Frame, TestApp};
use crate::hocuspocus::HpClient;

mod join_storm;
mod refusals;

const KIB: usize = 1024;

/// 1 KiB of text, different for every `i`, as a typist's provider sends it.
fn kib_of_text(i: usize) -> String {
    let line = format!("{i:06} ");
    line.repeat(KIB / line.len() + 1)[..KIB].to_owned()
}

/// Sends `count` 1 KiB inserts from `writer`, as a provider does, one update per frame. Past
/// the first few hundred it keeps under the per-connection message budget of the default
/// settings (200 a second, bursts of 400), as a person typing or pasting does.
async fn type_kibs(writer: &YClient, count: usize) -> String {
    let mut typed = String::new();
    for i in 0..count {
        let chunk = kib_of_text(i);
        writer.type_text(&chunk);
        typed.push_str(&chunk);
        if i >= 300 {
            tokio::time::sleep(Duration::from_millis(6)).await;
        }
    }
    typed
}

/// Asserts that nothing `client` received so far is a close or the end of its connection.
async fn assert_still_open(client: &mut YClient, who: &str) {
    while let Some(frame) = client.ws.recv_within(Duration::ZERO).await {
        assert!(
            !matches!(frame, Frame::Closed(_) | Frame::Gone(_)),
            "{who} was disconnected: {frame:?}"
        );
    }
}

#[tokio::test]
async fn a_megabyte_typed_in_1_kib_inserts_is_kept_whole_with_the_default_settings_and_editing_goes_on(
) {
    let app = TestApp::start().await;
    let doc = format!("megabyte-{}", random_suffix());
    let mut writer = YClient::connect(&app, &doc).await;

    let typed = type_kibs(&writer, KIB).await;

    let mut watcher = YClient::connect(&app, &doc).await;
    watcher
        .until("the whole megabyte", |w| w.text().len() == typed.len())
        .await;
    assert!(watcher.text() == typed, "the watcher's text differs");
    let second = YClient::connect(&app, &doc).await;
    assert!(second.text() == typed, "a joiner gets the whole document");
    second.type_text(" and a second client types on");
    watcher
        .until("the second client's edit", |w| {
            w.text().ends_with(" and a second client types on")
        })
        .await;
    assert_still_open(&mut writer, "the writer").await;
    let stored = app.get_doc(&doc).await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    let state_bytes = base64_len(&stored.body["state"]);
    assert!(
        state_bytes > 1_000_000,
        "more than the old limit of 1,000,000 bytes: {state_bytes}"
    );
}

#[tokio::test]
async fn a_provider_sends_two_megabytes_in_one_frame_over_hocuspocus_and_it_is_stored() {
    let app = TestApp::start().await;
    let doc = format!("hp-large-{}", random_suffix());
    let mut provider = HpClient::open(&app).await;
    provider.join(&doc, "").await;
    let mut watcher = YClient::connect(&app, &doc).await;

    // Offline edits sent in one frame on reconnecting: twice the frame limit of the JSON route.
    let pasted = (0..2 * KIB).map(kib_of_text).collect::<String>();
    provider.type_text(&doc, &pasted);

    let status = provider
        .until(
            "the update's sync status",
            |f| matches!(f, HpFrame::SyncStatus { doc: d, .. } if *d == doc),
        )
        .await;
    assert!(
        matches!(status, HpFrame::SyncStatus { applied: true, .. }),
        "stored: {status:?}"
    );
    let text = watcher.doc.get_or_insert_text("t");
    watcher
        .until("the two megabytes", |w| {
            use yrs::{GetString, Transact};
            text.get_string(&w.doc.transact()).len() == pasted.len()
        })
        .await;
}

/// The decoded length of a base64 string.
fn base64_len(value: &serde_json::Value) -> usize {
    use base64::Engine as _;
    let text = value.as_str().expect("a base64 state");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
        .len()
}
