//! An XML fragment rendered as ProseMirror (Tiptap) JSON, `{"type":"doc","content":[…]}`
//! (SPEC §9), as y-prosemirror's `yXmlFragmentToProsemirrorJSON` renders it:
//!
//! - an element is a node: its tag is `type`, its attributes (if any) are `attrs`, and its
//!   children (if it has any, even an empty text) are `content`;
//! - a text is one `text` node per run of equal formatting, each format a mark
//!   `{"type": NAME, "attrs": VALUE}` (y-prosemirror stores a mark's attrs as the format's
//!   value);
//! - the fragment's own children are the document's `content`, a text among them as the array
//!   of its runs (y-prosemirror does not flatten the top level).
//!
//! A mark that may overlap itself is stored as its name with a suffix, which is dropped as
//! y-prosemirror drops it. One difference: a run's marks come in name order. yrs does not keep the order in which
//! formats were applied, which is the order y-prosemirror lists them in; ProseMirror orders a
//! node's marks by its schema when it parses the JSON, so the document it builds is the same.
//!
//! The walk keeps its stack on the heap, so a document nested however deep costs memory in
//! proportion, never the thread's stack; every element and text is read once.

use serde_json::{Map, Value};
use yrs::types::text::YChange;
use yrs::types::xml::XmlOut;
use yrs::{Out, ReadTxn, Text, Xml, XmlFragment, XmlFragmentRef};

use super::value;

/// An element whose children are being rendered (the fragment itself at the bottom).
struct Open {
    node: Map<String, Value>,
    content: Vec<Value>,
    rest: std::vec::IntoIter<XmlOut>,
    /// Whether it has children at all: then it gets `content`, even if they render as nothing.
    any: bool,
}

/// The fragment named `field` as ProseMirror JSON; a document with no such fragment is an
/// empty document.
pub(crate) fn document<T: ReadTxn>(txn: &T, field: &str) -> Value {
    let children = match txn.get_xml_fragment(field) {
        Some(fragment) => children(&fragment, txn),
        None => Vec::new(),
    };
    let mut doc = Map::new();
    doc.insert("type".into(), "doc".into());
    let mut stack = vec![Open {
        node: doc,
        content: Vec::new(),
        rest: children.into_iter(),
        any: true,
    }];
    loop {
        let at_top = stack.len() == 1;
        let top = stack.last_mut().expect("the document stays at the bottom");
        match top.rest.next() {
            Some(XmlOut::Element(element)) => {
                let mut node = Map::new();
                node.insert("type".into(), Value::from(element.tag().as_ref()));
                let attrs: Map<String, Value> = element
                    .attributes(txn)
                    .map(|(key, out)| (key.to_owned(), out_json(&out, txn)))
                    .collect();
                if !attrs.is_empty() {
                    node.insert("attrs".into(), Value::Object(attrs));
                }
                let rest = element.children(txn).collect::<Vec<_>>();
                stack.push(Open {
                    node,
                    content: Vec::new(),
                    any: !rest.is_empty(),
                    rest: rest.into_iter(),
                });
            }
            Some(XmlOut::Text(text)) => {
                let runs = text.diff(txn, YChange::identity).into_iter().map(|d| {
                    let mut run = Map::new();
                    run.insert("type".into(), "text".into());
                    run.insert("text".into(), out_json(&d.insert, txn));
                    if let Some(attributes) = d.attributes.filter(|a| !a.is_empty()) {
                        let mut marks: Vec<(&str, &str, Value)> = attributes
                            .iter()
                            .map(|(key, v)| (mark_name(key), key.as_ref(), value::json(v)))
                            .collect();
                        marks.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
                        let marks = marks.into_iter().map(
                            |(name, _, attrs)| serde_json::json!({ "type": name, "attrs": attrs }),
                        );
                        run.insert("marks".into(), Value::Array(marks.collect()));
                    }
                    Value::Object(run)
                });
                match at_top {
                    true => top.content.push(Value::Array(runs.collect())),
                    false => top.content.extend(runs),
                }
            }
            // A fragment inside a fragment: no editor binding writes one, and y-prosemirror
            // cannot render it either.
            Some(XmlOut::Fragment(_)) => {}
            None => {
                let done = stack.pop().expect("a frame to close");
                let mut node = done.node;
                if done.any {
                    node.insert("content".into(), Value::Array(done.content));
                }
                match stack.last_mut() {
                    Some(parent) => parent.content.push(Value::Object(node)),
                    None => return Value::Object(node),
                }
            }
        }
    }
}

/// The mark a format names. A mark that may overlap itself (a comment) is stored under its
/// name and `--` and eight base64 characters, one format per instance; y-prosemirror's
/// `yattr2markname` strips them.
pub(crate) fn mark_name(key: &str) -> &str {
    let base64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
    let bytes = key.as_bytes();
    match bytes.len().checked_sub(10) {
        Some(at) if &bytes[at..at + 2] == b"--" && bytes[at + 2..].iter().all(|&c| base64(c)) => {
            &key[..at]
        }
        _ => key,
    }
}

fn children<T: ReadTxn>(fragment: &XmlFragmentRef, txn: &T) -> Vec<XmlOut> {
    fragment.children(txn).collect()
}

/// A value inside XML (an attribute, a text run's content) as JSON: a plain value as itself,
/// a shared type as its JSON rendering.
fn out_json<T: ReadTxn>(out: &Out, txn: &T) -> Value {
    match out {
        Out::Any(any) => value::json(any),
        other => value::json(&super::walker::render(other.clone(), txn)),
    }
}

/// The document's text, one line per block: a node that holds text, or holds nothing, is a
/// line (its text runs, one after another); any other node's lines are its children's.
pub(super) fn text(doc: &Value) -> String {
    let mut lines: Vec<String> = Vec::new();
    let top = doc.get("content").and_then(Value::as_array);
    let mut stack: Vec<std::slice::Iter<'_, Value>> = top.into_iter().map(|c| c.iter()).collect();
    while let Some(rest) = stack.last_mut() {
        let Some(node) = rest.next() else {
            stack.pop();
            continue;
        };
        // A text at the top level renders as the array of its runs: one line.
        let content = match node {
            Value::Array(runs) => Some(runs),
            node => node.get("content").and_then(Value::as_array),
        };
        let content = content.map(Vec::as_slice).unwrap_or_default();
        let texts = content.iter().filter_map(|c| c.get("text"));
        let holds_text = texts.clone().next().is_some() || node.is_array();
        if holds_text || content.is_empty() {
            lines.push(texts.filter_map(Value::as_str).collect());
        } else {
            stack.push(content.iter());
        }
    }
    lines.join("\n")
}
