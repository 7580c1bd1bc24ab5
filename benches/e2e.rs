//! End to end over a real WebSocket: a real docroom (`Application::build`, as `main` runs it)
//! in this process on its own actix system thread, against the local Redis and PostgreSQL.
//!
//! - `e2e_update_ack/json`: one client sends an update and waits for its ack, which the server
//!   sends only once the content is in Redis (so each iteration includes a Redis round trip).
//! - `e2e_update_broadcast/{json,yjs}`: one client sends, the time is taken when a second
//!   client of the same document receives the broadcast.
//!
//! Skipped, with a message, when Redis or PostgreSQL does not answer.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use docroom::settings::Settings;
use docroom::startup::Application;
use futures_util::{SinkExt, StreamExt};
use support::{Services, KEY_PREFIX};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, Text, Transact};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The service running on its own thread until dropped.
struct Service {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    data_dir: std::path::PathBuf,
}

impl Service {
    fn start(svc: &Services) -> Result<Service, String> {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut s = Settings::load(&config).map_err(|e| e.to_string())?;
        let data_dir =
            std::env::temp_dir().join(format!("docroom-bench-e2e-{}", std::process::id()));
        s.server.listen = "127.0.0.1:0".into();
        s.cache.url = svc.redis_url.clone();
        s.cache.key_prefix = KEY_PREFIX.into();
        s.database.url = svc.database_url.clone();
        s.journal.data_dir = data_dir.clone();
        // Benches send as fast as acks come back: lift the per-connection message budget.
        s.limits.messages_per_sec = 1e9;
        s.limits.message_burst = 1e9;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                match Application::build(s).await {
                    Ok(app) => {
                        let _ = addr_tx.send(Ok(app.addr()));
                        let _ = app
                            .run_until_stopped(async {
                                let _ = stopped.await;
                            })
                            .await;
                    }
                    Err(e) => {
                        let _ = addr_tx.send(Err(format!("{e:#}")));
                    }
                }
            })
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the service did not start within 30 s".to_string())??;
        Ok(Service {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            data_dir,
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

async fn connect(url: String) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connect");
    // The first frame: a JSON snapshot, or the Yjs greeting.
    ws.next().await.expect("greeting").expect("greeting");
    ws
}

/// Reads until a text frame of `kind` arrives.
async fn until_text(ws: &mut Ws, kind: &str) {
    let needle = format!(r#""type":"{kind}""#);
    loop {
        match ws.next().await.expect("open").expect("frame") {
            Message::Text(t) if t.as_str().contains(&needle) => return,
            Message::Text(t) if t.as_str().contains(r#""type":"error""#) => {
                panic!("server error: {}", t.as_str())
            }
            _ => {}
        }
    }
}

/// Reads until a binary sync Update frame (0, 2) arrives.
async fn until_yjs_update(ws: &mut Ws) {
    loop {
        if let Message::Binary(b) = ws.next().await.expect("open").expect("frame") {
            if b.len() > 2 && b[0] == 0 && b[1] == 2 {
                return;
            }
        }
    }
}

fn json_update(n: u64) -> Message {
    Message::text(format!(
        r#"{{"type":"update","ref":"{n}","content":{{"type":"doc","content":[{{"type":"paragraph","content":[{{"type":"text","text":"edit number {n} of the benchmark document"}}]}}]}}}}"#
    ))
}

fn e2e(c: &mut Criterion) {
    let svc = match Services::find() {
        Ok(s) => s,
        Err(why) => return support::skip("e2e", &why),
    };
    let service = match Service::start(&svc) {
        Ok(s) => s,
        Err(why) => return support::skip("e2e", &format!("docroom did not start: {why}")),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let base = format!("ws://{}", service.addr);
    let run = std::process::id();
    let mut n = 0u64;

    let mut group = c.benchmark_group("e2e_update_ack");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let mut a = rt.block_on(connect(format!("{base}/docs/bench-e2e-ack-{run}/ws")));
    group.bench_function("json", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    n += 1;
                    a.send(json_update(n)).await.expect("send");
                    until_text(&mut a, "ack").await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("e2e_update_broadcast");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let doc = format!("{base}/docs/bench-e2e-bcast-{run}/ws");
    let (mut a, mut b2) = rt.block_on(async { (connect(doc.clone()).await, connect(doc).await) });
    group.bench_function("json", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let start = Instant::now();
                    a.send(json_update(n)).await.expect("send");
                    until_text(&mut b2, "update").await;
                    timed += start.elapsed();
                    until_text(&mut a, "ack").await;
                }
                timed
            })
        })
    });
    let doc = format!("{base}/yjs/bench-e2e-yjs-{run}");
    let (mut a, mut b2) = rt.block_on(async { (connect(doc.clone()).await, connect(doc).await) });
    let typist = Doc::with_client_id(11);
    let text = typist.get_or_insert_text("content");
    group.bench_function("yjs", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let update = {
                        let mut txn = typist.transact_mut();
                        let len = text.len(&txn);
                        text.insert(&mut txn, len, "x");
                        txn.encode_update_v1()
                    };
                    let frame = YMessage::Sync(SyncMessage::Update(update)).encode_v1();
                    a.send(Message::binary(frame)).await.expect("send");
                    until_yjs_update(&mut b2).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    drop(service);
    svc.remove_bench_keys();
}

criterion_group!(benches, e2e);
criterion_main!(benches);
