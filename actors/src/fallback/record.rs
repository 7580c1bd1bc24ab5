//! One journal record: its framing and its payload, in format 2 (written) and format 1
//! (read, so that journals written by earlier releases still replay). The layouts are in the
//! [module doc](super).

use std::sync::Arc;

use bytes::Bytes;

use super::error::JournalError;
use crate::doc::{sha256_hex, DocId, Kind, Stamp, Version};

/// Starts every format-2 record. As a little-endian `u32` it is above 2^31, a length no
/// format-1 record ever had, so a format-1 record is never mistaken for a format-2 one; and
/// `0xDB` followed by `j` is not UTF-8, so no JSON content can contain it.
pub(crate) const MAGIC: [u8; 4] = [0xDB, b'j', b'r', 0xF2];
/// Magic, length and checksum of a format-2 record.
pub(crate) const HEADER: u64 = 12;
/// Length and checksum of a format-1 record.
pub(crate) const LEGACY_HEADER: u64 = 8;

const FORMAT_1: u8 = 1;
const FORMAT_2: u8 = 2;

const PUT_JSON: u8 = 0;
const PUT_YJS: u8 = 1;
const COMMITTED: u8 = 2;
const INCREMENT: u8 = 3;
const OWED: u8 = 4;

/// What a record says happened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// This version is the document's entry: PostgreSQL does not have it yet.
    Put(Version),
    /// This Yjs update joins the document's entry, to be merged into it later.
    Increment(Version),
    /// PostgreSQL committed this version: the entry leaves if its content, everything recorded
    /// for it so far merged, is this version.
    Committed { doc: DocId, hash: String },
    /// Redis is owed PostgreSQL's content of this document (`owed`), or was given it: a commit
    /// of content Redis may lack could not be announced yet, and the journal let go of it.
    Owed { doc: DocId, owed: bool },
}

/// Refuses a version whose hash does not name its content, before it can become a record that
/// replay would have to skip as corrupt.
pub(crate) fn check_hash(version: &Version) -> Result<(), JournalError> {
    if sha256_hex(&version.content) == version.hash {
        Ok(())
    } else {
        Err(JournalError::HashMismatch {
            doc: version.doc.clone(),
        })
    }
}

/// Refuses a version whose put record cannot be framed (a replica id over 255 bytes, a payload
/// over 4 GiB) before it is staged: written in a batch, it would fail every other version there.
pub(crate) fn check_fits(version: &Version) -> Result<(), JournalError> {
    let replica_fits = version
        .stamp
        .as_ref()
        .is_none_or(|s| s.replica.len() <= u8::MAX as usize);
    if replica_fits && put_len(version) - HEADER <= u64::from(u32::MAX) {
        Ok(())
    } else {
        Err(JournalError::TooLarge {
            doc: version.doc.clone(),
        })
    }
}

/// Appends `version` as one put record to `out` (left as it was on error).
pub(crate) fn encode_put(version: &Version, out: &mut Vec<u8>) -> Result<(), JournalError> {
    let too_large = || JournalError::TooLarge {
        doc: version.doc.clone(),
    };
    let replica_len = match &version.stamp {
        Some(stamp) => Some(u8::try_from(stamp.replica.len()).map_err(|_| too_large())?),
        None => None,
    };
    let kind = match version.kind {
        Kind::Json => PUT_JSON,
        Kind::Yjs => PUT_YJS,
    };
    frame(out, |payload| {
        head(payload, kind, &version.doc, &version.hash);
        match (&version.stamp, replica_len) {
            (Some(stamp), Some(replica_len)) => {
                payload.push(1);
                payload.extend_from_slice(&stamp.millis.to_le_bytes());
                payload.extend_from_slice(&stamp.counter.to_le_bytes());
                payload.push(replica_len);
                payload.extend_from_slice(stamp.replica.as_bytes());
            }
            _ => payload.push(0),
        }
        payload.extend_from_slice(&version.content);
    })
    .ok_or_else(too_large)
}

/// Appends `update` (a Yjs update, unstamped) as one increment record to `out` (left as it was
/// on error).
pub(crate) fn encode_increment(update: &Version, out: &mut Vec<u8>) -> Result<(), JournalError> {
    debug_assert!(update.kind == Kind::Yjs && update.stamp.is_none());
    frame(out, |payload| {
        head(payload, INCREMENT, &update.doc, &update.hash);
        payload.extend_from_slice(&update.content);
    })
    .ok_or_else(|| JournalError::TooLarge {
        doc: update.doc.clone(),
    })
}

/// Appends a record saying PostgreSQL committed `hash` of `doc`.
pub(crate) fn encode_committed(doc: &DocId, hash: &str, out: &mut Vec<u8>) {
    let framed = frame(out, |payload| head(payload, COMMITTED, doc, hash));
    debug_assert!(
        framed.is_some(),
        "a committed record is a few hundred bytes"
    );
}

/// Appends a record saying Redis is owed PostgreSQL's content of `doc` (`owed`), or no longer
/// is.
pub(crate) fn encode_owed(doc: &DocId, owed: bool, out: &mut Vec<u8>) {
    let framed = frame(out, |payload| {
        head(payload, OWED, doc, "");
        payload.push(u8::from(owed));
    });
    debug_assert!(framed.is_some(), "an owed record is a few hundred bytes");
}

/// Bytes an owed record of `doc` takes in the journal.
pub(crate) fn owed_len(doc: &DocId) -> u64 {
    HEADER + (3 + doc.as_str().len() + 1 + 1) as u64
}

/// Bytes a put record of `version` takes in the journal.
pub(crate) fn put_len(version: &Version) -> u64 {
    let stamp = version
        .stamp
        .as_ref()
        .map_or(0, |s| 8 + 4 + 1 + s.replica.len());
    increment_len(version) + 1 + stamp as u64
}

/// Bytes an increment record of `update` takes in the journal (a put record without a stamp
/// takes one more).
pub(crate) fn increment_len(update: &Version) -> u64 {
    let payload = 3 + update.doc.as_str().len() + 1 + update.hash.len();
    HEADER + (payload + update.content.len()) as u64
}

/// Writes magic, length, checksum and the payload `fill` writes. `None` if the payload does not
/// fit a `u32` length; `out` is left as it was then.
fn frame(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) -> Option<()> {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 8]);
    fill(out);
    let payload_at = start + HEADER as usize;
    let Ok(len) = u32::try_from(out.len() - payload_at) else {
        out.truncate(start);
        return None;
    };
    let crc = crc32fast::hash(&out[payload_at..]);
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Some(())
}

/// Format, record type, id and hash: the start of every format-2 payload. Ids are at most 255
/// bytes and hashes 64, so both lengths fit a `u8`.
fn head(payload: &mut Vec<u8>, kind: u8, doc: &DocId, hash: &str) {
    payload.extend_from_slice(&[FORMAT_2, kind, doc.as_str().len() as u8]);
    payload.extend_from_slice(doc.as_str().as_bytes());
    payload.push(hash.len() as u8);
    payload.extend_from_slice(hash.as_bytes());
}

/// Decodes a payload whose checksum matched. The error says why the record must be skipped.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, &'static str> {
    let [format, kind, rest @ ..] = payload else {
        return Err("truncated payload");
    };
    let increment = (*format, *kind) == (FORMAT_2, INCREMENT);
    let (id, rest) = short_field(rest)?;
    let doc = std::str::from_utf8(id)
        .ok()
        .and_then(|id| DocId::parse(id).ok())
        .ok_or("invalid document id")?;
    let (hash, rest) = short_field(rest)?;
    let hash = std::str::from_utf8(hash).map_err(|_| "invalid hash")?;
    let (kind, stamp, content) = match (*format, *kind) {
        (FORMAT_1, PUT_JSON) => (Kind::Json, None, rest),
        (FORMAT_1, PUT_YJS) => (Kind::Yjs, None, rest),
        (FORMAT_2, COMMITTED) if rest.is_empty() => {
            let hash = hash.to_owned();
            return Ok(Record::Committed { doc, hash });
        }
        (FORMAT_2, COMMITTED) => return Err("committed record with content"),
        (FORMAT_2, OWED) => {
            return match (hash, rest) {
                ("", [flag @ (0 | 1)]) => Ok(Record::Owed {
                    doc,
                    owed: *flag == 1,
                }),
                _ => Err("invalid owed record"),
            };
        }
        (FORMAT_2, INCREMENT) => (Kind::Yjs, None, rest),
        (FORMAT_2, PUT_JSON | PUT_YJS) => {
            let (stamp, content) = stamp(rest)?;
            let kind = if *kind == PUT_JSON {
                Kind::Json
            } else {
                Kind::Yjs
            };
            (kind, stamp, content)
        }
        (FORMAT_1 | FORMAT_2, _) => return Err("unknown record type"),
        _ => return Err("unknown record format"),
    };
    if sha256_hex(content) != hash {
        return Err("hash does not match content");
    }
    let version = Version {
        doc,
        kind,
        hash: hash.to_owned(),
        content: Bytes::copy_from_slice(content),
        stamp,
    };
    Ok(match increment {
        true => Record::Increment(version),
        false => Record::Put(version),
    })
}

fn stamp(bytes: &[u8]) -> Result<(Option<Stamp>, &[u8]), &'static str> {
    match bytes.split_first() {
        Some((0, rest)) => Ok((None, rest)),
        Some((1, rest)) if rest.len() >= 12 => {
            let (millis, rest) = rest.split_at(8);
            let (counter, rest) = rest.split_at(4);
            let (replica, rest) = short_field(rest)?;
            let replica = std::str::from_utf8(replica).map_err(|_| "invalid replica id")?;
            let stamp = Stamp {
                millis: u64::from_le_bytes(millis.try_into().expect("8 bytes")),
                counter: u32::from_le_bytes(counter.try_into().expect("4 bytes")),
                replica: Arc::from(replica),
            };
            Ok((Some(stamp), rest))
        }
        _ => Err("invalid stamp"),
    }
}

/// A `u8`-length-prefixed field and what follows it.
fn short_field(bytes: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (&len, rest) = bytes.split_first().ok_or("truncated payload")?;
    let len = len as usize;
    if rest.len() < len {
        return Err("truncated payload");
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(record: &[u8]) -> &[u8] {
        assert_eq!(record[..4], MAGIC);
        let len = u32::from_le_bytes(record[4..8].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(record[8..12].try_into().unwrap());
        let payload = &record[12..];
        assert_eq!(payload.len(), len);
        assert_eq!(crc32fast::hash(payload), crc);
        payload
    }

    #[test]
    fn put_records_round_trip_stamps_both_kinds_and_their_length_is_known() {
        let doc = DocId::parse("d").unwrap();
        let stamp = Stamp {
            millis: 1_700_000_000_123,
            counter: 7,
            replica: "replica-a".into(),
        };
        let stamped = Version::new(doc.clone(), Kind::Json, Bytes::from("{}")).stamped(stamp);
        let yjs = Version::new(doc.clone(), Kind::Yjs, Bytes::from_static(&[0, 0xDB, 1]));
        for version in [stamped, yjs] {
            let mut out = Vec::new();
            encode_put(&version, &mut out).unwrap();

            assert_eq!(out.len() as u64, put_len(&version));
            assert_eq!(decode(payload(&out)), Ok(Record::Put(version)));
        }
    }

    #[test]
    fn increment_records_round_trip_and_their_length_is_known() {
        let doc = DocId::parse("y").unwrap();
        let update = Version::new(doc, Kind::Yjs, Bytes::from_static(&[1, 1, 0xDB, 7, 0]));
        let mut out = Vec::new();

        encode_increment(&update, &mut out).unwrap();

        assert_eq!(out.len() as u64, increment_len(&update));
        assert_eq!(
            put_len(&update),
            increment_len(&update) + 1,
            "a put adds a stamp byte"
        );
        assert_eq!(decode(payload(&out)), Ok(Record::Increment(update)));
    }

    #[test]
    fn an_increment_type_in_a_format_1_record_is_unknown() {
        let update = Version::new(DocId::parse("y").unwrap(), Kind::Yjs, Bytes::from("u"));
        let mut out = Vec::new();
        encode_increment(&update, &mut out).unwrap();
        let mut legacy = payload(&out).to_vec();
        legacy[0] = FORMAT_1;

        assert_eq!(decode(&legacy), Err("unknown record type"));
    }

    #[test]
    fn committed_records_round_trip() {
        let doc = DocId::parse("d").unwrap();
        let mut out = Vec::new();
        encode_committed(&doc, "abc", &mut out);
        let hash = "abc".to_owned();
        assert_eq!(decode(payload(&out)), Ok(Record::Committed { doc, hash }));
    }

    #[test]
    fn owed_records_round_trip_and_their_length_is_known() {
        let doc = DocId::parse("org/doc é").unwrap();
        for owed in [true, false] {
            let mut out = Vec::new();
            encode_owed(&doc, owed, &mut out);

            assert_eq!(out.len() as u64, owed_len(&doc));
            let doc = doc.clone();
            assert_eq!(decode(payload(&out)), Ok(Record::Owed { doc, owed }));
        }
    }

    #[test]
    fn an_owed_record_with_a_hash_or_another_flag_is_invalid() {
        let doc = DocId::parse("d").unwrap();
        let mut out = Vec::new();
        encode_owed(&doc, true, &mut out);
        let mut flag = payload(&out).to_vec();
        *flag.last_mut().unwrap() = 2;
        let mut hashed = Vec::new();
        encode_committed(&doc, "ab", &mut hashed);
        let mut hashed = payload(&hashed).to_vec();
        hashed[1] = OWED;
        hashed.push(1);

        assert_eq!(decode(&flag), Err("invalid owed record"));
        assert_eq!(decode(&hashed), Err("invalid owed record"));
    }

    #[test]
    fn a_replica_id_longer_than_a_record_holds_is_refused_whole() {
        let stamp = Stamp {
            millis: 1,
            counter: 0,
            replica: "r".repeat(256).into(),
        };
        let doc = DocId::parse("d").unwrap();
        let version = Version::new(doc, Kind::Json, Bytes::from("1")).stamped(stamp);
        let mut out = b"kept".to_vec();

        let result = encode_put(&version, &mut out);

        assert!(matches!(result, Err(JournalError::TooLarge { .. })));
        assert_eq!(out, b"kept");
    }

    #[test]
    fn the_widest_ids_round_trip_through_a_record() {
        let longest = "文".repeat(85); // 255 bytes
        for id in ["org/doc:1 é", longest.as_str()] {
            let doc = DocId::parse(id).unwrap();
            let version = Version::new(doc.clone(), Kind::Json, Bytes::from("1"));
            let mut out = Vec::new();

            encode_put(&version, &mut out).unwrap();
            encode_committed(&doc, &version.hash, &mut out);

            let put_end = put_len(&version) as usize;
            assert_eq!(
                decode(payload(&out[..put_end])),
                Ok(Record::Put(version.clone()))
            );
            let hash = version.hash.clone();
            assert_eq!(
                decode(payload(&out[put_end..])),
                Ok(Record::Committed { doc, hash })
            );
        }
    }
}
