//! The journal file as the writer thread sees it: how long its valid part is, whether it can be
//! appended to, and the rewrite that compacts it. Records are framed by [`record`](super::record)
//! and read back by [`replay`](super::replay).
//!
//! This type does no locking: it is owned by the fallback's single writer thread.

use super::entry::Entry;
use super::error::{io_error, JournalError};
use super::io::JournalIo;
use super::record;
use super::replay::{self, ReplayReport, Replayed};
use crate::doc::DocId;

pub(crate) struct Journal {
    io: Box<dyn JournalIo>,
    /// Bytes that are written, synced and valid; a failed append is cut back to this.
    len: u64,
    /// `false` once a failed append could not be cut back: appending then would put records
    /// behind garbage, so the writer must [`rewrite`](Journal::rewrite) it from memory first.
    healthy: bool,
}

impl Journal {
    /// Replays the journal behind `io` and cuts off a torn tail.
    pub(crate) fn open(mut io: Box<dyn JournalIo>) -> Result<(Journal, Replayed), JournalError> {
        let path = io.path().to_owned();
        let read_error = |e| io_error("could not read", &path, e);
        let replayed = match io.read().map_err(read_error)? {
            Some((mut reader, len)) => {
                replay::replay(&mut *reader, len, &path).map_err(read_error)?
            }
            None => Replayed {
                entries: Default::default(),
                owed: Default::default(),
                valid_len: 0,
                report: ReplayReport::default(),
            },
        };
        if replayed.report.truncated_bytes > 0 {
            io.truncate(replayed.valid_len)
                .map_err(|e| io_error("could not truncate", &path, e))?;
        }
        let journal = Journal {
            io,
            len: replayed.valid_len,
            healthy: true,
        };
        Ok((journal, replayed))
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Writes `buf` (whole records) and syncs it. On failure the file is cut back to its last
    /// good length, so a later append is never hidden behind a torn record.
    pub(crate) fn append(&mut self, buf: &[u8]) -> Result<(), JournalError> {
        if !self.healthy {
            let cause = std::io::Error::other("journal must be rebuilt first");
            return Err(io_error("could not append to", self.io.path(), cause));
        }
        match self.io.append(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(error) = self.io.truncate(self.len) {
                    let path = self.io.path().display();
                    tracing::warn!(%path, %error, "journal rollback failed, will rebuild it");
                    self.healthy = false;
                }
                Err(io_error("could not append to", self.io.path(), e))
            }
        }
    }

    /// Replaces the journal's contents with the records of `entries` (one each, for a merged
    /// entry) and one owed record per document in `owed`: a truncate when there are none,
    /// otherwise an atomic replace, so a crash at any point leaves either the old journal or the
    /// new one, whole.
    pub(crate) fn rewrite<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
        owed: impl IntoIterator<Item = &'a DocId>,
    ) -> Result<(), JournalError> {
        let mut buf = Vec::new();
        for doc in owed {
            record::encode_owed(doc, true, &mut buf);
        }
        for entry in entries {
            entry.encode(&mut buf)?;
        }
        if buf.is_empty() && self.healthy && self.io.truncate(0).is_ok() {
            self.len = 0;
            return Ok(());
        }
        match self.io.replace(&buf) {
            Ok(()) => {
                self.len = buf.len() as u64;
                self.healthy = true;
                Ok(())
            }
            Err(e) => {
                // A replace that failed after its rename leaves no file to append to; one that
                // failed before leaves the old journal, still whole and still `len` long.
                Err(io_error("could not rewrite", self.io.path(), e))
            }
        }
    }
}
