//! A client's update and the save that acknowledges it, as `Handler<Save>` carries it out:
//! routed to Redis (breaker closed, and the document's entry not journaled) or else to the
//! journal; Redis's answer taken in on the supervisor's thread (the breaker learns it, the
//! ledger records the save at its log position); a failed or skipped Redis save journaled,
//! then the ledger told what the journal holds (the real `journaled`). Only then is the
//! client acknowledged, and the oracle told.
//!
//! Clients save JSON documents with three contents only, stamped by their replica's clock
//! (which runs ahead of the others' by its skew): the same content comes back under a new
//! stamp, the story the old equal-content rule lost. A Yjs update is a new client typing a
//! unique marker, which must end in PostgreSQL's text.

use super::faults::Conn;
use super::oracle::yjs_update;
use super::replica::account;
use super::world::{at_once, short, wait, Task, World};
use crate::doc::{Kind, Version};
use crate::ledger::Durable;
use crate::storage::{DocumentLog, Saved, Written};
use crate::supervisor::journaled;

pub(super) enum Save {
    /// The supervisor routes it, and Redis (if chosen) runs the save.
    Route(Version),
    /// Redis's answer reaches the supervisor (`None`: not tried; `Some(None)`: failed).
    Answered {
        v: Version,
        redis: Option<Option<Saved>>,
        wipes: u64,
        /// The breaker's failure count when the save was sent.
        failures: u64,
    },
    /// The journal's put.
    Journal(Version),
    /// The put is synced; the ledger learns what the journal holds.
    Journaled(Version),
}

/// A client of replica `r` edits one document (a room saves one update at a time).
pub(super) fn client_save(w: &mut World, r: usize) {
    let (doc, kind) = w.docs[w.rng.index(w.docs.len())].clone();
    if w.life(r).saving.contains(&doc) {
        return;
    }
    let v = match kind {
        Kind::Json => {
            let content = ["A", "B", "C"][w.rng.index(3)];
            let after = w.life(r).seen.get(&doc).cloned();
            let replica = &w.replicas[r];
            let stamp = replica.clock.stamp_at(w.now + replica.skew, after.as_ref());
            let body = format!("{{\"v\":\"{content}\"}}");
            crate::testing::json(doc.as_str(), &body).stamped(stamp)
        }
        Kind::Yjs => {
            w.next_marker += 1;
            yjs_update(doc.as_str(), w.next_marker)
        }
    };
    let life = w.life(r);
    life.saving.insert(doc.clone());
    if let Some(stamp) = &v.stamp {
        life.seen.insert(doc, stamp.clone());
    }
    w.note(Some(r), || format!("client saves {} {}", v.doc, short(&v)));
    w.spawn(r, Task::Save(Save::Route(v)));
}

impl Save {
    pub fn step(self, w: &mut World, r: usize) -> Option<Save> {
        match self {
            Save::Route(v) => {
                let life = w.life(r);
                let journaled = life.ledger().durable(&v.doc) == Some(Durable::Journal);
                let to_redis = life.breaker.allows_redis() && !journaled;
                let redis = match to_redis {
                    true => Some(w.redis(r, Conn::Main, "save", |c| at_once(c.save(&v)))),
                    false => None,
                };
                if let Some(Some(saved)) = &redis {
                    w.note(Some(r), || {
                        format!("  {:?} at {:?}", saved.written, saved.position)
                    });
                }
                let (wipes, failures) = (w.wipes, w.life(r).breaker.failures());
                Some(Save::Answered {
                    v,
                    redis,
                    wipes,
                    failures,
                })
            }
            Save::Answered {
                v,
                redis,
                wipes,
                failures,
            } => {
                if let Some(answer) = &redis {
                    account(w, r, answer.is_some());
                }
                let Some(Some(saved)) = redis else {
                    return Some(Save::Journal(v));
                };
                let failed_since = w.life(r).breaker.failures() != failures;
                let via = match saved.written {
                    Written::Stored => {
                        let ledger = w.life(r).ledger().clone();
                        if failed_since || ledger.durable(&v.doc) == Some(Durable::Journal) {
                            return Some(Save::Journal(v));
                        }
                        ledger.saved(&v, Durable::Cache, saved.position);
                        "cache"
                    }
                    // A later version is cached, whose own save may never be acknowledged: this one waits.
                    Written::Superseded => {
                        w.life(r).ledger().saved(&v, Durable::Cache, None);
                        "cache"
                    }
                    Written::Duplicate => "duplicate",
                };
                acknowledge(w, r, &v, via, w.wipes != wipes);
                None
            }
            Save::Journal(v) => match wait(w.life(r).fallback().put(v.clone())) {
                Ok(()) => Some(Save::Journaled(v)),
                Err(e) => {
                    w.life(r).saving.remove(&v.doc);
                    w.note(Some(r), || format!("journal refused {}: {e}", v.doc));
                    None
                }
            },
            Save::Journaled(v) => {
                journaled(&w.life(r).stores, &v);
                acknowledge(w, r, &v, "fallback", false);
                None
            }
        }
    }
}

/// The client has its ack. A duplicate (SPEC §1.3: the content is the last saved one) wrote
/// nothing and promises nothing beyond what the content's own save promised.
fn acknowledge(w: &mut World, r: usize, v: &Version, via: &'static str, wiped: bool) {
    w.life(r).saving.remove(&v.doc);
    w.note(Some(r), || format!("ack {} {} ({via})", v.doc, short(v)));
    if via != "duplicate" {
        let step = w.step;
        w.oracle.acked(r, v, via, step, wiped);
    }
}
