//! Updates on which yrs fails inside its own transaction: the structured fuzzer found a
//! sequence of valid updates (formatted text with emoji and joiners, then a deletion) on which
//! a length counter of yrs underflows. The failure is the frame's error, never a panic out of
//! `handle`, and it says the document broke.

use super::*;

/// The frames, in the order the fuzzer's clients sent them; the last is the deletion yrs fails
/// on (the api tests play the same file to a server).
fn frames() -> Vec<Vec<u8>> {
    include_str!("../../../../tests/data/yrs-underflow.hex")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

#[test]
fn a_deletion_yrs_fails_on_is_the_frames_error_and_says_the_document_broke() {
    let frames = frames();
    let (breaking, before) = frames.split_last().expect("frames");
    let mut room = YjsDoc::new();
    for frame in before {
        let handled = room.handle(frame, true).expect("applies");
        assert!(handled.error.is_none() && handled.changed);
    }

    let handled = room.handle(breaking, true).expect("decodes");

    assert!(
        matches!(handled.error, Some(YjsError::Broken(_))),
        "{:?}",
        handled.error
    );
    assert!(handled.applied.is_empty(), "nothing of it is saved");
}

/// The same updates as another replica's log entries: yrs fails on the deletion there too, and
/// that says the document broke (the room that absorbs it starts afresh), not that the update
/// is unreadable.
#[test]
fn a_deletion_yrs_fails_on_absorbed_from_another_replica_says_the_document_broke() {
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;
    let updates: Vec<Vec<u8>> = frames()
        .iter()
        .map(
            |frame| match Message::decode_v1(frame).expect("a sync frame") {
                Message::Sync(SyncMessage::Update(u)) => u,
                other => panic!("not an update: {other:?}"),
            },
        )
        .collect();
    let (breaking, before) = updates.split_last().expect("updates");
    let mut replica = YjsDoc::new();
    for update in before {
        replica.absorb_update(update).expect("applies");
    }

    let absorbed = replica.absorb_update(breaking);

    assert!(matches!(absorbed, Err(YjsError::Broken(_))), "{absorbed:?}");
}
