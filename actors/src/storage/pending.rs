//! What a flush makes of its read of a claimed document (see [`super::Pending`]): the same for
//! every cache, so the Redis script and the in-memory model only have to find the parts.

use super::{Compaction, Pending};
use crate::doc::{combine, CombineError, Kind, Version};
use crate::log::{Incarnation, LogEntry, LogPos};

/// The parts a flush's read finds for one document.
pub(crate) struct FlushRead {
    /// JSON: the cached content. Yjs: the compacted content, read only when `compact`.
    pub temp: Option<Version>,
    /// The last log entry the compacted content includes.
    pub pos: LogPos,
    /// The last log entry PostgreSQL recorded, as far as the cache knows.
    pub persisted: LogPos,
    /// The incarnation of the log read.
    pub incarnation: Incarnation,
    /// JSON: the log after `pos`. Yjs: the log after `persisted`, or after `pos` as well when
    /// `compact`.
    pub entries: Vec<LogEntry>,
    pub dirty: bool,
    pub compact: bool,
    pub log_len: usize,
    /// The cache holds compacted content for the document (read or not).
    pub has_temp: bool,
}

impl FlushRead {
    /// `None` when the cache holds nothing at all for the document.
    pub fn pending(self) -> Result<Option<Pending>, CombineError> {
        if !self.has_temp && self.log_len == 0 && self.entries.is_empty() {
            return Ok(None);
        }
        let kind = self
            .temp
            .as_ref()
            .map(|t| t.kind)
            .or_else(|| self.entries.first().map(|e| e.version.kind))
            .unwrap_or(Kind::Yjs);
        let last = self.entries.last().map(|e| e.pos);
        if kind == Kind::Json {
            let position = last.unwrap_or(self.pos);
            let parts = self
                .temp
                .into_iter()
                .chain(self.entries.into_iter().map(|e| e.version));
            return Ok(Some(Pending {
                version: combine(parts)?,
                position,
                persisted: self.persisted,
                incarnation: self.incarnation,
                dirty: self.dirty,
                log_len: self.log_len,
                added: 0,
                compaction: None,
            }));
        }
        let position = last.map_or(self.persisted, |l| l.max(self.persisted));
        let (pos, persisted) = (self.pos, self.persisted);
        // The entries a compaction folds into `temp`: those after its position.
        let fold: Vec<&LogEntry> = match self.compact {
            true => self.entries.iter().filter(|e| e.pos > pos).collect(),
            false => Vec::new(),
        };
        let compaction = match fold.is_empty() {
            true => None,
            false => {
                let folded = fold.iter().map(|e| e.version.content.len() as u64).sum();
                let whole = self.temp.is_some();
                let parts = self
                    .temp
                    .into_iter()
                    .chain(fold.into_iter().map(|e| e.version.clone()));
                combine(parts)?.map(|version| Compaction {
                    version,
                    whole,
                    folded,
                })
            }
        };
        let delta: Vec<Version> = self
            .entries
            .into_iter()
            .filter(|e| e.pos > persisted)
            .map(|e| e.version)
            .collect();
        Ok(Some(Pending {
            added: delta.iter().map(|v| v.content.len() as u64).sum(),
            version: combine(delta)?,
            position,
            persisted,
            incarnation: self.incarnation,
            dirty: self.dirty,
            log_len: self.log_len,
            compaction,
        }))
    }
}
