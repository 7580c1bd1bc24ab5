//! How deeply a document nests, known before an update is decoded (SPEC §1.5,
//! `limits.max_yjs_depth`).
//!
//! yrs walks nested types and values by recursion: decoding a value, deleting a type (its
//! children, their children...), collecting garbage, and the renderings. One update nesting a
//! few thousand levels overflowed the stack and aborted the process. So every update is walked
//! first ([`scan`]) and refused when anything in it would nest deeper than the limit.
//!
//! A value's nesting is written in the update, but a block's *level* (how many types hold it) is
//! not: a block names its parent item, or only its neighbours (its origins), whose parent yrs
//! looks up in the document. [`Nesting`] is that lookup, kept beside the document: for every
//! clock range it has seen, the level of the blocks in it — a few runs per client, since a
//! client's consecutive blocks mostly sit at one level. Blocks that refer to something neither
//! the document nor the update holds wait, as yrs keeps them pending, until it arrives.

use std::collections::{BTreeMap, BTreeSet};

mod scan;
mod squash;
#[cfg(test)]
mod squash_tests;
#[cfg(test)]
mod tests;

use scan::{json_depth, scan, Block, Parent, ScanError};
pub(crate) use squash::{decode_squashed, squash_chains};

/// Whether a JSON text nests within `max` levels; the depth at which it went past otherwise.
pub(super) fn json_within(text: &str, max: u32) -> Result<(), u32> {
    match json_depth(text, max) {
        Err(ScanError::TooDeep(depth)) => Err(depth),
        _ => Ok(()),
    }
}

/// A block's id: a client and a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Id {
    pub client: u64,
    pub clock: u32,
}

/// Why an update was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    Malformed(&'static str),
    /// Something would nest this deep.
    TooDeep(u32),
    /// The document already nests deeper than the limit (it was stored so) and the update
    /// deletes: yrs deletes a type's descendants by recursion.
    DeletesInTooDeep(u32),
}

/// What a walk may accept.
#[derive(Clone, Copy, Debug)]
pub(super) enum Admit {
    /// A member's update: nothing may nest deeper than the limit.
    Member,
    /// Content the document already holds elsewhere (a stored state, another replica's entry):
    /// only values must stay within the limit, since yrs decodes them by recursion before
    /// anything else; types may be deeper, and the document is then served but not rendered.
    Stored,
}

/// The level of every clock range of the document (see the module doc).
#[derive(Default, Debug)]
pub(super) struct Nesting {
    /// `(client, start) → (end, level)`; level 0 marks ranges that hold nothing that nests (GC,
    /// items yrs will collect because their parent is gone).
    runs: Runs,
    /// Blocks waiting for the range of an id they refer to: `missing id → blocks`.
    waiting: BTreeMap<(u64, u32), Vec<Block>>,
    /// The deepest nesting the document holds.
    deepest: u32,
}

/// The outcome of walking updates against a [`Nesting`], to [`Nesting::commit`] once yrs applied
/// them.
#[derive(Default, Debug)]
pub(super) struct Plan {
    runs: Runs,
    /// Waiting blocks of the document this walk placed (removed on commit).
    woken: BTreeSet<(u64, u32)>,
    waiting: BTreeMap<(u64, u32), Vec<Block>>,
    deepest: u32,
    /// The types the updates add (kept only for [`Admit::Stored`]; see [`Nesting::plan`]).
    types: Vec<Id>,
    deletes: Vec<(u64, u32, u32)>,
}

impl Nesting {
    /// The deepest nesting the document holds.
    pub fn deepest(&self) -> u32 {
        self.deepest
    }

    /// Walks `updates` as if applied in order; refuses when `admit` does not allow what they
    /// hold. Costs the updates (and the blocks they wake), not the document.
    pub fn plan<'a>(
        &self,
        updates: impl IntoIterator<Item = &'a [u8]>,
        max: u32,
        admit: Admit,
    ) -> Result<Plan, Refused> {
        let mut plan = Plan::default();
        for update in updates {
            let deletes = scan(update, max, |block| {
                self.place(&mut plan, block, max, admit)
            })
            .map_err(|e| match e {
                ScanError::Malformed(why) => Refused::Malformed(why),
                ScanError::TooDeep(depth) => Refused::TooDeep(depth),
            })?;
            plan.deletes.extend(deletes);
        }
        if plan.deletes.is_empty() {
            return Ok(plan);
        }
        // yrs deletes a type's descendants by recursion: in a document nested deeper than the
        // limit (only ever stored so, never accepted so) nothing may delete a type.
        if self.deepest > max {
            return Err(Refused::DeletesInTooDeep(self.deepest));
        }
        if plan.deepest > max && deletes_a_type(&plan) {
            return Err(Refused::DeletesInTooDeep(plan.deepest));
        }
        Ok(plan)
    }

    /// Takes a plan's ranges and waiting blocks in.
    pub fn commit(&mut self, plan: Plan) {
        for key in plan.woken {
            self.waiting.remove(&key);
        }
        for (key, run) in plan.runs {
            insert_run(&mut self.runs, key, run);
        }
        for (key, blocks) in plan.waiting {
            self.waiting.entry(key).or_default().extend(blocks);
        }
        self.deepest = self.deepest.max(plan.deepest);
    }

    /// Places `block` and everything that waited for it, or leaves it waiting.
    fn place(
        &self,
        plan: &mut Plan,
        block: Block,
        max: u32,
        admit: Admit,
    ) -> Result<(), ScanError> {
        // Typing places one block that wakes nothing: no allocation on that path.
        let mut work = Vec::new();
        let mut next = Some(block);
        while let Some(block) = next.take().or_else(|| work.pop()) {
            let level = match self.level_of(plan, &block) {
                Ok(level) => level,
                Err(missing) => {
                    let key = (missing.client, missing.clock);
                    plan.waiting.entry(key).or_default().push(block);
                    continue;
                }
            };
            let (start, end) = (block.id.clock, block.id.clock.saturating_add(block.len));
            let client = block.id.client;
            let gaps = self.unknown(plan, client, start, end);
            if gaps.is_empty() {
                continue; // the document holds it already: a repeat adds nothing
            }
            if level > 0 {
                let depth = level.saturating_add(block.value_depth);
                if depth > max && matches!(admit, Admit::Member) {
                    return Err(ScanError::TooDeep(depth));
                }
                plan.deepest = plan.deepest.max(depth);
            }
            if block.is_type && matches!(admit, Admit::Stored) {
                plan.types.push(block.id);
            }
            for gap in gaps {
                insert_run(&mut plan.runs, (client, gap.0), (gap.1, level));
            }
            // Blocks waiting for an id in this range, in the plan or in the document.
            let (from, to) = ((client, start), (client, end));
            while let Some((&key, _)) = plan.waiting.range(from..to).next() {
                work.extend(plan.waiting.remove(&key).unwrap_or_default());
            }
            for (key, blocks) in self.waiting.range(from..to) {
                if plan.woken.insert(*key) {
                    work.extend(blocks.iter().copied());
                }
            }
        }
        Ok(())
    }

    /// A block's level, or the id it refers to that nothing holds yet.
    fn level_of(&self, plan: &Plan, block: &Block) -> Result<u32, Id> {
        let find = |id: Id| self.find(plan, id).ok_or(id);
        Ok(match block.parent {
            None => 0,
            Some(Parent::Root) => 1,
            // A parent yrs no longer holds as a type makes the item garbage.
            Some(Parent::Item(parent)) => match find(parent)? {
                0 => 0,
                level => level.saturating_add(1),
            },
            // Legitimate origins are siblings; crafted ones may not be, and yrs may take either
            // one's parent, so the deeper counts.
            Some(Parent::Origins { left, right }) => {
                let left = left.map(find).transpose()?.unwrap_or(0);
                let right = right.map(find).transpose()?.unwrap_or(0);
                left.max(right)
            }
        })
    }

    fn find(&self, plan: &Plan, id: Id) -> Option<u32> {
        run_at(&plan.runs, id).or_else(|| run_at(&self.runs, id))
    }

    /// The parts of `start..end` of `client` that neither the document nor the plan holds.
    fn unknown(&self, plan: &Plan, client: u64, start: u32, end: u32) -> Gaps {
        let overlaps = |runs: &Runs| {
            runs.range(..(client, end))
                .next_back()
                .is_some_and(|((c, _), (e, _))| *c == client && *e > start)
        };
        // A client's new blocks come after everything known of it: one gap, found in two
        // lookups.
        if !overlaps(&self.runs) && !overlaps(&plan.runs) {
            return Gaps::One(start, end);
        }
        let mut gaps = vec![(start, end)];
        for runs in [&self.runs, &plan.runs] {
            let known = covering(runs, client, start, end);
            gaps = gaps
                .into_iter()
                .flat_map(|gap| subtract(gap, &known))
                .collect();
        }
        Gaps::Many(gaps)
    }
}

type Runs = BTreeMap<(u64, u32), (u32, u32)>;

/// Unknown parts of a block's range (see [`Nesting::unknown`]).
enum Gaps {
    One(u32, u32),
    Many(Vec<(u32, u32)>),
}

impl Gaps {
    fn is_empty(&self) -> bool {
        matches!(self, Gaps::Many(gaps) if gaps.is_empty())
    }
}

impl IntoIterator for Gaps {
    type Item = (u32, u32);
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<(u32, u32)>, std::vec::IntoIter<(u32, u32)>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Gaps::One(start, end) => Some((start, end)).into_iter().chain(Vec::new()),
            Gaps::Many(gaps) => None.into_iter().chain(gaps),
        }
    }
}

/// A deleted range of the plan covers one of the types it adds.
fn deletes_a_type(plan: &Plan) -> bool {
    let types: BTreeSet<(u64, u32)> = plan.types.iter().map(|id| (id.client, id.clock)).collect();
    plan.deletes.iter().any(|&(client, clock, len)| {
        let end = clock.saturating_add(len);
        types.range((client, clock)..(client, end)).next().is_some()
    })
}

/// The level of the run holding `id`.
fn run_at(runs: &Runs, id: Id) -> Option<u32> {
    let (&(client, _), &(end, level)) = runs.range(..=(id.client, id.clock)).next_back()?;
    (client == id.client && id.clock < end).then_some(level)
}

/// The runs of `client` overlapping `start..end`, as ranges.
fn covering(runs: &Runs, client: u64, start: u32, end: u32) -> Vec<(u32, u32)> {
    let first = runs
        .range(..=(client, start))
        .next_back()
        .filter(|((c, _), (e, _))| *c == client && *e > start)
        .map(|(k, _)| *k)
        .unwrap_or((client, start));
    runs.range(first..(client, end))
        .filter(|((c, _), _)| *c == client)
        .map(|((_, s), (e, _))| (*s, *e))
        .collect()
}

fn subtract(gap: (u32, u32), known: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut at = gap.0;
    for &(s, e) in known {
        if e <= at || s >= gap.1 {
            continue;
        }
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < gap.1 {
        out.push((at, gap.1));
    }
    out
}

/// Inserts a run that overlaps none, joined to the run before it when it continues it at the
/// same level (a client typing in one paragraph is one run).
fn insert_run(runs: &mut Runs, key: (u64, u32), run: (u32, u32)) {
    if key.1 >= run.0 {
        return;
    }
    if let Some((&(client, start), &(end, level))) = runs.range(..key).next_back() {
        if client == key.0 && end == key.1 && level == run.1 {
            runs.insert((client, start), run);
            return;
        }
    }
    runs.insert(key, run);
}
