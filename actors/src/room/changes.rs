//! Who changed a room's document, for the service's `document.changed` webhook (SPEC §9).
//!
//! The room notes each applied change from a member, the `PUT` route or a backend write
//! (`authors`: their token `sub`s; `unreported`: a change, with or without a `sub`). A save
//! takes what was noted when it starts, and reports it once it lands, so a change is reported
//! only once it is acknowledged; a save that fails gives it back to the next one. Nothing is
//! noted when nobody listens (webhooks off), so a room pays for this only when they are on.

use std::collections::BTreeSet;

use actix::prelude::*;

use super::{history_user, DocRoom, MemberId};
use crate::doc::{DocId, Kind};

/// Acknowledged changes landed for `doc`; `users` are the `sub`s of whoever made them (empty
/// for changes from clients without one).
#[derive(Message, Clone, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct Changed {
    pub doc: DocId,
    pub kind: Kind,
    pub users: Vec<String>,
}

/// What one save carries of the noted changes: reported when it lands, given back if it fails.
#[derive(Debug, Default)]
pub(super) struct Unreported {
    authors: BTreeSet<String>,
}

impl DocRoom {
    /// A member's change was applied: its token's `sub`, if any, is noted (and for the
    /// history, `"anonymous"` without one).
    pub(super) fn note_member_change(&mut self, member: MemberId) {
        let subject = self.members.get(&member).and_then(|m| m.subject.as_deref());
        if self.shared.history.is_some() {
            self.unversioned.note(history_user(subject));
        }
        if self.shared.changes.is_none() {
            return;
        }
        self.unreported = true;
        if let Some(sub) = subject.filter(|sub| !self.authors.contains(*sub)) {
            self.authors.insert(sub.to_owned());
        }
    }

    /// A change without a member (`PUT /docs/{id}`) was applied, by `by` if its token had a
    /// `sub`.
    pub(super) fn note_change_by(&mut self, by: Option<&str>) {
        if self.shared.history.is_some() {
            self.unversioned.note(history_user(by));
        }
        if self.shared.changes.is_none() {
            return;
        }
        self.unreported = true;
        if let Some(by) = by.filter(|by| !self.authors.contains(*by)) {
            self.authors.insert(by.to_owned());
        }
    }

    /// Called as a save starts: what it will report if it lands (`None`: nothing noted).
    pub(super) fn take_changes(&mut self) -> Option<Unreported> {
        if !std::mem::take(&mut self.unreported) && self.authors.is_empty() {
            return None;
        }
        Some(Unreported {
            authors: std::mem::take(&mut self.authors),
        })
    }

    /// The save carrying `taken` landed: its changes are acknowledged, tell the listener.
    pub(super) fn report_changes(&mut self, taken: Option<Unreported>) {
        let (Some(taken), Some(to)) = (taken, self.shared.changes.as_ref()) else {
            return;
        };
        to.do_send(Changed {
            doc: self.doc.clone(),
            kind: self.kind,
            users: taken.authors.into_iter().collect(),
        });
    }

    /// The save carrying `taken` failed: its changes go with the next save.
    pub(super) fn restore_changes(&mut self, taken: Option<Unreported>) {
        if let Some(taken) = taken {
            self.unreported = true;
            self.authors.extend(taken.authors);
        }
    }
}
