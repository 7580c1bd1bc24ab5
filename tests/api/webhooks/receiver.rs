//! A webhook receiver for the tests: a real HTTP/1.1 server on its own thread that records
//! every request and answers each with the next status of a script (200 once the script is
//! used up).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::harness::{ensure, eventually};

/// The secret the tests sign with.
pub const SECRET: &str = "webhook-test-secret";

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub event: String,
    pub delivery: String,
    pub signature: String,
    pub body: String,
    pub json: Value,
    /// What the receiver answered.
    pub status: u16,
}

impl Hit {
    /// Whether the signature header is the HMAC-SHA256 of the raw body under [`SECRET`]
    /// (checked with `ring`, not the service's `hmac`).
    pub fn signed(&self) -> bool {
        let Some(hex) = self.signature.strip_prefix("sha256=") else {
            return false;
        };
        let Some(tag) = decode_hex(hex) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        ring::hmac::verify(&key, self.body.as_bytes(), &tag).is_ok()
    }

    pub fn doc(&self) -> &str {
        self.json["doc"].as_str().unwrap_or_default()
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Default)]
struct Shared {
    hits: Vec<Hit>,
    script: VecDeque<u16>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl Receiver {
    /// Starts a receiver answering 200 to everything.
    pub fn start() -> Receiver {
        Self::answering(&[])
    }

    /// Starts a receiver whose first answers are `script`, then 200.
    pub fn answering(script: &[u16]) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            hits: Vec::new(),
            script: script.iter().copied().collect(),
        }));
        let serving = shared.clone();
        std::thread::Builder::new()
            .name(format!("webhook receiver {addr}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    while let Ok((socket, _)) = listener.accept().await {
                        tokio::spawn(serve(socket, serving.clone()));
                    }
                });
            })
            .expect("spawn the receiver");
        Receiver { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.lock().unwrap().hits.clone()
    }

    /// Every request for `doc`, in the order they came.
    pub fn hits_for(&self, doc: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.doc() == doc).collect()
    }

    /// Waits (at most `within`) for an accepted `event` of `doc`; answers the first.
    pub async fn accepted(&self, doc: &str, event: &str, within: Duration) -> Hit {
        self.accepted_after(doc, event, 0, within).await
    }

    /// [`accepted`](Self::accepted), among the requests for `doc` after its first `before`.
    pub async fn accepted_after(
        &self,
        doc: &str,
        event: &str,
        before: usize,
        within: Duration,
    ) -> Hit {
        eventually(within, &format!("{event} of {doc}"), async || {
            let hit = self
                .hits_for(doc)
                .into_iter()
                .skip(before)
                .find(|h| h.event == event && h.status == 200);
            ensure!(hit.is_some(), "got {:?}", self.events_of(doc));
            Ok(hit.unwrap())
        })
        .await
    }

    /// The events of `doc` answered 200, as `(event, delivery)` in the order they came.
    pub fn events_of(&self, doc: &str) -> Vec<(String, String)> {
        self.hits_for(doc)
            .into_iter()
            .filter(|h| h.status == 200)
            .map(|h| (h.event, h.delivery))
            .collect()
    }
}

/// Reads one request, records it, answers and closes.
async fn serve(socket: tokio::net::TcpStream, shared: Arc<Mutex<Shared>>) {
    let mut reader = BufReader::new(socket);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        headers.push(line.trim_end().to_owned());
    }
    let header = |name: &str| {
        headers
            .iter()
            .filter_map(|h| h.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let status = {
        let mut shared = shared.lock().unwrap();
        let status = shared.script.pop_front().unwrap_or(200);
        shared.hits.push(Hit {
            event: header("x-docroom-event"),
            delivery: header("x-docroom-delivery"),
            signature: header("x-docroom-signature"),
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            body,
            status,
        });
        status
    };
    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let mut socket = reader.into_inner();
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.shutdown().await;
}
