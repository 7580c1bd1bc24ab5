//! A run of ProseMirror text nodes against the `XmlText` that holds it.
//!
//! A text is compared as its runs: its string cut where the formatting changes, each piece
//! with its formats (a mark's name → the mark's attrs). Changing it keeps the characters the old
//! and the new string share at their start and at their end, so what someone else typed there
//! meanwhile survives the merge; only the middle is deleted and inserted, with the target's
//! formatting. The formatting of the kept characters is then fixed where it differs: the marks
//! that changed are set, the ones that went are set to `null`, as Yjs removes a format.
//!
//! Offsets are counted as the document counts them ([`OffsetKind`]: UTF-8 bytes by default,
//! UTF-16 units in a document made to agree with JavaScript); cuts fall between characters.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use yrs::types::text::YChange;
use yrs::types::Attrs;
use yrs::{Any, OffsetKind, Out, ReadTxn, Text, TransactionMut, XmlTextRef};

use super::parse::{Mark, TextNode};
use crate::protocol::yjs::render::prosemirror::mark_name;

/// A piece of text and its formats, the next piece's formats being different.
pub(super) type Run = (String, Attrs);

/// `s`'s length in the offsets the document counts in.
pub(super) fn units(kind: OffsetKind, s: &str) -> u32 {
    let n = match kind {
        OffsetKind::Bytes => s.len(),
        OffsetKind::Utf16 => s.encode_utf16().count(),
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The runs `text` holds, or `None` if it holds anything but strings (an embed, which no
/// ProseMirror text node makes).
pub(super) fn runs<T: ReadTxn>(txn: &T, text: &XmlTextRef) -> Option<Vec<Run>> {
    let mut runs = Vec::new();
    for chunk in text.diff(txn, YChange::identity) {
        let Out::Any(Any::String(s)) = chunk.insert else {
            return None;
        };
        push(
            &mut runs,
            &s,
            chunk.attributes.map(|a| *a).unwrap_or_default(),
        );
    }
    Some(runs)
}

/// Whether `text` holds exactly `nodes`.
pub(super) fn equal<T: ReadTxn>(txn: &T, text: &XmlTextRef, nodes: &[TextNode<'_>]) -> bool {
    runs(txn, text).is_some_and(|old| target(nodes, &old) == old)
}

/// Fills a new, empty `text` with `nodes`.
pub(super) fn fill(txn: &mut TransactionMut, text: &XmlTextRef, nodes: &[TextNode<'_>]) {
    let kind = txn.doc().offset_kind();
    let mut at = 0;
    for (piece, attrs) in target(nodes, &[]) {
        text.insert_with_attributes(txn, at, &piece, attrs);
        at += units(kind, &piece);
    }
}

/// Empties `text`, keeping it (y-prosemirror keeps the last text of a node emptied, so that
/// what someone else types into it meanwhile is not lost with it).
pub(super) fn clear(txn: &mut TransactionMut, text: &XmlTextRef) {
    let len = text.len(txn);
    if len > 0 {
        text.remove_range(txn, 0, len);
    }
}

/// Changes `text` to hold `nodes`, keeping the common start and end of the two strings.
pub(super) fn update(txn: &mut TransactionMut, text: &XmlTextRef, nodes: &[TextNode<'_>]) {
    let Some(old) = runs(txn, text) else {
        clear(txn, text);
        return fill(txn, text, nodes);
    };
    let new = target(nodes, &old);
    if new == old {
        return;
    }
    let kind = txn.doc().offset_kind();
    let old_str: String = old.iter().map(|(s, _)| s.as_str()).collect();
    let new_str: String = new.iter().map(|(s, _)| s.as_str()).collect();
    let (prefix, suffix) = common(&old_str, &new_str);
    let (old_end, new_end) = (old_str.len() - suffix, new_str.len() - suffix);

    // Formats first, at the old offsets: they do not move any character.
    let mut fixes = Vec::new();
    differences(&old, &new, (0, 0), prefix, &mut fixes);
    differences(&old, &new, (old_end, new_end), suffix, &mut fixes);
    for (from, to, change) in fixes {
        let at = units(kind, &old_str[..from]);
        text.format(txn, at, units(kind, &old_str[from..to]), change);
    }

    let at = units(kind, &old_str[..prefix]);
    let removed = units(kind, &old_str[prefix..old_end]);
    if removed > 0 {
        text.remove_range(txn, at, removed);
    }
    let mut at = at;
    for (piece, attrs) in cut(&new, prefix, new_end) {
        text.insert_with_attributes(txn, at, piece, attrs.clone());
        at += units(kind, piece);
    }
}

/// The runs `nodes` make. A mark is the format of its name, but for a mark that overlaps
/// itself (y-prosemirror names each one `name--` and eight base64 characters): one of `known`'s
/// formats with the same name and attrs keeps its name; several marks of one name on one node
/// are named so, from a hash of their attrs.
fn target(nodes: &[TextNode<'_>], known: &[Run]) -> Vec<Run> {
    let mut suffixed: BTreeMap<&Arc<str>, &Any> = BTreeMap::new();
    for (key, value) in known.iter().flat_map(|(_, attrs)| attrs) {
        if mark_name(key) != key.as_ref() {
            suffixed.insert(key, value);
        }
    }
    let mut runs = Vec::new();
    for node in nodes {
        let mut attrs = Attrs::new();
        for mark in &node.marks {
            let kept = suffixed
                .iter()
                .map(|(&key, &value)| (key, value))
                .find(|&(key, value)| {
                    mark_name(key) == mark.name && *value == mark.attrs && !attrs.contains_key(key)
                });
            let repeated = node.marks.iter().filter(|m| m.name == mark.name).count() > 1;
            let key = match kept {
                Some((key, _)) => Arc::clone(key),
                None if repeated => format!("{}--{}", mark.name, hash(mark)).into(),
                None => mark.name.into(),
            };
            attrs.insert(key, mark.attrs.clone());
        }
        push(&mut runs, node.text, attrs);
    }
    runs
}

/// Appends a piece to `runs`, joined to the last run if it has the same formats.
fn push(runs: &mut Vec<Run>, piece: &str, attrs: Attrs) {
    if piece.is_empty() {
        return;
    }
    match runs.last_mut() {
        Some((last, formats)) if *formats == attrs => last.push_str(piece),
        _ => runs.push((piece.to_owned(), attrs)),
    }
}

/// The lengths in bytes of the longest common start and, after it, the longest common end of
/// `a` and `b`, in whole characters.
fn common(a: &str, b: &str) -> (usize, usize) {
    let same = |(x, y): &(char, char)| x == y;
    let prefix: usize = a
        .chars()
        .zip(b.chars())
        .take_while(same)
        .map(|(c, _)| c.len_utf8())
        .sum();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let pairs = a.chars().rev().zip(b.chars().rev());
    let suffix = pairs.take_while(same).map(|(c, _)| c.len_utf8()).sum();
    (prefix, suffix)
}

/// The pieces of `runs` between the byte offsets `from` and `to` of their string.
fn cut(runs: &[Run], from: usize, to: usize) -> Vec<(&str, &Attrs)> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (s, attrs) in runs {
        let end = start + s.len();
        let (a, b) = (from.max(start), to.min(end));
        if a < b {
            pieces.push((&s[a - start..b - start], attrs));
        }
        start = end;
    }
    pieces
}

/// The format changes that make `len` bytes of `old` from `at.0` formatted as the same bytes of
/// `new` from `at.1` are: `(from, to, formats)` in `old`'s offsets, pushed onto `fixes`.
fn differences(
    old: &[Run],
    new: &[Run],
    at: (usize, usize),
    len: usize,
    fixes: &mut Vec<(usize, usize, Attrs)>,
) {
    let (a, b) = (
        ends(cut(old, at.0, at.0 + len)),
        ends(cut(new, at.1, at.1 + len)),
    );
    let (mut i, mut j, mut pos) = (0, 0, 0);
    // Both cover the same `len` bytes, so they end together.
    while let (Some(&(a_end, attrs_a)), Some(&(b_end, attrs_b))) = (a.get(i), b.get(j)) {
        let end = a_end.min(b_end);
        if attrs_a != attrs_b {
            let change = changes(attrs_a, attrs_b);
            let (from, to) = (at.0 + pos, at.0 + end);
            match fixes.last_mut() {
                Some((_, last_to, last)) if *last_to == from && *last == change => *last_to = to,
                _ => fixes.push((from, to, change)),
            }
        }
        pos = end;
        i += usize::from(a_end == end);
        j += usize::from(b_end == end);
    }
}

/// Pieces as where each ends, counted from the first's start, and its formats.
fn ends<'r>(pieces: Vec<(&str, &'r Attrs)>) -> Vec<(usize, &'r Attrs)> {
    let mut end = 0;
    let ends = pieces.into_iter().map(|(piece, attrs)| {
        end += piece.len();
        (end, attrs)
    });
    ends.collect()
}

/// The formats that make `old` into `new`: what is new or different, and `null` for what went.
fn changes(old: &Attrs, new: &Attrs) -> Attrs {
    let mut change: Attrs = new
        .iter()
        .filter(|(key, value)| old.get(*key) != Some(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        change.insert(key.clone(), Any::Null);
    }
    change
}

/// Eight base64 characters from a hash of a mark's name and attrs: the same mark gets the same
/// name every time it is written.
fn hash(mark: &Mark<'_>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let attrs = mark
        .json
        .map(|json| serde_json::to_vec(json).unwrap_or_default());
    let digest = Sha256::new()
        .chain_update(mark.name.as_bytes())
        .chain_update([0])
        .chain_update(attrs.as_deref().unwrap_or(b"{}"))
        .finalize();
    // Six bytes are 48 bits: eight base64 characters, no padding.
    let bits = digest[..6]
        .iter()
        .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    (0..8)
        .map(|i| ALPHABET[(bits >> (42 - 6 * i) & 63) as usize] as char)
        .collect()
}
