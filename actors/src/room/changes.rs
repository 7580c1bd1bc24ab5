//! Who changed a room's document, for the service's `document.changed` webhook (SPEC §9).
//!
//! The room's core notes each applied change from a member, the `PUT` route or a backend write,
//! and reports them once the save carrying them lands (`core/saves.rs`); the room tells the
//! listener.

use actix::prelude::*;

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
