//! The fallback's behaviour through its public API, against real files (and a disk that can
//! be filled on command).

mod disk;
mod puts;
mod replay;

pub(super) use super::test_dir::TestDir;
pub(super) use super::*;
pub(super) use crate::doc::{Kind, Stamp};
pub(super) use bytes::Bytes;

/// An unstamped JSON version of `doc` with `content`.
pub(super) fn v(doc: &str, content: &str) -> Version {
    let doc = DocId::parse(doc).unwrap();
    Version::new(doc, Kind::Json, Bytes::copy_from_slice(content.as_bytes()))
}

/// A JSON version stamped at `millis` by replica `r`.
pub(super) fn stamped(doc: &str, content: &str, millis: u64) -> Version {
    let stamp = Stamp {
        millis,
        counter: 0,
        replica: "r".into(),
    };
    v(doc, content).stamped(stamp)
}

/// The Yjs state of a document where client `client` typed `text`.
pub(super) fn yjs_edit(doc: &str, client: u64, text: &str) -> Version {
    use yrs::{ReadTxn, Text, Transact};
    let ydoc = yrs::Doc::with_client_id(client);
    let t = ydoc.get_or_insert_text("t");
    t.insert(&mut ydoc.transact_mut(), 0, text);
    let state = ydoc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    Version::new(DocId::parse(doc).unwrap(), Kind::Yjs, Bytes::from(state))
}

/// The text of a Yjs version's `t`.
pub(super) fn yjs_text(version: &Version) -> String {
    crate::protocol::yjs::YjsDoc::load(&version.content)
        .unwrap()
        .to_json()
        .to_string()
}

pub(super) fn id(doc: &str) -> DocId {
    DocId::parse(doc).unwrap()
}

pub(super) fn sorted(mut versions: Vec<Version>) -> Vec<Version> {
    versions.sort_by(|a, b| a.doc.cmp(&b.doc));
    versions
}
