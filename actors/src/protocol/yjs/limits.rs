//! What one connection may put into a room's Yjs document and awareness (issue 11, items 10
//! and 13). A frame is checked whole, decoded but before any of it is applied, so a refused frame
//! changes nothing and reaches nobody.

use foldhash::HashSet;

use yrs::sync::Message;
use yrs::updates::decoder::Decode;
use yrs::{ClientID, ReadTxn, Transact, Update};

use super::{YjsDoc, YjsError};

/// Bounds on a document and on what one connection may announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YjsLimits {
    /// Awareness client ids one connection may introduce over its life. Ids it announced gone
    /// still count: the server keeps a small record of every id it heard of, so a connection
    /// that cycled through fresh ids would grow it without end.
    pub max_awareness_clients: usize,
    /// The largest awareness state (its JSON text) of one client id, in bytes.
    pub max_awareness_state_bytes: usize,
    /// The document's encoded state may not grow beyond this many bytes. A state loaded larger
    /// than this is served as it is; it only cannot grow.
    pub max_state_bytes: usize,
    /// How deeply shared types and the values inside them may nest. Every recursive walk over
    /// a document (yrs's decoding, deletion and garbage collection, the renderings) is bounded
    /// by it, so no update can overflow a thread's stack.
    pub max_depth: usize,
}

/// `limits.max_yjs_depth`'s default (see `config/base.toml`).
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// The highest `limits.max_yjs_depth` may be set: yrs's recursive walks use a few hundred bytes
/// of stack per level, so 1,024 levels stay well inside a 2 MiB thread stack.
pub const DEPTH_CEILING: usize = 1024;

impl YjsLimits {
    /// No bounds but the nesting bound, which protects the process itself (tools, benches, the
    /// fuzz target).
    pub const fn unlimited() -> Self {
        YjsLimits {
            max_awareness_clients: usize::MAX,
            max_awareness_state_bytes: usize::MAX,
            max_state_bytes: usize::MAX,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl Default for YjsLimits {
    fn default() -> Self {
        YjsLimits::unlimited()
    }
}

/// Who sent a frame.
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    /// False for read-only tokens: their document updates are dropped.
    pub may_write: bool,
    /// Awareness client ids this connection introduced so far.
    pub owns: &'a HashSet<ClientID>,
}

impl YjsDoc {
    /// The awareness client ids the frame would introduce for `sender`: ids it does not own that
    /// it gives a state the server does not hold. Refused past the limits.
    ///
    /// Providers echo every awareness change they see, removals of other clients included, so
    /// a removal is never a claim. A removal of a client the server never heard of would only
    /// leave a record behind (yrs keeps one per id it was told about): it is dropped here.
    pub(super) fn awareness_claims(
        &self,
        messages: &mut Vec<Message>,
        sender: Sender<'_>,
    ) -> Result<Vec<ClientID>, YjsError> {
        let limits = &self.limits;
        let mut claims = Vec::new();
        for message in messages.iter_mut() {
            let Message::Awareness(update) = message else {
                continue;
            };
            update.clients.retain(|id, entry| {
                !(is_removal(&entry.json) && self.awareness.meta(*id).is_none())
            });
            for (id, entry) in &update.clients {
                if entry.json.len() > limits.max_awareness_state_bytes {
                    return Err(YjsError::AwarenessLimit(format!(
                        "an awareness state of {} bytes (at most {})",
                        entry.json.len(),
                        limits.max_awareness_state_bytes
                    )));
                }
                // Every peer parses it: the document's nesting bound holds for it too.
                let max_depth = u32::try_from(limits.max_depth).unwrap_or(u32::MAX);
                if let Err(depth) = super::nesting::json_within(&entry.json, max_depth) {
                    return Err(YjsError::AwarenessLimit(format!(
                        "an awareness state nesting {depth} levels (at most {max_depth})"
                    )));
                }
                let new =
                    !is_removal(&entry.json) && !sender.owns.contains(id) && !self.holds_state(*id);
                if new && !claims.contains(id) {
                    claims.push(*id);
                }
            }
        }
        messages.retain(|m| !matches!(m, Message::Awareness(u) if u.clients.is_empty()));
        if sender.owns.len().saturating_add(claims.len()) > limits.max_awareness_clients {
            return Err(YjsError::AwarenessLimit(format!(
                "more than {} awareness client ids on one connection",
                limits.max_awareness_clients
            )));
        }
        Ok(claims)
    }

    pub(super) fn holds_state(&self, id: ClientID) -> bool {
        self.awareness.state::<serde::de::IgnoredAny>(id).is_some()
    }
}

/// An awareness entry whose state is `null`: the client is gone.
fn is_removal(json: &str) -> bool {
    json.trim() == "null"
}

impl YjsDoc {
    /// Refuses the frame's document updates if they would grow the state beyond the limit.
    /// `state_bytes` is an estimate that only ever over-counts (each applied update adds its
    /// full length); only when it says "too big" is the real merged size computed, so the
    /// costly check runs near the limit alone. A frame refused by it is remembered
    /// ([`RefusedFrames`](super::refused::RefusedFrames)): sent again, it is refused by
    /// [`refused_before`](Self::refused_before) without merging.
    ///
    /// An update's own length is no ground to refuse it, even when it alone is more than the
    /// room left: a reconnecting client's sync step 2 repeats what the document holds (its
    /// whole delete set, content the document got from another client), so it may add far less
    /// than its length, or nothing.
    pub(super) fn check_growth(
        &mut self,
        frame: &[u8],
        messages: &[Message],
    ) -> Result<(), YjsError> {
        let max = self.limits.max_state_bytes;
        let updates = super::document_updates(messages);
        let growth: usize = updates.iter().map(|u| u.len()).sum();
        if growth == 0 || self.state_bytes.saturating_add(growth) <= max {
            return Ok(());
        }
        // A reconnecting client's step 2 repeats most of the document: what counts is the
        // size of the merge, not of the update.
        let state = self.state();
        let merged =
            yrs::merge_updates_v1(std::iter::once(&state[..]).chain(updates.iter().copied()))
                .map_err(|e| YjsError::BadUpdate(e.to_string()))?;
        if merged.len() > max.max(state.len()) {
            let why = format!(
                "the document would grow from {} to {} bytes, over limits.max_yjs_state_bytes ({max})",
                state.len(),
                merged.len()
            );
            // The estimate is exact again: updates that fit need no merge until it is off by
            // their lengths.
            self.state_bytes = state.len();
            let clocks = self.clocks_of(&updates);
            self.refused.remember(frame, clocks, &why);
            return Err(YjsError::StateLimit(why));
        }
        // The merge is the new estimate once applied; the estimate counts the updates again.
        self.state_bytes = merged.len().saturating_sub(growth);
        Ok(())
    }

    /// Refuses a frame refused for the state limit before, if nothing since could have made
    /// room for it. Costs at most a hash of the frame.
    pub(super) fn refused_before(&self, frame: &[u8]) -> Result<(), YjsError> {
        let doc = self.awareness.doc();
        let clock = |client| doc.transact().state_vector().get(&client);
        match self.refused.refused(frame, clock) {
            Some(why) => Err(YjsError::StateLimit(format!("{why} (sent again)"))),
            None => Ok(()),
        }
    }

    /// The document's clock for every client whose blocks `updates` carry. An update that does
    /// not decode carries nothing to note (the merge would have refused it).
    fn clocks_of(&self, updates: &[&[u8]]) -> Vec<(ClientID, u32)> {
        let sv = self.awareness.doc().transact().state_vector();
        let mut clocks: Vec<(ClientID, u32)> = Vec::new();
        for raw in updates {
            let Ok(Ok(update)) = super::guarded(|| Update::decode_v1(raw)) else {
                continue;
            };
            for (client, _) in update.state_vector().iter() {
                if !clocks.iter().any(|(c, _)| c == client) {
                    clocks.push((*client, sv.get(client)));
                }
            }
        }
        clocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
    use yrs::sync::SyncMessage;
    use yrs::updates::encoder::Encode;
    use yrs::{Doc, Text, Transact};

    fn awareness(ids: &[u64], state: &str) -> Vec<u8> {
        let clients: HashMap<_, _> = ids
            .iter()
            .map(|id| {
                let entry = AwarenessUpdateEntry {
                    clock: 1,
                    json: state.into(),
                };
                (ClientID::new(*id), entry)
            })
            .collect();
        Message::Awareness(AwarenessUpdate { clients }).encode_v1()
    }

    fn limits(clients: usize, state_bytes: usize, doc_bytes: usize) -> YjsLimits {
        YjsLimits {
            max_awareness_clients: clients,
            max_awareness_state_bytes: state_bytes,
            max_state_bytes: doc_bytes,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    fn typing(doc: &Doc, text: &str) -> Vec<u8> {
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        let end = t.len(&txn);
        t.insert(&mut txn, end, text);
        let update = txn.encode_update_v1();
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    }

    #[test]
    fn a_connection_may_introduce_a_few_awareness_ids_and_no_more() {
        let mut doc = YjsDoc::new().with_limits(limits(2, 100, usize::MAX));
        let mut owns = HashSet::default();
        fn sender(owns: &HashSet<ClientID>) -> Sender<'_> {
            Sender {
                may_write: false,
                owns,
            }
        }

        let handled = doc
            .handle_from(&awareness(&[1, 2], "{}"), sender(&owns))
            .unwrap();
        owns.extend(handled.added_clients);
        // Its own ids again, and removing one, are fine; the removed id still counts.
        doc.handle_from(&awareness(&[1], "{\"a\":1}"), sender(&owns))
            .unwrap();
        doc.handle_from(&awareness(&[2], "null"), sender(&owns))
            .unwrap();

        let refused = doc.handle_from(&awareness(&[3], "{}"), sender(&owns));
        assert!(
            matches!(refused, Err(YjsError::AwarenessLimit(_))),
            "{refused:?}"
        );
        assert!(!doc.holds_state(ClientID::new(3)), "nothing of it applied");
    }

    #[test]
    fn echoed_removals_of_other_clients_cost_no_claim_and_unknown_ones_leave_no_record() {
        let mut doc = YjsDoc::new().with_limits(limits(1, 100, usize::MAX));
        let (mut carol, alice) = (HashSet::default(), HashSet::default());
        fn as_member(owns: &HashSet<ClientID>) -> Sender<'_> {
            Sender {
                may_write: true,
                owns,
            }
        }
        let claimed = doc.handle_from(&awareness(&[7], "{}"), as_member(&carol));
        carol.extend(claimed.unwrap().added_clients);
        let mut removal = awareness(&[7], "null");
        removal.extend(awareness(&[8, 9], "null")); // never heard of
        for _ in 0..3 {
            let handled = doc.handle_from(&removal, as_member(&alice)).unwrap();
            assert!(handled.added_clients.is_empty());
        }
        assert!(
            doc.awareness.meta(ClientID::new(8)).is_none(),
            "no record kept"
        );
        assert!(!doc.holds_state(ClientID::new(7)));
        // Alice may still announce herself: her one id.
        doc.handle_from(&awareness(&[1], "{}"), as_member(&alice))
            .unwrap();
    }

    #[test]
    fn an_awareness_state_over_the_byte_limit_is_refused_whole() {
        let mut doc = YjsDoc::new().with_limits(limits(10, 20, usize::MAX));
        let owns = HashSet::default();
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(30));
        let mut frame = awareness(&[1], "{}");
        frame.extend(awareness(&[2], &big));
        let refused = doc.handle_from(
            &frame,
            Sender {
                may_write: true,
                owns: &owns,
            },
        );
        assert!(
            matches!(refused, Err(YjsError::AwarenessLimit(_))),
            "{refused:?}"
        );
        assert!(
            !doc.holds_state(ClientID::new(1)),
            "the frame is refused whole"
        );
    }

    #[test]
    fn updates_that_would_grow_the_state_past_the_limit_are_refused_and_change_nothing() {
        let mut doc = YjsDoc::new().with_limits(limits(10, 10, 1_000));
        let writer = Doc::new();
        let owns = HashSet::default();
        let sender = Sender {
            may_write: true,
            owns: &owns,
        };
        for _ in 0..8 {
            doc.handle_from(&typing(&writer, &"a".repeat(100)), sender)
                .unwrap();
        }
        let before = doc.encode_state();

        let refused = doc.handle_from(&typing(&writer, &"b".repeat(300)), sender);

        assert!(
            matches!(refused, Err(YjsError::StateLimit(_))),
            "{refused:?}"
        );
        assert_eq!(doc.encode_state(), before);
        // A client resending the whole document (a reconnect's step 2) adds nothing: accepted.
        let fresh = Doc::new();
        fresh
            .transact_mut()
            .apply_update(yrs::Update::decode_v1(&before).unwrap())
            .unwrap();
        let whole = fresh
            .transact()
            .encode_state_as_update_v1(&Default::default());
        let step2 = Message::Sync(SyncMessage::SyncStep2(whole)).encode_v1();
        doc.handle_from(&step2, sender).unwrap();
        assert_eq!(doc.encode_state().len(), before.len());
    }

    use yrs::updates::decoder::Decode;
    use yrs::ReadTxn;
}
