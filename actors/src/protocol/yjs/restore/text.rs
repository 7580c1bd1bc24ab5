//! A text (a `Y.Text`, an `XmlText`) changed into the old version's: its characters, its
//! embedded values and its formatting.
//!
//! A text is compared as its runs (yrs's delta: pieces of text or embeds, each with its
//! formats), a character or an embed at a time. Those both versions share
//! ([`diff`](super::diff): their common start and end, and a longest common subsequence
//! between) are kept, so what someone else typed among them meanwhile survives the merge; the
//! gaps between them are deleted and inserted with the old version's formatting. The formatting
//! of the kept characters is then fixed run by run where it differs ([`format`]). An embedded
//! shared type kept where the old version embeds one of the same kind is walked in turn.
//!
//! Offsets are counted as the document counts them ([`OffsetKind`]); cuts fall between
//! characters.

use yrs::branch::BranchPtr;
use yrs::types::text::{TextPrelim, YChange};
use yrs::types::xml::{XmlElementPrelim, XmlFragmentPrelim, XmlTextPrelim};
use yrs::types::Attrs;
use yrs::{
    Any, ArrayPrelim, GetString, MapPrelim, OffsetKind, Out, ReadTxn, Text, TextRef, TransactionMut,
};

use super::diff;
use super::sync::{keeps, pair, Task};

/// A piece of a text, a string or an embed, and its formats.
pub(super) struct Run {
    piece: Piece,
    attrs: Attrs,
}

enum Piece {
    Text(String),
    Embed(Out),
}

/// The runs of the text `branch` holds.
///
/// yrs's delta gives a string and an embedded string alike; the text's own string (its string
/// items only) tells them apart: a piece of the delta is text while it is what comes next in
/// it. (An embedded string equal to the text right after it would pass for text: no editor
/// embeds bare strings.)
pub(super) fn runs<T: ReadTxn>(branch: BranchPtr, txn: &T) -> Vec<Run> {
    let text = TextRef::from(branch);
    let plain = text.get_string(txn);
    let mut rest = plain.as_str();
    let delta = text.diff(txn, YChange::identity);
    let mut runs = Vec::with_capacity(delta.len());
    for diff in delta {
        let piece = match diff.insert {
            Out::Any(Any::String(s)) if !s.is_empty() && rest.starts_with(&*s) => {
                rest = &rest[s.len()..];
                Piece::Text(s.to_string())
            }
            other => Piece::Embed(other),
        };
        let attrs = diff.attributes.map(|a| *a).unwrap_or_default();
        runs.push(Run { piece, attrs });
    }
    runs
}

impl Run {
    /// Its length in the offsets the document counts in (an embed counts one).
    pub(super) fn len(&self, kind: OffsetKind) -> u32 {
        match &self.piece {
            Piece::Text(s) => width(kind, s.chars()),
            Piece::Embed(_) => 1,
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
        match &run.piece {
            Piece::Text(s) => units.extend(s.chars().map(|c| Unit::Char(c, &run.attrs))),
            Piece::Embed(other) => units.push(Unit::Embed(other, &run.attrs)),
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

/// Changes the text `cur`, which holds `have`, into `want`: the characters and embeds kept
/// ([`diff::plan`]) stay, the gaps between them are deleted and inserted with `want`'s
/// formats; then the formats of what stayed are fixed.
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
    let (kept, gaps) = diff::plan(h.len(), w.len(), |i, j| h[i].same(&w[j]));
    for (i, j) in kept {
        if let (Unit::Embed(a, _), Unit::Embed(b, _)) = (h[i], w[j]) {
            tasks.extend(pair(a, b));
        }
    }
    // Where each unit of `have` starts; gaps come last first, so these stay true.
    let mut offsets = Vec::with_capacity(h.len() + 1);
    let mut total = 0u32;
    offsets.push(0);
    for unit in &h {
        total = total.saturating_add(unit.len(kind));
        offsets.push(total);
    }
    for gap in gaps {
        let mut at = offsets[gap.have.start];
        let stale = offsets[gap.have.end] - at;
        if stale > 0 {
            text.remove_range(txn, at, stale);
        }
        let mut missing = w[gap.want].iter().peekable();
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
    }
    format(txn, &text, kind, &runs(cur, txn), want);
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
        Out::YText(_) => {
            Out::YText(text.insert_embed_with_attributes(txn, at, TextPrelim::default(), attrs))
        }
        Out::YArray(_) => {
            Out::YArray(text.insert_embed_with_attributes(txn, at, ArrayPrelim::default(), attrs))
        }
        Out::YMap(_) => {
            Out::YMap(text.insert_embed_with_attributes(txn, at, MapPrelim::default(), attrs))
        }
        Out::YXmlElement(e) => Out::YXmlElement(text.insert_embed_with_attributes(
            txn,
            at,
            XmlElementPrelim::empty(e.tag().clone()),
            attrs,
        )),
        Out::YXmlText(_) => {
            Out::YXmlText(text.insert_embed_with_attributes(txn, at, XmlTextPrelim::new(""), attrs))
        }
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

/// Formats each run of `want` whose characters `now` (the same characters, as the text holds
/// them) formats otherwise, or cuts into pieces of equal formats (formats a write left closing
/// and reopening there): formatting a stretch drops the formats of its keys inside it, so the
/// run reads as one again. Formats `want` lacks are set to `null`, as Yjs removes a format.
fn format(txn: &mut TransactionMut, text: &TextRef, kind: OffsetKind, now: &[Run], want: &[Run]) {
    let mut pieces = now.iter().map(|r| (r.len(kind), &r.attrs));
    // The run of `now` at the front, and how much of it is left.
    let mut front = pieces.next();
    let mut at = 0;
    for run in want {
        let len = run.len(kind);
        let mut set = Attrs::new();
        let (mut covered, mut count, mut same) = (0, 0, true);
        while covered < len {
            let Some((left, attrs)) = front else {
                break;
            };
            let n = left.min(len - covered);
            count += 1;
            same &= *attrs == run.attrs;
            for key in attrs.keys().filter(|k| !run.attrs.contains_key(*k)) {
                set.insert(key.clone(), Any::Null);
            }
            covered += n;
            front = match left - n {
                0 => pieces.next(),
                rest => Some((rest, attrs)),
            };
        }
        if len > 0 && !(same && count == 1) {
            set.extend(run.attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
            text.format(txn, at, len, set);
        }
        at += len;
    }
}
