//! Whatever a client sends on the Yjs route: handling never panics, and the document can always
//! be encoded and loaded back afterwards (a bad frame must not corrupt the room for others).
#![no_main]

use docroom_actors::protocol::yjs::YjsDoc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut doc = YjsDoc::new();
    let _ = doc.handle(data, true);
    let state = doc.encode_state();
    YjsDoc::load(&state).expect("a document's own state loads back");
    let _ = YjsDoc::load(data);
});
