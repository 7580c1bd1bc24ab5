//! The input, decoded: what the clients do, in order.

use arbitrary::{Arbitrary, Unstructured};

use crate::MAX_DEPTH;

#[derive(Arbitrary, Debug)]
pub struct Program {
    pub ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    /// A value under a key, or at a position; keys repeat, so a put often overwrites.
    Put {
        place: Place,
        key: Key,
        value: Value,
    },
    /// Shared types nested `levels` deep, each inserted into the one before, cycling `kinds`.
    Nest {
        place: Place,
        kinds: [Kind; 3],
        levels: Levels,
    },
    /// Text, formatted when `attrs` is set; into a non-text type, a string value or XML text.
    Write {
        place: Place,
        chunk: Chunk,
        attrs: Option<Vec<(Key, Plain)>>,
    },
    Format {
        place: Place,
        len: u8,
        attrs: Vec<(Key, Plain)>,
    },
    Embed {
        place: Place,
        value: Value,
    },
    /// A range (with whatever is nested in it) or a key.
    Delete {
        place: Place,
        len: u16,
        key: Key,
    },
    /// Hands the server the client's next unsent update(s), now or (`hold`) later.
    Send {
        client: u8,
        how: Send,
        step2: bool,
        may_write: bool,
        hold: bool,
    },
    Release {
        held: u8,
        may_write: bool,
    },
    /// Brings `to` up to date with `from`, as two clients of one room would be.
    Sync {
        from: u8,
        to: u8,
    },
    /// Sync step 1: the server answers with what the client lacks.
    Ask {
        client: u8,
        may_write: bool,
    },
    Awareness {
        id: u8,
        clock: u8,
        state: Presence,
        may_write: bool,
    },
    AwarenessQuery,
    /// The room's state is loaded, rendered and merged elsewhere.
    Check,
}

/// Where an edit happens: `client` and `node` pick, modulo their counts, a client and one of
/// the shared types it holds; `pos` a position in it, modulo its length.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Place {
    pub client: u8,
    pub node: u8,
    pub pos: u16,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Kind {
    Map,
    Array,
    Text,
    XmlElement,
    XmlText,
    XmlFragment,
}

#[derive(Arbitrary, Debug)]
pub enum Value {
    Plain(Plain),
    Shared(Kind),
}

#[derive(Arbitrary, Debug)]
pub enum Plain {
    Null,
    Undefined,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Chunk),
    Bytes([u8; 3]),
    /// `leaf` inside `levels` arrays or maps (or both, alternating).
    Deep {
        shape: Shape,
        levels: Levels,
        leaf: Chunk,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Shape {
    Arrays,
    Maps,
    Both,
}

#[derive(Arbitrary, Debug)]
pub enum Send {
    Next,
    /// The next two updates as two messages of one frame.
    Pair,
    /// Every unsent update, merged into one.
    Merged,
    /// The client's whole state, as on connecting.
    State,
}

#[derive(Arbitrary, Debug)]
pub enum Presence {
    Gone,
    Value(Plain),
    NotJson(Chunk),
    /// `[[[...]]]` and `{"a":{"a":...}}`, `levels` deep.
    Arrays(Levels),
    Objects(Levels),
}

/// Mostly a few levels; one time in 64, from 20 to 20,000, every order of magnitude as likely
/// as the others. A deep update is what this target is for, but the clients take some 6 µs a
/// level to build one (with the address sanitizer), so the deepest must stay rare; the scale is
/// read backwards so that the bytes libFuzzer favours (0xff runs) are not the deepest.
#[derive(Debug, Clone, Copy)]
pub struct Levels(pub usize);

impl<'a> Arbitrary<'a> for Levels {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let raw = usize::from(u16::arbitrary(u)?);
        let levels = match raw.checked_sub(0xfc00) {
            None => raw % 24,
            Some(deep) => (20.0 * 1000f64.powf((0x3ff - deep) as f64 / 1023.0)) as usize,
        };
        Ok(Levels(levels.min(MAX_DEPTH)))
    }
}

/// A few characters, multi-byte and astral ones among them (text lengths count UTF-16 units).
#[derive(Debug, Clone)]
pub struct Chunk(pub String);

impl<'a> Arbitrary<'a> for Chunk {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const CHARS: [char; 8] = ['a', 'b', ' ', '\n', 'é', '€', '😀', '\u{200d}'];
        let len = u8::arbitrary(u)? % 6 + 1;
        let chunk = (0..len)
            .map(|_| Ok(CHARS[usize::from(u8::arbitrary(u)?) % CHARS.len()]))
            .collect::<arbitrary::Result<String>>()?;
        Ok(Chunk(chunk))
    }
}

/// Few keys, so that writes collide: map overwrites, formatting runs that meet.
#[derive(Debug, Clone, Copy)]
pub struct Key(pub &'static str);

impl<'a> Arbitrary<'a> for Key {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const KEYS: [&str; 6] = ["a", "b", "bold", "href", "", "k"];
        Ok(Key(KEYS[usize::from(u8::arbitrary(u)?) % KEYS.len()]))
    }
}
