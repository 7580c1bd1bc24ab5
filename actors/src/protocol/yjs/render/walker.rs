//! Shared types and the values inside them rendered as yrs's `to_json` renders them (XML types
//! as their XML text), walked with a stack on the heap: a document nested however deep costs
//! memory in proportion, never the thread's stack. Sequences are read through
//! [`sequence::read`](super::sequence::read), so nothing here costs more than linear time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use yrs::branch::BranchPtr;
use yrs::{Any, GetString, Map, Out, ReadTxn, Xml};

use super::sequence::{self, Sequence};
use super::value;

/// A shared type whose parts are being rendered.
enum Frame {
    Array {
        rest: std::vec::IntoIter<Out>,
        done: Vec<Any>,
    },
    Map {
        rest: std::vec::IntoIter<(String, Out)>,
        /// The key of the value being rendered.
        key: String,
        done: HashMap<String, Any>,
    },
    /// An XML element or fragment: its text so far, and the tag to close (none for a fragment).
    Xml {
        rest: std::vec::IntoIter<Out>,
        text: String,
        close: Option<Arc<str>>,
    },
}

/// What rendering one value takes: it is rendered at once, or its parts are to be walked.
enum Step {
    Done(Any),
    Walk(Frame),
}

/// `out` as yrs's `to_json` renders it.
pub(super) fn render<T: ReadTxn>(out: Out, txn: &T) -> Any {
    match open(out, txn) {
        Step::Done(any) => any,
        Step::Walk(frame) => walk(frame, txn),
    }
}

/// A sequence's elements as an array.
pub(super) fn array<T: ReadTxn>(elements: Vec<Out>, txn: &T) -> Any {
    let frame = Frame::Array {
        done: Vec::with_capacity(elements.len()),
        rest: elements.into_iter(),
    };
    walk(frame, txn)
}

/// A sequence's elements as the children of an XML fragment: their XML text, one after another.
pub(super) fn fragment<T: ReadTxn>(elements: Vec<Out>, txn: &T) -> Any {
    let frame = Frame::Xml {
        rest: elements.into_iter(),
        text: String::new(),
        close: None,
    };
    walk(frame, txn)
}

fn walk<T: ReadTxn>(first: Frame, txn: &T) -> Any {
    let mut stack = vec![first];
    let mut finished: Option<Any> = None;
    loop {
        let Some(top) = stack.last_mut() else {
            return finished.unwrap_or(Any::Null);
        };
        if let Some(part) = finished.take() {
            top.take(part);
        }
        match top.next_part() {
            Some(part) => match open(part, txn) {
                Step::Done(any) => finished = Some(any),
                Step::Walk(frame) => stack.push(frame),
            },
            None => finished = stack.pop().map(Frame::finish),
        }
    }
}

/// Renders `out` at once, or says which parts it has to walk.
fn open<T: ReadTxn>(out: Out, txn: &T) -> Step {
    let frame = match out {
        Out::Any(any) => return Step::Done(any),
        Out::YText(text) => return Step::Done(Any::from(text.get_string(txn))),
        // An XML text is formatted text, each run printed inside its marks' tags (embedded
        // types are not rendered). yrs renders it without recursion, in time and space that
        // grow with the runs times the marks open on each: a few in an editor's document, but
        // nothing here bounds a crafted one opening thousands at once.
        Out::YXmlText(text) => return Step::Done(Any::from(text.get_string(txn))),
        Out::YDoc(doc) => {
            let guid: HashMap<String, Any> = [("guid".to_string(), Any::from(doc.guid()))].into();
            return Step::Done(Any::from(guid));
        }
        Out::UndefinedRef(_) => return Step::Done(Any::Undefined),
        Out::YArray(array) => match sequence::read(branch(&array), txn) {
            Sequence::Empty => return Step::Done(Any::Array(Arc::from([]))),
            Sequence::Text(text) => return Step::Done(Any::from(text)),
            Sequence::Elements(elements) => Frame::Array {
                done: Vec::with_capacity(elements.len()),
                rest: elements.into_iter(),
            },
        },
        Out::YMap(map) => {
            let entries: Vec<(String, Out)> = map
                .keys(txn)
                .map(|key| {
                    let value = map.get(txn, key).unwrap_or(Out::Any(Any::Null));
                    (key.to_string(), value)
                })
                .collect();
            Frame::Map {
                done: HashMap::with_capacity(entries.len()),
                rest: entries.into_iter(),
                key: String::new(),
            }
        }
        Out::YXmlFragment(fragment) => Frame::Xml {
            rest: children(branch(&fragment), txn),
            text: String::new(),
            close: None,
        },
        Out::YXmlElement(element) => {
            let tag = element.tag().clone();
            let mut text = format!("<{tag}");
            for (name, value) in element.attributes(txn) {
                let _ = write!(text, " {name}=\"");
                match &value {
                    Out::Any(any) => value::print(any, &mut text),
                    // A shared type as an attribute prints as its type's name, as in yrs.
                    other => {
                        let _ = write!(text, "{other}");
                    }
                }
                text.push('"');
            }
            text.push('>');
            Frame::Xml {
                rest: children(branch(&element), txn),
                text,
                close: Some(tag),
            }
        }
    };
    Step::Walk(frame)
}

fn children<T: ReadTxn>(node: BranchPtr, txn: &T) -> std::vec::IntoIter<Out> {
    match sequence::read(node, txn) {
        Sequence::Empty => Vec::new(),
        Sequence::Text(text) => vec![Out::Any(Any::from(text))],
        Sequence::Elements(elements) => elements,
    }
    .into_iter()
}

fn branch(shared: &impl AsRef<yrs::branch::Branch>) -> BranchPtr {
    BranchPtr::from(shared.as_ref())
}

impl Frame {
    /// The next part to render, if any is left.
    fn next_part(&mut self) -> Option<Out> {
        match self {
            Frame::Array { rest, .. } => rest.next(),
            Frame::Map { rest, key, .. } => {
                let (next_key, value) = rest.next()?;
                *key = next_key;
                Some(value)
            }
            // Inside XML a child prints as yrs's `Out::to_string` prints it, which differs from
            // its JSON only for these two.
            Frame::Xml { rest, .. } => rest.next().map(|child| match child {
                Out::YDoc(doc) => Out::Any(Any::from(doc.to_string())),
                Out::UndefinedRef(_) => Out::Any(Any::from(String::new())),
                other => other,
            }),
        }
    }

    /// Takes the rendering of the part [`next_part`](Self::next_part) gave.
    fn take(&mut self, part: Any) {
        match self {
            Frame::Array { done, .. } => done.push(part),
            Frame::Map { key, done, .. } => {
                done.insert(std::mem::take(key), part);
            }
            Frame::Xml { text, .. } => value::print(&part, text),
        }
    }

    fn finish(self) -> Any {
        match self {
            Frame::Array { done, .. } => Any::Array(Arc::from(done)),
            Frame::Map { done, .. } => Any::from(done),
            Frame::Xml {
                mut text, close, ..
            } => {
                if let Some(tag) = close {
                    let _ = write!(text, "</{tag}>");
                }
                Any::from(text)
            }
        }
    }
}
