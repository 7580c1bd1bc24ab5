//! Which of a node's children stay as they are: those equal to their targets from the left and
//! from the right, as y-prosemirror keeps them, and between those, the longest run of children
//! equal to targets in the same order. y-prosemirror pairs the children in between from either
//! end, so a paragraph added at the top and another removed at the bottom in one write would
//! rewrite every paragraph in between, and someone's typing in one of them would land in
//! another; kept here, they are not touched.
//!
//! The longest run is the longest common subsequence of the two lists, found on a fingerprint
//! of each child (node names and text, not attrs or marks) and confirmed by comparing the pair
//! whole. Its table costs the product of the two lengths; past [`MAX_CELLS`] only the two ends
//! are kept, as y-prosemirror keeps them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use yrs::types::xml::XmlOut;
use yrs::{Text, TransactionMut, XmlFragment};

use super::parse::Child;
use super::{equal, text};

/// The largest table (children of the document × children of the target, between the ends
/// that stay) the common subsequence is looked for in: 4 MiB.
const MAX_CELLS: usize = 1 << 20;

/// The pairs (index in `ys`, index in `ts`) of children kept as they are, in order.
pub(super) fn anchors(txn: &TransactionMut, ys: &[XmlOut], ts: &[Child<'_>]) -> Vec<(usize, usize)> {
    let min = ys.len().min(ts.len());
    let left = (0..min).take_while(|&i| equal(txn, &ys[i], &ts[i])).count();
    let right = (0..min - left)
        .take_while(|&i| equal(txn, &ys[ys.len() - 1 - i], &ts[ts.len() - 1 - i]))
        .count();
    let mut pairs: Vec<(usize, usize)> = (0..left).map(|i| (i, i)).collect();
    let (ym, tm) = (&ys[left..ys.len() - right], &ts[left..ts.len() - right]);
    if ym.len().saturating_mul(tm.len()) <= MAX_CELLS {
        let middle = common(txn, ym, tm);
        pairs.extend(middle.into_iter().map(|(i, j)| (left + i, left + j)));
    }
    let ends = (ys.len() - right..ys.len()).zip(ts.len() - right..ts.len());
    pairs.extend(ends);
    pairs
}

/// The longest common subsequence of `ys` and `ts`, as pairs of indexes.
fn common(txn: &TransactionMut, ys: &[XmlOut], ts: &[Child<'_>]) -> Vec<(usize, usize)> {
    let (n, m) = (ys.len(), ts.len());
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let yf: Vec<u64> = ys.iter().map(|y| document_print(txn, y)).collect();
    let tf: Vec<u64> = ts.iter().map(target_print).collect();
    // `longest[i * w + j]`: the length of the longest common subsequence of `ys[i..]` and
    // `ts[j..]`; `same` marks the pairs that are equal.
    let w = m + 1;
    let mut longest = vec![0u32; (n + 1) * w];
    let mut same = vec![false; n * m];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let skip = longest[(i + 1) * w + j].max(longest[i * w + j + 1]);
            same[i * m + j] = yf[i] == tf[j] && equal(txn, &ys[i], &ts[j]);
            longest[i * w + j] = match same[i * m + j] {
                true => skip.max(longest[(i + 1) * w + j + 1] + 1),
                false => skip,
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut pairs = Vec::new();
    while i < n && j < m {
        let here = longest[i * w + j];
        if same[i * m + j] && here == longest[(i + 1) * w + j + 1] + 1 {
            pairs.push((i, j));
            (i, j) = (i + 1, j + 1);
        } else if longest[(i + 1) * w + j] == here {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// A child of the document as its fingerprint: node names, how many children each has, text.
/// Equal to its target's ([`target_print`]) when the two are equal.
fn document_print(txn: &TransactionMut, y: &XmlOut) -> u64 {
    let mut hash = DefaultHasher::new();
    let mut stack = vec![y.clone()];
    while let Some(y) = stack.pop() {
        match y {
            XmlOut::Element(element) => {
                let children: Vec<XmlOut> = element.children(txn).collect();
                let emptied = matches!(children.as_slice(), [XmlOut::Text(t)] if t.len(txn) == 0);
                element_print(&mut hash, element.tag(), if emptied { 0 } else { children.len() });
                if !emptied {
                    stack.extend(children.into_iter().rev());
                }
            }
            XmlOut::Text(t) => {
                let runs = text::runs(txn, &t).unwrap_or_default();
                text_print(&mut hash, runs.iter().map(|(s, _)| s.as_str()));
            }
            XmlOut::Fragment(_) => hash.write_u8(2),
        }
    }
    hash.finish()
}

/// A target child as its fingerprint (see [`document_print`]).
fn target_print(t: &Child<'_>) -> u64 {
    let mut hash = DefaultHasher::new();
    let mut stack = vec![t];
    while let Some(t) = stack.pop() {
        match t {
            Child::Element(element) => {
                element_print(&mut hash, element.name, element.content.len());
                stack.extend(element.content.iter().rev());
            }
            Child::Text(nodes) => text_print(&mut hash, nodes.iter().map(|n| n.text)),
        }
    }
    hash.finish()
}

fn element_print(hash: &mut DefaultHasher, name: &str, children: usize) {
    hash.write_u8(0);
    name.hash(hash);
    hash.write_usize(children);
}

/// A text's pieces hashed as one string, however it is cut.
fn text_print<'s>(hash: &mut DefaultHasher, pieces: impl Iterator<Item = &'s str>) {
    hash.write_u8(1);
    for piece in pieces {
        hash.write(piece.as_bytes());
    }
    hash.write_u8(0xff);
}
