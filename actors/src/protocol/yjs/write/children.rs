//! Which of a node's children stay as they are: those equal to their targets from the left and
//! from the right, as y-prosemirror keeps them, and between those, the longest run of children
//! equal to targets in the same order. y-prosemirror pairs the children in between from either
//! end, so a paragraph added at the top and another removed at the bottom in one write would
//! rewrite every paragraph in between, and someone's typing in one of them would land in
//! another; kept here, they are not touched.
//!
//! The longest run is the longest common subsequence of the two lists, found on a fingerprint
//! of each child (node names and text, not attrs or marks) and confirmed by comparing the pair
//! whole. Its table costs the product of the two lengths, so a long list is first cut where a
//! fingerprint found once in each list pairs two children (patience diff), and only the
//! stretches between are tabled, those no bigger than [`MAX_CELLS`].

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use yrs::types::xml::XmlOut;
use yrs::{Text, TransactionMut, XmlFragment};

use super::parse::Child;
use super::{equal, text};

/// The largest table (children of the document × children of the target) a common subsequence
/// is looked for in: 4 MiB.
const MAX_CELLS: usize = 1 << 20;

/// The pairs (index in `ys`, index in `ts`) of children kept as they are, in order.
pub(super) fn anchors(
    txn: &TransactionMut,
    ys: &[XmlOut],
    ts: &[Child<'_>],
) -> Vec<(usize, usize)> {
    let min = ys.len().min(ts.len());
    let left = (0..min).take_while(|&i| equal(txn, &ys[i], &ts[i])).count();
    let right = (0..min - left)
        .take_while(|&i| equal(txn, &ys[ys.len() - 1 - i], &ts[ts.len() - 1 - i]))
        .count();
    let mut pairs: Vec<(usize, usize)> = (0..left).map(|i| (i, i)).collect();
    let (ym, tm) = (&ys[left..ys.len() - right], &ts[left..ts.len() - right]);
    if !ym.is_empty() && !tm.is_empty() {
        let yf: Vec<u64> = ym.iter().map(|y| document_print(txn, y)).collect();
        let tf: Vec<u64> = tm.iter().map(target_print).collect();
        let middle = common(txn, (ym, &yf), (tm, &tf));
        pairs.extend(middle.into_iter().map(|(i, j)| (left + i, left + j)));
    }
    pairs.extend((ys.len() - right..ys.len()).zip(ts.len() - right..ts.len()));
    pairs
}

/// A common subsequence of `ys` and `ts` (with their fingerprints), as pairs of indexes: the
/// longest, unless the lists are too long to table; then the pairs of children whose
/// fingerprints are found once in each list, and the longest in each stretch between them.
fn common(
    txn: &TransactionMut,
    (ys, yf): (&[XmlOut], &[u64]),
    (ts, tf): (&[Child<'_>], &[u64]),
) -> Vec<(usize, usize)> {
    if ys.len().saturating_mul(ts.len()) <= MAX_CELLS {
        return table(txn, (ys, yf), (ts, tf));
    }
    let unique = increasing(&unique(yf, tf));
    let cuts = unique
        .into_iter()
        .filter(|&(i, j)| equal(txn, &ys[i], &ts[j]));
    let mut pairs = Vec::new();
    let (mut y, mut t) = (0, 0);
    for (i, j) in cuts.chain([(ys.len(), ts.len())]) {
        if (i - y).saturating_mul(j - t) <= MAX_CELLS {
            let between = table(txn, (&ys[y..i], &yf[y..i]), (&ts[t..j], &tf[t..j]));
            pairs.extend(between.into_iter().map(|(a, b)| (y + a, t + b)));
        }
        if i < ys.len() {
            pairs.push((i, j));
        }
        (y, t) = (i + 1, j + 1);
    }
    pairs
}

/// The pairs of indexes of the fingerprints found once in `yf` and once in `tf`, in order of
/// the first.
fn unique(yf: &[u64], tf: &[u64]) -> Vec<(usize, usize)> {
    // Per fingerprint: how often and where in each list.
    let mut seen: HashMap<u64, [(usize, usize); 2]> = HashMap::new();
    for (list, prints) in [yf, tf].into_iter().enumerate() {
        for (at, print) in prints.iter().enumerate() {
            let found = &mut seen.entry(*print).or_default()[list];
            *found = (found.0 + 1, at);
        }
    }
    let mut pairs: Vec<(usize, usize)> = seen
        .into_values()
        .filter(|[(ny, _), (nt, _)]| *ny == 1 && *nt == 1)
        .map(|[(_, i), (_, j)]| (i, j))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// The longest chain of `pairs` (in order of their first index) whose second indexes increase.
fn increasing(pairs: &[(usize, usize)]) -> Vec<(usize, usize)> {
    // `ends[l]`: the pair ending the chain of length `l + 1` that ends lowest.
    let mut ends: Vec<usize> = Vec::new();
    let mut before: Vec<Option<usize>> = vec![None; pairs.len()];
    for (k, &(_, j)) in pairs.iter().enumerate() {
        let l = ends.partition_point(|&e| pairs[e].1 < j);
        before[k] = l.checked_sub(1).map(|p| ends[p]);
        match ends.get_mut(l) {
            Some(end) => *end = k,
            None => ends.push(k),
        }
    }
    let mut chain = Vec::new();
    let mut next = ends.last().copied();
    while let Some(k) = next {
        chain.push(pairs[k]);
        next = before[k];
    }
    chain.reverse();
    chain
}

/// The longest common subsequence of `ys` and `ts`, by table.
fn table(
    txn: &TransactionMut,
    (ys, yf): (&[XmlOut], &[u64]),
    (ts, tf): (&[Child<'_>], &[u64]),
) -> Vec<(usize, usize)> {
    let (n, m) = (ys.len(), ts.len());
    if n == 0 || m == 0 {
        return Vec::new();
    }
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
                element_print(
                    &mut hash,
                    element.tag(),
                    if emptied { 0 } else { children.len() },
                );
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
