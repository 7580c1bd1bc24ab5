//! Replay: reading a journal back into the entries it describes, one record at a time, skipping
//! corrupt records and finding where a torn tail begins. The rules are in the
//! [module doc](super).
//!
//! A document's Yjs increments are merged into its entry as the writer merges them: when they
//! are due (so memory follows the entries, not the file), when a committed record must be
//! checked against the whole entry, and at the end, so the fallback starts with every entry
//! one version.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, SeekFrom};
use std::path::Path;

use tracing::warn;

use super::entry::Entry;
use super::io::ReadSeek;
use super::record::{self, Record, HEADER, LEGACY_HEADER, MAGIC};
use crate::doc::{DocId, Kind};

/// What the last replay found, for logs, metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records applied.
    pub records: u64,
    /// Corrupt records (or stretches of garbage) skipped, with later records still applied.
    pub skipped: u64,
    /// Bytes those skipped records took.
    pub skipped_bytes: u64,
    /// Bytes cut off the end: a torn last write, or garbage after which nothing valid follows.
    pub truncated_bytes: u64,
}

/// The entries a journal describes, and where its valid part ends.
pub(crate) struct Replayed {
    pub(crate) entries: HashMap<DocId, Entry>,
    /// Documents whose PostgreSQL content Redis is owed ([`Record::Owed`]).
    pub(crate) owed: BTreeSet<DocId>,
    /// The journal is cut to this length: everything after it is a torn tail.
    pub(crate) valid_len: u64,
    pub(crate) report: ReplayReport,
}

/// One framed record as read, before its payload is decoded.
enum Frame {
    Read {
        payload: Vec<u8>,
        end: u64,
        crc_ok: bool,
        v2: bool,
    },
    /// The framing itself is broken here: no magic, or a length past the end of the file.
    Broken(&'static str),
}

/// Replays `len` bytes from `journal`, which is positioned at its start. Memory holds one
/// record at a time besides the entries.
pub(crate) fn replay(journal: &mut dyn ReadSeek, len: u64, path: &Path) -> io::Result<Replayed> {
    let mut entries = HashMap::new();
    let mut owed = BTreeSet::new();
    let mut report = ReplayReport::default();
    let (mut offset, mut seen_v2) = (0, false);
    while offset < len {
        // Where the record after a corrupt one starts; `None`: search for it after `offset`.
        let (reason, next) = match read_frame(journal, offset, len, seen_v2)? {
            Frame::Read {
                payload,
                end,
                crc_ok: true,
                v2,
            } => {
                seen_v2 |= v2;
                match record::decode(&payload).and_then(|r| apply(&mut entries, &mut owed, r)) {
                    Ok(()) => {
                        report.records += 1;
                        offset = end;
                        continue;
                    }
                    // The checksum vouches for the length: skip exactly this record.
                    Err(reason) => (reason, Some(end)),
                }
            }
            Frame::Read { end, v2, .. } => {
                seen_v2 |= v2;
                if end == len {
                    // The last write, its length on disk but not all its bytes: a torn tail.
                    ("checksum mismatch in the last record", None)
                } else if !v2 || starts_record(journal, end, len)? {
                    // A format-1 record has no magic to check the next one by: trust its length.
                    ("checksum mismatch", Some(end))
                } else {
                    ("checksum mismatch and no record after it", None)
                }
            }
            Frame::Broken(reason) => (reason, None),
        };
        let next = match next {
            Some(next) => Some(next),
            None => next_record(journal, offset + 1, len)?,
        };
        let Some(next) = next else {
            report.truncated_bytes = len - offset;
            let truncated_bytes = report.truncated_bytes;
            let path = path.display();
            warn!(%path, offset, truncated_bytes, reason, "journal tail truncated");
            return Ok(Replayed {
                entries: merged(entries),
                owed,
                valid_len: offset,
                report,
            });
        };
        let bytes = next - offset;
        warn!(path = %path.display(), offset, bytes, reason, "corrupt journal record skipped");
        report.skipped += 1;
        report.skipped_bytes += bytes;
        offset = next;
        journal.seek(SeekFrom::Start(offset))?;
    }
    Ok(Replayed {
        entries: merged(entries),
        owed,
        valid_len: len,
        report,
    })
}

/// Applies one record as the writer applied it when it wrote it. The error says why a record
/// that decoded cannot be applied, and must be skipped.
fn apply(
    entries: &mut HashMap<DocId, Entry>,
    owed: &mut BTreeSet<DocId>,
    record: Record,
) -> Result<(), &'static str> {
    match record {
        Record::Put(version) => {
            entries.insert(version.doc.clone(), Entry::new(version));
        }
        Record::Increment(update) => match entries.get_mut(&update.doc) {
            // Only after a corrupt record: the writer appends increments to an entry it holds.
            None => {
                entries.insert(update.doc.clone(), Entry::new(update));
            }
            Some(entry) if entry.kind() == Kind::Yjs => {
                entry.push(update);
                if entry.merge_due() {
                    // A failure keeps the parts apart (and is logged): nothing is lost.
                    let _ = entry.merge();
                }
            }
            Some(_) => return Err("yjs increment for a json document"),
        },
        // The entry's whole content is what the writer compared with the hash: merge first.
        Record::Committed { doc, hash } => {
            let leaves = entries
                .get_mut(&doc)
                .is_some_and(|held| held.merge().is_ok() && held.base().hash == hash);
            if leaves {
                entries.remove(&doc);
            }
        }
        Record::Owed { doc, owed: true } => {
            owed.insert(doc);
        }
        Record::Owed { doc, owed: false } => {
            owed.remove(&doc);
        }
    }
    Ok(())
}

/// `entries` with every increment merged in, where it merges.
fn merged(mut entries: HashMap<DocId, Entry>) -> HashMap<DocId, Entry> {
    for entry in entries.values_mut() {
        let _ = entry.merge();
    }
    entries
}

/// Reads the record at `offset`, where `journal` is positioned. Format-1 records (no magic) are
/// accepted only before the first format-2 one: releases that write format 2 never write 1.
fn read_frame(
    journal: &mut dyn ReadSeek,
    offset: u64,
    len: u64,
    seen_v2: bool,
) -> io::Result<Frame> {
    let left = len - offset;
    if left < 4 {
        return Ok(Frame::Broken("torn record header"));
    }
    let mut word = [0; 4];
    journal.read_exact(&mut word)?;
    let v2 = word == MAGIC;
    if !v2 && seen_v2 {
        return Ok(Frame::Broken("no record magic"));
    }
    let header = if v2 { HEADER } else { LEGACY_HEADER };
    if left < header {
        return Ok(Frame::Broken("torn record header"));
    }
    let mut rest = [0; 8];
    let rest = &mut rest[..header as usize - 4];
    journal.read_exact(rest)?;
    let (payload_len, crc) = if v2 {
        (u32_at(rest, 0), u32_at(rest, 4))
    } else {
        (u32::from_le_bytes(word), u32_at(rest, 0))
    };
    if u64::from(payload_len) > left - header {
        return Ok(Frame::Broken("record length runs past the end"));
    }
    let mut payload = vec![0; payload_len as usize];
    journal.read_exact(&mut payload)?;
    Ok(Frame::Read {
        crc_ok: crc32fast::hash(&payload) == crc,
        payload,
        end: offset + header + u64::from(payload_len),
        v2,
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Whether a format-2 record's magic starts at `at`.
fn starts_record(journal: &mut dyn ReadSeek, at: u64, len: u64) -> io::Result<bool> {
    if len - at < 4 {
        return Ok(false);
    }
    let mut word = [0; 4];
    journal.seek(SeekFrom::Start(at))?;
    journal.read_exact(&mut word)?;
    Ok(word == MAGIC)
}

/// The offset of the first valid format-2 record (magic, length within the file, checksum and
/// payload all good) at or after `from`, if any.
fn next_record(journal: &mut dyn ReadSeek, from: u64, len: u64) -> io::Result<Option<u64>> {
    let mut from = from;
    while let Some(candidate) = find_magic(journal, from, len)? {
        journal.seek(SeekFrom::Start(candidate))?;
        if let Frame::Read {
            payload,
            crc_ok: true,
            ..
        } = read_frame(journal, candidate, len, true)?
        {
            if record::decode(&payload).is_ok() {
                return Ok(Some(candidate));
            }
        }
        from = candidate + 1;
    }
    Ok(None)
}

/// The offset of the next occurrence of [`MAGIC`] at or after `from`, reading in chunks.
fn find_magic(journal: &mut dyn ReadSeek, from: u64, len: u64) -> io::Result<Option<u64>> {
    const CHUNK: usize = 64 * 1024;
    journal.seek(SeekFrom::Start(from))?;
    // `window` starts at file offset `base`; it keeps the last 3 bytes of the previous chunk so
    // a magic split across chunks is found.
    let (mut window, mut base, mut pos) = (Vec::with_capacity(CHUNK + 3), from, from);
    while pos < len {
        let take = CHUNK.min((len - pos) as usize);
        let start = window.len();
        window.resize(start + take, 0);
        journal.read_exact(&mut window[start..])?;
        pos += take as u64;
        if let Some(at) = window.windows(MAGIC.len()).position(|w| w == MAGIC) {
            return Ok(Some(base + at as u64));
        }
        let keep = window.len().min(MAGIC.len() - 1);
        window.drain(..window.len() - keep);
        base = pos - keep as u64;
    }
    Ok(None)
}
