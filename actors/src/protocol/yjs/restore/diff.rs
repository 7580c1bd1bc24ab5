//! Which parts of a sequence (elements, characters) stay: those both versions share at their
//! start and end, and between them a longest common subsequence by Myers' O((n+m)·d) diff,
//! so two edits far apart in a text or an array change only themselves, and what others type
//! between them survives. A middle needing more edits than [`budget`] allows is replaced whole.

use std::ops::Range;

/// A stretch of the current sequence replaced by a stretch of the old one's (either may be
/// empty, not both).
pub(super) struct Gap {
    pub(super) have: Range<usize>,
    pub(super) want: Range<usize>,
}

/// The parts of `have` (`n` long) kept as parts of `want` (`m` long), as pairs of indices in
/// increasing order, and the gaps between them, last first (so that changing a gap leaves the
/// indices of those before it as they were).
pub(super) fn plan(
    n: usize,
    m: usize,
    same: impl Fn(usize, usize) -> bool,
) -> (Vec<(usize, usize)>, Vec<Gap>) {
    let min = n.min(m);
    let start = (0..min).take_while(|&i| same(i, i)).count();
    let end = (0..min - start)
        .take_while(|&i| same(n - 1 - i, m - 1 - i))
        .count();
    let mut kept: Vec<(usize, usize)> = (0..start).map(|i| (i, i)).collect();
    let (mn, mm) = (n - start - end, m - start - end);
    if let Some(middle) = myers(mn, mm, |i, j| same(start + i, start + j)) {
        kept.extend(middle.into_iter().map(|(i, j)| (start + i, start + j)));
    }
    kept.extend((0..end).map(|i| (n - end + i, m - end + i)));
    let mut gaps = Vec::new();
    let (mut i, mut j) = (0, 0);
    for &(ki, kj) in kept.iter().chain([(n, m)].iter()) {
        if ki > i || kj > j {
            gaps.push(Gap {
                have: i..ki,
                want: j..kj,
            });
        }
        (i, j) = (ki + 1, kj + 1);
    }
    gaps.reverse();
    (kept, gaps)
}

/// How many edits the diff of sequences of `n` and `m` parts may look for: at most about 5·10⁷
/// comparisons, and 1,000 edits (the trace it keeps grows with their square).
fn budget(n: usize, m: usize) -> usize {
    (50_000_000 / (n + m).max(1)).min(1000)
}

/// The pairs a shortest edit script of `n` parts into `m` keeps, or `None` when it needs more
/// edits than the budget.
fn myers(n: usize, m: usize, same: impl Fn(usize, usize) -> bool) -> Option<Vec<(usize, usize)>> {
    if n == 0 || m == 0 {
        return Some(Vec::new());
    }
    let max = n + m;
    let offset = max as isize;
    // The furthest `x` on each diagonal `k = x - y`, and the values it had after each step `d`
    // (diagonals -d..=d), to walk back along.
    let mut v = vec![0usize; 2 * max + 2];
    let mut trace: Vec<Vec<usize>> = Vec::new();
    let at = |k: isize| (k + offset) as usize;
    let mut found = None;
    'search: for d in 0..=max.min(budget(n, m)) {
        let d = d as isize;
        for k in (-d..=d).step_by(2) {
            let mut x = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
                v[at(k + 1)]
            } else {
                v[at(k - 1)] + 1
            };
            let mut y = (x as isize - k) as usize;
            while x < n && y < m && same(x, y) {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                trace.push(v[at(-d)..=at(d)].to_vec());
                found = Some(d);
                break 'search;
            }
        }
        trace.push(v[at(-d)..=at(d)].to_vec());
    }
    let found = found?;
    let mut pairs = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (1..=found).rev() {
        let prev = &trace[(d - 1) as usize];
        let get = |k: isize| prev[(k + d - 1) as usize];
        let k = x as isize - y as isize;
        let down = k == -d || (k != d && get(k - 1) < get(k + 1));
        let prev_k = if down { k + 1 } else { k - 1 };
        let prev_x = get(prev_k);
        let prev_y = (prev_x as isize - prev_k) as usize;
        let (mid_x, mid_y) = if down {
            (prev_x, prev_y + 1)
        } else {
            (prev_x + 1, prev_y)
        };
        while x > mid_x && y > mid_y {
            x -= 1;
            y -= 1;
            pairs.push((x, y));
        }
        (x, y) = (prev_x, prev_y);
    }
    while x > 0 && y > 0 {
        x -= 1;
        y -= 1;
        pairs.push((x, y));
    }
    pairs.reverse();
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(a: &str, b: &str) -> String {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let (pairs, gaps) = plan(a.len(), b.len(), |i, j| a[i] == b[j]);
        let mut rebuilt = a.clone();
        for gap in &gaps {
            rebuilt.splice(gap.have.clone(), b[gap.want.clone()].iter().copied());
        }
        assert_eq!(rebuilt, b, "the gaps make one into the other");
        pairs
            .iter()
            .map(|&(i, j)| {
                assert_eq!(a[i], b[j]);
                a[i]
            })
            .collect()
    }

    #[test]
    fn the_diff_keeps_a_longest_common_subsequence() {
        assert_eq!(kept("abcabba", "cbabac").len(), 4);
        assert_eq!(kept("one two three", "one 2 three"), "one  three");
        assert_eq!(kept("", "abc"), "");
        assert_eq!(kept("abc", ""), "");
        assert_eq!(kept("same", "same"), "same");
        assert_eq!(kept("xaybz", "aqbr"), "ab");
    }
}
