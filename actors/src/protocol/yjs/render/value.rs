//! yrs's JSON-like values (`Any`) as JSON, and as yrs prints them inside XML, each walked with
//! a stack on the heap: serde's and yrs's own walks recurse once per level of nesting.

use std::collections::hash_map;
use std::fmt::Write as _;
use std::slice;

use serde_json::Value;
use yrs::Any;

/// `any` as JSON, exactly as serde serializes it: `undefined` is `null`, a number that is a
/// whole `i64` is an integer, a binary is an array of its bytes, and a number JSON cannot hold
/// (NaN, infinities) is `null`.
pub(super) fn json(any: &Any) -> Value {
    /// An array or a map being converted: what is left, what is done (and for a map, the key
    /// of the value being converted).
    enum Frame<'a> {
        Array(slice::Iter<'a, Any>, Vec<Value>),
        Map(
            hash_map::Iter<'a, String, Any>,
            serde_json::Map<String, Value>,
            &'a str,
        ),
    }
    fn open<'a>(any: &'a Any, stack: &mut Vec<Frame<'a>>) -> Option<Value> {
        match any {
            Any::Array(items) => {
                stack.push(Frame::Array(items.iter(), Vec::with_capacity(items.len())));
                None
            }
            Any::Map(entries) => {
                stack.push(Frame::Map(entries.iter(), serde_json::Map::new(), ""));
                None
            }
            leaf => Some(scalar(leaf)),
        }
    }

    let mut stack = Vec::new();
    let mut finished = open(any, &mut stack);
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Frame::Array(rest, done) => {
                done.extend(finished.take());
                rest.next()
            }
            Frame::Map(rest, done, key) => {
                if let Some(value) = finished.take() {
                    done.insert((*key).to_string(), value);
                }
                rest.next().map(|(k, v)| {
                    *key = k;
                    v
                })
            }
        };
        finished = match next {
            Some(value) => open(value, &mut stack),
            None => stack.pop().map(|frame| match frame {
                Frame::Array(_, done) => Value::Array(done),
                Frame::Map(_, done, _) => Value::Object(done),
            }),
        };
    }
    finished.unwrap_or(Value::Null)
}

fn scalar(any: &Any) -> Value {
    match any {
        Any::Null | Any::Undefined => Value::Null,
        Any::Bool(b) => Value::Bool(*b),
        Any::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => n.as_f64().map_or(Value::Null, Value::from),
        },
        Any::String(s) => Value::String(s.to_string()),
        Any::Buffer(bytes) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
        Any::Array(_) | Any::Map(_) => unreachable!("nested values are walked, not converted"),
    }
}

/// Appends `any` to `out` as yrs's `Display` prints it: strings bare, arrays as `[a, b]`, maps
/// as `{k: v}`, binaries as `0x` and hex.
pub(super) fn print(any: &Any, out: &mut String) {
    /// An array or a map being printed, and whether its next value is its first (no separator
    /// before it).
    enum Frame<'a> {
        Array(slice::Iter<'a, Any>, bool),
        Map(hash_map::Iter<'a, String, Any>, bool),
    }
    fn open<'a>(any: &'a Any, stack: &mut Vec<Frame<'a>>, out: &mut String) {
        match any {
            Any::Array(items) => {
                out.push('[');
                stack.push(Frame::Array(items.iter(), true));
            }
            Any::Map(entries) => {
                out.push('{');
                stack.push(Frame::Map(entries.iter(), true));
            }
            // yrs prints every other value without nesting.
            leaf => {
                let _ = write!(out, "{leaf}");
            }
        }
    }

    let mut stack = Vec::new();
    open(any, &mut stack, out);
    while let Some(top) = stack.last_mut() {
        let (next, first) = match top {
            Frame::Array(rest, first) => (rest.next().map(|v| (None, v)), first),
            Frame::Map(rest, first) => (rest.next().map(|(k, v)| (Some(k), v)), first),
        };
        let Some((key, value)) = next else {
            let close = match stack.pop() {
                Some(Frame::Map(..)) => '}',
                _ => ']',
            };
            out.push(close);
            continue;
        };
        if !std::mem::replace(first, false) {
            out.push_str(", ");
        }
        if let Some(key) = key {
            let _ = write!(out, "{key}: ");
        }
        open(value, &mut stack, out);
    }
}
