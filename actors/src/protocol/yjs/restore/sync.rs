//! The walk that changes a shared type of the copy into the old version's, and every shared type
//! nested in it, with the smallest change.
//!
//! Every shared type is a branch with a map part (a map's entries, an XML node's attributes) and
//! a sequence part (an array's elements, an XML node's children, a text's characters); each is
//! compared on its own, so a root is walked alike whatever it turns out to be:
//! - map part: keys the old one lacks are removed, values that differ set; a shared type under a
//!   key the old one holds a shared type of the same kind under is kept and walked in turn;
//! - sequence part: a text against a text ([`text`](super::text)), elements against elements
//!   ([`diff`](super::diff)): equal plain values and shared types of the same kind kept (the
//!   shared types walked in turn), the rest deleted and built anew. A sequence of another kind
//!   than the old one's is emptied, then filled.
//!
//! A shared type built anew is inserted empty and filled by the same walk, whose stack of pairs
//! to compare is on the heap: nesting costs memory, never the thread's stack.

use std::collections::HashMap;

use yrs::branch::{Branch, BranchPtr};
use yrs::types::text::DeltaPrelim;
use yrs::types::xml::{XmlDeltaPrelim, XmlElementPrelim, XmlFragmentPrelim};
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, Doc, In, Map, MapPrelim, MapRef, Options, Out, ReadTxn,
    Text, TextRef, Transaction, TransactionMut,
};

use super::super::render::sequence::{self, Sequence};
use super::diff;
use super::text::{self, Run};

/// A shared type of the copy to change into the old version's (`None`: into an empty one).
#[derive(Clone, Copy)]
pub(super) struct Task {
    pub(super) cur: BranchPtr,
    pub(super) old: Option<BranchPtr>,
}

/// A sequence part as compared: nothing, a text's runs, or elements.
enum Part {
    Empty,
    Text(Vec<Run>),
    Elements(Vec<Out>),
}

/// Walks every pair in `tasks`, and the pairs nested in them.
pub(super) fn run(txn: &mut TransactionMut, old_txn: &Transaction, mut tasks: Vec<Task>) {
    while let Some(task) = tasks.pop() {
        map_part(txn, old_txn, task, &mut tasks);
        sequence_part(txn, old_txn, task, &mut tasks);
    }
}

/// The branch behind a shared type (`None` for a plain value, or a subdocument, which has no
/// content here to compare).
pub(super) fn branch(out: &Out) -> Option<BranchPtr> {
    fn of(shared: &impl AsRef<Branch>) -> Option<BranchPtr> {
        Some(BranchPtr::from(shared.as_ref()))
    }
    match out {
        Out::YText(t) => of(t),
        Out::YArray(a) => of(a),
        Out::YMap(m) => of(m),
        Out::YXmlElement(e) => of(e),
        Out::YXmlFragment(f) => of(f),
        Out::YXmlText(t) => of(t),
        Out::UndefinedRef(b) => Some(*b),
        Out::Any(_) | Out::YDoc(_) => None,
    }
}

/// Whether `cur` may stay where `old` is: an equal plain value, or a shared type of the same
/// kind (an element of the same name, a subdocument of the same guid), to be walked in turn.
pub(super) fn keeps(cur: &Out, old: &Out) -> bool {
    match (cur, old) {
        (Out::Any(a), Out::Any(b)) => a == b,
        (Out::YText(_), Out::YText(_))
        | (Out::YArray(_), Out::YArray(_))
        | (Out::YMap(_), Out::YMap(_))
        | (Out::YXmlFragment(_), Out::YXmlFragment(_))
        | (Out::YXmlText(_), Out::YXmlText(_))
        | (Out::UndefinedRef(_), Out::UndefinedRef(_)) => true,
        (Out::YXmlElement(a), Out::YXmlElement(b)) => a.tag() == b.tag(),
        (Out::YDoc(a), Out::YDoc(b)) => a.guid() == b.guid(),
        _ => false,
    }
}

/// The pair to walk when `cur` is kept for `old`, if they are shared types.
pub(super) fn pair(cur: &Out, old: &Out) -> Option<Task> {
    Some(Task {
        cur: branch(cur)?,
        old: Some(branch(old)?),
    })
}

/// What to insert for `old`: a plain value as itself, a shared type empty (then filled by the
/// walk), a subdocument as a new one of the same guid.
pub(super) fn empty_like(old: &Out) -> In {
    match old {
        Out::Any(any) => In::Any(any.clone()),
        Out::YText(_) => In::Text(DeltaPrelim::default()),
        Out::YArray(_) => In::Array(ArrayPrelim::default()),
        Out::YMap(_) => In::Map(MapPrelim::default()),
        Out::YXmlElement(e) => In::XmlElement(XmlElementPrelim::empty(e.tag().clone())),
        Out::YXmlFragment(_) => In::XmlFragment(XmlFragmentPrelim::default()),
        Out::YXmlText(_) => In::XmlText(XmlDeltaPrelim::default()),
        Out::YDoc(doc) => In::Doc(Doc::with_options(Options {
            guid: doc.guid(),
            ..Options::default()
        })),
        _ => In::Any(Any::Undefined),
    }
}

/// Queues the walk that fills `built` (just inserted for `old`), if it is a shared type.
fn fill(built: &Out, old: &Out, tasks: &mut Vec<Task>) {
    tasks.extend(pair(built, old));
}

/// The map part: keys `old` lacks removed, values that differ set.
fn map_part(txn: &mut TransactionMut, old_txn: &Transaction, task: Task, tasks: &mut Vec<Task>) {
    let map = MapRef::from(task.cur);
    let mut have: HashMap<String, Out> = map
        .iter(txn)
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    let want: Vec<(String, Out)> = match task.old {
        Some(old) => MapRef::from(old)
            .iter(old_txn)
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
        None => Vec::new(),
    };
    for (key, old) in want {
        match have.remove(&key) {
            Some(cur) if keeps(&cur, &old) => tasks.extend(pair(&cur, &old)),
            _ => {
                let built = map.insert(txn, key, empty_like(&old));
                fill(&built, &old, tasks);
            }
        }
    }
    for key in have.keys() {
        map.remove(txn, key);
    }
}

/// The sequence part: of the same kind as the old one's, compared; of another, emptied and
/// filled.
fn sequence_part(
    txn: &mut TransactionMut,
    old_txn: &Transaction,
    task: Task,
    tasks: &mut Vec<Task>,
) {
    let have = part(task.cur, txn);
    let want = task.old.map_or(Part::Empty, |old| part(old, old_txn));
    match (have, want) {
        (Part::Empty, Part::Empty) => {}
        (Part::Text(have), Part::Text(want)) => text::update(txn, task.cur, &have, &want, tasks),
        (Part::Elements(have), Part::Elements(want)) => {
            elements(txn, task.cur, &have, &want, tasks);
        }
        (have, want) => {
            match have {
                Part::Empty => {}
                Part::Text(runs) => {
                    let kind = txn.doc().offset_kind();
                    let len = runs.iter().map(|r| r.len(kind)).sum();
                    TextRef::from(task.cur).remove_range(txn, 0, len);
                }
                Part::Elements(have) => {
                    ArrayRef::from(task.cur).remove_range(txn, 0, index(have.len()));
                }
            }
            match want {
                Part::Empty => {}
                Part::Text(want) => text::update(txn, task.cur, &[], &want, tasks),
                Part::Elements(want) => elements(txn, task.cur, &[], &want, tasks),
            }
        }
    }
}

/// What a branch's sequence holds, read as the rendering reads it (never through yrs's
/// per-character element reads on text; see `sequence`).
fn part<T: ReadTxn>(branch: BranchPtr, txn: &T) -> Part {
    match sequence::read(branch, txn) {
        Sequence::Empty => Part::Empty,
        Sequence::Text(_) => Part::Text(text::runs(branch, txn)),
        Sequence::Elements(elements) => Part::Elements(elements),
    }
}

/// Changes the elements `have` of `cur` into `want`: those kept ([`diff::plan`]) stay, shared
/// ones walked in turn; the gaps between them are deleted and built anew.
fn elements(
    txn: &mut TransactionMut,
    cur: BranchPtr,
    have: &[Out],
    want: &[Out],
    tasks: &mut Vec<Task>,
) {
    let (kept, gaps) = diff::plan(have.len(), want.len(), |i, j| keeps(&have[i], &want[j]));
    for (i, j) in kept {
        tasks.extend(pair(&have[i], &want[j]));
    }
    let array = ArrayRef::from(cur);
    for gap in gaps {
        if !gap.have.is_empty() {
            array.remove_range(txn, index(gap.have.start), index(gap.have.len()));
        }
        for (i, old) in want[gap.want].iter().enumerate() {
            let built = array.insert(txn, index(gap.have.start + i), empty_like(old));
            fill(&built, old, tasks);
        }
    }
}

/// An index or a length as yrs takes it (a sequence held in memory has fewer than 2³² parts).
pub(super) fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}
