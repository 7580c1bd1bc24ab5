//! The fallback's append-only journal: the file that lets an acknowledged update survive a
//! SIGKILL while Redis is down.
//!
//! # Record format
//!
//! ```text
//! u32 LE payload length | u32 LE crc32(payload) | payload
//! payload = u8 format (1) | u8 kind (0 json, 1 yjs) | u8 id length | id
//!         | u8 hash length | hash (lowercase hex) | content (the rest, arbitrary bytes)
//! ```
//!
//! Records are only ever appended, one fsync per batch, so the only damage a crash can leave is
//! a torn last record; replay stops at the first record that fails its length, checksum or
//! content hash and truncates the file there. Everything before it was fsync'd before anyone was
//! acknowledged, so nothing acknowledged is dropped.
//!
//! This type does no locking: it is owned by the fallback's single writer thread.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use crate::doc::{sha256_hex, DocId, Kind, Version};

/// Bumped if the payload layout ever changes, so an old binary refuses a newer journal's records
/// instead of misreading them.
const FORMAT: u8 = 1;
/// Length and checksum, each a `u32`.
const HEADER: usize = 8;

/// What can go wrong with the journal. `Clone` because one failed group write answers every
/// `put` in the group with the same error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: Arc<io::Error>,
    },
    #[error("journal record at offset {offset} is corrupt: {reason}")]
    Corrupt { offset: u64, reason: &'static str },
    #[error("version of document {doc} has a hash that does not match its content")]
    HashMismatch { doc: DocId },
    #[error("version of document {doc} is too large for a journal record")]
    TooLarge { doc: DocId },
    #[error("journal writer has stopped")]
    WriterStopped,
}

pub(crate) fn io_error(action: &'static str, path: &Path, cause: io::Error) -> JournalError {
    JournalError::Io {
        action,
        path: path.to_owned(),
        cause: Arc::new(cause),
    }
}

/// Appends `version` as one record to `out`. The hash is checked here, on the writer thread, so
/// a caller's inconsistent version is refused instead of becoming a record that replay would
/// treat as corruption (and truncate everything after it).
pub(crate) fn encode(version: &Version, out: &mut Vec<u8>) -> Result<(), JournalError> {
    if sha256_hex(&version.content) != version.hash {
        return Err(JournalError::HashMismatch {
            doc: version.doc.clone(),
        });
    }
    let id = version.doc.as_str().as_bytes();
    let hash = version.hash.as_bytes();
    let payload_len = 3 + id.len() + 1 + hash.len() + version.content.len();
    let len = u32::try_from(payload_len).map_err(|_| JournalError::TooLarge {
        doc: version.doc.clone(),
    })?;
    let kind = match version.kind {
        Kind::Json => 0,
        Kind::Yjs => 1,
    };
    out.reserve(HEADER + payload_len);
    out.extend_from_slice(&len.to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    // Ids are at most 128 bytes and hashes 64, so both lengths fit a u8.
    out.extend_from_slice(&[FORMAT, kind, id.len() as u8]);
    out.extend_from_slice(id);
    out.push(hash.len() as u8);
    out.extend_from_slice(hash);
    out.extend_from_slice(&version.content);
    let crc = crc32fast::hash(&out[crc_at + 4..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads the record at the start of `rest`: `None` at a clean end, else the version and the
/// bytes it used.
fn next_record(rest: &[u8], offset: u64) -> Result<Option<(Version, usize)>, JournalError> {
    let corrupt = |reason| JournalError::Corrupt { offset, reason };
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() < HEADER {
        return Err(corrupt("torn record header"));
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let payload = rest[HEADER..].get(..len).ok_or(corrupt("torn record"))?;
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let version = decode(payload).map_err(corrupt)?;
    Ok(Some((version, HEADER + len)))
}

fn decode(payload: &[u8]) -> Result<Version, &'static str> {
    let [format, kind, rest @ ..] = payload else {
        return Err("truncated payload");
    };
    if *format != FORMAT {
        return Err("unknown record format");
    }
    let kind = match kind {
        0 => Kind::Json,
        1 => Kind::Yjs,
        _ => return Err("unknown document kind"),
    };
    let (id, rest) = short_field(rest)?;
    let doc = std::str::from_utf8(id)
        .ok()
        .and_then(|id| DocId::parse(id).ok())
        .ok_or("invalid document id")?;
    let (hash, content) = short_field(rest)?;
    if sha256_hex(content).as_bytes() != hash {
        return Err("hash does not match content");
    }
    Ok(Version {
        doc,
        kind,
        hash: String::from_utf8(hash.to_vec()).map_err(|_| "invalid hash")?,
        content: Bytes::copy_from_slice(content),
        stamp: None,
    })
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

/// The open journal file and what the writer knows about it.
pub(crate) struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// `None` once a failed write could not be rolled back or the file was unlinked under us:
    /// appending then would put records where replay cannot reach them, so the writer must
    /// [`rewrite`](Journal::rewrite) the whole file from memory first.
    file: Option<File>,
    /// Bytes that are written, fsync'd and valid; a failed append is truncated back to this.
    len: u64,
    /// Records in the file, so compaction can tell whether it holds anything superseded.
    records: usize,
}

impl Journal {
    /// Opens `dir/journal.log` (creating both if needed) and replays it, truncating a torn or
    /// corrupt tail. Returns the last version per document.
    pub(crate) fn open(dir: &Path) -> Result<(Journal, HashMap<DocId, Version>), JournalError> {
        fs::create_dir_all(dir).map_err(|e| io_error("could not create", dir, e))?;
        let path = dir.join("journal.log");
        // A leftover temp file is a compaction that crashed before its rename: the journal
        // itself is still whole, so the temp file is just garbage.
        let tmp = temp_path(&path);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("could not remove", &tmp, e))
            }
            _ => {}
        }
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error("could not read", &path, e)),
        };
        let mut entries = HashMap::new();
        let (mut offset, mut records) = (0, 0);
        loop {
            match next_record(&data[offset..], offset as u64) {
                Ok(None) => break,
                Ok(Some((version, used))) => {
                    entries.insert(version.doc.clone(), version);
                    offset += used;
                    records += 1;
                }
                Err(error) => {
                    warn!(
                        path = %path.display(),
                        offset,
                        dropped_bytes = data.len() - offset,
                        %error,
                        "journal tail truncated"
                    );
                    break;
                }
            }
        }
        let file = open_append(&path)?;
        if offset < data.len() {
            file.set_len(offset as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("could not truncate", &path, e))?;
        }
        // The file may have just been created: its directory entry must be durable too.
        sync_dir(dir)?;
        let journal = Journal {
            dir: dir.to_owned(),
            path,
            file: Some(file),
            len: offset as u64,
            records,
        };
        Ok((journal, entries))
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn records(&self) -> usize {
        self.records
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.file.is_some()
    }

    /// Writes `buf` (holding `records` encoded records) and fsyncs it. On failure the file is
    /// rolled back to its last good length, so a later append is never hidden behind garbage.
    pub(crate) fn append(&mut self, buf: &[u8], records: usize) -> Result<(), JournalError> {
        let file = self.file.as_mut().ok_or_else(|| {
            let cause = io::Error::other("journal file is not open");
            io_error("could not append to", &self.path, cause)
        })?;
        let written = file
            .write_all(buf)
            .and_then(|()| file.sync_data())
            .and_then(|()| still_linked(file));
        match written {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.records += records;
                Ok(())
            }
            Err(e) => {
                self.roll_back();
                Err(io_error("could not append to", &self.path, e))
            }
        }
    }

    fn roll_back(&mut self) {
        let Some(file) = &self.file else { return };
        let rolled_back = file
            .set_len(self.len)
            .and_then(|()| file.sync_all())
            .and_then(|()| still_linked(file));
        if let Err(error) = rolled_back {
            warn!(path = %self.path.display(), %error, "journal rollback failed, will rebuild it");
            self.file = None;
        }
    }

    /// Replaces the journal's contents with exactly `versions`: a truncate when there are none,
    /// otherwise a temp file, fsync, rename over, fsync of the directory, so a crash at any point
    /// leaves either the old journal or the new one, whole.
    pub(crate) fn rewrite(&mut self, versions: &[Version]) -> Result<(), JournalError> {
        if versions.is_empty() {
            if let Some(file) = &self.file {
                let truncated = file
                    .set_len(0)
                    .and_then(|()| file.sync_all())
                    .and_then(|()| still_linked(file));
                if truncated.is_ok() {
                    self.len = 0;
                    self.records = 0;
                    return Ok(());
                }
            }
        }
        let mut buf = Vec::new();
        for version in versions {
            encode(version, &mut buf)?;
        }
        let tmp = temp_path(&self.path);
        let written = File::create(&tmp).and_then(|mut file| {
            file.write_all(&buf)?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &self.path)) {
            let _ = fs::remove_file(&tmp);
            return Err(io_error("could not rewrite", &self.path, e));
        }
        // The old handle now points at the replaced file; until the new one is open, appends
        // must not go anywhere.
        self.file = None;
        self.len = buf.len() as u64;
        self.records = versions.len();
        sync_dir(&self.dir)?;
        self.file = Some(open_append(&self.path)?);
        Ok(())
    }
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
}

fn open_append(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_error("could not open", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("could not fsync directory", dir, e))
}

/// A write into a file whose directory entry is gone succeeds but survives nothing, so it must
/// count as a failure.
fn still_linked(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if file.metadata()?.nlink() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "journal file was removed",
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fallback::test_dir::TestDir;

    fn version(doc: &str, kind: Kind, content: &[u8]) -> Version {
        let doc = DocId::parse(doc).unwrap();
        Version::new(doc, kind, Bytes::copy_from_slice(content))
    }

    fn write_records(dir: &Path, versions: &[Version]) -> Vec<u8> {
        let mut buf = Vec::new();
        for v in versions {
            encode(v, &mut buf).unwrap();
        }
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("journal.log"), &buf).unwrap();
        buf
    }

    #[test]
    fn records_round_trip_arbitrary_bytes_and_both_kinds() {
        let dir = TestDir::new("round-trip");
        let yjs = version("y", Kind::Yjs, &[0, 255, 1, 0, 0xfe, b'\n']);
        let json = version("j", Kind::Json, br#"{"a":1}"#);
        let empty = version("e", Kind::Yjs, b"");
        write_records(&dir.0, &[yjs.clone(), json.clone(), empty.clone()]);

        let (journal, entries) = Journal::open(&dir.0).unwrap();

        assert_eq!(journal.records(), 3);
        assert_eq!(entries[&yjs.doc], yjs);
        assert_eq!(entries[&json.doc], json);
        assert_eq!(entries[&empty.doc], empty);
    }

    #[test]
    fn torn_last_record_is_truncated_and_earlier_records_kept() {
        let dir = TestDir::new("torn");
        let first = version("a", Kind::Json, b"1");
        let good = write_records(&dir.0, std::slice::from_ref(&first)).len();
        let buf = write_records(&dir.0, &[first.clone(), version("b", Kind::Json, b"22")]);
        for cut in [good + 3, buf.len() - 1] {
            fs::write(dir.0.join("journal.log"), &buf[..cut]).unwrap();

            let (journal, entries) = Journal::open(&dir.0).unwrap();

            assert_eq!(entries.len(), 1, "cut at {cut}");
            assert_eq!(entries[&first.doc], first);
            assert_eq!(journal.len(), good as u64);
            let on_disk = fs::metadata(dir.0.join("journal.log")).unwrap().len();
            assert_eq!(on_disk, good as u64);
        }
    }

    #[test]
    fn garbage_or_flipped_bits_end_replay_there() {
        let dir = TestDir::new("garbage");
        let first = version("a", Kind::Yjs, b"\x01\x02");
        let mut buf = write_records(&dir.0, std::slice::from_ref(&first));
        let good = buf.len();
        buf.extend_from_slice(b"\xff\xff\xff\x7fnot a record at all");
        fs::write(dir.0.join("journal.log"), &buf).unwrap();
        let (_, entries) = Journal::open(&dir.0).unwrap();
        assert_eq!(entries.len(), 1);

        // A flipped content byte in the last record fails its checksum.
        let mut buf = write_records(&dir.0, &[first.clone(), version("b", Kind::Json, b"2")]);
        *buf.last_mut().unwrap() ^= 0x20;
        fs::write(dir.0.join("journal.log"), &buf).unwrap();
        let (journal, entries) = Journal::open(&dir.0).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(journal.len(), good as u64);
    }
}

#[cfg(test)]
mod fixture {
    use super::*;

    /// Writes `testdata/journal-v1.log` with today's (format 1) encoder: two JSON documents, one
    /// of them in two versions, and a Yjs document in two versions. Run once, by hand, before
    /// the record format changed; the file is committed and replayed by later formats' tests.
    #[test]
    #[ignore = "writes the committed format-1 fixture"]
    fn write_format_1_fixture() {
        use yrs::{GetString, ReadTxn, Text, Transact};
        let json = |doc: &str, text: &str| {
            Version::new(DocId::parse(doc).unwrap(), Kind::Json, Bytes::copy_from_slice(text.as_bytes()))
        };
        let ydoc = yrs::Doc::with_client_id(7);
        let text = ydoc.get_or_insert_text("t");
        let mut yjs = Vec::new();
        for edit in ["hello", " world"] {
            let len = text.get_string(&ydoc.transact()).len() as u32;
            text.insert(&mut ydoc.transact_mut(), len, edit);
            let state = ydoc.transact().encode_state_as_update_v1(&yrs::StateVector::default());
            yjs.push(Version::new(DocId::parse("notes.y").unwrap(), Kind::Yjs, Bytes::from(state)));
        }
        let versions = [
            json("doc-a", r#"{"n":1}"#),
            yjs[0].clone(),
            json("doc-b", r#"["b"]"#),
            json("doc-a", r#"{"n":2}"#),
            yjs[1].clone(),
        ];
        let mut buf = Vec::new();
        for v in &versions {
            encode(v, &mut buf).unwrap();
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fallback/testdata");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("journal-v1.log"), &buf).unwrap();
    }
}
