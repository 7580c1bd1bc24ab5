//! What travels on a document's channel (`doc:{id}:events`, Redis pub/sub), and its framing:
//! the notice a save publishes with each log append, and the events (awareness, stateless
//! messages) rooms publish for the other replicas.
//!
//! A frame is `KIND LEN ':' REPLICA BODY`: one byte of kind, the replica id's length in bytes
//! as decimal digits, a colon, the replica id, then the body as it is, to the frame's end (so
//! any bytes fit). Kinds:
//! - `E` an entry was appended to the log, and here it is. Body: `PREV ' ' ID ' ' KIND ' ' HASH
//!   ' ' STAMPLEN ':' STAMP CONTENT`: the id of the entry appended before it (empty when
//!   unknown), the entry's id (`ms-seq`), `json` or `yjs`, the content's hash, the stamp
//!   (`Stamp::encode`, empty for none) behind its length, then the content to the end. A reader
//!   whose position is `PREV` has every entry before this one, so it takes the entry from the
//!   notice instead of reading the log;
//! - `L` an entry too large to carry was appended: the body is its id, and the log has it;
//! - `a` awareness, `s` stateless, each with its payload as body.
//!
//! The `E` and `L` frames are built inside Redis, by the SAVE script (`storage::redis_scripts`),
//! so the notice goes out atomically with the append: change both together.

use std::sync::Arc;

use bytes::Bytes;

use super::{Event, EventKind, LogEntry, LogPos};
use crate::doc::{DocId, Kind, Stamp, Version};

/// What a document's channel carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `replica` appended the entry at `pos` to the document's log, too large to carry here.
    Appended { replica: Arc<str>, pos: LogPos },
    /// An entry appended to the document's log, and the position of the entry before it
    /// (`None` when the appender did not know it).
    Entry {
        prev: Option<LogPos>,
        entry: LogEntry,
    },
    /// An event for the other replicas' rooms.
    Event(Event),
    /// This replica appended the entry at `pos`, after `prev` (`None`: the log was empty or
    /// its head unknown). Never on the channel: the cache tells its own listener, so a replica
    /// hears of its own appends without Redis sending them back (`storage::redis_cache`).
    Saved { prev: Option<LogPos>, pos: LogPos },
}

/// A notice, with the document whose channel carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub doc: DocId,
    pub notice: Notice,
}

/// Entries up to this many bytes of content ride their notice; larger ones are read from the
/// log (a pub/sub connection that falls behind by megabytes is cut by Redis).
pub const CARRY_MAX_BYTES: usize = 64 * 1024;

/// Replica ids longer than this many digits of length are not docroom's frames.
const MAX_LEN_DIGITS: usize = 5;

fn tag(kind: EventKind) -> u8 {
    match kind {
        EventKind::Awareness => b'a',
        EventKind::Stateless => b's',
    }
}

/// The frame of an event `replica` publishes.
pub fn encode_event(replica: &str, kind: EventKind, payload: &[u8]) -> Vec<u8> {
    frame(tag(kind), replica, payload)
}

/// The frame of a log notice without its entry, as the SAVE script builds it.
pub fn encode_appended(replica: &str, pos: LogPos) -> Vec<u8> {
    frame(b'L', replica, pos.to_string().as_bytes())
}

/// The frame of a log notice carrying its entry, as the SAVE script builds it.
pub fn encode_entry(prev: Option<LogPos>, entry: &LogEntry) -> Vec<u8> {
    let v = &entry.version;
    let stamp = v.stamp.as_ref().map(Stamp::encode).unwrap_or_default();
    let head = format!(
        "{} {} {} {} {}:{stamp}",
        prev.map(|p| p.to_string()).unwrap_or_default(),
        entry.pos,
        v.kind.as_str(),
        v.hash,
        stamp.len(),
    );
    let mut body = head.into_bytes();
    body.extend_from_slice(&v.content);
    frame(b'E', &entry.replica, &body)
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

/// Splits `LEN ':' REST` into the `LEN` bytes after the colon and what follows them.
fn counted(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = bytes
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .position(|&b| b == b':')?;
    let digits = &bytes[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let rest = &bytes[colon + 1..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Reads a frame heard on `doc`'s channel; `None` for anything that is not a well-formed
/// docroom frame (another program publishing on the channel, a kind from a later version).
pub fn decode(doc: &DocId, frame: &[u8]) -> Option<Notice> {
    let (&kind, rest) = frame.split_first()?;
    let (replica, body) = counted(rest)?;
    let replica: Arc<str> = std::str::from_utf8(replica).ok()?.into();
    let kind = match kind {
        b'L' => {
            let pos = LogPos::parse(std::str::from_utf8(body).ok()?)?;
            return Some(Notice::Appended { replica, pos });
        }
        b'E' => return decode_entry(doc, replica, body),
        b'a' => EventKind::Awareness,
        b's' => EventKind::Stateless,
        _ => return None,
    };
    Some(Notice::Event(Event {
        replica,
        kind,
        payload: Bytes::copy_from_slice(body),
    }))
}

fn decode_entry(doc: &DocId, replica: Arc<str>, body: &[u8]) -> Option<Notice> {
    let mut fields = body.splitn(5, |&b| b == b' ');
    let mut text = || std::str::from_utf8(fields.next()?).ok();
    let (prev, pos, kind, hash) = (text()?, text()?, text()?, text()?);
    let (stamp, content) = counted(fields.next()?)?;
    let stamp = match stamp {
        [] => None,
        text => Some(Stamp::decode(std::str::from_utf8(text).ok()?)?),
    };
    let prev = match prev {
        "" => None,
        id => Some(LogPos::parse(id)?),
    };
    Some(Notice::Entry {
        prev,
        entry: LogEntry {
            pos: LogPos::parse(pos)?,
            replica,
            version: Version {
                doc: doc.clone(),
                kind: Kind::parse(kind)?,
                hash: hash.to_owned(),
                content: Bytes::copy_from_slice(content),
                stamp,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> DocId {
        DocId::parse("org/doc 1").unwrap()
    }

    #[test]
    fn events_round_trip_whatever_bytes_their_payload_and_replica_hold() {
        let replica = "pod-7:with:colons\u{e9}";
        let payloads: [&[u8]; 4] = [b"", b"plain", b"12:34:\0\xff", &[b':'; 300]];
        for kind in [EventKind::Awareness, EventKind::Stateless] {
            for payload in payloads {
                let frame = encode_event(replica, kind, payload);
                let Some(Notice::Event(e)) = decode(&doc(), &frame) else {
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
            decode(&doc(), &frame),
            Some(Notice::Appended {
                replica: "r1".into(),
                pos
            })
        );
    }

    #[test]
    fn an_entry_notice_carries_the_entry_whole_and_the_one_before_it() {
        let pos = |ms| LogPos { ms, seq: 1 };
        let stamp = Stamp {
            millis: 5,
            counter: 2,
            replica: "pod 2:\n".into(),
        };
        let json = Version::new(doc(), Kind::Json, Bytes::from_static(b"{\"a\": \" 1:2\"}"))
            .stamped(stamp);
        let yjs = Version::new(doc(), Kind::Yjs, Bytes::from_static(b"\0\x01 2:\xff"));
        for (prev, version) in [(Some(pos(7)), json), (None, yjs)] {
            let entry = LogEntry {
                pos: pos(9),
                replica: "r 1".into(),
                version,
            };
            let frame = encode_entry(prev, &entry);
            assert_eq!(decode(&doc(), &frame), Some(Notice::Entry { prev, entry }));
        }
        assert_eq!(
            &encode_entry(
                Some(pos(7)),
                &LogEntry {
                    pos: pos(9),
                    replica: "r1".into(),
                    version: Version {
                        hash: "h".into(),
                        ..Version::new(doc(), Kind::Yjs, Bytes::from_static(b"u"))
                    },
                }
            )[..],
            b"E2:r17-1 9-1 yjs h 0:u",
            "the SAVE script builds this"
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
            b"u1:rpayload",
            b"a1:\xff",
            b"E1:r",
            b"E1:rx 1-1 yjs h 0:",
            b"E1:r1-0 1-1 xml h 0:",
            b"E1:r1-0 1-1 yjs h 9:",
            b"E1:r1-0 1-1 json h 3:bad",
        ] {
            assert_eq!(
                decode(&doc(), bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // An empty replica id is well formed, if odd.
        assert!(decode(&doc(), b"a0:").is_some());
        assert!(decode(&doc(), b"E0: 1-1 yjs h 0:").is_some());
    }
}
