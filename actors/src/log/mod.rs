//! The log between rooms (SPEC §6, §8), as data: every replica appends what it accepts to the
//! document's Redis Stream `doc:{id}:log`, and reads what the other replicas appended. The
//! storage speaks these types; the actor that reads the logs is [`crate::log_reader`], which
//! drives the storage (so the two never import each other).
//!
//! - [`LogPos`]: a position in a document's log (a stream entry id), in the order Redis gives;
//!   [`Incarnation`] and [`LogMark`]: which life of the log a position belongs to, and the
//!   point PostgreSQL records with a document's content.
//! - [`LogEntry`]: one appended update, as a reader hands it to a room.
//! - [`notice`]: what travels on a document's pub/sub channel `doc:{id}:events`: the notice a
//!   save publishes with each append (carrying the entry, when it is not large), and events
//!   (awareness, stateless messages), in one framing.
//!
//! Appending is part of a save (the cache supervisor's, atomically with the `modifiedDocs` mark,
//! the TTL refresh and the notice); compaction and trimming are part of a flush's commit (see
//! `storage::redis_scripts`).

pub mod notice;

pub use notice::{Heard, Notice};

use std::fmt;
use std::sync::Arc;

use crate::doc::Version;

/// A stream entry id `ms-seq`. The derived order (milliseconds, then sequence) is the stream's
/// order. `LogPos::ZERO` comes before every entry: a reader at zero reads the whole log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPos {
    pub ms: u64,
    pub seq: u64,
}

impl LogPos {
    pub const ZERO: LogPos = LogPos { ms: 0, seq: 0 };

    /// The smallest position after this one.
    pub fn next(self) -> LogPos {
        LogPos {
            seq: self.seq.saturating_add(1),
            ..self
        }
    }

    pub fn parse(text: &str) -> Option<LogPos> {
        let (ms, seq) = text.split_once('-')?;
        Some(LogPos {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for LogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Which life of the Redis log a position belongs to: a Redis restarted empty (or a new one
/// after a failover that lost the data) starts a new incarnation, and its positions say nothing
/// about the old one's. Redis's clock in microseconds when the incarnation began, so a later one
/// compares larger (`incarnation` key, made by the first flush claim that finds none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in one incarnation of a document's log: what PostgreSQL records beside a document's
/// content (the last entry the content includes), in the same transaction. The derived order is
/// the one PostgreSQL keeps it in: by incarnation, then position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogMark {
    pub incarnation: Incarnation,
    pub position: LogPos,
}

/// Entries one read hands over at most per document: a document that filled it is read again
/// at once.
pub const READ_COUNT: usize = 500;

/// Logs one read covers at most; the reader reads the rest next, at once. One `XREAD` runs
/// inside Redis without a break: over the 500 logs a replica follows in W7 (the every-`poll`
/// read) it held Redis, and every save behind it, for 1–2.6 ms; reads of this many let the
/// saves in between.
pub const READ_DOCS: usize = 64;

/// What a read found in one document's log after a position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRead {
    pub entries: Vec<LogEntry>,
    /// Entries after the position were trimmed before this read (the log is trimmed up to a
    /// watermark, `doc:{id}:trimmed`): the reader fell behind and the room must reload from
    /// the compacted content (SPEC §6).
    pub behind: bool,
}

/// What an event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A y-protocols awareness message.
    Awareness,
    /// A Hocuspocus stateless payload.
    Stateless,
}

/// One event of a document, as a reader hands it to a room: short-lived and lossy by design
/// (SPEC §5b: it may be lost on a fault; the log is what nothing may be lost from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub replica: Arc<str>,
    pub kind: EventKind,
    pub payload: bytes::Bytes,
}

/// The replica a log entry names when a room did not append it: content restored from the
/// journal or from PostgreSQL ([`crate::storage::DocumentLog::restore`]). No room is known to
/// hold it (PostgreSQL may have kept content no room here has), so every replica's reader hands
/// it to its room, which takes it only if it adds something.
pub const RESTORED: &str = "";

/// One entry of a document's log: who appended it (or [`RESTORED`]), and what. For a Yjs
/// document `version` holds the incremental update; for JSON the content with its stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub pos: LogPos,
    pub replica: Arc<str>,
    pub version: Version,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_print_and_order_as_redis_orders_stream_ids() {
        let a = LogPos::parse("1700000000000-0").unwrap();
        let b = LogPos::parse("1700000000000-1").unwrap();
        let c = LogPos::parse("1700000000001-0").unwrap();
        assert!(LogPos::ZERO < a && a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-1");
        assert_eq!(LogPos::parse(&c.to_string()), Some(c));
        for bad in ["", "1", "-1", "1-", "a-1", "1-2-3"] {
            assert_eq!(LogPos::parse(bad), None, "{bad}");
        }
    }
}
