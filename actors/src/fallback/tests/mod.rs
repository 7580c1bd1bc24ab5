//! The fallback's behaviour through its public API, against real files (and a disk that can
//! be filled on command).

mod disk;
mod groups;
mod increments;
mod owed;
mod puts;
mod replay;

pub(super) use super::test_dir::TestDir;
pub(super) use super::*;
pub(super) use crate::doc::Kind;

pub(super) use crate::testing::{json as v, stamped, yjs_edit, yjs_text};

pub(super) fn id(doc: &str) -> DocId {
    DocId::parse(doc).unwrap()
}

pub(super) fn sorted(mut versions: Vec<Version>) -> Vec<Version> {
    versions.sort_by(|a, b| a.doc.cmp(&b.doc));
    versions
}
