//! Whether an update adds anything to a document: Hocuspocus's SyncStatus (SPEC §5b) answers an
//! update that adds nothing at once, and tells a read-only sender whether its dropped update
//! would have changed the document.

use yrs::{ReadTxn, TransactionMut, Update};

/// After `txn` applied an update: it inserted blocks or deleted items the document held. An
/// update whose dependencies are missing waits in yrs's pending store and adds nothing yet.
pub(super) fn txn_added(txn: &TransactionMut<'_>) -> bool {
    txn.before_state() != txn.after_state() || !txn.delete_set().is_empty()
}

/// Without applying it: `update` holds a block beyond the document's state vector, or deletes
/// something the document has not deleted. The document's delete set is built for the check,
/// which costs in proportion to the document, so only read-only senders' updates pay it.
pub(super) fn would_add<T: ReadTxn>(txn: &T, update: &Update) -> bool {
    let sv = txn.state_vector();
    let inserts_more = update
        .insertions(true)
        .iter()
        .any(|(client, ranges)| ranges.iter().any(|r| r.end > sv.get(client)));
    if inserts_more {
        return true;
    }
    if update.delete_set().is_empty() {
        return false;
    }
    !update
        .delete_set()
        .diff(&txn.snapshot().delete_set)
        .is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, StateVector, Text, Transact};

    fn state(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn an_update_the_document_holds_adds_nothing_and_a_new_one_adds() {
        let source = Doc::new();
        let text = source.get_or_insert_text("t");
        text.insert(&mut source.transact_mut(), 0, "hello");
        let first = state(&source);
        let target = Doc::new();
        target
            .transact_mut()
            .apply_update(Update::decode_v1(&first).unwrap())
            .unwrap();

        let again = Update::decode_v1(&first).unwrap();
        assert!(!would_add(&target.transact(), &again));

        text.insert(&mut source.transact_mut(), 5, "!");
        let more = Update::decode_v1(&state(&source)).unwrap();
        assert!(would_add(&target.transact(), &more));
    }

    #[test]
    fn a_deletion_the_document_lacks_adds_and_a_repeated_one_does_not() {
        let source = Doc::new();
        let text = source.get_or_insert_text("t");
        text.insert(&mut source.transact_mut(), 0, "hello");
        let target = Doc::new();
        target
            .transact_mut()
            .apply_update(Update::decode_v1(&state(&source)).unwrap())
            .unwrap();
        text.remove_range(&mut source.transact_mut(), 0, 2);
        let deletion = state(&source);

        assert!(would_add(
            &target.transact(),
            &Update::decode_v1(&deletion).unwrap()
        ));
        let mut txn = target.transact_mut();
        txn.apply_update(Update::decode_v1(&deletion).unwrap())
            .unwrap();
        assert!(txn_added(&txn), "applying it deleted something");
        drop(txn);
        assert_eq!(
            target
                .get_or_insert_text("t")
                .get_string(&target.transact()),
            "llo"
        );
        assert!(!would_add(
            &target.transact(),
            &Update::decode_v1(&deletion).unwrap()
        ));
        let mut txn = target.transact_mut();
        txn.apply_update(Update::decode_v1(&deletion).unwrap())
            .unwrap();
        assert!(!txn_added(&txn), "applying it again adds nothing");
    }
}
