//! A text (a `Y.Text`, an `XmlText`) changed into the old version's: its characters, its
//! embedded values and its formatting.
//!
//! A text is compared as its runs (yrs's delta: pieces of text or embeds, each with its
//! formats). The characters and embeds both versions share at their start and at their end are
//! kept, so what someone else typed there meanwhile survives the merge; only the middle is
//! deleted and inserted, with the old version's formatting. The formatting of the kept
//! characters is then fixed where it differs: formats that changed are set, those that went
//! are set to `null`, as Yjs removes a format. An embedded shared type kept where the old
//! version embeds one of the same kind is walked in turn.
//!
//! Offsets are counted as the document counts them ([`OffsetKind`]); cuts fall between
//! characters.

use yrs::branch::BranchPtr;
use yrs::types::text::{Diff, TextPrelim, YChange};
use yrs::types::xml::{XmlElementPrelim, XmlFragmentPrelim, XmlTextPrelim};
use yrs::types::Attrs;
use yrs::{Any, ArrayPrelim, MapPrelim, OffsetKind, Out, Text, TextRef, TransactionMut};

use super::sync::{ends, keeps, pair, Task};

/// A piece of a text, a string or an embed, and its formats.
pub(super) struct Run {
    insert: Out,
    attrs: Attrs,
}

impl From<Diff<YChange>> for Run {
    fn from(diff: Diff<YChange>) -> Self {
        Run {
            insert: diff.insert,
            attrs: diff.attributes.map(|a| *a).unwrap_or_default(),
        }
    }
}

impl Run {
    /// Its length in the offsets the document counts in (an embed counts one).
    pub(super) fn len(&self, kind: OffsetKind) -> u32 {
        match &self.insert {
            Out::Any(Any::String(s)) => width(kind, s.chars()),
            _ => 1,
        }
    }
}

/// One character or embed of a text, with the formats of its run.
#[derive(Clone, Copy)]
enum Unit<'r> {
    Char(char, &'r Attrs),
    Embed(&'r Out, &'r Attrs),
}

impl Unit<'_> {
    /// Whether the old version's `other` may stay as `self` (formats aside, fixed after).
    fn same(&self, other: &Unit<'_>) -> bool {
        match (self, other) {
            (Unit::Char(a, _), Unit::Char(b, _)) => a == b,
            (Unit::Embed(a, _), Unit::Embed(b, _)) => keeps(a, b),
            _ => false,
        }
    }

    fn len(&self, kind: OffsetKind) -> u32 {
        match self {
            Unit::Char(c, _) => width(kind, [*c]),
            Unit::Embed(..) => 1,
        }
    }
}

fn units(runs: &[Run]) -> Vec<Unit<'_>> {
    let mut units = Vec::new();
    for run in runs {
        match &run.insert {
            Out::Any(Any::String(s)) => units.extend(s.chars().map(|c| Unit::Char(c, &run.attrs))),
            other => units.push(Unit::Embed(other, &run.attrs)),
        }
    }
    units
}

/// Characters' length in the offsets the document counts in.
fn width(kind: OffsetKind, chars: impl IntoIterator<Item = char>) -> u32 {
    let n: usize = match kind {
        OffsetKind::Bytes => chars.into_iter().map(char::len_utf8).sum(),
        OffsetKind::Utf16 => chars.into_iter().map(char::len_utf16).sum(),
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Changes the text `cur`, which holds `have`, into `want`.
pub(super) fn update(
    txn: &mut TransactionMut,
    cur: BranchPtr,
    have: &[Run],
    want: &[Run],
    tasks: &mut Vec<Task>,
) {
    let kind = txn.doc().offset_kind();
    let text = TextRef::from(cur);
    let (h, w) = (units(have), units(want));
    let (start, end) = ends(&h, &w, Unit::same);
    let kept = h[..start]
        .iter()
        .zip(&w[..start])
        .chain(h[h.len() - end..].iter().zip(&w[w.len() - end..]));
    for pairs in kept {
        if let (Unit::Embed(a, _), Unit::Embed(b, _)) = pairs {
            tasks.extend(pair(a, b));
        }
    }
    let mut at: u32 = h[..start].iter().map(|u| u.len(kind)).sum();
    let stale: u32 = h[start..h.len() - end].iter().map(|u| u.len(kind)).sum();
    if stale > 0 {
        text.remove_range(txn, at, stale);
    }
    let mut missing = w[start..w.len() - end].iter().peekable();
    while let Some(unit) = missing.next() {
        match *unit {
            Unit::Char(c, attrs) => {
                let mut piece = String::from(c);
                while let Some(Unit::Char(c, a)) = missing.peek() {
                    if !std::ptr::eq(*a, attrs) {
                        break;
                    }
                    piece.push(*c);
                    missing.next();
                }
                text.insert_with_attributes(txn, at, &piece, attrs.clone());
                at += width(kind, piece.chars());
            }
            Unit::Embed(old, attrs) => {
                if let Some(built) = embed(txn, &text, at, old, attrs.clone()) {
                    tasks.extend(pair(&built, old));
                }
                at += 1;
            }
        }
    }
    let now: Vec<Run> = text
        .diff(txn, YChange::identity)
        .into_iter()
        .map(Run::from)
        .collect();
    format(txn, &text, kind, &now, want);
}

/// Inserts an embed like `old` at `at`: a plain value as itself, a shared type empty (to be
/// filled). A subdocument is not embedded again (`None`).
fn embed(
    txn: &mut TransactionMut,
    text: &TextRef,
    at: u32,
    old: &Out,
    attrs: Attrs,
) -> Option<Out> {
    let built = match old {
        Out::Any(any) => {
            text.insert_embed_with_attributes(txn, at, any.clone(), attrs);
            return None;
        }
        Out::YText(_) => Out::YText(text.insert_embed_with_attributes(
            txn,
            at,
            TextPrelim::default(),
            attrs,
        )),
        Out::YArray(_) => Out::YArray(text.insert_embed_with_attributes(
            txn,
            at,
            ArrayPrelim::default(),
            attrs,
        )),
        Out::YMap(_) => {
            Out::YMap(text.insert_embed_with_attributes(txn, at, MapPrelim::default(), attrs))
        }
        Out::YXmlElement(e) => Out::YXmlElement(text.insert_embed_with_attributes(
            txn,
            at,
            XmlElementPrelim::empty(e.tag().clone()),
            attrs,
        )),
        Out::YXmlText(_) => Out::YXmlText(text.insert_embed_with_attributes(
            txn,
            at,
            XmlTextPrelim::new(""),
            attrs,
        )),
        Out::YXmlFragment(_) => Out::YXmlFragment(text.insert_embed_with_attributes(
            txn,
            at,
            XmlFragmentPrelim::default(),
            attrs,
        )),
        _ => {
            text.insert_embed_with_attributes(txn, at, Any::Null, attrs);
            return None;
        }
    };
    Some(built)
}

/// Sets the formats that differ between `now` (what the text holds) and `want` (the same
/// characters, formatted as wanted), one stretch of equal changes at a time.
fn format(txn: &mut TransactionMut, text: &TextRef, kind: OffsetKind, now: &[Run], want: &[Run]) {
    let mut a = now.iter().map(|r| (r.len(kind), &r.attrs));
    let mut b = want.iter().map(|r| (r.len(kind), &r.attrs));
    let (mut next_a, mut next_b) = (a.next(), b.next());
    let mut at = 0;
    // The stretch whose formats are to be set: where it starts, how long, what to set.
    let mut pending: Option<(u32, u32, Attrs)> = None;
    while let (Some((la, have)), Some((lb, wanted))) = (next_a, next_b) {
        let n = la.min(lb);
        let set = changes(have, wanted);
        pending = match pending {
            Some((from, len, same)) if same == set && from + len == at => Some((from, len + n, same)),
            done => {
                if let Some((from, len, attrs)) = done.filter(|(_, _, a)| !a.is_empty()) {
                    text.format(txn, from, len, attrs);
                }
                Some((at, n, set))
            }
        };
        at += n;
        next_a = if la > n { Some((la - n, have)) } else { a.next() };
        next_b = if lb > n { Some((lb - n, wanted)) } else { b.next() };
    }
    if let Some((from, len, attrs)) = pending.filter(|(_, _, a)| !a.is_empty()) {
        text.format(txn, from, len, attrs);
    }
}

/// The formats to set to make `have` into `want`: those that differ, and `null` for those
/// `want` lacks.
fn changes(have: &Attrs, want: &Attrs) -> Attrs {
    let mut set: Attrs = want
        .iter()
        .filter(|(key, value)| have.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for key in have.keys() {
        if !want.contains_key(key) {
            set.insert(key.clone(), Any::Null);
        }
    }
    set
}
