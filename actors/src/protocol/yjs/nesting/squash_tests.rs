//! Merging an update's chains changes nothing a reader of the document can tell, and makes a
//! chain one block.

use yrs::updates::decoder::Decode;
use yrs::{Array, ArrayPrelim, Doc, GetString, Map, ReadTxn, StateVector, Text, Transact, Update};

use super::squash::squash_chains;
use crate::protocol::yjs::YjsDoc;

/// A tiny deterministic generator: the same edits every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(below.max(1))) as u32
    }
}

/// `count` one-character appends by one client, each its own transaction, as a typist's.
fn typed(client: u64, count: usize) -> Vec<Vec<u8>> {
    let doc = Doc::with_client_id(client);
    let text = doc.get_or_insert_text("text");
    (0..count)
        .map(|i| {
            let mut txn = doc.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, if i % 2 == 0 { "a" } else { "é" });
            txn.encode_update_v1()
        })
        .collect()
}

fn applied(parts: &[&[u8]]) -> Doc {
    let doc = Doc::new();
    for part in parts {
        doc.transact_mut()
            .apply_update(Update::decode_v1(part).unwrap())
            .unwrap();
    }
    doc
}

fn state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

#[test]
fn a_merged_run_of_typing_becomes_one_block_and_the_same_document() {
    let parts = typed(7, 2_000);
    let merged = yrs::merge_updates_v1(parts.iter().map(|p| &p[..])).unwrap();

    let squashed = squash_chains(&merged).expect("a chain of 2,000 blocks");

    assert!(
        squashed.len() < merged.len() / 2,
        "{} of {}",
        squashed.len(),
        merged.len()
    );
    assert_eq!(state(&applied(&[&squashed])), state(&applied(&[&merged])));
    assert_eq!(
        state(&applied(&[&squashed])),
        state(&applied(&parts.iter().map(|p| &p[..]).collect::<Vec<_>>()))
    );
}

#[test]
fn short_chains_and_single_blocks_are_left_as_they_are() {
    let parts = typed(7, 5);
    let merged = yrs::merge_updates_v1(parts.iter().map(|p| &p[..])).unwrap();
    assert_eq!(squash_chains(&merged), None);
    assert_eq!(squash_chains(&parts[0]), None);
    assert_eq!(squash_chains(b"not an update"), None);
}

#[test]
fn a_member_frame_holding_a_long_chain_is_applied_and_saved_merged() {
    let parts = typed(9, 20_000);
    let merged = yrs::merge_updates_v1(parts.iter().map(|p| &p[..])).unwrap();
    let frame = crate::protocol::yjs::step2::message(&merged);
    let mut doc = YjsDoc::new();

    let handled = doc.handle(&frame, true).unwrap();

    assert!(handled.changed);
    assert!(
        handled.applied[0].len() < merged.len() / 2,
        "saved as it came"
    );
    let loaded = YjsDoc::load(&doc.encode_state()).unwrap();
    assert_eq!(
        loaded.to_json().unwrap()["text"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        20_000
    );
}

/// Random edits by three clients (text inserts and deletes anywhere, map sets, array pushes),
/// each its own update; their merge, squashed or not, makes the same document, also on top of a
/// document that holds concurrent edits of a fourth client.
#[test]
fn merged_and_squashed_updates_make_the_same_document_for_random_edits() {
    let mut squashed_seeds = 0;
    for seed in 0..40u64 {
        let mut rng = Lcg(seed);
        let docs: Vec<Doc> = (1..=3).map(Doc::with_client_id).collect();
        let mut updates = Vec::new();
        for _ in 0..300 {
            let who = rng.next(3) as usize;
            let doc = &docs[who];
            let text = doc.get_or_insert_text("text");
            let map = doc.get_or_insert_map("map");
            let list = doc.get_or_insert_array("list");
            // Offsets are in bytes (the document's default): only at characters' starts.
            let now = text.get_string(&doc.transact());
            let starts: Vec<(u32, u32)> = now
                .char_indices()
                .map(|(at, c)| (at as u32, c.len_utf8() as u32))
                .collect();
            let mut at = match rng.next(3) {
                0 if !starts.is_empty() => starts[rng.next(starts.len() as u32) as usize].0,
                _ => now.len() as u32,
            };
            // A burst of typing at one place, one transaction a keystroke, or one other edit.
            let kind = rng.next(10);
            let burst = match kind {
                0..=5 => 1 + rng.next(24),
                _ => 1,
            };
            for _ in 0..burst {
                let mut txn = doc.transact_mut();
                match kind {
                    0..=5 => {
                        let piece = ["x", "yz", "ü", "🙂"][rng.next(4) as usize];
                        text.insert(&mut txn, at, piece);
                        at += piece.len() as u32;
                    }
                    6 if !starts.is_empty() => {
                        let (at, width) = starts[rng.next(starts.len() as u32) as usize];
                        text.remove_range(&mut txn, at, width);
                    }
                    7 => {
                        map.insert(&mut txn, format!("k{}", rng.next(4)), rng.next(100));
                    }
                    _ => {
                        let end = list.len(&txn);
                        list.insert(&mut txn, end, rng.next(1000));
                    }
                }
                let update = txn.encode_update_v1();
                drop(txn);
                // Every client hears every update, so later edits build on earlier ones.
                for other in &docs {
                    other
                        .transact_mut()
                        .apply_update(Update::decode_v1(&update).unwrap())
                        .unwrap();
                }
                updates.push(update);
            }
        }
        let merged = yrs::merge_updates_v1(updates.iter().map(|u| &u[..])).unwrap();
        let squashed = match squash_chains(&merged) {
            Some(squashed) => {
                squashed_seeds += 1;
                squashed
            }
            None => merged.clone(),
        };
        let concurrent = {
            let doc = Doc::with_client_id(4);
            let text = doc.get_or_insert_text("text");
            let list = doc.get_or_insert_array("list");
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "concurrent ");
            list.insert(&mut txn, 0, ArrayPrelim::default());
            txn.encode_update_v1()
        };
        for base in [None, Some(&concurrent)] {
            let on = |update: &[u8]| {
                let mut parts: Vec<&[u8]> = base.map(|b| &b[..]).into_iter().collect();
                parts.push(update);
                let doc = applied(&parts);
                let text = doc.get_or_insert_text("text");
                let json = YjsDoc::load(&state(&doc)).unwrap().to_json().unwrap();
                let txn = doc.transact();
                (text.get_string(&txn), json, txn.state_vector())
            };
            assert_eq!(on(&squashed), on(&merged), "seed {seed}");
        }
    }
    assert!(
        squashed_seeds > 30,
        "only {squashed_seeds} seeds held a chain"
    );
}
