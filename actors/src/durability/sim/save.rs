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
use crate::durability::state::{journaled, Route};
use crate::storage::{DocumentLog, Saved};

pub(super) enum Save {
    /// The supervisor routes it, and Redis (if chosen) runs the save.
    Route(Version),
    /// Redis's answer reaches the supervisor (`None`: not tried; `Some(None)`: failed).
    Answered {
        v: Version,
        route: Route,
        redis: Option<Option<Saved>>,
        wipes: u64,
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
                let route = w.life(r).durability.route(&v.doc);
                let redis = match route {
                    Route::Redis { .. } => {
                        Some(w.redis(r, Conn::Main, "save", |c| at_once(c.save(&v))))
                    }
                    Route::Journal => None,
                };
                if let Some(Some(saved)) = &redis {
                    w.note(Some(r), || {
                        format!("  {:?} at {:?}", saved.written, saved.position)
                    });
                }
                Some(Save::Answered {
                    v,
                    route,
                    redis,
                    wipes: w.wipes,
                })
            }
            Save::Answered {
                v,
                route,
                redis,
                wipes,
            } => {
                if let Some(answer) = &redis {
                    account(w, r, answer.is_some());
                }
                let stored = match (route, redis) {
                    (Route::Redis { failures }, Some(Some(saved))) => {
                        w.life(r).durability.saved(&v, failures, saved)
                    }
                    _ => None,
                };
                let Some(stored) = stored else {
                    return Some(Save::Journal(v));
                };
                acknowledge(w, r, &v, stored.as_str(), w.wipes != wipes);
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
                let stores = &w.life(r).stores;
                journaled(&stores.ledger, &stores.fallback, &v);
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
