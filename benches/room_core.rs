//! A room's hot path without actors: one update from a member of a 4-member room through the
//! room's core (`docroom_actors::room::core::RoomCore`) — decoded and checked, applied, its frame
//! built once for the three others and their backlogs charged, its save queued and its result
//! fed back — with every effect handed out as the actor would take it. What `fanout` measures
//! minus the mailboxes, the threads and the stores: where the room's own microseconds go.
//!
//! Yjs: keystroke-sized updates typed by one client (made outside the measurement), a save
//! interval of zero so every update is saved at once (the budget never runs dry). JSON: two
//! small documents in turn, each a new version to stamp, relay and save.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use docroom_actors::clock::Clock;
use docroom_actors::doc::{DocId, Kind, Version};
use docroom_actors::refusal_log::RefusalLog;
use docroom_actors::room::core::{CoreConfig, Joining, JsonUpdate, RoomCore, WaiterId};
use docroom_actors::room::{MemberId, RoomLimits};
use docroom_actors::supervisor::{SaveAnswer, Stored};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, Text, TextRef, Transact};

const MEMBERS: usize = 4;

/// A loaded room of `kind` with [`MEMBERS`] members.
fn room(kind: Kind) -> (RoomCore, Vec<MemberId>) {
    let now = Instant::now();
    let mut core = RoomCore::new(CoreConfig {
        doc: DocId::parse("bench").expect("a valid id"),
        kind,
        clock: Clock::new("bench"),
        yjs_save_interval: Duration::ZERO,
        limits: RoomLimits::unlimited(),
        refusals: RefusalLog::default(),
        changes: false,
        history: false,
        history_interval: Duration::from_secs(60),
    });
    core.loaded(None, now).expect("an empty room loads");
    let members = (0..MEMBERS)
        .map(|_| {
            let joining = Joining::new(kind);
            let member = joining.member;
            core.join(joining, now).expect("joins");
            member
        })
        .collect();
    (core, members)
}

/// A typing client: each call, the sync `Update` frame of the next keystroke-sized insert.
struct Typist {
    doc: Doc,
    text: TextRef,
    n: u64,
}

impl Typist {
    fn next_frame(&mut self) -> Vec<u8> {
        self.n += 1;
        let update = {
            let mut txn = self.doc.transact_mut();
            let len = self.text.len(&txn);
            self.text
                .insert(&mut txn, len, &format!("w{} ", self.n % 10));
            txn.encode_update_v1()
        };
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    }
}

fn landed() -> Result<SaveAnswer, docroom_actors::room::RoomError> {
    Ok(SaveAnswer {
        stored: Stored::Cache,
        foreign: None,
    })
}

fn room_core(c: &mut Criterion) {
    let mut group = c.benchmark_group("room_core");

    let (mut core, members) = room(Kind::Yjs);
    let doc = Doc::with_client_id(7);
    let text = doc.get_or_insert_text("content");
    let mut typist = Typist { doc, text, n: 0 };
    let now = Instant::now();
    group.bench_function("yjs_update_4_members", |b| {
        b.iter_batched(
            || typist.next_frame(),
            |frame| {
                core.yjs_frame(members[0], &frame, true, None, now);
                let out = core.take_effects();
                core.saved(landed(), now);
                (out, core.take_effects())
            },
            BatchSize::SmallInput,
        )
    });

    let (mut core, members) = room(Kind::Json);
    let doc = DocId::parse("bench").expect("a valid id");
    let contents = [
        r#"{"title":"a","body":"one"}"#,
        r#"{"title":"b","body":"two"}"#,
    ];
    let versions: Vec<Version> = contents
        .iter()
        .map(|c| Version::new(doc.clone(), Kind::Json, Bytes::from_static(c.as_bytes())))
        .collect();
    let mut n = 0u64;
    group.bench_function("json_update_4_members", |b| {
        b.iter(|| {
            n += 1;
            let update = JsonUpdate {
                from: Some(members[0]),
                version: versions[(n % 2) as usize].clone(),
                by: None,
                waiter: WaiterId(n),
                wall_ms: n,
            };
            core.json_update(update, now).expect("applied");
            let out = core.take_effects();
            core.saved(landed(), now);
            (out, core.take_effects())
        })
    });
    group.finish();
}

criterion_group!(benches, room_core);
criterion_main!(benches);
