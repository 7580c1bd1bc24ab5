//! The documents the reader's next reads cover, in the order they moved: each read takes the
//! oldest [`READ_DOCS`](crate::log::READ_DOCS), so a document that moved waits for at most the
//! reads of those that moved before it, however busy the others are.

use std::collections::{HashSet, VecDeque};

use crate::doc::DocId;

#[derive(Default)]
pub(super) struct Moved {
    order: VecDeque<DocId>,
    queued: HashSet<DocId>,
}

impl Moved {
    /// Queues `doc` unless it is queued already (it keeps its place).
    pub(super) fn insert(&mut self, doc: DocId) {
        if self.queued.insert(doc.clone()) {
            self.order.push_back(doc);
        }
    }

    pub(super) fn extend(&mut self, docs: impl IntoIterator<Item = DocId>) {
        for doc in docs {
            self.insert(doc);
        }
    }

    /// The `n` that moved first, taken off the queue.
    pub(super) fn take(&mut self, n: usize) -> Vec<DocId> {
        let n = n.min(self.order.len());
        let taken: Vec<DocId> = self.order.drain(..n).collect();
        for doc in &taken {
            self.queued.remove(doc);
        }
        taken
    }

    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<DocId> {
        names.iter().map(|n| DocId::parse(n).unwrap()).collect()
    }

    #[test]
    fn documents_are_taken_in_the_order_they_first_moved_once_each() {
        let mut moved = Moved::default();
        moved.extend(ids(&["a", "b", "c", "a"]));
        moved.insert(ids(&["b"])[0].clone());
        assert_eq!(moved.take(2), ids(&["a", "b"]));
        moved.extend(ids(&["a", "d"]));
        assert_eq!(moved.take(10), ids(&["c", "a", "d"]));
        assert!(moved.is_empty());
        assert_eq!(moved.take(1), Vec::<DocId>::new());
    }
}
