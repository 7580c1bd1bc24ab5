//! One document's writer: one connection at a time, an update at a time, every answer and every
//! ending recorded in the shared ledger.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Ledger, Mode};
use crate::harness::content_hash;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An update not answered within this is given up on (and its connection reopened).
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Connecting and reading the snapshot, each.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// Between two failed connection attempts.
const RECONNECT_EVERY: Duration = Duration::from_millis(100);

/// How one update went.
enum Answer {
    Ack {
        stored: String,
        hash: String,
    },
    Error(String),
    /// The connection ended (`close 1001`, `dropped`, ...).
    Ended(String),
    Silent,
}

/// One document's writer: one connection at a time.
pub(super) struct Writer {
    pub(super) doc: String,
    pub(super) client: usize,
    pub(super) pace: Duration,
    pub(super) mode: watch::Receiver<Mode>,
    pub(super) target: watch::Receiver<Option<SocketAddr>>,
    pub(super) ledger: Arc<Mutex<Ledger>>,
}

impl Writer {
    pub(super) async fn run(mut self) {
        loop {
            if self.mode() == Mode::Stop {
                return;
            }
            let target = *self.target.borrow_and_update();
            let Some(addr) = target else {
                self.wait_for_change(None).await;
                continue;
            };
            let mut socket = match self.connect(addr).await {
                Ok(socket) => socket,
                Err(why) => {
                    {
                        let mut ledger = self.ledger.lock().unwrap();
                        ledger.tally.failed_connects += 1;
                        ledger.note(format!("{}: {why}", self.doc));
                    }
                    self.wait_for_change(Some(RECONNECT_EVERY)).await;
                    continue;
                }
            };
            if let Some(ending) = self.converse(&mut socket).await {
                let mut ledger = self.ledger.lock().unwrap();
                *ledger.tally.endings.entry(ending).or_default() += 1;
            }
        }
    }

    fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Sleeps until the mode or the target changes, or `at_most` passes.
    async fn wait_for_change(&mut self, at_most: Option<Duration>) {
        let limit = tokio::time::sleep(at_most.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            _ = self.mode.changed() => {}
            _ = self.target.changed() => {}
            _ = limit => {}
        }
    }

    /// Opens the connection and checks its snapshot against the ledger.
    async fn connect(&self, addr: SocketAddr) -> Result<Socket, String> {
        let url = format!("ws://{addr}/docs/{}/ws", self.doc);
        let (mut socket, _) =
            tokio::time::timeout(CONNECT_WITHIN, tokio_tungstenite::connect_async(url))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| format!("connect: {e}"))?;
        let snapshot = loop {
            let frame = tokio::time::timeout(CONNECT_WITHIN, socket.next())
                .await
                .map_err(|_| "no snapshot".to_owned())?;
            match frame {
                Some(Ok(Message::Text(text))) => break text.to_string(),
                Some(Ok(Message::Close(close))) => {
                    return Err(format!("closed before the snapshot: {close:?}"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("before the snapshot: {e}")),
                None => return Err("ended before the snapshot".into()),
            }
        };
        let snapshot: Value = serde_json::from_str(&snapshot).unwrap_or(Value::Null);
        if snapshot["type"] != "snapshot" {
            return Err(format!("first message is not a snapshot: {snapshot}"));
        }
        let mut ledger = self.ledger.lock().unwrap();
        ledger.tally.connects += 1;
        let acked = ledger.docs[&self.doc].acked.clone();
        let held = snapshot["content"]["seq"].as_u64();
        if let Some((seq, stored)) = acked {
            if held < Some(seq) {
                let what = format!(
                    "{}: snapshot holds #{held:?} after #{seq} was acked ({stored})",
                    self.doc
                );
                ledger.violations.push(what);
            }
        }
        Ok(socket)
    }

    /// Writes (or idles) on one connection until it ends (`Some(how)`) or the writer stops
    /// (`None`, after closing it).
    async fn converse(&mut self, socket: &mut Socket) -> Option<String> {
        loop {
            match self.mode() {
                Mode::Stop => {
                    let close = Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    }));
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let _ = socket.send(close).await;
                        while let Some(Ok(_)) = socket.next().await {}
                    })
                    .await;
                    return None;
                }
                Mode::Park => {
                    tokio::select! {
                        _ = self.mode.changed() => {}
                        frame = socket.next() => {
                            if let Some(ending) = ending(frame) {
                                return Some(ending);
                            }
                        }
                    }
                }
                Mode::Run => {
                    if let Some(ending) = self.update(socket).await {
                        return Some(ending);
                    }
                    tokio::select! {
                        _ = self.mode.changed() => {}
                        _ = tokio::time::sleep(self.pace) => {}
                    }
                }
            }
        }
    }

    /// Sends the next update and records its answer; `Some(how)` if the connection ended.
    async fn update(&mut self, socket: &mut Socket) -> Option<String> {
        let seq = {
            let mut ledger = self.ledger.lock().unwrap();
            let doc = ledger.docs.get_mut(&self.doc).unwrap();
            doc.sent += 1;
            doc.sent
        };
        let content = json!({
            "doc": self.doc,
            "seq": seq,
            "client": self.client,
            "text": format!("revision {seq} of {} by client {}", self.doc, self.client),
        });
        let reference = seq.to_string();
        let message = json!({"type": "update", "content": content, "ref": reference});
        let answer = match socket.send(Message::text(message.to_string())).await {
            Ok(()) => await_answer(socket, &reference).await,
            Err(e) => Answer::Ended(format!("dropped ({e})")),
        };
        let mut ledger = self.ledger.lock().unwrap();
        match answer {
            Answer::Ack { stored, hash } => {
                let expected = content_hash(&content);
                if hash != expected {
                    let what = format!(
                        "{} #{seq}: ack hash {hash}, content hash {expected}",
                        self.doc
                    );
                    ledger.violations.push(what);
                }
                match stored.as_str() {
                    "cache" => ledger.tally.cache += 1,
                    "fallback" => ledger.tally.fallback += 1,
                    "duplicate" => ledger.tally.duplicate += 1,
                    other => {
                        let what = format!("{} #{seq}: ack stored as {other:?}", self.doc);
                        ledger.violations.push(what);
                    }
                }
                let doc = ledger.docs.get_mut(&self.doc).unwrap();
                if doc.acked.as_ref().is_none_or(|(acked, _)| *acked < seq) {
                    doc.acked = Some((seq, stored));
                }
                None
            }
            Answer::Error(error) => {
                ledger.tally.errors += 1;
                ledger.note(format!("{} #{seq}: {error}", self.doc));
                None
            }
            Answer::Ended(ending) => {
                ledger.tally.unanswered += 1;
                Some(ending)
            }
            Answer::Silent => {
                ledger.tally.unanswered += 1;
                ledger.note(format!(
                    "{} #{seq}: no answer within {ANSWER_WITHIN:?}",
                    self.doc
                ));
                Some("silent".into())
            }
        }
    }
}

/// Reads until the answer to `reference` (other frames are skipped).
async fn await_answer(socket: &mut Socket, reference: &str) -> Answer {
    let deadline = tokio::time::sleep(ANSWER_WITHIN);
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            _ = &mut deadline => return Answer::Silent,
            frame = socket.next() => frame,
        };
        if let Some(Ok(Message::Text(text))) = &frame {
            let message: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if message["ref"] != reference {
                continue;
            }
            return match message["type"].as_str() {
                Some("ack") => Answer::Ack {
                    stored: message["stored"].as_str().unwrap_or("").to_owned(),
                    hash: message["hash"].as_str().unwrap_or("").to_owned(),
                },
                _ => Answer::Error(message.to_string()),
            };
        }
        if let Some(ending) = ending(frame) {
            return Answer::Ended(ending);
        }
    }
}

/// How a connection ended, if this frame ends it.
fn ending(frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Option<String> {
    match frame {
        Some(Ok(Message::Close(Some(close)))) => Some(format!("close {}", u16::from(close.code))),
        Some(Ok(Message::Close(None))) => Some("close without code".into()),
        Some(Ok(_)) => None,
        Some(Err(_)) | None => Some("dropped".into()),
    }
}
