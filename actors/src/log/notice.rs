//! What travels on a document's channel (`doc:{id}:events`, Redis pub/sub), and its framing:
//! the notice a save publishes with each log append, and the events (awareness, stateless
//! messages, Yjs updates relayed ahead of their save) rooms publish for the other replicas.
//!
//! A frame is `KIND LEN ':' REPLICA BODY`: one byte of kind, the replica id's length in bytes
//! as decimal digits, a colon, the replica id, then the body as it is, to the frame's end (so
//! any bytes fit). Kinds: `L` an entry was appended to the log, its body the entry id
//! (`ms-seq`); `a` awareness, `s` stateless, `u` a Yjs update, each with its payload as body.
//! The `L` frame is also built inside Redis, by the SAVE script (`storage::redis_scripts`), so
//! the notice goes out atomically with the append: change both together.

use std::sync::Arc;

use bytes::Bytes;

use super::{Event, EventKind, LogPos};
use crate::doc::DocId;

/// What a document's channel carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `replica` appended the entry at `pos` to the document's log.
    Appended { replica: Arc<str>, pos: LogPos },
    /// An event for the other replicas' rooms.
    Event(Event),
}

/// A notice, with the document whose channel carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub doc: DocId,
    pub notice: Notice,
}

/// Replica ids longer than this many digits of length are not docroom's frames.
const MAX_LEN_DIGITS: usize = 5;

fn tag(kind: EventKind) -> u8 {
    match kind {
        EventKind::Awareness => b'a',
        EventKind::Stateless => b's',
        EventKind::Update => b'u',
    }
}

/// The frame of an event `replica` publishes.
pub fn encode_event(replica: &str, kind: EventKind, payload: &[u8]) -> Vec<u8> {
    frame(tag(kind), replica, payload)
}

/// The frame of a log notice, as the SAVE script builds it.
pub fn encode_appended(replica: &str, pos: LogPos) -> Vec<u8> {
    frame(b'L', replica, pos.to_string().as_bytes())
}

fn frame(kind: u8, replica: &str, body: &[u8]) -> Vec<u8> {
    let len = replica.len().to_string();
    let mut out = Vec::with_capacity(2 + len.len() + replica.len() + body.len());
    out.push(kind);
    out.extend_from_slice(len.as_bytes());
    out.push(b':');
    out.extend_from_slice(replica.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads a frame; `None` for anything that is not a well-formed docroom frame (another
/// program publishing on the channel, a kind from a later version).
pub fn decode(frame: &[u8]) -> Option<Notice> {
    let (&kind, rest) = frame.split_first()?;
    let colon = rest
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .position(|&b| b == b':')?;
    let (digits, rest) = (&rest[..colon], &rest[colon + 1..]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if rest.len() < len {
        return None;
    }
    let (replica, body) = rest.split_at(len);
    let replica: Arc<str> = std::str::from_utf8(replica).ok()?.into();
    let kind = match kind {
        b'L' => {
            let pos = LogPos::parse(std::str::from_utf8(body).ok()?)?;
            return Some(Notice::Appended { replica, pos });
        }
        b'a' => EventKind::Awareness,
        b's' => EventKind::Stateless,
        b'u' => EventKind::Update,
        _ => return None,
    };
    Some(Notice::Event(Event {
        replica,
        kind,
        payload: Bytes::copy_from_slice(body),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_whatever_bytes_their_payload_and_replica_hold() {
        let replica = "pod-7:with:colons\u{e9}";
        let payloads: [&[u8]; 4] = [b"", b"plain", b"12:34:\0\xff", &[b':'; 300]];
        for kind in [
            EventKind::Awareness,
            EventKind::Stateless,
            EventKind::Update,
        ] {
            for payload in payloads {
                let frame = encode_event(replica, kind, payload);
                let Some(Notice::Event(e)) = decode(&frame) else {
                    panic!("{kind:?} {payload:?} did not decode")
                };
                assert_eq!((e.replica.as_ref(), e.kind), (replica, kind));
                assert_eq!(&e.payload[..], payload);
            }
        }
    }

    #[test]
    fn a_log_notice_carries_its_replica_and_entry_id() {
        let pos = LogPos {
            ms: 1_700_000_000_123,
            seq: 4,
        };
        let frame = encode_appended("r1", pos);
        assert_eq!(
            frame, b"L2:r11700000000123-4",
            "the SAVE script builds this"
        );
        assert_eq!(
            decode(&frame),
            Some(Notice::Appended {
                replica: "r1".into(),
                pos
            })
        );
    }

    #[test]
    fn frames_that_are_not_docrooms_are_refused() {
        for bad in [
            &b""[..],
            b"a",
            b"a:r",
            b"ax:r",
            b"a-1:r",
            b"a5:r",
            b"a123456:r",
            b"L1:rnot-an-id",
            b"L1:r",
            b"x1:rpayload",
            b"a1:\xff",
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // An empty replica id is well formed, if odd.
        assert!(decode(b"a0:").is_some());
    }
}
