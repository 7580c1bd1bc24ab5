//! One update's hot path in a real room, for counting instructions (tools/bench-instructions):
//! one member of a 4-member room of the real `DocRoom` actor sends an update, which is applied,
//! relayed to the 3 other members and saved.
//!
//! As in benches/fanout.rs, the room is the real actor, started by the real `RoomRegistry`,
//! with the real cache supervisor and flusher behind it, over the in-memory stores (no Redis or
//! PostgreSQL); the members are small actors standing in for WebSocket sessions (the socket
//! reads and writes are not included). The threads are laid out as docroom lays them out with
//! one HTTP worker (the default `rooms.arbiters = 0`, storage on the worker): members, room,
//! supervisor and log reader on one thread, the flusher (idle) on its own. With the supervisor
//! on a thread of its own (as with two workers) the count moved by ~2 % from run to run, with
//! how often the threads parked and woke each other; this way it moves by ~0.3 %. (Callgrind
//! counts user space only: the kernel's side of a thread hop is not in the count either way.)
//!
//! Each update is awaited until every other member has it in its mailbox and the room says it
//! is stored, so every update costs one apply, one fan-out and one save, as in W1, whose rooms
//! see an update every quarter second: Yjs through `YjsFrame::stored` (what answers a
//! Hocuspocus SyncStatus; /yjs sessions pass none), JSON through the ack. The Yjs save budget is
//! off (each update saved as it comes, as at a typing pace), and the timers that run by the
//! clock (flusher, health check, log poll) are an hour apart, so the count does not depend on
//! how slowly the program runs (under valgrind, ~50 times slower).
//!
//! Usage: hot_path yjs|json COUNT [PREPARED]
//!
//! The updates are built before the room opens, PREPARED of them (default COUNT, at least
//! COUNT): runs with different COUNTs and the same PREPARED build the same updates, so the
//! client's work cancels out with the rest of the setup when their counts are subtracted.

#[path = "../benches/support/members.rs"]
mod members;

use members::{join, Countdown};

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use docroom_actors::core::{Core, CoreSettings};
use docroom_actors::doc::{DocId, Kind, Version};
use docroom_actors::fallback::Fallback;
use docroom_actors::flusher::FlusherSettings;
use docroom_actors::ledger::Ledger;
use docroom_actors::registry::GetRoom;
use docroom_actors::room::{DocRoom, MemberId, RoomLimits, Update, YjsFrame};
use docroom_actors::storage::memory::{MemoryCache, MemoryStore};
use docroom_actors::supervisor::{Stores, SupervisorSettings};
use tokio::sync::oneshot;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, Text, Transact};

/// The members besides the sender.
const RECEIVERS: usize = 3;

fn start_core(data_dir: &std::path::Path) -> Result<Core, String> {
    let hour = Duration::from_secs(3600);
    let stores = Stores {
        // The replica the core runs as: its own appends are then not handed back to its rooms
        // as another replica's (which would apply each update twice).
        cache: Arc::new(MemoryCache::default().for_replica("hot-path")),
        store: Arc::new(MemoryStore::default()),
        fallback: Fallback::open(data_dir).map_err(|e| e.to_string())?,
        ledger: Ledger::default(),
    };
    let supervisor = SupervisorSettings {
        failure_threshold: 3,
        open_for: Duration::from_secs(30),
        lock_poll: Duration::from_millis(25),
        lock_wait: Duration::from_secs(2),
        health_check: hour,
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(10),
        save_linger: Duration::ZERO,
        save_linger_alone: Duration::ZERO,
    };
    let flusher = FlusherSettings {
        base_period: hour,
        error_period: hour,
        max_period: hour,
        batch_size: 1000,
        parallel_batches: 4,
    };
    Ok(Core::start(
        stores,
        CoreSettings {
            supervisor,
            flusher,
            room_arbiters: 0,
            yjs_save_interval: Duration::ZERO,
            log_poll: hour,
            replica: "hot-path".into(),
            storage_on_worker: true,
            limits: RoomLimits::unlimited(),
            changes: None,
            history: None,
            history_interval: hour,
        },
    ))
}

/// The room of `kind`, the sender's id and the other members, joined.
async fn open_room(
    core: &Core,
    doc: &DocId,
    kind: Kind,
    countdown: &Arc<Countdown>,
) -> Result<(Addr<DocRoom>, MemberId), String> {
    let home = Some(Arbiter::current());
    let room = (core
        .registry
        .send(GetRoom {
            doc: doc.clone(),
            kind,
            home,
        })
        .await)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let sender = join(&room, kind, None).await?;
    for _ in 0..RECEIVERS {
        join(&room, kind, Some(countdown.clone())).await?;
    }
    Ok((room, sender))
}

/// What a typist's editor would send: one character appended, as a y-protocols update frame.
fn yjs_updates(n: usize) -> Vec<Bytes> {
    let typist = Doc::with_client_id(7);
    let text = typist.get_or_insert_text("content");
    (0..n)
        .map(|_| {
            let mut txn = typist.transact_mut();
            let len = text.len(&txn);
            text.insert(&mut txn, len, "x");
            let update = txn.encode_update_v1();
            Bytes::from(Message::Sync(SyncMessage::Update(update)).encode_v1())
        })
        .collect()
}

/// The load generator's JSON update content: a Tiptap document with 200 bytes of text.
fn json_updates(n: usize) -> Vec<Bytes> {
    let padding = "x".repeat(200);
    (0..n)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"type":"doc","n":{i},"content":[{{"type":"paragraph","content":[{{"type":"text","text":"{padding}"}}]}}]}}"#
            ))
        })
        .collect()
}

async fn run(core: &Core, kind: Kind, updates: &[Bytes]) -> Result<(), String> {
    let doc = DocId::parse(&format!("hot-path-{}", kind.as_str())).expect("valid id");
    let countdown = Arc::new(Countdown::default());
    let (room, from) = open_room(core, &doc, kind, &countdown).await?;
    for data in updates {
        countdown.expect(RECEIVERS);
        let stored = match kind {
            Kind::Yjs => {
                let (tx, rx) = oneshot::channel();
                let (data, stored) = (data.clone(), Some(tx));
                room.do_send(YjsFrame {
                    from,
                    data,
                    may_write: true,
                    stored,
                });
                rx.await.unwrap_or(false)
            }
            Kind::Json => {
                let version = Version::new(doc.clone(), Kind::Json, data.clone());
                let update = Update {
                    from: Some(from),
                    version,
                    by: None,
                };
                matches!(room.send(update).await, Ok(Ok(_)))
            }
        };
        if !stored {
            return Err("an update was not stored".into());
        }
        countdown.done().await;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: hot_path yjs|json COUNT [PREPARED]";
    let (kind, count, prepared) = match &args[..] {
        [k, n, rest @ ..] if rest.len() <= 1 => {
            let kind = match k.as_str() {
                "yjs" => Kind::Yjs,
                "json" => Kind::Json,
                _ => panic!("{usage}"),
            };
            let count: usize = n.parse().expect(usage);
            let prepared = rest.first().map_or(count, |p| p.parse().expect(usage));
            (kind, count, prepared.max(count))
        }
        _ => panic!("{usage}"),
    };
    let updates = match kind {
        Kind::Yjs => yjs_updates(prepared),
        Kind::Json => json_updates(prepared),
    };
    let data_dir = std::env::temp_dir().join(format!("docroom-hot-path-{}", std::process::id()));
    let sys = System::new();
    let result = sys.block_on(async {
        // The server's metrics recorder: every counter and histogram an update touches costs
        // what it costs in the server (with none installed, they cost nothing).
        docroom::telemetry::init_metrics(Duration::from_secs(3600));
        let core = start_core(&data_dir)?;
        core.storage_starter()();
        run(&core, kind, &updates[..count]).await
    });
    let _ = std::fs::remove_dir_all(&data_dir);
    match result {
        Ok(()) => eprintln!("hot_path {}: {count} updates", kind.as_str()),
        Err(why) => {
            eprintln!("hot_path {}: {why}", kind.as_str());
            std::process::exit(1);
        }
    }
}
