//! A document yrs breaks: a sequence of valid updates (in `tests/data/yrs-underflow.hex`, found
//! by the structured fuzzer) on which a length counter of yrs underflows inside the last
//! update's transaction. The room does not use that document again: its members are closed with
//! 1011, the updates applied before the breaking one are kept, and the next connection finds
//! them in a room started afresh from what is stored. The process lives on.

use std::time::Duration;

use yrs::updates::decoder::Decode;
use yrs::{GetString, Transact, Update};

use crate::harness::yclient::YClient;
use crate::harness::{ensure, eventually, random_suffix, TestApp, TestOptions};

fn frames() -> Vec<Vec<u8>> {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/yrs-underflow.hex"
    ))
    .expect("the frames")
    .lines()
    .filter(|l| !l.starts_with('#') && !l.is_empty())
    .map(|hex| {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    })
    .collect()
}

/// The text the frames before the breaking one make: their updates applied to a fresh document.
fn text_before(frames: &[Vec<u8>]) -> String {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("text");
    for frame in frames {
        // A sync update frame: message 0 (sync), 2 (update), then the update's length and bytes.
        let mut rest = &frame[2..];
        let len = lib0_len(&mut rest);
        let update = Update::decode_v1(&rest[..len]).expect("an update");
        doc.transact_mut().apply_update(update).expect("applies");
    }
    let txn = doc.transact();
    text.get_string(&txn)
}

fn lib0_len(bytes: &mut &[u8]) -> usize {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let byte = bytes[0];
        *bytes = &bytes[1..];
        value |= ((byte & 0x7f) as usize) << shift;
        if byte < 0x80 {
            return value;
        }
        shift += 7;
    }
}

#[tokio::test]
async fn a_room_whose_document_yrs_breaks_starts_afresh_with_everything_before_it() {
    let app = TestApp::spawn(TestOptions::new()).await;
    let doc = format!("broken-{}", random_suffix());
    let frames = frames();
    let (breaking, before) = frames.split_last().expect("frames");
    let expected = text_before(before);
    assert!(!expected.is_empty());
    let mut writer = YClient::connect(&app, &doc).await;
    let mut watcher = YClient::connect(&app, &doc).await;
    for frame in before {
        writer.ws.send_binary(frame.clone());
    }
    watcher
        .until("the updates before the breaking one", |c| {
            c.text() == expected
        })
        .await;

    writer.ws.send_binary(breaking.clone());

    writer.ws.expect_close(1011).await;
    watcher.ws.expect_close(1011).await;
    let fresh = eventually(Duration::from_secs(20), "a fresh room", async || {
        let read = app.get_doc(&doc).await;
        ensure!(
            read.status == 200,
            "GET answered {}: {}",
            read.status,
            read.text
        );
        Ok(())
    })
    .await;
    let () = fresh;
    let reader = YClient::connect(&app, &doc).await;
    assert_eq!(
        reader.text(),
        expected,
        "what came before the breaking update"
    );
    let alive = app.get("/healthz").await;
    assert_eq!(alive.status, 200, "the process lives on");
}
