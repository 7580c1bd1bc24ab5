//! What docroom runs inside Redis, and how a version is laid out there: the Lua scripts that
//! make a save (an append to the document's log), a read, a cache fill and a commit each one
//! atomic step, and the encoding of `doc:{id}:temp`.
//!
//! Per document: `doc:{id}:temp` the compacted content, `doc:{id}:pos` the last log entry it
//! includes, `doc:{id}:lastSavedHash` its hash (JSON: the last saved content's), `doc:{id}:stamp`
//! a JSON version's stamp, `doc:{id}:log` the Stream of updates, `doc:{id}:persisted` the last
//! log entry PostgreSQL holds, `doc:{id}:tail` the bytes of Yjs updates after `temp` that
//! PostgreSQL recorded (counted by commits, not by saves), `doc:{id}:head` the last entry
//! appended to the log (what a notice names as the entry before the one it carries),
//! `doc:{id}:flushing` the claim of the replica flushing it. Every key has the cache TTL,
//! refreshed by a save once a tenth of the TTL passed since its replica last did (or where
//! Redis has no `head`: keys new to it), by a flush's claim where half the TTL has passed, and
//! by a failed flush, so nothing expires while the document is dirty. Every key is written with
//! the TTL and every renewal includes `head`, which a save otherwise keeps at its TTL: no key
//! expires before `head`, so `head`'s TTL tells a claim whether to renew. A
//! `head` that expired while no save came only costs the next save a renewal, and its reader
//! one read.
//!
//! A flush of a Yjs document reads only the log after `persisted` and hands PostgreSQL those
//! updates; its commit moves `persisted`. Compaction is triggered by size: once the log after
//! `temp` holds as many bytes as `temp` (at least [`COMPACT_MIN_BYTES`]: `tail` plus the bytes
//! the flush read) or [`COMPACT_MAX_ENTRIES`] entries, the flush also reads `temp` plus the log after `pos` and its
//! commit writes the combination back as `temp`, only if it includes more than the `temp` there
//! (so two replicas compacting at once cannot undo each other). A commit trims the entries that
//! both PostgreSQL and `temp` include.
//!
//! Each script is a `.lua` file in `redis_scripts/`, and its model in Rust is the in-memory
//! cache (`storage::memory`), which the unit tests and the durability simulation run against.
//!
//! Scripts are sent with EVALSHA falling back to EVAL (`redis::Script`), so a Redis restarted
//! empty needs no SCRIPT LOAD.

use std::sync::LazyLock;

use bytes::Bytes;

use crate::doc::{DocId, Kind, Stamp, Version};

/// Saves of any number of documents in one call (`redis_cache::saves` gathers them), each as
/// the single save it would be on its own.
///
/// A save: append to the log, with the dirty mark and the TTLs, in one step. JSON is written
/// only over a smaller stamp (an unstamped one, written before stamps existed, is the smallest)
/// and not at all when its hash is the last saved one; it then also becomes `temp` at its
/// position. Yjs updates only append: `temp` changes by compaction, and a save keeps no count
/// of bytes (a commit does, of the bytes PostgreSQL recorded). `head` records the last entry appended. An append is announced on the document's
/// channel (`log::notice`): an `E` frame carrying the entry and the one appended before it, or
/// for content over the carry limit an `L` frame with the entry id only, so other replicas' readers
/// take the entry from the notice, or read the log when it grew, instead of polling.
/// A move back of a journaled version (`restore`) writes JSON content equal to the last saved
/// one when its stamp is larger (`DocumentLog::restore`).
/// The notice is published only when a replica other than the saving one follows the document
/// (`doc:{id}:followers`); the saving replica learns of the append from the answer, which also
/// names the entry before it. With webhooks on it also counts the change in `webhooks:changed`.
/// The script's header lists its keys and arguments.
pub(super) static SAVE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("redis_scripts/save.lua")));

/// Registers a replica as a follower of documents until a lease runs out (by Redis's clock),
/// dropping followers whose leases ran out; the same lease on `following`, the replicas that
/// follow any document, spares a lone replica's saves a look at each document's followers.
/// KEYS: the documents' `followers`, then `following`. ARGV: replica, lease ms.
pub(super) static FOLLOW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local t = redis.call('TIME') \
         local now = t[1] * 1000 + math.floor(t[2] / 1000) \
         for i = 1, #KEYS do \
           redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) \
           redis.call('ZADD', KEYS[i], now + ARGV[2], ARGV[1]) \
           redis.call('PEXPIRE', KEYS[i], ARGV[2]) end return 0",
    )
});

/// Clears `webhooks:changed` marks whose count is still the one read.
/// KEYS: changed. ARGV: field, count, field, count, ...
pub(super) static CLEAR_MARKS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "for i = 1, #ARGV, 2 do \
           if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then \
             redis.call('HDEL', KEYS[1], ARGV[i]) end end return 0",
    )
});

/// A cache fill from PostgreSQL: only into an empty slot of a document that is not dirty, so a
/// fill that raced a save (and a flush) can never put older content back. A clean document's
/// log holds only entries PostgreSQL has (its mark is cleared only when no entry is after
/// `persisted`), so the filled content includes the whole log. `persisted` is left alone: only
/// a commit of what PostgreSQL recorded sets it.
/// KEYS: temp, lastSavedHash, stamp, pos, log, persisted, tail, modifiedDocs.
/// ARGV: content, hash, stamp, ttl, id.
pub(super) static FILL: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("redis_scripts/fill.lua")));

/// A room's read of one document: {temp, stamp, pos, log entries after pos, dirty}.
/// KEYS: temp, stamp, pos, log, modifiedDocs. ARGV: id.
pub(super) static LOAD: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("redis_scripts/load.lua")));

/// A flush's claim: claims each document for this replica (`SET PX`; {'busy'} when another
/// replica holds the claim), refreshes its TTLs and says what the flush must read, per document
/// {temp wanted, pos, persisted, from, dirty, compact, log length, temp exists, tail bytes,
/// temp bytes}:
/// - JSON (`temp` is JSON): `temp` and the entries after `pos`, as a room reads it.
/// - Yjs: the entries after `persisted` (what PostgreSQL holds) only, so a flush costs what was
///   appended since the last one, not the document. When the log after `temp` has grown to
///   `temp`'s size (at least `min` bytes) or to `max entries`, compact = 1 and the entries
///   start after `pos` instead, with `temp` (if there is one), for the flush to fold them into
///   a new `temp`: amortized, compaction too costs what was appended. The script knows only the
///   bytes PostgreSQL recorded (`tail`); the flush adds those it reads after `persisted` and,
///   if they reach the size, reads `temp` and the entries between `pos` and `persisted` too
///   (`RedisCache::claim_read`).
///
/// The content itself (`temp` with its stamp in one `MGET`, then the log from `from`, so an
/// append in between is read, not lost) is then read with plain commands, pipelined
/// (`RedisCache::claim_read`): a script copying hundreds of entries through Lua held Redis for
/// 10–15 ms per call (W7), delaying every other replica's messages behind it. The claim keeps
/// what is read stable: only a claimed flush's commit changes `temp`, `persisted` or the trim.
///
/// With a `fresh` window (ms, 0 for none), a document not claimed by this replica whose
/// `persisted` entry was appended within the window (by Redis's clock; entry ids are append
/// times, so PostgreSQL took it at least that recently) is answered {'fresh', persisted} and not
/// claimed: another replica flushes it each period, and flushing it again here would write it
/// once per replica.
///
/// The answers end with the log's incarnation (see [`crate::log::Incarnation`]): the claim
/// makes one from Redis's clock if there is none (a Redis restarted empty), so every position
/// it answers is known to belong to it.
///
/// The TTLs are renewed only where `head`'s has fallen below half: no key expires before `head`
/// (every renewal includes it), so then none does before the flush is over.
///
/// The script's header lists its keys and arguments.
pub(super) static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("redis_scripts/ids.lua"),
        include_str!("redis_scripts/claim.lua")
    ))
});

/// A commit (PostgreSQL committed what a flush wrote), per document, when its incarnation is the
/// log's: raise `persisted` to the log point PostgreSQL recorded in that transaction (the only
/// value `persisted` ever takes: nothing read from the log counts as persisted by itself),
/// count the Yjs bytes it recorded in `tail` (`Commit::added`, only when `persisted` moved),
/// compact (write the given whole content if it includes more than `temp`, the read's position,
/// and take the bytes it folded off `tail`), and trim what both PostgreSQL and `temp` include.
/// Then, whatever the incarnation: clear the dirty mark if no entry of the log is after
/// `persisted`, and release this replica's claim. A commit of another incarnation (Redis
/// restarted empty since its read) changes nothing else: its positions name entries of a log
/// that is gone. Returns the (1-based) indices of those commits: what PostgreSQL took from the
/// log that is gone, Redis may lack.
///
/// Trimming keeps the entries of the last `retention` milliseconds (by Redis's clock; entry ids
/// are append times) whatever PostgreSQL holds: a room opened a moment ago follows the log from
/// the position its content included, and its replica's reader may not have read that far yet.
/// The trim's bound is recorded as `trimmed` (only ever raised): a reader whose position is
/// before it may have missed entries, and reloads (SPEC §6).
/// The script's header lists its keys and arguments.
pub(super) static COMMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("redis_scripts/ids.lua"),
        include_str!("redis_scripts/commit.lua")
    ))
});

/// A flush could not persist these documents: refresh their TTLs so nothing expires while they
/// wait, and release this replica's claims so any replica may try next.
/// ARGV: replica, ttl, key prefix, then the document ids.
pub(super) static KEEP: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("redis_scripts/keep.lua")));

/// The log after `temp` is compacted once it holds this many bytes of Yjs updates, or as many
/// as `temp` has if that is more (see [`CLAIM`]).
pub(super) const COMPACT_MIN_BYTES: usize = 64 * 1024;
/// ... or once the log holds this many entries (each one is a merge step for a reader).
pub(super) const COMPACT_MAX_ENTRIES: usize = 1_000;

/// Documents per `CLAIM`, `COMMIT` or `KEEP` call. A script blocks Redis while it runs: a flush
/// of hundreds of documents in one call held every save behind it for tens of milliseconds (and
/// once past the response timeout, tripping the breaker, BENCHMARKS.md W7); small calls let
/// saves in between. A call of 16 runs about a quarter of a millisecond (W5); a call of 8 spent
/// as much Redis time per document, in twice the calls.
pub(super) const BATCH: usize = 16;
/// `CLAIM` or `COMMIT` calls of one flush in flight at once: their round trips overlap (a
/// flush of 10,000 documents made 2,500 of them one after the other), and Redis, which runs a
/// connection's pipelined calls back to back, still runs at most this many small scripts
/// between other clients' commands.
pub(super) const IN_FLIGHT: usize = 4;

/// Yjs state is binary; JSON text never starts with a NUL byte, so this marker tells them apart
/// in `doc:{id}:temp` while JSON content stays readable as plain JSON.
const YJS_MARKER: &[u8] = b"\0yjs\0";

/// What `doc:{id}:temp` holds: JSON as is (borrowed), Yjs state behind its marker.
pub(super) fn encode(v: &Version) -> std::borrow::Cow<'_, [u8]> {
    match v.kind {
        Kind::Json => std::borrow::Cow::Borrowed(&v.content[..]),
        Kind::Yjs => std::borrow::Cow::Owned([YJS_MARKER, &v.content[..]].concat()),
    }
}

pub(super) fn decode(doc: DocId, raw: Vec<u8>, stamp: Option<String>) -> Version {
    match raw.strip_prefix(YJS_MARKER) {
        Some(state) => Version::new(doc, Kind::Yjs, Bytes::copy_from_slice(state)),
        None => {
            let v = Version::new(doc, Kind::Json, Bytes::from(raw));
            match stamp.as_deref().and_then(Stamp::decode) {
                Some(stamp) => v.stamped(stamp),
                None => v,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yjs_and_json_round_trip_through_the_temp_encoding() {
        let doc = DocId::parse("d").unwrap();
        for (kind, content) in [
            (Kind::Json, &b"{\"a\":1}"[..]),
            (Kind::Yjs, &[0u8, 1, 2][..]),
        ] {
            let v = Version::new(doc.clone(), kind, Bytes::copy_from_slice(content));
            assert_eq!(decode(doc.clone(), encode(&v).into_owned(), None), v);
        }
    }
}
