//! What the clients were promised, and the checks that it was kept (SPEC §1.1 and §1.4):
//! every acknowledged update reaches PostgreSQL, or a later one does (JSON: a larger stamp;
//! Yjs updates merge, so each one's marker must be in the stored text), and PostgreSQL never
//! goes back (a JSON row's stamp, a Yjs row's markers and the recorded log point only grow).
//!
//! The oracle also tells the fault schedule which faults the promise covers. It covers each
//! fault alone and the ★ pairs, not any two: a replica SIGKILLed while only Redis holds what it
//! acknowledged, and then Redis restarted empty before any flush took it, loses that update in
//! any design. So an update acknowledged through Redis by a replica that then crashed makes a
//! wipe wait until PostgreSQL has it, and after a wipe a replica may crash only once it has
//! noticed (SPEC §1.1 ★) or its journal holds what the wipe took.

use std::collections::{BTreeMap, BTreeSet};

use crate::doc::{DocId, Kind, Stamp, Version};
use crate::fallback::Fallback;
use crate::log::LogMark;
use crate::storage::memory::MemoryStore;

/// A broken invariant: which one, and what broke it.
#[derive(Debug)]
pub(super) struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

pub(super) fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// What an acknowledgement promised about one update.
#[derive(Clone, Debug)]
enum Promise {
    /// This stamp, or a larger one, ends in PostgreSQL.
    Json(Stamp),
    /// This marker is in PostgreSQL's merged text.
    Yjs(u64),
}

#[derive(Debug)]
struct Ack {
    replica: usize,
    doc: DocId,
    promise: Promise,
    via: &'static str,
    step: u64,
    /// Acknowledged through Redis by a replica that crashed before PostgreSQL had it.
    orphan: bool,
    /// Acknowledged through Redis, and a wipe took it before PostgreSQL had it.
    wiped: bool,
}

/// What PostgreSQL held of one document after its last write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Held {
    stamp: Option<Stamp>,
    hash: String,
    markers: BTreeSet<u64>,
    point: Option<LogMark>,
}

#[derive(Default)]
pub(super) struct Oracle {
    acks: Vec<Ack>,
    pg: BTreeMap<DocId, Held>,
}

impl Oracle {
    /// `v` was acknowledged to its client by `replica` (`via` what the ack said); `wiped`: it
    /// went into Redis, and Redis restarted empty since.
    pub fn acked(
        &mut self,
        replica: usize,
        v: &Version,
        via: &'static str,
        step: u64,
        wiped: bool,
    ) {
        let promise = match v.kind {
            Kind::Json => Promise::Json(v.stamp.clone().expect("the simulation stamps json")),
            Kind::Yjs => Promise::Yjs(marker_of(v)),
        };
        let through_redis = via == "cache";
        self.acks.push(Ack {
            replica,
            doc: v.doc.clone(),
            promise,
            via,
            step,
            orphan: false,
            wiped: wiped && through_redis,
        });
    }

    /// PostgreSQL took a write of `docs`: nothing it held may have gone back.
    pub fn pg_wrote(&mut self, pg: &MemoryStore, docs: &[DocId]) -> Result<(), Violation> {
        for doc in docs {
            let now = held(pg, doc);
            let before = self.pg.get(doc).cloned().unwrap_or_default();
            if now.stamp < before.stamp {
                let detail = format!("{doc}: stamp {:?} after {:?}", now.stamp, before.stamp);
                return Err(violation("postgres never goes back (json stamp)", detail));
            }
            if !before.markers.is_subset(&now.markers) {
                let lost: Vec<_> = before.markers.difference(&now.markers).collect();
                let detail = format!("{doc}: markers {lost:?} disappeared");
                return Err(violation("postgres never goes back (yjs state)", detail));
            }
            if now.point < before.point {
                let detail = format!("{doc}: point {:?} after {:?}", now.point, before.point);
                return Err(violation(
                    "postgres's recorded log point only moves forward",
                    detail,
                ));
            }
            self.pg.insert(doc.clone(), now);
        }
        Ok(())
    }

    fn kept(&self, ack: &Ack) -> bool {
        let Some(held) = self.pg.get(&ack.doc) else {
            return false;
        };
        match &ack.promise {
            Promise::Json(stamp) => held.stamp.as_ref().is_some_and(|s| s >= stamp),
            Promise::Yjs(marker) => held.markers.contains(marker),
        }
    }

    /// `replica` crashed: what only its ledger and Redis held is now Redis's alone.
    pub fn crashed(&mut self, replica: usize) {
        let kept: Vec<bool> = self.acks.iter().map(|a| self.kept(a)).collect();
        for (ack, kept) in self.acks.iter_mut().zip(kept) {
            if ack.replica == replica && ack.via == "cache" && !kept {
                ack.orphan = true;
            }
        }
    }

    /// Whether Redis may restart empty: no crashed replica's update rests on Redis alone.
    pub fn may_wipe(&self) -> bool {
        self.acks.iter().all(|a| !a.orphan || self.kept(a))
    }

    /// Redis restarted empty: what was acknowledged through it and PostgreSQL lacks is now
    /// only in the acknowledging replica's ledger (until its spill journals it).
    pub fn wiped(&mut self) {
        let kept: Vec<bool> = self.acks.iter().map(|a| self.kept(a)).collect();
        for (ack, kept) in self.acks.iter_mut().zip(kept) {
            ack.wiped |= ack.via == "cache" && !kept;
        }
    }

    /// Whether `replica` may crash now: it has noticed the last wipe (`noticed`), or what the
    /// wipe took of its updates is in its journal or PostgreSQL.
    pub fn may_crash(&self, replica: usize, noticed: bool, journal: &Fallback) -> bool {
        noticed
            || self
                .acks
                .iter()
                .all(|a| a.replica != replica || !a.wiped || self.kept(a) || journaled(a, journal))
    }

    /// After quiescence: every acknowledged update is kept.
    pub fn check(&self) -> Result<(), Violation> {
        let Some(ack) = self.acks.iter().find(|a| !self.kept(a)) else {
            return Ok(());
        };
        let held = self.pg.get(&ack.doc).cloned().unwrap_or_default();
        let detail = format!(
            "r{} acknowledged {:?} of {} ({}) at step {}; postgres holds stamp {:?}, markers {:?}",
            ack.replica, ack.promise, ack.doc, ack.via, ack.step, held.stamp, held.markers
        );
        Err(violation(
            "every acknowledged update is in postgres or superseded by a larger stamp",
            detail,
        ))
    }

    pub fn acks(&self) -> usize {
        self.acks.len()
    }
}

fn journaled(ack: &Ack, journal: &Fallback) -> bool {
    let Some(v) = journal.get(&ack.doc) else {
        return false;
    };
    match &ack.promise {
        Promise::Json(stamp) => v.stamp.as_ref().is_some_and(|s| s >= stamp),
        Promise::Yjs(marker) => markers(&v).contains(marker),
    }
}

fn held(pg: &MemoryStore, doc: &DocId) -> Held {
    let point = pg.point(doc);
    match pg.peek(doc) {
        None => Held {
            point,
            ..Held::default()
        },
        Some(v) => Held {
            markers: match v.kind {
                Kind::Yjs => markers(&v),
                Kind::Json => BTreeSet::new(),
            },
            stamp: v.stamp,
            hash: v.hash,
            point,
        },
    }
}

/// The Yjs update a client makes for marker `n`: a new client (numbered `n`) typing `[n]`.
pub(super) fn yjs_update(doc: &str, n: u64) -> Version {
    crate::testing::yjs_edit(doc, n, &format!("[{n}]"))
}

/// The marker of an update made by [`yjs_update`].
fn marker_of(v: &Version) -> u64 {
    let mut found = markers(v).into_iter();
    found
        .next()
        .expect("a simulated yjs update types one marker")
}

/// Every `[n]` typed in a Yjs version's text.
pub(super) fn markers(v: &Version) -> BTreeSet<u64> {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Transact};
    let ydoc = yrs::Doc::new();
    let text = ydoc.get_or_insert_text("t");
    let update = yrs::Update::decode_v1(&v.content).expect("stored yjs content decodes");
    ydoc.transact_mut()
        .apply_update(update)
        .expect("stored yjs content applies");
    let typed = text.get_string(&ydoc.transact());
    typed
        .split('[')
        .filter_map(|part| part.split_once(']'))
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

/// What PostgreSQL holds of `doc`, for the final comparison with Redis: its hash, or for Yjs
/// its markers.
pub(super) fn pg_summary(pg: &MemoryStore, doc: &DocId) -> (String, BTreeSet<u64>) {
    let h = held(pg, doc);
    (h.hash, h.markers)
}
