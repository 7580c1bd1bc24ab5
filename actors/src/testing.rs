//! What the crate's unit tests share: versions made up for a test, and timers small enough
//! that actor tests run in milliseconds.

use std::time::Duration;

use bytes::Bytes;

use crate::doc::{DocId, Kind, Stamp, Version};
use crate::supervisor::SupervisorSettings;

/// An unstamped JSON version of `doc` with `content`.
pub fn json(doc: &str, content: &str) -> Version {
    let doc = DocId::parse(doc).unwrap();
    Version::new(doc, Kind::Json, Bytes::copy_from_slice(content.as_bytes()))
}

/// A JSON version stamped at `millis` by replica `r`.
pub fn stamped(doc: &str, content: &str, millis: u64) -> Version {
    let stamp = Stamp {
        millis,
        counter: 0,
        replica: "r".into(),
    };
    json(doc, content).stamped(stamp)
}

/// The Yjs state of a document where client `client` typed `text`.
pub fn yjs_edit(doc: &str, client: u64, text: &str) -> Version {
    use yrs::{ReadTxn, Text, Transact};
    let ydoc = yrs::Doc::with_client_id(client);
    let t = ydoc.get_or_insert_text("t");
    t.insert(&mut ydoc.transact_mut(), 0, text);
    let state = ydoc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    Version::new(DocId::parse(doc).unwrap(), Kind::Yjs, Bytes::from(state))
}

/// A Yjs version rendered as JSON text.
pub fn yjs_text(version: &Version) -> String {
    crate::protocol::yjs::YjsDoc::load(&version.content)
        .unwrap()
        .to_json()
        .unwrap()
        .to_string()
}

/// A supervisor that notices and recovers within tens of milliseconds.
pub fn supervisor_settings() -> SupervisorSettings {
    let ms = Duration::from_millis;
    SupervisorSettings {
        failure_threshold: 3,
        open_for: ms(100),
        lock_poll: ms(5),
        lock_wait: ms(50),
        health_check: ms(20),
        retry_base: ms(10),
        retry_max: ms(50),
        save_linger: ms(0),
        save_linger_alone: ms(0),
    }
}

/// Waits (up to 5 s, checking every 10 ms) until `cond` holds; panics naming `what` otherwise.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
