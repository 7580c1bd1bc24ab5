//! Seeding: before the run, the first client of each document fills it with text through the
//! protocol under test, in inserts of `--seed-insert-bytes` at `--seed-rate` per second (what a
//! long editing session leaves behind, one block per insert), then waits until the server has
//! applied every insert, so the measured window starts on a document of the intended size.
//!
//! The wait is a barrier the protocols already have: Hocuspocus acknowledges each applied
//! update (`SyncStatus`), so the seeder counts them; a y-websocket server acknowledges nothing
//! but answers a SyncStep1 with a SyncStep2 after everything sent before it on the connection.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{interval, timeout_at, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::client::Ws;
use crate::options::Plan;
use crate::protocol::{Codec, Incoming, Protocol};

/// How long seeding one document may take beyond its inserts' schedule.
const SLACK: Duration = Duration::from_secs(60);

/// Seeds the connection's document; returns the socket ready for the run.
pub async fn seed(mut ws: Ws, codec: &mut Codec, plan: &Plan) -> Result<Ws, String> {
    let inserts = plan.seed_bytes.div_ceil(plan.seed_insert_bytes);
    let period = Duration::from_secs_f64(1.0 / plan.seed_rate);
    let deadline = Instant::now() + period * inserts as u32 + SLACK;
    let mut ticks = interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let counts_acks = codec.protocol() == Protocol::Hocuspocus;
    let (mut sent, mut acked, mut barrier_sent, mut synced) = (0, 0, false, false);
    let mut left = plan.seed_bytes;
    let mut incoming = Incoming::default();
    loop {
        let done_sending = sent == inserts;
        let applied = if counts_acks {
            acked >= inserts
        } else {
            synced
        };
        if done_sending && applied {
            return Ok(ws);
        }
        if done_sending && !counts_acks && !barrier_sent {
            barrier_sent = true;
            send(&mut ws, codec.sync_step1()).await?;
        }
        tokio::select! {
            _ = ticks.tick(), if !done_sending => {
                let n = left.min(plan.seed_insert_bytes);
                left -= n;
                sent += 1;
                send(&mut ws, codec.seed_update(n)).await?;
            }
            frame = timeout_at(deadline, ws.next()) => {
                let msg = match frame {
                    Err(_) => return Err(format!("not done after {sent} of {inserts} inserts ({acked} acked)")),
                    Ok(None) => return Err("closed".into()),
                    Ok(Some(Err(e))) => return Err(e.to_string()),
                    Ok(Some(Ok(m))) => m,
                };
                if let Message::Close(c) = &msg {
                    return Err(format!("server closed: {c:?}"));
                }
                codec.on_frame(&msg, &mut incoming);
                if let Some(e) = incoming.error.take() {
                    return Err(e);
                }
                acked += incoming.acks.len();
                synced |= barrier_sent && incoming.ready;
                for r in incoming.replies.drain(..) {
                    ws.send(r).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
}

async fn send(ws: &mut Ws, msg: Option<Message>) -> Result<(), String> {
    let msg = msg.ok_or("seeding needs the yjs or hocuspocus protocol")?;
    ws.send(msg).await.map_err(|e| e.to_string())
}
