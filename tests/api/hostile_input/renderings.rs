//! Renderings of large Yjs documents (`GET /docs/{id}`) cost CPU in proportion to the document
//! and run off the HTTP workers: while several clients read a megabyte of text as JSON, another
//! client's writes to another document are answered as usual.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::join_all;
use serde_json::json;

use super::assert_still_serves;
use crate::harness::yclient::YClient;
use crate::harness::{TestApp, TestOptions};

/// GETs of the large document in flight at once, more than the app has HTTP workers.
const READERS: usize = 4;
const ROUNDS: usize = 3;

/// A little over a megabyte of text in 64 KiB runs, multi-byte characters included (yrs's own
/// element reads never finish on those).
fn runs() -> Vec<String> {
    let line = "a line of typed text, with wörds and an emoji 😀 in it\n";
    let run = line.repeat((64 << 10) / line.len());
    (0..17).map(|i| format!("{i:02} {run}")).collect()
}

#[tokio::test]
async fn rendering_a_megabyte_of_text_stalls_no_other_clients_writes() {
    let app = TestApp::spawn(
        TestOptions::new()
            .env("DOCROOM__SERVER__WORKERS", 2)
            .env("DOCROOM__LIMITS__MAX_YJS_STATE_BYTES", 4 << 20),
    )
    .await;
    let writer = YClient::connect(&app, "big-text").await;
    for run in runs() {
        writer.type_text(&run);
    }
    let text = writer.text();
    assert!(text.len() > 1 << 20, "{} bytes", text.len());
    // Joining is cheap however large the document: a second client seeing all of it means the
    // room holds it all.
    let mut joiner = YClient::connect(&app, "big-text").await;
    joiner
        .until("the whole text", |joiner| joiner.text().len() == text.len())
        .await;
    assert!(joiner.text() == text, "the joiner's text differs");

    // Several renderings at once, round after round, while another client keeps writing.
    let reading = AtomicBool::new(true);
    let reads = async {
        let mut replies = Vec::new();
        for _ in 0..ROUNDS {
            replies.extend(join_all((0..READERS).map(|_| app.get_doc("big-text"))).await);
        }
        reading.store(false, Ordering::Release);
        replies
    };
    let writes = async {
        let mut answers = Vec::new();
        let mut n = 0;
        while reading.load(Ordering::Acquire) || n < 3 {
            let reply = app.put_doc("other", &json!({ "n": n })).await;
            answers.push((n, reply.status, reply.text));
            n += 1;
        }
        answers
    };
    let (replies, answers) = tokio::join!(reads, writes);

    for reply in &replies {
        assert_eq!(reply.status, 200, "GET: {:.200}", reply.text);
        let served = reply.body["content"]["text"].as_str().unwrap_or_default();
        assert!(
            served == text,
            "GET served {} of the {} bytes",
            served.len(),
            text.len()
        );
    }
    let refused: Vec<_> = answers.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(
        refused.is_empty(),
        "PUTs not answered 200 while documents rendered: {refused:?}"
    );
    let last = answers.len() - 1;
    assert_eq!(
        app.get_doc("other").await.body["content"],
        json!({ "n": last })
    );
    assert_still_serves(&app, "renderings of a megabyte of text").await;
}
