//! A simulator of one room's core: a script of steps (members join and leave, send updates,
//! garbage and duplicates; saves land or fail; time passes) is run through the core as the actor
//! would run it, and every effect is checked against the room's rules:
//! - at most one save is in flight;
//! - every waiter is answered exactly once, and none is left waiting once the room is saved;
//! - frames go only to members in the room, and a removed member was one;
//! - the leave flush is asked once at a time, and the room stops only when saved and empty.
//!
//! A rule broken panics, so the seeded unit test and the fuzzer (`fuzz/fuzz_targets/
//! room_core.rs`, which decodes its bytes with [`Step::decode`]) find the same bugs. The script
//! is data: a failing one is replayed as it is.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{CoreConfig, Effect, Joining, JsonUpdate, RoomCore, WaiterId, RETRY_AFTER};
use crate::clock::Clock;
use crate::doc::{DocId, Kind, Version};
use crate::refusal_log::RefusalLog;
use crate::room::{MemberId, RoomError, RoomLimits};
use crate::supervisor::{SaveAnswer, Stored};

/// One step of a script. Members are named by their index among those in the room (modulo
/// their number), so any byte names one.
#[derive(Clone, Debug)]
pub enum Step {
    Join,
    Leave(u8),
    /// A member writes `text` at the start of the shared text (Yjs) or sends content `n`
    /// (JSON); `status`: it waits for a SyncStatus / ack.
    Edit {
        member: u8,
        text: u8,
        status: bool,
    },
    /// A member sends its last frame again (Yjs), or `PUT` sends content `n` (JSON).
    Repeat {
        member: u8,
        status: bool,
    },
    /// A member sends bytes that are no frame.
    Garbage(u8),
    SaveLanded,
    SaveFailed,
    /// Time passes, then the core's timer fires if it is due.
    Advance {
        ms: u16,
    },
    /// A backend posts an update (Yjs).
    Backend {
        text: u8,
    },
    /// Another replica's log entry arrives.
    Remote {
        text: u8,
    },
}

impl Step {
    /// A script from arbitrary bytes: two bytes a step.
    pub fn decode(data: &[u8]) -> Vec<Step> {
        data.chunks_exact(2)
            .map(|pair| {
                let (op, arg) = (pair[0], pair[1]);
                match op % 10 {
                    0 => Step::Join,
                    1 => Step::Leave(arg),
                    2 => Step::Edit {
                        member: arg >> 4,
                        text: arg & 0x0f,
                        status: op & 0x80 != 0,
                    },
                    3 => Step::Repeat {
                        member: arg,
                        status: op & 0x80 != 0,
                    },
                    4 => Step::Garbage(arg),
                    5 => Step::SaveLanded,
                    6 => Step::SaveFailed,
                    7 => Step::Advance {
                        ms: u16::from(arg) * 4,
                    },
                    8 => Step::Backend { text: arg },
                    _ => Step::Remote { text: arg },
                }
            })
            .collect()
    }
}

/// What a script made the core do, so a test can tell that its scripts reach the paths they
/// mean to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub saves: usize,
    pub answers: usize,
    pub removed: usize,
    pub stopped: bool,
}

/// A room's core and what the actor around it would know.
pub struct Sim {
    tally: Tally,
    core: RoomCore,
    kind: Kind,
    now: Instant,
    members: Vec<MemberId>,
    last_frame: Vec<u8>,
    save_in_flight: bool,
    persisting: bool,
    stopped: bool,
    waiting: BTreeSet<WaiterId>,
    next_waiter: u64,
    /// A client of its own per source of edits, so updates build on each other.
    writer: yrs::Doc,
}

impl Sim {
    /// A loaded, empty room of `kind` with small limits (a backlog of 4 frames).
    pub fn new(kind: Kind) -> Self {
        let now = Instant::now();
        let limits = RoomLimits {
            member_backlog_messages: 4,
            ..RoomLimits::unlimited()
        };
        let mut core = RoomCore::new(CoreConfig {
            doc: DocId::parse("sim").unwrap_or_else(|_| unreachable!()),
            kind,
            clock: Clock::new("sim"),
            yjs_save_interval: Duration::from_millis(20),
            limits,
            refusals: RefusalLog::default(),
            changes: true,
            history: true,
            history_interval: Duration::from_millis(500),
        });
        core.loaded(None, now)
            .unwrap_or_else(|e| panic!("an empty room loads: {e}"));
        Sim {
            tally: Tally::default(),
            core,
            kind,
            now,
            members: Vec::new(),
            last_frame: Vec::new(),
            save_in_flight: false,
            persisting: false,
            stopped: false,
            waiting: BTreeSet::new(),
            next_waiter: 0,
            writer: yrs::Doc::new(),
        }
    }

    /// Runs `steps`, then lets the room settle: every save lands, every timer fires.
    pub fn run(kind: Kind, steps: &[Step]) -> Tally {
        let mut sim = Sim::new(kind);
        for step in steps {
            if sim.stopped {
                break;
            }
            sim.step(step);
        }
        sim.settle();
        sim.tally
    }

    fn member(&self, i: u8) -> Option<MemberId> {
        let n = self.members.len();
        (n > 0).then(|| self.members[usize::from(i) % n])
    }

    fn waiter(&mut self, wanted: bool) -> Option<WaiterId> {
        wanted.then(|| {
            self.next_waiter += 1;
            let id = WaiterId(self.next_waiter);
            self.waiting.insert(id);
            id
        })
    }

    /// Feeds the core one step and checks what it decided.
    pub fn step(&mut self, step: &Step) {
        let now = self.now;
        match *step {
            Step::Join => {
                let mut joining = Joining::new(self.kind);
                let member = joining.member;
                joining.subject = Some(format!("user{}", member.get() % 3));
                if self.core.join(joining, now).is_ok() {
                    self.members.push(member);
                }
            }
            Step::Leave(i) => {
                if let Some(m) = self.member(i) {
                    self.core.leave(m, now);
                }
            }
            Step::Edit {
                member,
                text,
                status,
            } => {
                let Some(m) = self.member(member) else { return };
                let waiter = self.waiter(status || self.kind == Kind::Json);
                match self.kind {
                    Kind::Yjs => {
                        self.last_frame = edit_frame(&self.writer, text);
                        self.core.yjs_frame(m, &self.last_frame, true, waiter, now);
                    }
                    Kind::Json => self.json(Some(m), text, waiter),
                }
            }
            Step::Repeat { member, status } => {
                let waiter = self.waiter(status || self.kind == Kind::Json);
                match (self.kind, self.member(member)) {
                    (Kind::Yjs, Some(m)) => {
                        self.core.yjs_frame(m, &self.last_frame, true, waiter, now)
                    }
                    (Kind::Json, _) => self.json(None, member % 4, waiter),
                    (Kind::Yjs, None) => self.unpark(waiter),
                }
            }
            Step::Garbage(i) => {
                if let Some(m) = self.member(i) {
                    let waiter = self.waiter(i % 2 == 0);
                    self.core.yjs_frame(m, &[i, 0xff, 0xff], true, waiter, now);
                }
            }
            Step::SaveLanded | Step::SaveFailed if self.save_in_flight => {
                self.save_in_flight = false;
                let result = match step {
                    Step::SaveLanded => Ok(SaveAnswer {
                        stored: Stored::Cache,
                        foreign: None,
                    }),
                    _ => Err(RoomError::Unavailable("sim: the store is down".into())),
                };
                self.core.saved(result, now);
            }
            Step::SaveLanded | Step::SaveFailed => {}
            Step::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                if self.core.next_deadline().is_some_and(|at| at <= self.now) {
                    self.core.tick(self.now);
                }
            }
            Step::Backend { text } => {
                let update = edit_update(&self.writer, text);
                let waiter = self.waiter(true).unwrap_or(WaiterId(0));
                if self
                    .core
                    .backend_update(&update, "server", waiter, now)
                    .is_err()
                {
                    self.waiting.remove(&waiter);
                }
            }
            Step::Remote { text } => {
                let content = match self.kind {
                    Kind::Yjs => Bytes::from(edit_update(&yrs::Doc::new(), text)),
                    Kind::Json => Bytes::from(format!("{{\"remote\":{text}}}")),
                };
                let v = Version::new(self.core.doc().clone(), self.kind, content);
                self.core.remote(vec![v], Vec::new(), now);
            }
        }
        self.check();
    }

    fn json(&mut self, from: Option<MemberId>, n: u8, waiter: Option<WaiterId>) {
        let Some(waiter) = waiter else { return };
        let content = Bytes::from(format!("{{\"n\":{}}}", n % 4));
        let update = JsonUpdate {
            from,
            version: Version::new(self.core.doc().clone(), Kind::Json, content),
            by: None,
            waiter,
            wall_ms: 1_000,
        };
        if self.core.json_update(update, self.now).is_err() {
            self.waiting.remove(&waiter);
        }
    }

    fn unpark(&mut self, waiter: Option<WaiterId>) {
        if let Some(w) = waiter {
            self.waiting.remove(&w);
        }
    }

    /// Carries out the core's effects as the actor would, checking each against the rules.
    fn check(&mut self) {
        for effect in self.core.take_effects() {
            assert!(
                !self.stopped,
                "an effect after the room stopped: {effect:?}"
            );
            match effect {
                Effect::Save(v) => {
                    assert!(!self.save_in_flight, "a second save in flight");
                    assert_eq!(v.kind, self.kind);
                    self.save_in_flight = true;
                    self.tally.saves += 1;
                }
                Effect::Answer { waiter, answer } => {
                    assert!(
                        self.waiting.remove(&waiter),
                        "{waiter:?} answered twice, or never asked ({answer:?})"
                    );
                    self.tally.answers += 1;
                }
                Effect::Send { to, .. } => {
                    assert!(self.members.contains(&to), "a frame for a stranger");
                }
                Effect::Broadcast { except, skip, .. } => {
                    let here: HashSet<_> = self.members.iter().collect();
                    assert!(skip.iter().all(|m| here.contains(m) && Some(*m) != except));
                }
                Effect::Remove(m) => {
                    let at = self.members.iter().position(|x| *x == m);
                    let at = at.unwrap_or_else(|| panic!("{m:?} removed, not in the room"));
                    self.members.remove(at);
                    self.tally.removed += 1;
                }
                Effect::Persist => {
                    assert!(!self.persisting, "a second leave flush at once");
                    assert!(self.members.is_empty(), "a leave flush with members");
                    self.persisting = true;
                }
                Effect::Stop => {
                    assert!(self.core.is_saved() && self.members.is_empty());
                    assert!(
                        self.waiting.is_empty(),
                        "stopped with {:?} waiting",
                        self.waiting
                    );
                    self.stopped = true;
                    self.tally.stopped = true;
                }
                Effect::Publish { .. } | Effect::Changed { .. } | Effect::Cut(_) => {}
            }
        }
    }

    /// Lets every save land and every timer fire until the room has nothing left to do; then
    /// nobody may still be waiting.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.stopped {
                break;
            }
            if self.save_in_flight {
                self.step(&Step::SaveLanded);
            } else if self.persisting {
                self.persisting = false;
                self.core.persisted();
                self.check();
            } else if let Some(at) = self.core.next_deadline().filter(|_| !self.core.is_saved()) {
                self.now = self.now.max(at) + RETRY_AFTER;
                self.core.tick(self.now);
                self.check();
            } else {
                break;
            }
        }
        assert!(
            self.core.is_saved(),
            "the room settled with unsaved content"
        );
        assert!(!self.save_in_flight);
        assert!(self.waiting.is_empty(), "{:?} never answered", self.waiting);
    }
}

/// An update that writes one character at the start of `doc`'s text (so each builds on the
/// last, as a member's edits do).
fn edit_update(doc: &yrs::Doc, text: u8) -> Vec<u8> {
    use yrs::{Text, Transact};
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let c = char::from(b'a' + text % 26);
    t.insert(&mut txn, 0, &c.to_string());
    txn.encode_update_v1()
}

fn edit_frame(doc: &yrs::Doc, text: u8) -> Vec<u8> {
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::encoder::Encode;
    Message::Sync(SyncMessage::Update(edit_update(doc, text))).encode_v1()
}
