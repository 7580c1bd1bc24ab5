//! Versions of a room's document for the history (SPEC §10): the room proposes one, the
//! service's history decides (it keeps at most one per `history.interval_ms` of editing, none
//! for content equal to the last version) and writes it to PostgreSQL.
//!
//! A room proposes a version when it has changed since its last proposal: every interval while
//! it is edited, and when it retires (its last member left). Who changed it is noted per change:
//! the token's `sub`, `"server"` for a backend without one, `"anonymous"` without tokens.

use std::collections::BTreeSet;

use actix::prelude::*;
use bytes::Bytes;

use crate::doc::{DocId, Kind};

/// Why a version is proposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// The room has been edited for an interval since its last version.
    Interval,
    /// The room retired: its last member left.
    Left,
    /// Just before, or just after, a restore.
    Restore,
}

/// A proposed version: the document's content now (a Yjs state, or a JSON document's canonical
/// text), its hash, and who changed it since the last proposal.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct CutVersion {
    pub doc: DocId,
    pub kind: Kind,
    pub content: Bytes,
    pub hash: String,
    pub users: Vec<String>,
    pub why: CutReason,
}

/// What a room notes for its next version.
#[derive(Debug, Default)]
pub(super) struct Unversioned {
    pub changed: bool,
    pub users: BTreeSet<String>,
}

impl Unversioned {
    /// A change by `user` was applied.
    pub fn note(&mut self, user: &str) {
        self.changed = true;
        if !self.users.contains(user) {
            self.users.insert(user.to_owned());
        }
    }
}

/// Who a change is attributed to in the history.
pub fn history_user(sub: Option<&str>) -> &str {
    sub.unwrap_or("anonymous")
}
