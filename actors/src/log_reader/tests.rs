//! The log reader in process, over the in-memory cache shared by two replicas: the reader is
//! replica `b`'s, and `a` appends and publishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::{Apply, Follow, LogReader, Resync};
use crate::doc::DocId;
use crate::log::{Event, EventKind, LogEntry, LogPos, READ_COUNT, READ_DOCS};
use crate::storage::memory::MemoryCache;
use crate::storage::{DocumentLog, FlushClaims};
use crate::testing::{json, until};

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Seen {
    entries: Vec<LogEntry>,
    events: Vec<Event>,
    resyncs: usize,
}

/// Stands in for a room: records what the reader hands it.
struct Room {
    seen: Arc<Mutex<Seen>>,
}

impl Actor for Room {
    type Context = Context<Self>;
}

impl Handler<Apply> for Room {
    type Result = ();

    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) {
        let mut seen = self.seen.lock().unwrap();
        seen.entries.extend(msg.entries);
        seen.events.extend(msg.events);
    }
}

impl Handler<Resync> for Room {
    type Result = ();

    fn handle(&mut self, _: Resync, _: &mut Context<Self>) {
        self.seen.lock().unwrap().resyncs += 1;
    }
}

struct Rig {
    reader: Addr<LogReader>,
    /// The cache as the reader's replica, `b`, sees it.
    here: MemoryCache,
    /// Another replica, `a`.
    there: MemoryCache,
    followed: Vec<DocId>,
}

/// A reader that polls every followed log every `poll`.
fn rig(poll: Duration) -> Rig {
    let there = MemoryCache::default().for_replica("a");
    let here = there.for_replica("b");
    let reader = LogReader::new(Arc::new(here.clone()), "b", poll).start();
    Rig {
        reader,
        here,
        there,
        followed: Vec::new(),
    }
}

impl Rig {
    /// A room following `doc` from the log's start.
    async fn follow(&mut self, doc: &str) -> (DocId, Arc<Mutex<Seen>>) {
        let doc = DocId::parse(doc).unwrap();
        let seen = Arc::<Mutex<Seen>>::default();
        let room = Room { seen: seen.clone() }.start();
        self.reader
            .send(Follow {
                doc: doc.clone(),
                from: LogPos::ZERO,
                room: room.clone().recipient(),
                resync: room.recipient(),
            })
            .await
            .unwrap();
        self.followed.push(doc.clone());
        (doc, seen)
    }

    /// Waits until every followed document's subscription is in effect and its log was read
    /// once since; forgets those reads.
    async fn subscribed(&self) {
        let n = self.followed.len();
        until("the subscriptions", || self.here.listeners() == vec![n]).await;
        let mut read: Vec<DocId> = Vec::new();
        until("the first read of every followed log", || {
            read.extend(self.here.take_log_reads().concat());
            self.followed.iter().all(|doc| read.contains(doc))
        })
        .await;
    }
}

#[actix::test]
async fn an_entry_that_follows_on_the_rooms_position_comes_with_its_notice_others_are_read() {
    let mut rig = rig(HOUR);
    let (one, seen_one) = rig.follow("one").await;
    let (_two, seen_two) = rig.follow("two").await;
    rig.subscribed().await;
    let entries = |n: usize| {
        let seen = seen_one.clone();
        move || seen.lock().unwrap().entries.len() == n
    };

    // The first append's notice cannot say what came before it: the log is read.
    rig.there.save(&json("one", "1")).await.unwrap();
    until("a's first entry in room one", entries(1)).await;
    assert_eq!(rig.here.take_log_reads(), vec![vec![one.clone()]]);

    rig.there.save(&json("one", "2")).await.unwrap();
    until("a's second entry", entries(2)).await;
    assert!(
        rig.here.take_log_reads().is_empty(),
        "an entry following on the room's position was read from the log"
    );

    // A notice lost: the next one does not follow on what the room has, so the log is read.
    rig.here.lose_notices(true);
    rig.there.save(&json("one", "3")).await.unwrap();
    rig.here.lose_notices(false);
    rig.there.save(&json("one", "4")).await.unwrap();
    until("the entry whose notice was lost, and the next", entries(4)).await;
    assert_eq!(rig.here.take_log_reads(), vec![vec![one]]);

    let seen = seen_one.lock().unwrap();
    let contents: Vec<&[u8]> = seen
        .entries
        .iter()
        .map(|e| &e.version.content[..])
        .collect();
    assert_eq!(
        contents,
        [b"1", b"2", b"3", b"4"],
        "each entry once, in order"
    );
    assert!(seen.entries.iter().all(|e| e.replica.as_ref() == "a"));
    assert!(seen_two.lock().unwrap().entries.is_empty());
}

#[actix::test]
async fn own_notices_are_ignored_and_other_replicas_events_handed_over_at_once() {
    let mut rig = rig(HOUR);
    let (one, seen) = rig.follow("one").await;
    rig.subscribed().await;

    rig.here.save(&json("one", "mine")).await.unwrap();
    rig.here
        .publish(&one, EventKind::Awareness, b"mine")
        .await
        .unwrap();
    rig.there
        .publish(&one, EventKind::Awareness, b"theirs")
        .await
        .unwrap();

    until("a's event", || !seen.lock().unwrap().events.is_empty()).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.events.len(), 1, "{:?}", seen.events);
    assert_eq!(seen.events[0].replica.as_ref(), "a");
    assert_eq!(&seen.events[0].payload[..], b"theirs");
    assert!(seen.entries.is_empty());
    assert!(
        rig.here.take_log_reads().is_empty(),
        "its own append's notice made the reader read"
    );
}

/// Content restored from the journal or PostgreSQL may be content no room here holds (what
/// PostgreSQL kept over a write of this replica's): this replica's own room is handed it too.
#[actix::test]
async fn a_restored_entry_reaches_the_room_of_the_replica_that_restored_it() {
    let mut rig = rig(HOUR);
    let (_, seen) = rig.follow("one").await;
    rig.subscribed().await;

    rig.here.save(&json("one", "mine")).await.unwrap();
    rig.here.restore(&json("one", "kept")).await.unwrap();

    until("the restored entry", || {
        !seen.lock().unwrap().entries.is_empty()
    })
    .await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.entries.len(), 1, "{:?}", seen.entries);
    assert_eq!(seen.entries[0].replica.as_ref(), crate::log::RESTORED);
    assert_eq!(&seen.entries[0].version.content[..], b"kept");
}

#[actix::test]
async fn what_was_appended_before_the_subscription_is_read_once_it_takes_effect() {
    let mut rig = rig(HOUR);
    rig.there.save(&json("early", "before")).await.unwrap();

    let (_, seen) = rig.follow("early").await;

    until("the entry appended before", || {
        seen.lock().unwrap().entries.len() == 1
    })
    .await;
}

#[actix::test]
async fn a_lost_listening_connection_is_made_again_and_every_room_resyncs() {
    let mut rig = rig(HOUR);
    let (_, seen_one) = rig.follow("one").await;
    let (_, seen_two) = rig.follow("two").await;
    rig.subscribed().await;

    rig.here.drop_listeners();

    until("both rooms told to resync", || {
        seen_one.lock().unwrap().resyncs == 1 && seen_two.lock().unwrap().resyncs == 1
    })
    .await;
    assert_eq!(
        rig.here.listeners(),
        vec![2],
        "both channels subscribed again"
    );
    rig.there.save(&json("one", "after")).await.unwrap();
    until("a's entry through the new connection", || {
        seen_one.lock().unwrap().entries.len() == 1
    })
    .await;
}

#[actix::test]
async fn after_failed_reads_every_room_resyncs_once_redis_answers_again() {
    let mut rig = rig(Duration::from_millis(20));
    let (_, seen) = rig.follow("one").await;
    rig.subscribed().await;

    rig.here.faults.fail(true);
    until("a failed read", || !rig.here.take_log_reads().is_empty()).await;
    assert_eq!(seen.lock().unwrap().resyncs, 0);
    rig.here.faults.fail(false);

    until("the room told to resync", || {
        seen.lock().unwrap().resyncs == 1
    })
    .await;
}

#[actix::test]
async fn the_poll_delivers_what_a_lost_notice_did_not_announce() {
    let mut rig = rig(Duration::from_millis(50));
    let (_, seen) = rig.follow("one").await;
    rig.subscribed().await;
    rig.here.lose_notices(true);

    rig.there.save(&json("one", "unannounced")).await.unwrap();

    until("the entry, by the poll", || {
        seen.lock().unwrap().entries.len() == 1
    })
    .await;
}

#[actix::test]
async fn a_poll_over_more_logs_than_one_read_covers_reads_them_all_a_batch_at_a_time() {
    let mut rig = rig(Duration::from_millis(50));
    let mut rooms = Vec::new();
    for i in 0..READ_DOCS * 2 + 3 {
        rooms.push(rig.follow(&format!("doc{i}")).await);
    }
    rig.subscribed().await;
    rig.here.lose_notices(true);

    for (doc, _) in &rooms {
        rig.there
            .save(&json(doc.as_str(), "unannounced"))
            .await
            .unwrap();
    }

    let mut reads: Vec<Vec<DocId>> = Vec::new();
    until("every entry, by the poll", || {
        reads.extend(rig.here.take_log_reads());
        rooms
            .iter()
            .all(|(_, seen)| seen.lock().unwrap().entries.len() == 1)
    })
    .await;
    assert!(reads.iter().all(|r| r.len() <= READ_DOCS), "{reads:?}");
}

#[actix::test]
async fn a_log_longer_than_one_read_is_read_to_its_end() {
    let mut rig = rig(HOUR);
    for i in 0..=READ_COUNT {
        rig.there
            .save(&json("long", &format!("{i}")))
            .await
            .unwrap();
    }

    let (_, seen) = rig.follow("long").await;

    until("every entry", || {
        seen.lock().unwrap().entries.len() == READ_COUNT + 1
    })
    .await;
}

#[actix::test]
async fn a_room_behind_the_trimmed_log_is_told_to_reload() {
    let mut rig = rig(HOUR);
    rig.there.save(&json("trimmed", "1")).await.unwrap();
    let last = rig.there.save(&json("trimmed", "2")).await.unwrap();
    let doc = DocId::parse("trimmed").unwrap();
    rig.there
        .committed(&[crate::storage::Commit {
            recorded: last.position.map(|position| crate::log::LogMark {
                incarnation: crate::log::Incarnation::default(),
                position,
            }),
            ..crate::storage::Commit::of(doc, String::new())
        }])
        .await
        .unwrap();

    // A room that follows from before what was trimmed cannot get it from the log.
    let (_, seen) = rig.follow("trimmed").await;

    until("the room told to reload", || {
        seen.lock().unwrap().resyncs == 1
    })
    .await;
}
