//! Room fan-out in-process: one member's update reaching 1 / 10 / 100 / 1000 other members of a
//! real `DocRoom`, for a Yjs room (apply the update with yrs, relay the frame) and a JSON room
//! (build the update frame once, relay it; the save to Redis runs alongside, coalesced).
//!
//! The room is the real actor, started by the real `RoomRegistry` on its own arbiter (thread),
//! with the real cache supervisor and flusher behind it, over the in-memory stores: no Redis or
//! PostgreSQL is needed. The members are small
//! actors on the main thread standing in for WebSocket sessions: one iteration ends when every
//! member has received the frame in its mailbox (the socket write is not included).
//! Yjs state saves are pushed out of the way (save interval of an hour) so the numbers are the
//! fan-out alone.

mod support;

use support::members::{join, Countdown};

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docroom_actors::core::{Core, CoreSettings};
use docroom_actors::doc::{DocId, Kind, Version};
use docroom_actors::fallback::Fallback;
use docroom_actors::flusher::FlusherSettings;
use docroom_actors::ledger::Ledger;
use docroom_actors::registry::GetRoom;
use docroom_actors::room::{DocRoom, MemberId, RoomLimits, Update, YjsFrame};
use docroom_actors::storage::memory::{MemoryCache, MemoryStore};
use docroom_actors::supervisor::{Stores, SupervisorSettings};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, Text, Transact};

/// The real actors over in-memory stores: the fan-out is measured without Redis or PostgreSQL
/// in the way (a save to the in-memory cache still runs alongside, coalesced, as it would).
fn start_core(data_dir: &std::path::Path) -> Result<Core, String> {
    let fallback = Fallback::open(data_dir).map_err(|e| e.to_string())?;
    let hour = Duration::from_secs(3600);
    let stores = Stores {
        // The replica the core runs as: its own appends are then not handed back to its rooms
        // as another replica's (which would apply each update twice).
        cache: Arc::new(MemoryCache::default().for_replica("bench")),
        store: Arc::new(MemoryStore::default()),
        fallback,
        ledger: Ledger::default(),
    };
    Ok(Core::start(
        stores,
        CoreSettings {
            supervisor: SupervisorSettings {
                failure_threshold: 3,
                open_for: Duration::from_secs(30),
                lock_poll: Duration::from_millis(25),
                lock_wait: Duration::from_secs(2),
                health_check: Duration::from_secs(1),
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_secs(10),
                save_linger: Duration::ZERO,
                save_linger_alone: Duration::ZERO,
            },
            flusher: FlusherSettings {
                base_period: hour,
                error_period: hour,
                max_period: hour,
                batch_size: 1000,
                parallel_batches: 4,
            },
            room_arbiters: 1,
            yjs_save_interval: hour,
            log_poll: Duration::from_secs(5),
            replica: "bench".into(),
            storage_on_worker: false,
            limits: RoomLimits::unlimited(),
            changes: None,
            history: None,
            history_interval: std::time::Duration::from_secs(60),
        },
    ))
}

/// A room of `kind` with a sender and `receivers` other members.
async fn room_with_members(
    stores: &Core,
    kind: Kind,
    receivers: usize,
    countdown: &Arc<Countdown>,
) -> Result<(Addr<DocRoom>, MemberId, DocId), String> {
    let doc = DocId::parse(&format!(
        "bench-fanout-{}-{receivers}-{}",
        kind.as_str(),
        std::process::id()
    ))
    .expect("valid id");
    let room = stores
        .registry
        .send(GetRoom {
            doc: doc.clone(),
            kind,
            home: None,
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let sender = join(&room, kind, None).await?;
    for _ in 0..receivers {
        join(&room, kind, Some(countdown.clone())).await?;
    }
    Ok((room, sender, doc))
}

fn fanout(c: &mut Criterion) {
    let data_dir =
        std::env::temp_dir().join(format!("docroom-bench-fanout-{}", std::process::id()));
    let sys = System::new();
    let stores = match sys.block_on(async { start_core(&data_dir) }) {
        Ok(s) => s,
        Err(why) => {
            support::skip("fanout", &format!("stores unusable: {why}"));
            return;
        }
    };

    let mut group = c.benchmark_group("room_fanout");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for kind in [Kind::Yjs, Kind::Json] {
        for receivers in [1usize, 10, 100, 1000] {
            let countdown = Arc::new(Countdown::default());
            let (room, sender, doc) =
                match sys.block_on(room_with_members(&stores, kind, receivers, &countdown)) {
                    Ok(r) => r,
                    Err(why) => {
                        support::skip("fanout", &format!("room did not open: {why}"));
                        return;
                    }
                };
            let typist = Doc::with_client_id(7);
            let text = typist.get_or_insert_text("content");
            let mut n = 0u64;
            group.throughput(Throughput::Elements(receivers as u64));
            group.bench_function(BenchmarkId::new(kind.as_str(), receivers), |b| {
                b.iter_custom(|iters| {
                    sys.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            n += 1;
                            countdown.expect(receivers);
                            match kind {
                                Kind::Yjs => {
                                    let update = {
                                        let mut txn = typist.transact_mut();
                                        let len = text.len(&txn);
                                        text.insert(&mut txn, len, "x");
                                        txn.encode_update_v1()
                                    };
                                    let frame =
                                        Message::Sync(SyncMessage::Update(update)).encode_v1();
                                    room.do_send(YjsFrame {
                                        from: sender,
                                        data: Bytes::from(frame),
                                        may_write: true,
                                        stored: None,
                                    });
                                }
                                Kind::Json => {
                                    let content = format!(r#"{{"n":{n},"text":"fan-out"}}"#);
                                    room.do_send(Update {
                                        from: Some(sender),
                                        version: Version::new(
                                            doc.clone(),
                                            Kind::Json,
                                            Bytes::from(content),
                                        ),
                                        by: None,
                                    });
                                }
                            }
                            countdown.done().await;
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
    drop(stores);
    let _ = std::fs::remove_dir_all(&data_dir);
}

criterion_group!(benches, fanout);
criterion_main!(benches);
