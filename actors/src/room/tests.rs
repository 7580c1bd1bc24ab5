//! Rooms in process, over the in-memory stores: members that stop reading, sessions that vanish
//! while joining, and the room limit.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use super::*;
use crate::core::{Core, CoreSettings};
use crate::fallback::test_dir::TestDir;
use crate::fallback::Fallback;
use crate::flusher::FlusherSettings;
use crate::registry::{GetRoom, NoRoom};
use crate::storage::memory::{MemoryCache, MemoryStore};
use crate::supervisor::Stores;

fn core(dir: &TestDir, limits: RoomLimits) -> Core {
    core_on(
        dir,
        limits,
        Duration::from_millis(10),
        MemoryCache::default(),
    )
}

/// [`core`] with a Yjs save interval and the cache it uses.
fn core_on(
    dir: &TestDir,
    limits: RoomLimits,
    yjs_save_interval: Duration,
    cache: MemoryCache,
) -> Core {
    let ms = Duration::from_millis;
    let stores = Stores {
        cache: Arc::new(cache),
        store: Arc::new(MemoryStore::default()),
        fallback: Fallback::open(&dir.0).unwrap(),
        ledger: crate::ledger::Ledger::default(),
    };
    let settings = CoreSettings {
        supervisor: crate::testing::supervisor_settings(),
        flusher: FlusherSettings {
            base_period: ms(50),
            error_period: ms(100),
            max_period: ms(200),
            batch_size: 100,
            parallel_batches: 1,
        },
        room_arbiters: 0,
        yjs_save_interval,
        log_poll: ms(20),
        replica: "t".into(),
        storage_on_worker: false,
        limits,
        changes: None,
        history: None,
        history_interval: std::time::Duration::from_secs(60),
    };
    Core::start(stores, settings)
}

/// Stands in for a session: counts what it is sent; credits its backlog only if `reads`.
struct Session {
    backlog: Backlog,
    reads: bool,
    received: Arc<std::sync::atomic::AtomicUsize>,
}

impl Actor for Session {
    type Context = Context<Self>;
}

impl Handler<Outbound> for Session {
    type Result = ();

    fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
        if self.reads {
            self.backlog.taken(&msg);
        }
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Joined {
    member: MemberId,
    backlog: Backlog,
    session: Addr<Session>,
}

async fn join(room: &Addr<DocRoom>, reads: bool) -> Joined {
    let backlog = Backlog::default();
    let session = Session {
        backlog: backlog.clone(),
        reads,
        received: Arc::default(),
    }
    .start();
    let member = MemberId::next();
    room.send(Join {
        member,
        kind: Kind::Json,
        outbound: session.clone().recipient(),
        backlog: backlog.clone(),
        subject: None,
    })
    .await
    .unwrap()
    .unwrap();
    Joined {
        member,
        backlog,
        session,
    }
}

async fn room(core: &Core, doc: &str) -> Addr<DocRoom> {
    room_of(core, doc, Kind::Json).await
}

async fn room_of(core: &Core, doc: &str, kind: Kind) -> Addr<DocRoom> {
    core.registry
        .send(GetRoom {
            doc: DocId::parse(doc).unwrap(),
            kind,
            home: None,
        })
        .await
        .unwrap()
        .unwrap()
}

/// The room of Yjs document `doc`, and a member of it whose session reads everything.
async fn yjs_member(core: &Core, doc: &str) -> (Addr<DocRoom>, MemberId) {
    let room = room_of(core, doc, Kind::Yjs).await;
    let session = Session {
        backlog: Backlog::default(),
        reads: true,
        received: Arc::default(),
    }
    .start();
    let member = MemberId::next();
    room.send(Join {
        member,
        kind: Kind::Yjs,
        outbound: session.recipient(),
        backlog: Backlog::default(),
        subject: None,
    })
    .await
    .unwrap()
    .unwrap();
    (room, member)
}

async fn put(room: &Addr<DocRoom>, doc: &str, content: String) {
    let version = Version::new(DocId::parse(doc).unwrap(), Kind::Json, Bytes::from(content));
    room.send(Update {
        from: None,
        version,
        by: None,
    })
    .await
    .unwrap()
    .unwrap();
}

async fn members(room: &Addr<DocRoom>) -> Option<usize> {
    room.send(Describe).await.ok().map(|s| s.members)
}

async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix::test]
async fn a_member_that_stops_taking_its_frames_is_dropped_once_over_its_backlog() {
    let dir = TestDir::new("room-backlog");
    let core = core(
        &dir,
        RoomLimits {
            member_backlog_messages: 5,
            member_backlog_bytes: 1_000_000,
            ..RoomLimits::unlimited()
        },
    );
    let room = room(&core, "d").await;
    let reader = join(&room, true).await;
    let stalled = join(&room, false).await;

    for n in 0..5 {
        put(&room, "d", format!("{{\"n\":{n}}}")).await;
    }
    assert_eq!(members(&room).await, Some(2), "5 frames fit the budget");
    assert!(!stalled.backlog.overflowed());
    put(&room, "d", "{\"n\":5}".into()).await;

    assert_eq!(
        members(&room).await,
        Some(1),
        "the stalled member is dropped"
    );
    assert!(
        stalled.backlog.overflowed(),
        "and its session will know why"
    );
    assert!(!reader.backlog.overflowed());
    // A Leave from the dropped member's session, when it comes, changes nothing.
    room.do_send(Leave {
        member: stalled.member,
    });
    put(&room, "d", "{\"n\":6}".into()).await;
    assert_eq!(members(&room).await, Some(1));
    drop(reader.session);
}

#[actix::test]
async fn a_member_whose_session_stopped_without_leaving_is_pruned_and_the_room_retires() {
    let dir = TestDir::new("room-phantom");
    let core = core(&dir, RoomLimits::unlimited());
    let room = room(&core, "p").await;
    let member = join(&room, true).await;
    assert_eq!(members(&room).await, Some(1));

    // The session stops without a Leave (its connection dropped while the answer to its Join
    // was on its way).
    member.session.send(StopSession).await.unwrap();

    until("the room to retire", async || !room.connected()).await;
}

#[actix::test]
async fn a_join_from_a_session_already_gone_is_refused() {
    let dir = TestDir::new("room-gone-join");
    let core = core(&dir, RoomLimits::unlimited());
    let room = room(&core, "g").await;
    let session = Session {
        backlog: Backlog::default(),
        reads: true,
        received: Arc::default(),
    }
    .start();
    let outbound = session.clone().recipient();
    session.send(StopSession).await.unwrap();
    until("the session to stop", async || !session.connected()).await;

    let answer = room
        .send(Join {
            member: MemberId::next(),
            kind: Kind::Json,
            outbound,
            backlog: Backlog::default(),
            subject: None,
        })
        .await
        .unwrap();

    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(members(&room).await.unwrap_or(0), 0);
}

#[actix::test]
async fn no_new_room_opens_past_max_rooms_until_one_retires() {
    let dir = TestDir::new("room-limit");
    let core = core(
        &dir,
        RoomLimits {
            max_rooms: 2,
            ..RoomLimits::unlimited()
        },
    );
    let a = room(&core, "a").await;
    let _b = room(&core, "b").await;
    let get = |doc: &str| {
        core.registry.send(GetRoom {
            doc: DocId::parse(doc).unwrap(),
            kind: Kind::Json,
            home: None,
        })
    };

    assert_eq!(get("c").await.unwrap().err(), Some(NoRoom::Full(2)));
    assert!(
        get("a").await.unwrap().is_ok(),
        "open rooms are still handed out"
    );

    // Nobody joins "a": it retires after its grace period, and "c" may open.
    until("room a to retire", async || !a.connected()).await;
    assert!(get("c").await.unwrap().is_ok());
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopSession;

impl Handler<StopSession> for Session {
    type Result = ();

    fn handle(&mut self, _: StopSession, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix::test]
async fn a_json_room_takes_in_a_later_version_the_ledger_holds_from_elsewhere() {
    let dir = TestDir::new("absorb-json");
    let core = core(&dir, RoomLimits::unlimited());
    let room = room(&core, "merged").await;
    let _member = join(&room, true).await;
    // Content from elsewhere (a journal replayed, Redis read back) with a later stamp.
    let elsewhere = crate::testing::stamped("merged", r#"{"from":"elsewhere"}"#, u64::MAX / 2);
    core.ledger
        .absorbed(elsewhere.clone(), crate::ledger::Durable::Journal);

    put(&room, "merged", r#"{"from":"here"}"#.into()).await;

    let current = room.send(Current).await.unwrap().unwrap();
    assert_eq!(current, Some(elsewhere), "the room kept its older content");
}

#[actix::test]
async fn a_yjs_room_merges_in_what_the_ledger_holds_from_elsewhere() {
    use yrs::updates::encoder::Encode;
    let dir = TestDir::new("absorb-yjs");
    let core = core(&dir, RoomLimits::unlimited());
    let (room, member) = yjs_member(&core, "ymerged").await;
    core.ledger.absorbed(
        crate::testing::yjs_edit("ymerged", 9, "elsewhere "),
        crate::ledger::Durable::Journal,
    );

    let local = crate::testing::yjs_edit("ymerged", 1, "here");
    let frame = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(local.content.to_vec()));
    room.do_send(YjsFrame {
        from: member,
        data: Bytes::from(frame.encode_v1()),
        may_write: true,
        stored: None,
    });

    until("the room to hold both edits", async || {
        let current = room.send(Current).await.unwrap().unwrap().unwrap();
        let text = crate::testing::yjs_text(&current);
        text.contains("here") && text.contains("elsewhere")
    })
    .await;
}

/// A Yjs room saves each update at once while its budget lasts (8 in a row), then gathers what
/// arrives into one save per interval (here 2 s, far longer than the test's updates take).
#[actix::test]
async fn a_busy_yjs_room_saves_each_update_until_its_budget_is_spent_then_one_per_interval() {
    use crate::log::LogPos;
    use crate::storage::DocumentLog;
    use yrs::updates::encoder::Encode;
    let dir = TestDir::new("save-budget");
    let cache = MemoryCache::default();
    let core = core_on(
        &dir,
        RoomLimits::unlimited(),
        Duration::from_secs(2),
        cache.clone(),
    );
    let doc = DocId::parse("budget").unwrap();
    let (room, member) = yjs_member(&core, "budget").await;
    let entries = async || {
        let read = cache
            .read_logs(&[(doc.clone(), LogPos::ZERO)])
            .await
            .unwrap();
        read.first().map_or(0, |(_, r)| r.entries.len())
    };
    let typist = yrs::Doc::with_client_id(5);
    let text = typist.get_or_insert_text("t");
    let mut typed = String::new();
    let mut send = |word: &str| {
        let before = yrs::ReadTxn::state_vector(&yrs::Transact::transact(&typist));
        let len = yrs::Text::len(&text, &yrs::Transact::transact(&typist));
        yrs::Text::insert(&text, &mut yrs::Transact::transact_mut(&typist), len, word);
        typed.push_str(word);
        let update =
            yrs::ReadTxn::encode_state_as_update_v1(&yrs::Transact::transact(&typist), &before);
        let frame = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update));
        room.do_send(YjsFrame {
            from: member,
            data: Bytes::from(frame.encode_v1()),
            may_write: true,
            stored: None,
        });
    };

    for i in 0..8 {
        send(&format!("<{i}>"));
        until("each update of the burst saved on its own", async || {
            entries().await == i + 1
        })
        .await;
    }
    for word in ["<a>", "<b>", "<c>"] {
        send(word);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until("the rest saved together", async || entries().await == 9).await;
    let read = cache
        .read_logs(&[(doc.clone(), LogPos::ZERO)])
        .await
        .unwrap();
    let versions: Vec<Version> = read[0]
        .1
        .entries
        .iter()
        .map(|e| e.version.clone())
        .collect();
    let text_of = |n: usize| {
        let merged = crate::doc::combine(versions[..n].iter().cloned())
            .unwrap()
            .unwrap();
        crate::testing::yjs_text(&merged)
    };
    assert!(!text_of(8).contains("<a>"), "{}", text_of(8));
    assert!(
        text_of(9).contains(&typed),
        "the last entry holds the three: {}",
        text_of(9)
    );
    let current = room.send(Current).await.unwrap().unwrap().unwrap();
    assert!(crate::testing::yjs_text(&current).contains(&typed));
}

mod joins;
