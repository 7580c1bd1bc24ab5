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

/// What a record says happened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// This version is the document's entry: PostgreSQL does not have it yet.
    Put(Version),
    /// PostgreSQL committed this version: the entry leaves if it is still this version.
    Committed { doc: DocId, hash: String },
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

/// Appends a record saying PostgreSQL committed `hash` of `doc`.
pub(crate) fn encode_committed(doc: &DocId, hash: &str, out: &mut Vec<u8>) {
    let framed = frame(out, |payload| head(payload, COMMITTED, doc, hash));
    debug_assert!(
        framed.is_some(),
        "a committed record is a few hundred bytes"
    );
}

/// Bytes a put record of `version` takes in the journal.
pub(crate) fn put_len(version: &Version) -> u64 {
    let stamp = version
        .stamp
        .as_ref()
        .map_or(0, |s| 8 + 4 + 1 + s.replica.len());
    let payload = 3 + version.doc.as_str().len() + 1 + version.hash.len() + 1 + stamp;
    HEADER + (payload + version.content.len()) as u64
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
    let (id, rest) = short_field(rest)?;
    let doc = std::str::from_utf8(id)
        .ok()
        .and_then(|id| DocId::parse(id).ok())
        .ok_or("invalid document id")?;
    let (hash, rest) = short_field(rest)?;
    let hash = std::str::from_utf8(hash).map_err(|_| "invalid hash")?;
    let (kind, stamp, content) = match (*format, *kind) {
        (FORMAT_1, kind) => (kind, None, rest),
        (FORMAT_2, COMMITTED) if rest.is_empty() => {
            let hash = hash.to_owned();
            return Ok(Record::Committed { doc, hash });
        }
        (FORMAT_2, COMMITTED) => return Err("committed record with content"),
        (FORMAT_2, kind) => {
            let (stamp, content) = stamp(rest)?;
            (kind, stamp, content)
        }
        _ => return Err("unknown record format"),
    };
    let kind = match kind {
        PUT_JSON => Kind::Json,
        PUT_YJS => Kind::Yjs,
        _ => return Err("unknown document kind"),
    };
    if sha256_hex(content) != hash {
        return Err("hash does not match content");
    }
    Ok(Record::Put(Version {
        doc,
        kind,
        hash: hash.to_owned(),
        content: Bytes::copy_from_slice(content),
        stamp,
    }))
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
    fn committed_records_round_trip() {
        let doc = DocId::parse("d").unwrap();
        let mut out = Vec::new();
        encode_committed(&doc, "abc", &mut out);
        let hash = "abc".to_owned();
        assert_eq!(decode(payload(&out)), Ok(Record::Committed { doc, hash }));
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
