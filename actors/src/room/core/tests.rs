//! The core as stories, time passed in: no actors, no sleeps.

use std::time::{Duration, Instant};

use bytes::Bytes;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Text, Transact};

use super::*;
use crate::room::{CutReason, SaveBudget};
use crate::supervisor::SaveAnswer;

pub(super) fn config(kind: Kind) -> CoreConfig {
    CoreConfig {
        doc: DocId::parse("d").unwrap(),
        kind,
        clock: Clock::new("t"),
        yjs_save_interval: Duration::from_millis(10),
        limits: RoomLimits::unlimited(),
        refusals: RefusalLog::default(),
        changes: false,
        history: false,
        history_interval: Duration::from_secs(60),
    }
}

/// A loaded room of `kind` with `n` members, its effects so far taken.
pub(super) fn room(cfg: CoreConfig, n: u64, t0: Instant) -> (RoomCore, Vec<MemberId>) {
    let kind = cfg.kind;
    let mut core = RoomCore::new(cfg);
    core.loaded(None, t0).unwrap();
    let members = (0..n).map(|_| join(&mut core, kind, t0)).collect();
    assert!(core.take_effects().is_empty());
    (core, members)
}

pub(super) fn join(core: &mut RoomCore, kind: Kind, now: Instant) -> MemberId {
    let joining = Joining::new(kind);
    let member = joining.member;
    core.join(joining, now).unwrap();
    member
}

/// A y-protocols update frame that writes `text` into a fresh client's `t`.
pub(super) fn yjs_update(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    t.insert(&mut txn, 0, text);
    let update = txn.encode_update_v1();
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

fn stored(stored: Stored) -> Result<SaveAnswer, RoomError> {
    Ok(SaveAnswer {
        stored,
        foreign: None,
    })
}

fn saves(effects: &[Effect]) -> Vec<&Version> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Save(v) => Some(v),
            _ => None,
        })
        .collect()
}

fn answers(effects: &[Effect]) -> Vec<(WaiterId, Answer)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Answer { waiter, answer } => Some((*waiter, answer.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_members_update_is_saved_and_relayed_to_the_others_once() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Yjs), 4, t0);

    core.yjs_frame(m[0], &yjs_update("hello"), true, None, t0);

    let effects = core.take_effects();
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert!(matches!(&effects[0], Effect::Save(v) if v.kind == Kind::Yjs));
    match &effects[1] {
        Effect::Broadcast {
            except,
            skip,
            frame: Outbound::Binary(_),
        } => {
            assert_eq!(*except, Some(m[0]), "not back to the sender");
            assert!(skip.is_empty());
        }
        other => panic!("expected a broadcast, got {other:?}"),
    }
    assert!(!core.is_saved(), "the save is in flight");
}

#[test]
fn a_sync_status_is_answered_once_the_save_carrying_it_lands() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Yjs), 2, t0);

    core.yjs_frame(m[0], &yjs_update("a"), true, Some(WaiterId(1)), t0);
    assert!(answers(&core.take_effects()).is_empty(), "not stored yet");
    core.saved(stored(Stored::Cache), t0);

    assert_eq!(
        answers(&core.take_effects()),
        vec![(WaiterId(1), Answer::Status(true))]
    );
    assert!(core.is_saved());
}

#[test]
fn updates_applied_during_a_save_go_out_together_when_it_lands() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Yjs), 2, t0);
    core.yjs_frame(m[0], &yjs_update("a"), true, Some(WaiterId(1)), t0);
    assert_eq!(saves(&core.take_effects()).len(), 1);

    core.yjs_frame(m[1], &yjs_update("b"), true, Some(WaiterId(2)), t0);
    core.yjs_frame(m[0], &yjs_update("c"), true, Some(WaiterId(3)), t0);
    assert!(saves(&core.take_effects()).is_empty(), "one save in flight");

    core.saved(stored(Stored::Cache), t0);
    let effects = core.take_effects();
    assert_eq!(answers(&effects), vec![(WaiterId(1), Answer::Status(true))]);
    assert_eq!(saves(&effects).len(), 1, "b and c in one save");
    core.saved(stored(Stored::Cache), t0);
    assert_eq!(
        answers(&core.take_effects()),
        vec![
            (WaiterId(2), Answer::Status(true)),
            (WaiterId(3), Answer::Status(true))
        ]
    );
}

#[test]
fn a_failed_save_is_answered_false_and_its_updates_retried_after_a_pause() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Yjs), 2, t0);
    core.yjs_frame(m[0], &yjs_update("kept"), true, Some(WaiterId(1)), t0);
    let first = saves(&core.take_effects())[0].clone();

    core.saved(Err(RoomError::Unavailable("down".into())), t0);

    let effects = core.take_effects();
    assert_eq!(
        answers(&effects),
        vec![(WaiterId(1), Answer::Status(false))]
    );
    assert!(saves(&effects).is_empty(), "not at once");
    assert_eq!(core.next_deadline(), Some(t0 + RETRY_AFTER));
    core.tick(t0 + RETRY_AFTER - Duration::from_millis(1));
    assert!(core.take_effects().is_empty());

    core.tick(t0 + RETRY_AFTER);
    let effects = core.take_effects();
    let retried = saves(&effects);
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].content, first.content, "the same update again");
}

#[test]
fn a_hot_room_spends_its_burst_then_saves_once_per_interval() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Yjs), 2, t0);
    let burst = SaveBudget::BURST as usize;
    for i in 0..burst {
        core.yjs_frame(m[0], &yjs_update(&format!("{i}")), true, None, t0);
        assert_eq!(saves(&core.take_effects()).len(), 1);
        core.saved(stored(Stored::Cache), t0);
        assert!(core.take_effects().is_empty());
    }

    core.yjs_frame(m[0], &yjs_update("over"), true, None, t0);
    assert!(
        saves(&core.take_effects()).is_empty(),
        "the budget is spent"
    );
    let due = core.next_deadline().expect("a save is scheduled");
    assert_eq!(due, t0 + Duration::from_millis(10));
    core.tick(due);
    assert_eq!(saves(&core.take_effects()).len(), 1);
}

#[test]
fn a_json_update_is_stamped_relayed_and_acknowledged_once_stored() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Json), 3, t0);
    let doc = DocId::parse("d").unwrap();
    let version = Version::new(doc, Kind::Json, Bytes::from_static(b"{\"a\":1}"));
    let update = |waiter| JsonUpdate {
        from: Some(m[0]),
        version: version.clone(),
        by: None,
        waiter,
        wall_ms: 1_000,
    };

    core.json_update(update(WaiterId(1)), t0).unwrap();
    let effects = core.take_effects();
    assert!(
        matches!(&effects[0], Effect::Broadcast { except, frame: Outbound::Text(_), .. } if *except == Some(m[0]))
    );
    let saved = saves(&effects);
    assert_eq!(saved[0].stamp.as_ref().map(|s| s.millis), Some(1_000));

    core.json_update(update(WaiterId(2)), t0).unwrap();
    assert!(core.take_effects().is_empty(), "a duplicate rides the save");
    core.saved(stored(Stored::Cache), t0);
    let answered = answers(&core.take_effects());
    let stored_as: Vec<_> = answered
        .iter()
        .map(|(w, a)| match a {
            Answer::Ack(Ok(ack)) => (*w, ack.stored),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        stored_as,
        vec![
            (WaiterId(1), Stored::Cache),
            (WaiterId(2), Stored::Duplicate)
        ]
    );

    core.json_update(update(WaiterId(3)), t0).unwrap();
    assert_eq!(
        answers(&core.take_effects()),
        vec![(WaiterId(3), duplicate(version.hash.clone()))],
        "stored already: answered at once"
    );
}

#[test]
fn a_member_over_its_backlog_is_skipped_then_removed() {
    let t0 = Instant::now();
    let mut cfg = config(Kind::Yjs);
    cfg.limits.member_backlog_messages = 1;
    let (mut core, m) = room(cfg, 3, t0);
    core.yjs_frame(m[0], &yjs_update("a"), true, None, t0);
    core.take_effects();

    // Nobody credits the backlogs: the second frame is over the budget of both readers.
    core.yjs_frame(m[0], &yjs_update("b"), true, None, t0);

    let effects = core.take_effects();
    let skipped = effects.iter().find_map(|e| match e {
        Effect::Broadcast { skip, .. } => Some(skip.len()),
        _ => None,
    });
    assert_eq!(skipped, Some(2));
    let removed = effects
        .iter()
        .filter(|e| matches!(e, Effect::Remove(_)))
        .count();
    assert_eq!(removed, 2);
    assert_eq!(core.members(), 1);
}

#[test]
fn the_last_member_out_saves_then_flushes_then_the_room_stops() {
    let t0 = Instant::now();
    let mut cfg = config(Kind::Yjs);
    cfg.yjs_save_interval = Duration::from_secs(3600);
    let (mut core, m) = room(cfg, 1, t0);
    for i in 0..=SaveBudget::BURST as usize {
        core.yjs_frame(m[0], &yjs_update(&format!("{i}")), true, None, t0);
        if !saves(&core.take_effects()).is_empty() {
            core.saved(stored(Stored::Cache), t0);
        }
    }
    assert!(!core.is_saved(), "the last update waits for the budget");

    core.leave(m[0], t0);
    let effects = core.take_effects();
    assert!(matches!(effects[0], Effect::Remove(id) if id == m[0]));
    assert_eq!(saves(&effects).len(), 1, "leaving saves at once");
    core.saved(stored(Stored::Cache), t0);
    assert!(matches!(core.take_effects()[..], [Effect::Persist]));
    core.persisted();
    assert!(matches!(core.take_effects()[..], [Effect::Stop]));
}

#[test]
fn a_room_nobody_joins_retires_after_its_grace() {
    let t0 = Instant::now();
    let (mut core, _) = room(config(Kind::Json), 0, t0);
    assert_eq!(core.next_deadline(), Some(t0 + IDLE_GRACE));
    core.tick(t0 + IDLE_GRACE);
    assert!(matches!(core.take_effects()[..], [Effect::Persist]));
    assert_eq!(core.next_deadline(), None);
}

#[test]
fn another_replicas_entry_is_relayed_to_every_member_and_not_saved() {
    let t0 = Instant::now();
    let (mut core, _) = room(config(Kind::Yjs), 2, t0);
    let doc = Doc::new();
    let t = doc.get_or_insert_text("t");
    let update = {
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 0, "remote");
        txn.encode_update_v1()
    };
    let entry = Version::new(core.doc().clone(), Kind::Yjs, Bytes::from(update));

    core.remote(vec![entry], Vec::new(), t0);

    let effects = core.take_effects();
    assert!(matches!(
        &effects[..],
        [Effect::Broadcast { except: None, .. }]
    ));
    let current = core.current().unwrap().unwrap();
    let held = yrs::Doc::new();
    {
        let mut txn = held.transact_mut();
        let update = yrs::Update::decode_v1(&current.content).unwrap();
        txn.apply_update(update).unwrap();
    }
    let text = held.get_or_insert_text("t");
    assert_eq!(text.get_string(&held.transact()), "remote");
}

#[test]
fn an_edited_room_proposes_a_version_every_interval_and_as_it_stops() {
    let t0 = Instant::now();
    let mut cfg = config(Kind::Yjs);
    cfg.history = true;
    let interval = cfg.history_interval;
    let (mut core, m) = room(cfg, 1, t0);
    core.tick(t0 + interval);
    assert!(
        core.take_effects().is_empty(),
        "unchanged: nothing proposed"
    );

    core.yjs_frame(m[0], &yjs_update("x"), true, None, t0 + interval);
    core.saved(stored(Stored::Cache), t0 + interval);
    core.take_effects();
    assert_eq!(core.next_deadline(), Some(t0 + interval * 2));
    core.tick(t0 + interval * 2);
    let effects = core.take_effects();
    assert!(
        matches!(&effects[..], [Effect::Cut(v)] if v.why == CutReason::Interval && v.users == ["anonymous"])
    );
    assert!(core.stopped(), "a yjs room at rest is folded");
    assert!(core.take_effects().is_empty(), "nothing new: no version");
}

#[test]
fn shutdown_closes_every_member_and_answers_what_is_not_saved() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Yjs), 2, t0);
    core.yjs_frame(m[0], &yjs_update("late"), true, None, t0);
    core.take_effects();

    let unsaved = core.close(t0);

    assert!(unsaved.is_some(), "its save is still in flight");
    let effects = core.take_effects();
    let closes = effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Send {
                    frame: Outbound::Close { code: 1001, .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(closes, 2);
    assert_eq!(core.members(), 0);
    assert_eq!(core.refusal(), Some(RoomError::Closing));
}

#[test]
fn a_refused_frame_closes_its_member_and_answers_its_status_false() {
    let t0 = Instant::now();
    let (mut core, m) = room(config(Kind::Yjs), 2, t0);

    core.yjs_frame(m[0], b"\xff\xff", true, Some(WaiterId(9)), t0);

    let effects = core.take_effects();
    assert!(
        matches!(&effects[0], Effect::Send { to, frame: Outbound::Close { code: 1007, .. } } if *to == m[0])
    );
    assert_eq!(
        answers(&effects),
        vec![(WaiterId(9), Answer::Status(false))]
    );
}

/// Many seeded scripts through the simulator, which checks the core's rules at every step
/// (at most one save in flight, every waiter answered once, frames only for members...).
#[test]
fn seeded_scripts_keep_the_rooms_rules() {
    use rand::{Rng, SeedableRng};
    let mut total = sim::Tally::default();
    let mut stops = 0;
    for seed in 0..300u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let len = rng.random_range(0..400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let kind = if seed % 3 == 0 { Kind::Json } else { Kind::Yjs };
        let steps = sim::Step::decode(&bytes);
        let run = std::panic::catch_unwind(|| sim::Sim::run(kind, &steps));
        let Ok(tally) = run else {
            panic!("seed {seed} ({kind:?}) broke a rule: {steps:?}");
        };
        total.saves += tally.saves;
        total.answers += tally.answers;
        total.removed += tally.removed;
        stops += usize::from(tally.stopped);
    }
    // The scripts reach what they are meant to check.
    assert!(total.saves > 1_000 && total.answers > 1_000, "{total:?}");
    assert!(
        total.removed > 100 && stops > 10,
        "{total:?}, {stops} stopped"
    );
}
