//! WebSocket clients for the JSON protocol (SPEC §4).
//!
//! `WsClient` reads its socket all the time in a background task, so it answers the server's
//! Pings like a live editor (tungstenite only sends the Pong while it is reading); everything it
//! receives waits in a queue for the test. `MuteClient` reads only while the test asks it to and
//! then goes silent, which is how a hung browser tab looks to the server.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::app::TestApp;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a client waits for an expected frame before the test fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// Something the server sent, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A text frame, parsed (a text frame that is not JSON arrives as `Value::String`).
    Json(Value),
    Binary(Vec<u8>),
    /// A Close frame and its code (`None` for a Close without a code).
    Closed(Option<u16>),
    /// The connection ended (error or end of stream) without, or after, a Close frame.
    Gone(String),
}

/// The server refused the upgrade.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: u16,
    pub body: String,
}

pub struct WsClient {
    /// The first message of the session (`{"type":"snapshot",...}`) when opened with `connect`.
    pub snapshot: Value,
    outgoing: mpsc::UnboundedSender<Message>,
    incoming: mpsc::UnboundedReceiver<Frame>,
    /// Frames read ahead while looking for a particular one (an ack, a pong), in order.
    queued: VecDeque<Frame>,
    task: JoinHandle<()>,
}

impl WsClient {
    /// Opens `/docs/{doc}/ws` and reads the snapshot.
    pub async fn connect(app: &TestApp, doc: &str) -> WsClient {
        let path = format!("/docs/{doc}/ws");
        let mut client = Self::open(app, &path, &[])
            .await
            .unwrap_or_else(|r| panic!("upgrade of {path} refused: {} {}", r.status, r.body));
        let snapshot = client.recv_json().await;
        assert_eq!(snapshot["type"], "snapshot", "first message on {path}");
        client.snapshot = snapshot;
        client
    }

    /// Opens any path (with query) and extra headers; reads nothing.
    pub async fn open(
        app: &TestApp,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, Rejection> {
        let mut request = app
            .ws_url(path)
            .into_client_request()
            .expect("websocket request");
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(http_name(name), value.parse().expect("header value"));
        }
        let socket = match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => socket,
            Err(WsError::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                return Err(Rejection {
                    status: response.status().as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            Err(e) => panic!("websocket connect to {path}: {e}"),
        };
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        Ok(WsClient {
            snapshot: Value::Null,
            outgoing,
            incoming,
            queued: VecDeque::new(),
            task: tokio::spawn(pump(socket, outgoing_rx, incoming_tx)),
        })
    }

    /// Sends an update and returns its ack; other frames that arrive meanwhile stay queued.
    /// Panics if the reply is an error.
    pub async fn update(&mut self, content: Value, reference: &str) -> Value {
        let reply = self.try_update(content, reference).await;
        assert_eq!(reply["type"], "ack", "reply to update {reference}: {reply}");
        reply
    }

    /// Sends an update and returns the reply carrying its `ref`, an ack or an error.
    pub async fn try_update(&mut self, content: Value, reference: &str) -> Value {
        self.send_json(&json!({"type": "update", "content": content, "ref": reference}));
        self.recv_where(&format!("the reply to update {reference}"), |m| {
            matches!(m["type"].as_str(), Some("ack" | "error")) && m["ref"] == reference
        })
        .await
    }

    /// Sends `{"type":"ping"}` and waits for the pong (frames before it stay queued).
    pub async fn ping(&mut self) {
        self.send_json(&json!({"type": "ping"}));
        self.recv_where("pong", |m| m["type"] == "pong").await;
    }

    pub fn send_json(&self, message: &Value) {
        self.send_raw_text(&message.to_string());
    }

    pub fn send_raw_text(&self, text: &str) {
        self.send(Message::text(text.to_owned()));
    }

    pub fn send_binary(&self, bytes: Vec<u8>) {
        self.send(Message::binary(bytes));
    }

    pub fn send(&self, message: Message) {
        // A closed connection shows up as `Frame::Gone` on the receiving side.
        let _ = self.outgoing.send(message);
    }

    /// The next JSON message, first from the queue; panics on anything else or after 10 s.
    pub async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Frame::Json(message) => message,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next frame, first from the queue; panics after 10 s.
    pub async fn recv(&mut self) -> Frame {
        self.recv_within(RECV_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("nothing received within {RECV_TIMEOUT:?}"))
    }

    /// The next frame, or `None` if nothing arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        if let Some(frame) = self.queued.pop_front() {
            return Some(frame);
        }
        match tokio::time::timeout(wait, self.incoming.recv()).await {
            Ok(Some(frame)) => Some(frame),
            Ok(None) => Some(Frame::Gone("client task ended".into())),
            Err(_) => None,
        }
    }

    /// The first JSON message matching `wanted`; earlier frames stay queued in order.
    pub async fn recv_where(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .queued
            .iter()
            .position(|f| matches!(f, Frame::Json(m) if wanted(m)))
        {
            let Some(Frame::Json(message)) = self.queued.remove(i) else {
                unreachable!()
            };
            return message;
        }
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.incoming.recv()).await;
            match next {
                Ok(Some(Frame::Json(message))) if wanted(&message) => return message,
                Ok(Some(Frame::Gone(why))) => panic!("connection gone waiting for {what}: {why}"),
                Ok(Some(frame)) => self.queued.push_back(frame),
                Ok(None) => panic!("client task ended waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {RECV_TIMEOUT:?}; queued meanwhile: {:?}",
                    self.queued
                ),
            }
        }
    }

    /// Waits for the server to close the connection with `code` (frames before it are skipped).
    pub async fn expect_close(&mut self, code: u16) {
        loop {
            match self.recv().await {
                Frame::Closed(got) => {
                    assert_eq!(got, Some(code), "close code");
                    return;
                }
                Frame::Gone(why) => {
                    panic!("connection ended without a Close frame ({code}): {why}")
                }
                Frame::Json(_) | Frame::Binary(_) => {}
            }
        }
    }

    /// A clean close (1000), waiting up to 5 s for the server's reply.
    pub async fn close(mut self) {
        self.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })));
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(frame) = self.incoming.recv().await {
                if matches!(frame, Frame::Gone(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

impl Drop for WsClient {
    /// Dropping a client without `close` drops the TCP connection: an abrupt disconnect.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Owns the socket: writes what the test sends, reads (and so answers Pings) all the time.
async fn pump(
    mut socket: Socket,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    incoming: mpsc::UnboundedSender<Frame>,
) {
    loop {
        tokio::select! {
            message = outgoing.recv() => {
                let Some(message) = message else { return };
                if let Err(e) = socket.send(message).await {
                    let _ = incoming.send(Frame::Gone(format!("send failed: {e}")));
                    return;
                }
            }
            frame = socket.next() => {
                let frame = match frame {
                    Some(Ok(Message::Text(text))) => Frame::Json(
                        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.to_string())),
                    ),
                    Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes.to_vec()),
                    Some(Ok(Message::Close(close))) => Frame::Closed(close.map(|c| c.code.into())),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Frame::Gone(e.to_string()),
                    None => Frame::Gone("end of stream".into()),
                };
                let gone = matches!(frame, Frame::Gone(_));
                let _ = incoming.send(frame);
                if gone {
                    return;
                }
            }
        }
    }
}

fn http_name(name: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    name.parse().expect("header name")
}

/// A client that reads only inside its own calls: after the last one returns, it never reads
/// again, so the server's Pings go unanswered while the TCP connection stays open.
pub struct MuteClient {
    socket: Socket,
    pub snapshot: Value,
}

impl MuteClient {
    pub async fn connect(app: &TestApp, doc: &str) -> MuteClient {
        let url = app.ws_url(&format!("/docs/{doc}/ws"));
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connect");
        let snapshot = read_json(&mut socket, |m| m["type"] == "snapshot").await;
        MuteClient { socket, snapshot }
    }

    /// Sends an update and reads until its ack.
    pub async fn update(&mut self, content: Value, reference: &str) -> Value {
        let message = json!({"type": "update", "content": content, "ref": reference});
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send the update");
        read_json(&mut self.socket, |m| m["ref"] == reference).await
    }
}

async fn read_json(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    let read = async {
        while let Some(frame) = socket.next().await {
            if let Message::Text(text) = frame.expect("read") {
                let message: Value = serde_json::from_str(&text).expect("a JSON message");
                if wanted(&message) {
                    return message;
                }
            }
        }
        panic!("the connection ended");
    };
    tokio::time::timeout(RECV_TIMEOUT, read)
        .await
        .expect("the awaited message")
}
