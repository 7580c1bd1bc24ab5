//! A ProseMirror body validated whole before anything is written, into the nodes the writer
//! compares against the document: consecutive text nodes already grouped into one run each
//! (one `XmlText` in the document), attrs already yrs values.
//!
//! ProseMirror's own `Node.fromJSON` is the measure of what is accepted: `attrs`, `content` and
//! `marks` may be missing or `null`; anything else of the wrong shape is refused with the path
//! of the node that has it. What the layout has no place for is left out, as y-prosemirror
//! leaves it out: marks on a node other than text, attrs of a text node. One addition, so that
//! whatever the rendering gives can be written back: an array in the document's own content is
//! a text, its items the text's runs (the rendering shows a text at the top level so, as
//! y-prosemirror does).

use serde_json::{Map, Value};
use yrs::{Any, Number};

use super::NotProsemirror;

/// How deeply a body may nest: nodes, and the values inside their attrs, which add to the depth
/// of the node holding them. The walks over nodes keep their stacks on the heap; a value is
/// converted here, and encoded by yrs, recursing once per level.
pub(super) const MAX_DEPTH: usize = 1000;

/// A child of a node as the document holds it.
pub(super) enum Child<'a> {
    Element(Element<'a>),
    /// One or more consecutive text nodes: one `XmlText`.
    Text(Vec<TextNode<'a>>),
}

/// A node other than text: an `XmlElement`.
pub(super) struct Element<'a> {
    pub(super) name: &'a str,
    /// Without the attrs whose value is `null`, which y-prosemirror does not store.
    pub(super) attrs: Vec<(&'a str, Any)>,
    pub(super) content: Vec<Child<'a>>,
}

pub(super) struct TextNode<'a> {
    pub(super) text: &'a str,
    pub(super) marks: Vec<Mark<'a>>,
}

pub(super) struct Mark<'a> {
    pub(super) name: &'a str,
    /// The format's value: the mark's attrs (`{}` when it has none).
    pub(super) attrs: Any,
    /// The attrs as they came, for naming a mark that overlaps itself.
    pub(super) json: Option<&'a Map<String, Value>>,
}

/// The content of the document `body`, or why it is not a ProseMirror document.
///
/// The walk keeps its stack on the heap: a body nested as deep as it may be costs no more of
/// the thread's stack than a flat one.
pub(super) fn document(body: &Value) -> Result<Vec<Child<'_>>, NotProsemirror> {
    let Value::Object(doc) = body else {
        return Err(NotProsemirror("the body is not a JSON object".into()));
    };
    if doc.get("type").and_then(Value::as_str) != Some("doc") {
        return Err(NotProsemirror(r#"the body's `type` is not "doc""#.into()));
    }
    let mut parser = Parser { trail: Vec::new() };
    let mut open = vec![Open {
        name: "doc",
        attrs: Vec::new(),
        items: parser.items(doc)?.iter().enumerate(),
        content: Vec::new(),
        joins: true,
    }];
    loop {
        let level = open.len() - 1;
        let top = open.last_mut().expect("the document stays at the bottom");
        let Some((i, item)) = top.items.next() else {
            let done = open.pop().expect("a node to close");
            let Some(parent) = open.last_mut() else {
                return Ok(done.content);
            };
            parent.content.push(Child::Element(Element {
                name: done.name,
                attrs: done.attrs,
                content: done.content,
            }));
            continue;
        };
        parser.trail.truncate(level);
        parser.trail.push(i);
        if let (0, Value::Array(runs)) = (level, item) {
            // How the rendering shows a text at the top level: the array of its runs.
            top.content.push(Child::Text(parser.runs(runs)?));
            top.joins = false;
            continue;
        }
        match parser.node(item)? {
            Parsed::Text(text) => {
                match top.content.last_mut() {
                    Some(Child::Text(run)) if top.joins => run.push(text),
                    _ => top.content.push(Child::Text(vec![text])),
                }
                top.joins = true;
            }
            Parsed::Element(name, attrs, items) => open.push(Open {
                name,
                attrs,
                items: items.iter().enumerate(),
                content: Vec::new(),
                joins: true,
            }),
        }
    }
}

/// A node whose content is being parsed (the document at the bottom).
struct Open<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, Any)>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    content: Vec<Child<'a>>,
    /// Whether a text node joins the text its content ends with (not one given as an array).
    joins: bool,
}

/// A node parsed but for its content: a text, or an element and its content to parse.
enum Parsed<'a> {
    Element(&'a str, Vec<(&'a str, Any)>, &'a [Value]),
    Text(TextNode<'a>),
}

/// What the walk knows of where it is: `trail` holds the index of each node entered, the path
/// an error names.
struct Parser {
    trail: Vec<usize>,
}

impl Parser {
    /// The `content` of `node`.
    fn items<'a>(&self, node: &'a Map<String, Value>) -> Result<&'a [Value], NotProsemirror> {
        match node.get("content") {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(self.fail("", "`content` is not an array")),
        }
    }

    /// The node at the end of the trail.
    fn node<'a>(&self, value: &'a Value) -> Result<Parsed<'a>, NotProsemirror> {
        if self.trail.len() > MAX_DEPTH {
            return Err(self.fail("", &format!("nodes nest deeper than {MAX_DEPTH} levels")));
        }
        let Value::Object(node) = value else {
            return Err(self.fail("", "a node is not a JSON object"));
        };
        let name = match node.get("type") {
            Some(Value::String(name)) if !name.is_empty() => name.as_str(),
            _ => return Err(self.fail("", "a node needs a non-empty string `type`")),
        };
        if name == "text" {
            return self.text(node, "").map(Parsed::Text);
        }
        let attrs = match node.get("attrs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(attrs)) => {
                let set = attrs.iter().filter(|(_, v)| !v.is_null());
                set.map(|(k, v)| Ok((k.as_str(), self.any(v, ".attrs")?)))
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err(self.fail("", "`attrs` is not an object")),
        };
        Ok(Parsed::Element(name, attrs, self.items(node)?))
    }

    /// The runs of a text at the top level, as the rendering shows one: an array of text nodes.
    fn runs<'a>(&self, runs: &'a [Value]) -> Result<Vec<TextNode<'a>>, NotProsemirror> {
        let runs = runs.iter().enumerate().map(|(j, run)| {
            let at = format!("[{j}]");
            match run {
                Value::Object(node) if node.get("type") == Some(&Value::from("text")) => {
                    self.text(node, &at)
                }
                _ => Err(self.fail(&at, "a run of a text is not a text node")),
            }
        });
        runs.collect()
    }

    /// The text node `node` (at `at` inside the node at the end of the trail).
    fn text<'a>(
        &self,
        node: &'a Map<String, Value>,
        at: &str,
    ) -> Result<TextNode<'a>, NotProsemirror> {
        let text = match node.get("text") {
            Some(Value::String(text)) if !text.is_empty() => text.as_str(),
            _ => return Err(self.fail(at, "a text node needs a non-empty string `text`")),
        };
        let marks = match node.get("marks") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(marks)) => marks.as_slice(),
            Some(_) => return Err(self.fail(at, "`marks` is not an array")),
        };
        let marks = marks.iter().enumerate().map(|(j, mark)| {
            let at = format!("{at}.marks[{j}]");
            let Value::Object(mark) = mark else {
                return Err(self.fail(&at, "a mark is not a JSON object"));
            };
            let name = match mark.get("type") {
                Some(Value::String(name)) if !name.is_empty() => name.as_str(),
                _ => return Err(self.fail(&at, "a mark needs a non-empty string `type`")),
            };
            let (attrs, json) = match mark.get("attrs") {
                None | Some(Value::Null) => (Any::Map(Default::default()), None),
                Some(value @ Value::Object(json)) => (self.any(value, &at)?, Some(json)),
                Some(_) => return Err(self.fail(&at, "`attrs` is not an object")),
            };
            Ok(Mark { name, attrs, json })
        });
        let marks = marks.collect::<Result<_, _>>()?;
        Ok(TextNode { text, marks })
    }

    /// `value` as a yrs value, refused if it would take the body past [`MAX_DEPTH`].
    fn any(&self, value: &Value, at: &str) -> Result<Any, NotProsemirror> {
        fn convert(value: &Value, left: usize) -> Option<Any> {
            let nested = |left: usize| left.checked_sub(1);
            Some(match value {
                Value::Null => Any::Null,
                Value::Bool(b) => Any::Bool(*b),
                Value::Number(n) => Any::Number(number(n)),
                Value::String(s) => Any::String(s.as_str().into()),
                Value::Array(items) => {
                    let left = nested(left)?;
                    let items = items.iter().map(|v| convert(v, left));
                    Any::Array(items.collect::<Option<Vec<_>>>()?.into())
                }
                Value::Object(entries) => {
                    let left = nested(left)?;
                    let entries = entries
                        .iter()
                        .map(|(k, v)| Some((k.clone(), convert(v, left)?)));
                    Any::Map(entries.collect::<Option<_>>().map(std::sync::Arc::new)?)
                }
            })
        }
        // The node is at the trail's depth; the value's first level is the one below it.
        let left = MAX_DEPTH.saturating_sub(self.trail.len());
        convert(value, left)
            .ok_or_else(|| self.fail(at, &format!("attrs nest deeper than {MAX_DEPTH} levels")))
    }

    /// An error naming the node at the end of the trail (and `at` inside it).
    fn fail(&self, at: &str, what: &str) -> NotProsemirror {
        const SHOWN: usize = 8;
        let step = |i: &usize| format!(".content[{i}]");
        let mut path = String::from("doc");
        if self.trail.len() > 2 * SHOWN {
            let hidden = self.trail.len() - 2 * SHOWN;
            path.extend(self.trail[..SHOWN].iter().map(step));
            path.push_str(&format!("…({hidden} more levels)…"));
            path.extend(self.trail[self.trail.len() - SHOWN..].iter().map(step));
        } else {
            path.extend(self.trail.iter().map(step));
        }
        NotProsemirror(format!("{path}{at}: {what}"))
    }
}

/// A JSON number as JavaScript holds it: an integer JavaScript holds exactly stays one (Yjs
/// encodes it as an integer), any other number is a double.
fn number(n: &serde_json::Number) -> Number {
    match n.as_i64() {
        Some(i) if (Number::I64_MIN_SAFE_INTEGER..=Number::I64_MAX_SAFE_INTEGER).contains(&i) => {
            Number::Int(i)
        }
        _ => Number::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}
