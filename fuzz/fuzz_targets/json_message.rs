//! Whatever a client sends on the JSON route: decoding never panics, and anything accepted
//! hashes its own canonical content.
#![no_main]

use docroom_actors::protocol::json::{decode, Inbound};
use docroom_actors::doc::{sha256_hex, DocId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let doc = DocId::parse("fuzz").unwrap();
    if let Ok(Inbound::Update { version, .. }) = decode(&doc, text, 1 << 20) {
        assert_eq!(version.hash, sha256_hex(&version.content));
        assert!(serde_json::from_slice::<serde_json::Value>(&version.content).is_ok());
    }
});
