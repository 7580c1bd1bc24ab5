//! One connection: connect, handshake until ready, then (once the run's [`Schedule`] is known)
//! send updates at the set rate or closed loop, record acks and broadcasts, and close at the end.
//!
//! A single task owns the socket and does everything in one `select!` loop, so the socket is
//! read continuously: the client library answers the server's WebSocket pings while reading,
//! which is what keeps idle connections (W4) alive.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{interval_at, sleep_until, timeout, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::marker::{now_us, Marker};
use crate::options::Plan;
use crate::protocol::{Codec, Incoming, Protocol};
use crate::seed;
use crate::stats::{bump, Stats, Window};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A join storm's joiner: its sync waits behind the others' (150 joiners of a 20 MiB
/// document take tens of seconds on two cores).
const STORM_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest frame and message a connection takes: a 64 MiB state and the message around it.
const MAX_MESSAGE: usize = (64 << 20) + (1 << 20);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// When the run's phases begin, known once every connection is up.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Writers start sending (the warmup begins).
    pub start: Instant,
    /// Updates sent inside it are measured.
    pub window: Window,
    /// Writers stop sending.
    pub stop_sending: Instant,
    /// Connections close (the grace period for in-flight acks and broadcasts is over).
    pub close_at: Instant,
}

pub struct Conn {
    pub id: u64,
    pub doc: String,
    pub writer: bool,
    /// Seeds the document before the run (`Plan::seed_bytes`).
    pub seeder: bool,
    /// A joiner of a join storm begun at this time (µs, marker clock): its sync is recorded.
    pub storm_start_us: Option<u64>,
    /// The other members of the room: how many broadcast receipts each update should cause.
    pub peers: u64,
    pub server: SocketAddr,
    /// The URL template of `server` (`{doc}` not yet replaced).
    pub url: String,
    pub bind: Option<IpAddr>,
}

/// Everything connections share.
pub struct Shared {
    pub plan: Plan,
    pub stats: Stats,
    pub connect_permits: Semaphore,
}

/// Runs one connection to its end; reports on `ready` whether it came up.
pub async fn run(
    conn: Conn,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<bool>,
    mut schedule: watch::Receiver<Option<Schedule>>,
) {
    let plan = &shared.plan;
    let stats = &shared.stats;
    let client_id = client_id_base() + conn.id;
    let mut codec = Codec::new(
        plan.protocol,
        conn.doc.clone(),
        client_id,
        plan.payload_bytes,
    );

    let permit = shared
        .connect_permits
        .acquire()
        .await
        .expect("never closed");
    let limit = match conn.storm_start_us {
        Some(_) => STORM_TIMEOUT,
        None => CONNECT_TIMEOUT,
    };
    let opened = timeout(limit, open(&conn, &mut codec)).await;
    drop(permit);
    let opened = match opened {
        Ok(Ok(ws)) if conn.seeder => seed::seed(ws, &mut codec, plan)
            .await
            .map_err(|e| format!("seeding: {e}")),
        Ok(Ok(ws)) => Ok(ws),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out".to_string()),
    };
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(why) => {
            bump(&stats.counters.connect_failed);
            stats.note(format!("connect {}: {why}", conn.doc));
            let _ = ready.send(false);
            return;
        }
    };
    if let Some(start) = conn.storm_start_us {
        stats.record_sync(now_us().saturating_sub(start));
    }
    bump(&stats.counters.connected);
    let _ = ready.send(true);

    let mut state = Sending {
        seq: 0,
        by_ref: HashMap::new(),
        in_order: VecDeque::new(),
        outstanding: false,
        limit: plan.updates_per_writer,
    };
    let mut incoming = Incoming::default();
    let mut ticks: Option<Interval> = None;
    let mut keepalive = plan.keepalive.map(|p| {
        let mut i = interval_at(Instant::now() + jitter(conn.id, p), p);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    let mut sched: Option<Schedule> = *schedule.borrow_and_update();
    let mut started = false;

    let dropped = loop {
        if let (Some(s), false) = (sched, started) {
            started = true;
            if conn.writer {
                match plan.rate {
                    Some(rate) => {
                        let period = Duration::from_secs_f64(1.0 / rate);
                        let mut i = interval_at(s.start + jitter(conn.id, period), period);
                        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        ticks = Some(i);
                    }
                    None => {
                        tokio::time::sleep_until(s.start).await;
                        if let Err(e) = state.send(&mut ws, &mut codec, &conn, stats, &s).await {
                            stats.note(format!("send: {e}"));
                            break true;
                        }
                    }
                }
            }
        }
        tokio::select! {
            frame = ws.next() => {
                let msg = match frame {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        stats.note(format!("{}: {e}", conn.doc));
                        break true;
                    }
                    None => break true,
                };
                if let Message::Close(c) = &msg {
                    stats.note(format!("{}: server closed: {c:?}", conn.doc));
                    break true;
                }
                codec.on_frame(&msg, &mut incoming);
                let refused = match incoming.error.take() {
                    Some(e) => {
                        stats.error(format!("{}: {e}", conn.doc));
                        true
                    }
                    None => false,
                };
                let now = now_us();
                for m in &incoming.markers {
                    bump(&stats.counters.broadcasts_total);
                    if m.conn != conn.id && sched.is_some_and(|s| s.window.contains(m.sent_us)) {
                        let across = plan.server_of(m.conn) != plan.server_of(conn.id);
                        stats.record_broadcast(conn.id, now.saturating_sub(m.sent_us), across);
                    }
                }
                let mut acked = false;
                for a in &incoming.acks {
                    let sent = match a {
                        Some(seq) => state.by_ref.remove(seq),
                        None => state.in_order.pop_front(),
                    };
                    bump(&stats.counters.acks_total);
                    acked = true;
                    if let Some(t) = sent.filter(|t| sched.is_some_and(|s| s.window.contains(*t))) {
                        stats.record_ack(conn.id, now.saturating_sub(t));
                    }
                }
                for r in incoming.replies.drain(..) {
                    if ws.send(r).await.is_err() {
                        break;
                    }
                }
                if refused && plan.rate.is_none() && conn.writer && state.outstanding {
                    // Closed loop: an update the server refused will never be acked; give up on
                    // it and go on after a pause rather than stall (the error is counted).
                    state.by_ref.clear();
                    state.in_order.clear();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    acked = true;
                }
                if acked && plan.rate.is_none() && conn.writer {
                    state.outstanding = !state.by_ref.is_empty() || !state.in_order.is_empty();
                    if let Some(s) = sched.filter(|s| Instant::now() < s.stop_sending) {
                        if !state.outstanding {
                            if let Err(e) = state.send(&mut ws, &mut codec, &conn, stats, &s).await {
                                stats.note(format!("send: {e}"));
                                break true;
                            }
                        }
                    }
                }
            }
            _ = tick(&mut ticks) => {
                let s = sched.expect("ticks start with the schedule");
                if Instant::now() >= s.stop_sending {
                    ticks = None;
                } else if let Err(e) = state.send(&mut ws, &mut codec, &conn, stats, &s).await {
                    stats.note(format!("send: {e}"));
                    break true;
                }
            }
            _ = tick(&mut keepalive) => {
                if let Some(k) = codec.keepalive() {
                    if ws.send(k).await.is_err() {
                        break true;
                    }
                }
            }
            changed = schedule.changed(), if sched.is_none() => {
                if changed.is_err() {
                    break false; // the run was abandoned
                }
                sched = *schedule.borrow_and_update();
            }
            _ = sleep_until(sched.map(|s| s.close_at).unwrap_or_else(far_future)), if sched.is_some() => {
                break false;
            }
        }
    };
    if dropped {
        bump(&stats.counters.dropped);
    } else {
        let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
    }
}

/// A writer's bookkeeping of updates awaiting their ack.
struct Sending {
    seq: u64,
    /// JSON acks name their update (`ref`): seq → sent at.
    by_ref: HashMap<u64, u64>,
    /// Hocuspocus acks come in order.
    in_order: VecDeque<u64>,
    /// Closed loop: an update is awaiting its ack.
    outstanding: bool,
    /// Updates this writer may send in all (0: no limit).
    limit: u64,
}

impl Sending {
    async fn send(
        &mut self,
        ws: &mut Ws,
        codec: &mut Codec,
        conn: &Conn,
        stats: &Stats,
        s: &Schedule,
    ) -> Result<(), String> {
        if self.limit > 0 && self.seq >= self.limit {
            return Ok(());
        }
        self.seq += 1;
        let sent_us = now_us();
        let marker = Marker {
            conn: conn.id,
            seq: self.seq,
            sent_us,
        };
        let msg = codec.update(self.seq, &marker);
        match codec.protocol() {
            Protocol::Json => {
                self.by_ref.insert(self.seq, sent_us);
            }
            Protocol::Hocuspocus => self.in_order.push_back(sent_us),
            Protocol::Yjs => {}
        }
        self.outstanding = true;
        ws.send(msg).await.map_err(|e| e.to_string())?;
        let c = &stats.counters;
        bump(&c.sent_total);
        if s.window.contains(sent_us) {
            bump(&c.sent);
            c.broadcasts_expected
                .fetch_add(conn.peers, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

/// TCP connect (from the chosen source address), WebSocket handshake, protocol handshake.
async fn open(conn: &Conn, codec: &mut Codec) -> Result<Ws, String> {
    let tcp = match conn.bind {
        None => TcpStream::connect(conn.server).await,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|e| e.to_string())?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("bind {ip}: {e}"))?;
            socket.connect(conn.server).await
        }
    }
    .map_err(|e| format!("tcp: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    // Small buffers: W4 holds 10,000 of these in one process. A message may be a whole large
    // document's sync step 2 (W6, W8): docroom's default state limit is 64 MiB.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let url = conn.url.replace("{doc}", &conn.doc);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        url.as_str(),
        MaybeTlsStream::Plain(tcp),
        Some(config),
    )
    .await
    .map_err(|e| format!("websocket: {e}"))?;
    for m in codec.open() {
        ws.send(m).await.map_err(|e| e.to_string())?;
    }
    let mut incoming = Incoming::default();
    loop {
        let msg = ws
            .next()
            .await
            .ok_or("closed during handshake")?
            .map_err(|e| e.to_string())?;
        codec.on_frame(&msg, &mut incoming);
        if let Some(e) = incoming.error.take() {
            return Err(e);
        }
        for r in incoming.replies.drain(..) {
            ws.send(r).await.map_err(|e| e.to_string())?;
        }
        if incoming.ready {
            return Ok(ws);
        }
    }
}

async fn tick(i: &mut Option<Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Spreads periodic work of many connections over the period instead of all at once.
fn jitter(id: u64, period: Duration) -> Duration {
    // Fibonacci hashing: well spread for consecutive ids.
    let frac = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    period.mul_f64(frac)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// Yjs client ids must be unique per document across runs that reuse it, and below 2^53 for
/// JavaScript peers.
fn client_id_base() -> u64 {
    use std::sync::OnceLock;
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        (nanos % (1 << 40)) << 10
    })
}
