//! Whatever a client sends on the Hocuspocus route: decoding never panics, anything decoded
//! encodes to a frame that decodes to the same thing, and the socket's document table never
//! holds more than its bounds whatever order the frames come in.
#![no_main]

use docroom_actors::protocol::hocuspocus::{decode, Action, Connection, ConnectionLimits, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode(data) {
        let again = decode(&frame.encode()).expect("an encoded frame decodes");
        assert_eq!(again, frame);
    }

    // The input split into frames at 0xff bytes, fed to one socket; every token check is
    // answered at once, alternately accepted and refused.
    let limits = ConnectionLimits {
        max_held_bytes: 256,
        max_held_messages: 4,
        max_documents: 3,
    };
    let mut connection = Connection::new(limits);
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        for action in connection.receive(chunk) {
            if let Action::CheckToken { doc, ticket, .. } = action {
                let outcome = if i % 2 == 0 {
                    Ok(Scope::ReadOnly)
                } else {
                    Err("no".into())
                };
                let _ = connection.token_checked(&doc, ticket, outcome);
            }
        }
        let (messages, bytes) = connection.held();
        assert!(messages <= limits.max_held_messages && bytes <= limits.max_held_bytes);
        assert!(connection.document_count() <= limits.max_documents);
    }
});
