//! The room's side: the frames played to a `YjsDoc`, as the room actor plays its members'
//! frames, and every entry point checked against the others.

use docroom_actors::protocol::yjs::{step2, YjsDoc, YjsError};
use serde_json::Value;
use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::{Doc, ReadTxn, Transact, Update};

use crate::clients::Step;

/// Plays the frames to a room's document, checking it after each.
pub fn serve(steps: Vec<Step>) {
    let mut room = YjsDoc::new();
    // Fed what the room applied, as another replica of the room is.
    let mut replica = YjsDoc::new();
    for step in steps {
        let Step::Frame { frame, may_write } = step else {
            check(&room, &mut replica);
            continue;
        };
        // The shared answer to a fresh joiner is kept until the document changes: it must
        // be what an encoding of the document now would be.
        assert!(
            room.state() == room.encode_state(),
            "the shared state is stale"
        );
        let before = room.encode_state();
        match room.handle(&frame, may_write) {
            // yrs failed inside the update: the room starts afresh from what is stored, which
            // is what it held before this frame.
            Err(YjsError::Broken(_)) => room = afresh(&before),
            Ok(handled) if matches!(handled.error, Some(YjsError::Broken(_))) => {
                room = afresh(&before)
            }
            Err(_) => assert!(
                room.encode_state() == before,
                "a refused frame changed the document"
            ),
            Ok(handled) => {
                if !may_write {
                    assert!(
                        handled.applied.is_empty(),
                        "a read-only sender's update was applied"
                    );
                    assert!(
                        room.encode_state() == before,
                        "a read-only sender changed the document"
                    );
                }
                for update in &handled.applied {
                    match replica.absorb_update(update) {
                        Ok(_) => {}
                        // yrs failed inside it on the replica's document (its arithmetic bug
                        // depends on how the document's blocks lie): that room starts afresh
                        // from what is stored, which holds what this room saved.
                        Err(YjsError::Broken(_)) => {
                            replica = afresh(&room.encode_state());
                            break;
                        }
                        Err(e) => panic!("what the room applied applies to a replica: {e}"),
                    }
                }
                for frame in &handled.awareness {
                    replica.apply_remote_awareness(frame);
                }
                let answers = handled
                    .syncs
                    .iter()
                    .map(|answer| step2::message(&answer.update));
                for frame in handled
                    .reply
                    .iter()
                    .chain(&handled.broadcast)
                    .cloned()
                    .chain(answers)
                {
                    let mut decoder = DecoderV1::new(Cursor::new(&frame));
                    let messages = MessageReader::new(&mut decoder).collect::<Result<Vec<_>, _>>();
                    assert!(
                        messages.is_ok_and(|m| !m.is_empty()),
                        "the room sent a bad frame"
                    );
                }
            }
        }
        YjsDoc::load(&room.encode_state()).expect("the room's state loads back");
    }
    assert!(room.state() == room.encode_state(), "the shared state is stale");
    check(&room, &mut replica);
}

/// A room started afresh on the stored state.
fn afresh(stored: &[u8]) -> YjsDoc {
    YjsDoc::load(stored).expect("the stored state loads")
}

/// The other entry points: the state loads, renders and merges as the live document does.
fn check(room: &YjsDoc, replica: &mut YjsDoc) {
    let state = room.encode_state();
    let loaded = YjsDoc::load(&state).expect("the room's state loads back");
    let json = room.to_json().map(canonical);
    if let (Ok(live), Ok(stored), false) = (&json, loaded.to_json(), waits(&state)) {
        let stored = canonical(stored);
        assert!(
            *live == stored,
            "the stored state renders as the live document"
        );
    }
    replica
        .absorb(&state)
        .expect("the room's state merges into a replica");
    if let (Ok(live), Ok(merged)) = (&json, replica.to_json()) {
        let merged = canonical(merged);
        assert!(
            *live == merged,
            "a replica fed the room's updates renders as the room"
        );
    }
    let mut reloaded = YjsDoc::new();
    reloaded
        .absorb(&state)
        .expect("the room's state merges into an empty document");
    let _ = (room.greeting(), loaded.greeting(), reloaded.to_json());
}

/// A rendering with the order yrs leaves to chance taken out: XML is printed with an element's
/// attributes, and a map embedded in text with its keys, in hash order, so a string holding
/// XML or a map counts as the characters it holds. Walked with a heap stack, as the value may
/// be deep.
fn canonical(mut value: Value) -> Value {
    let mut stack = vec![&mut value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.contains(['<', '{']) => {
                let mut chars: Vec<char> = s.chars().collect();
                chars.sort_unstable();
                *s = chars.into_iter().collect();
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(entries) => stack.extend(entries.values_mut()),
            _ => {}
        }
    }
    value
}

/// Part of the state waits for an update the room never got. Then the live document may show
/// more than a reload does: yrs integrates a block that arrived out of order but depends on
/// nothing missing (leaving a hole before it), while the state lists it with the blocks that
/// wait, so a reload holds it back with them until the hole is filled.
fn waits(state: &[u8]) -> bool {
    let doc = Doc::new();
    let Ok(update) = Update::decode_v1(state) else {
        return true;
    };
    let mut txn = doc.transact_mut();
    let _ = txn.apply_update(update);
    txn.store().pending_update().is_some() || txn.store().pending_ds().is_some()
}
