//! An update past the limit, sent and sent again as a provider does after each 1009: refused
//! every time, the document unchanged, the others editing on, one log line, every refusal
//! counted. `/metrics` is process-wide, so these stories run the binary as a child process.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{kib_of_text, type_kibs, KIB};
use crate::harness::yclient::YClient;
use crate::harness::{random_suffix, TestApp, TestOptions};

const WITHIN: Duration = Duration::from_secs(10);

/// How often the refused client comes back with the same update.
const RETRIES: usize = 5;

/// `docroom_refused_frames_total` for `reason`, from `GET /metrics`.
async fn refused(app: &TestApp, reason: &str) -> f64 {
    let series = format!("docroom_refused_frames_total{{reason=\"{reason}\"}} ");
    let text = app.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series}in /metrics:\n{text}"))
}

/// Log lines naming `doc` that contain `needle`.
fn lines_with(app: &TestApp, doc: &str, needle: &str) -> Vec<String> {
    app.logs()
        .into_iter()
        .filter(|l| l.contains(doc) && l.contains(needle))
        .collect()
}

#[tokio::test]
async fn an_update_past_the_limit_is_refused_alone_every_time_it_is_resent_and_logged_once() {
    let limit = 64 * KIB;
    let app = TestApp::spawn(
        TestOptions::new()
            .process()
            .env("DOCROOM__LIMITS__MAX_YJS_STATE_BYTES", limit),
    )
    .await;
    let doc = format!("at-the-limit-{}", random_suffix());
    let writer = YClient::connect(&app, &doc).await;
    let typed = type_kibs(&writer, 40).await;
    let mut watcher = YClient::connect(&app, &doc).await;
    watcher
        .until("the writer's 40 KiB", |w| w.text() == typed)
        .await;

    // 30 KiB more would take the document to some 70 KiB: within the frame limit (the state
    // limit and 1 KiB), so the document weighs it, and refuses it.
    let mut greedy = YClient::connect(&app, &doc).await;
    greedy.until("the 40 KiB", |g| g.text() == typed).await;
    let too_much = (900..930).map(kib_of_text).collect::<String>();
    greedy.type_text(&too_much);
    greedy.ws.expect_close(1009).await;

    writer.type_text(" still typing");
    watcher
        .until("the writer's next edit", |w| {
            w.text().ends_with(" still typing")
        })
        .await;
    // Its provider reconnects and, answering the server's sync step 1, sends the edit the
    // server lacks: the same 30 KiB, again and again.
    for attempt in 0..RETRIES {
        let mut again = YClient::open(&app, &doc).await;
        again.doc = greedy.doc.clone();
        again.next_messages().await;
        again.ws.expect_close(1009).await;
        writer.type_text(&format!(" {attempt}"));
    }

    let last = format!(" {}", RETRIES - 1);
    watcher
        .until("the writer's edits between the attempts", |w| {
            w.text().ends_with(&last)
        })
        .await;
    assert!(
        !watcher.text().contains(&too_much[..KIB]),
        "the refused edit reached the watcher"
    );
    let stored = app.get_doc(&doc).await;
    let content = stored.body["content"]["text"].as_str().unwrap_or_default();
    assert!(
        content.starts_with(&typed) && !content.contains(&too_much[..KIB]),
        "the document holds nothing of the refused edit: {} bytes",
        content.len()
    );
    assert_eq!(
        refused(&app, "state_limit").await,
        (1 + RETRIES) as f64,
        "every refusal counted"
    );
    let logged = lines_with(&app, &doc, "limits.max_yjs_state_bytes");
    assert_eq!(logged.len(), 1, "the reason logged once: {logged:#?}");
    assert!(logged[0].contains("would grow"), "{}", logged[0]);
}

/// A masked binary frame header declaring `len` payload bytes (RFC 6455 §5.2).
fn frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    header
}

/// Opens `path` as a WebSocket over a bare TCP connection, so the test can send a frame's
/// header without its payload.
async fn raw_websocket(app: &TestApp, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(app.addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.expect("read the answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    socket
}

/// The code of the Close frame the server sends on `socket`, skipping its other frames.
async fn close_code(socket: &mut TcpStream) -> Option<u16> {
    loop {
        let mut head = [0u8; 2];
        socket.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7f {
            126 => u64::from(socket.read_u16().await.ok()?),
            127 => socket.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        socket.read_exact(&mut payload).await.ok()?;
        if head[0] & 0x0f == 0x8 {
            return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
    }
}

#[tokio::test]
async fn a_frame_declaring_more_than_the_limit_is_refused_from_its_header_before_it_is_read() {
    let app = TestApp::spawn(TestOptions::new().process()).await;
    let doc = format!("declared-{}", random_suffix());
    let writer = YClient::connect(&app, &doc).await;
    let mut watcher = YClient::connect(&app, &doc).await;

    for attempt in 0..2 {
        // A gibibyte declared, 64 KiB sent: a server that waited for the whole frame before
        // measuring it would never answer.
        let mut socket = raw_websocket(&app, &format!("/yjs/{doc}")).await;
        let mut frame = frame_header(1 << 30);
        frame.resize(frame.len() + 64 * KIB, 0);
        socket.write_all(&frame).await.expect("send");
        let code = tokio::time::timeout(WITHIN, close_code(&mut socket))
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: not closed within {WITHIN:?}"));
        assert_eq!(code, Some(1009), "attempt {attempt}");
    }

    writer.type_text("unbothered");
    watcher
        .until("the writer's edit", |w| w.text() == "unbothered")
        .await;
    assert_eq!(refused(&app, "frame_size").await, 2.0, "both counted");
    let logged = lines_with(&app, &doc, "frame over the frame limit");
    assert_eq!(logged.len(), 1, "logged once: {logged:#?}");
    assert!(logged[0].contains("1073741824"), "{}", logged[0]);
}
