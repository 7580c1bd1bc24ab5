//! What docroom runs inside Redis, and how a version is laid out there: the Lua scripts that
//! make a save (an append to the document's log), a read, a cache fill and a commit each one
//! atomic step, and the encoding of `doc:{id}:temp`.
//!
//! Per document: `doc:{id}:temp` the compacted content, `doc:{id}:pos` the last log entry it
//! includes, `doc:{id}:lastSavedHash` its hash (JSON: the last saved content's), `doc:{id}:stamp`
//! a JSON version's stamp, `doc:{id}:log` the Stream of updates, `doc:{id}:persisted` the last
//! log entry PostgreSQL holds, `doc:{id}:tail` the bytes of Yjs updates appended since `temp`,
//! `doc:{id}:head` the last entry appended to the log (what a notice names as the entry before
//! the one it carries), `doc:{id}:flushing` the claim of the replica flushing it. Every key has the cache TTL,
//! refreshed by each flush and by a save once the log's TTL is down to 90% (the log's TTL is
//! set only where all the others are: it says when they were last refreshed, and a save costs
//! one `PTTL` instead of seven `EXPIRE`s), so nothing expires while the document is dirty.
//!
//! A flush of a Yjs document reads only the log after `persisted` and hands PostgreSQL those
//! updates; its commit moves `persisted`. Compaction is triggered by size: once the log after
//! `temp` holds as many bytes as `temp` (at least [`COMPACT_MIN_BYTES`]) or
//! [`COMPACT_MAX_ENTRIES`] entries, the flush also reads `temp` plus the log after `pos` and its
//! commit writes the combination back as `temp`, only if it includes more than the `temp` there
//! (so two replicas compacting at once cannot undo each other). A commit trims the entries that
//! both PostgreSQL and `temp` include.
//!
//! Scripts are sent with EVALSHA falling back to EVAL (`redis::Script`), so a Redis restarted
//! empty needs no SCRIPT LOAD.

use std::sync::LazyLock;

use bytes::Bytes;

use crate::doc::{DocId, Kind, Stamp, Version};

/// Stream ids compared as (ms, seq), and the id just after one (for `XTRIM MINID`).
const IDS: &str = r"
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function lt(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  return am < bm or (am == bm and as < bs)
end
local function after(id)
  local ms, seq = split(id)
  return string.format('%d-%d', ms, seq + 1)
end
";

/// A save: append to the log, with the dirty mark and the TTLs, in one step. JSON is written
/// only over a smaller stamp (an unstamped one, written before stamps existed, is the smallest)
/// and not at all when its hash is the last saved one; it then also becomes `temp` at its
/// position. Yjs updates only append (and count their bytes in `tail`): `temp` changes by
/// compaction. `head` records the last entry appended. An append is announced on the document's
/// channel (`log::notice`): an `E` frame carrying the entry and the one appended before it, or
/// for content over ARGV[9] bytes an `L` frame with the entry id only, so other replicas' readers
/// take the entry from the notice, or read the log when it grew, instead of polling.
/// KEYS: temp, lastSavedHash, stamp, pos, log, persisted, tail, modifiedDocs, head.
/// ARGV: content, hash, stamp, ttl, id, kind, replica, channel, carry limit.
/// Returns {0|1|2, entry id}.
pub(super) static SAVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local ttl = ARGV[4]
if ARGV[6] == 'json' then
  if redis.call('GET', KEYS[2]) == ARGV[2] then return {2, ''} end
  local held = redis.call('GET', KEYS[3])
  if held and (ARGV[3] == '' or held >= ARGV[3]) then return {0, ''} end
end
local id = redis.call('XADD', KEYS[5], '*', 'r', ARGV[7], 'k', ARGV[6], 'h', ARGV[2], 's', ARGV[3], 'd', ARGV[1])
if ARGV[6] == 'json' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl)
  if ARGV[3] == '' then redis.call('DEL', KEYS[3])
  else redis.call('SET', KEYS[3], ARGV[3], 'EX', ttl) end
  redis.call('SET', KEYS[4], id, 'EX', ttl)
else
  if redis.call('INCRBY', KEYS[7], #ARGV[1]) == #ARGV[1] then redis.call('EXPIRE', KEYS[7], ttl) end
end
local left = redis.call('PTTL', KEYS[5])
if left < ttl * 900 then
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
end
redis.call('SADD', KEYS[8], ARGV[5])
local prev = redis.call('SET', KEYS[9], id, 'EX', ttl, 'GET') or ''
local who = #ARGV[7] .. ':' .. ARGV[7]
if #ARGV[1] <= tonumber(ARGV[9]) then
  redis.call('PUBLISH', ARGV[8], 'E' .. who .. prev .. ' ' .. id .. ' ' .. ARGV[6] .. ' ' .. ARGV[2]
    .. ' ' .. #ARGV[3] .. ':' .. ARGV[3] .. ARGV[1])
else
  redis.call('PUBLISH', ARGV[8], 'L' .. who .. id)
end
return {1, id}",
    )
});

/// A cache fill from PostgreSQL: only into an empty slot of a document that is not dirty, so a
/// fill that raced a save (and a flush) can never put older content back. A clean document's
/// log holds only entries PostgreSQL has, so the filled content includes the whole log, and
/// PostgreSQL holds it all (`persisted`).
/// KEYS: temp, lastSavedHash, stamp, pos, log, persisted, tail, modifiedDocs.
/// ARGV: content, hash, stamp, ttl, id.
pub(super) static FILL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SISMEMBER', KEYS[8], ARGV[5]) == 1 then
  return 0
end
local last = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
local pos = '0-0'
if #last > 0 then pos = last[1][1] end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
redis.call('SET', KEYS[4], pos, 'EX', ARGV[4])
redis.call('SET', KEYS[6], pos, 'EX', ARGV[4])
redis.call('DEL', KEYS[7])
return 1",
    )
});

/// A room's read of one document: {temp, stamp, pos, log entries after pos, dirty}.
/// KEYS: temp, stamp, pos, log, modifiedDocs. ARGV: id.
pub(super) static LOAD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local pos = redis.call('GET', KEYS[3]) or '0-0'
return {
  redis.call('GET', KEYS[1]) or false,
  redis.call('GET', KEYS[2]) or false,
  pos,
  redis.call('XRANGE', KEYS[4], '(' .. pos, '+'),
  redis.call('SISMEMBER', KEYS[5], ARGV[1]),
}",
    )
});

/// A flush's claim: claims each document for this replica (`SET PX`; {'busy'} when another
/// replica holds the claim), refreshes its TTLs and says what the flush must read, per document
/// {temp wanted, pos, persisted, from, dirty, compact, log length, temp exists}:
/// - JSON (`temp` is JSON): `temp` and the entries after `pos`, as a room reads it.
/// - Yjs: the entries after `persisted` (what PostgreSQL holds) only, so a flush costs what was
///   appended since the last one, not the document. When the log after `temp` has grown to
///   `temp`'s size (`tail` bytes, at least `min` bytes) or to `max entries`, compact = 1 and
///   the entries start after `pos` instead, with `temp` (if there is one), for the flush to
///   fold them into a new `temp`: amortized, compaction too costs what was appended.
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
/// KEYS: per document temp, lastSavedHash, stamp, pos, log, persisted, tail, flushing; then
/// modifiedDocs. ARGV: replica, claim ms, ttl, min bytes, max entries, fresh ms, then the
/// document ids.
pub(super) static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{IDS}
local n = (#KEYS - 1) / 8
local modified = KEYS[#KEYS]
local fresh = tonumber(ARGV[6])
local since = 0
if fresh > 0 then
  local now = redis.call('TIME')
  since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - fresh
end
local out = {{}}
for i = 1, n do
  local k = (i - 1) * 8
  local held = redis.call('GET', KEYS[k + 8])
  local persisted = redis.call('GET', KEYS[k + 6])
  if held and held ~= ARGV[1] then
    out[i] = {{'busy'}}
  elseif fresh > 0 and not held and persisted and split(persisted) > since then
    out[i] = {{'fresh', persisted}}
  else
    redis.call('SET', KEYS[k + 8], ARGV[1], 'PX', ARGV[2])
    for j = 1, 7 do redis.call('EXPIRE', KEYS[k + j], ARGV[3]) end
    local pos = redis.call('GET', KEYS[k + 4]) or '0-0'
    persisted = persisted or pos
    local len = redis.call('XLEN', KEYS[k + 5])
    local exists = redis.call('EXISTS', KEYS[k + 1])
    local json = exists == 1 and redis.call('GETRANGE', KEYS[k + 1], 0, 4) ~= '\0yjs\0'
    local temp, from, compact = 0, pos, 0
    if json then
      temp = 1
    else
      local size = redis.call('STRLEN', KEYS[k + 1])
      local waiting = tonumber(redis.call('GET', KEYS[k + 7]) or '0')
      from = persisted
      if waiting >= math.max(tonumber(ARGV[4]), size) or len >= tonumber(ARGV[5]) then
        compact = 1
        if lt(pos, from) then from = pos end
        if size > 0 then temp = 1 end
      end
    end
    out[i] = {{
      temp,
      pos,
      persisted,
      from,
      redis.call('SISMEMBER', modified, ARGV[6 + i]),
      compact,
      len,
      exists,
    }}
  end
end
return out"
    ))
});

/// A commit (PostgreSQL holds what a flush wrote), per document: with a log position, record
/// that PostgreSQL holds the log up to it (`persisted`), compact (write the given whole content
/// if it includes more than `temp`, and take the bytes it folded off `tail`), trim what both
/// PostgreSQL and `temp` include, and clear the dirty mark unless an entry came after; without
/// one (content not read from the cache), clear the mark only if the committed hash is the last
/// saved one or nothing at all is cached. Then release this replica's claim.
///
/// Trimming keeps the entries of the last `retention` milliseconds (by Redis's clock; entry ids
/// are append times) whatever PostgreSQL holds: a room opened a moment ago follows the log from
/// the position its content included, and its replica's reader may not have read that far yet.
/// The trim's bound is recorded as `trimmed` (only ever raised): a reader whose position is
/// before it may have missed entries, and reloads (SPEC §6).
/// KEYS: per document temp, lastSavedHash, pos, log, persisted, tail, flushing, trimmed; then
/// modifiedDocs. ARGV: replica, ttl, retention ms, then per document: id, hash, position or '',
/// compacted or '', its hash, bytes folded.
pub(super) static COMMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{IDS}
local n = (#KEYS - 1) / 8
local modified = KEYS[#KEYS]
local ttl = ARGV[2]
local now = redis.call('TIME')
local keep = string.format('%d-0', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3]))
for i = 1, n do
  local k = (i - 1) * 8
  local a = 3 + (i - 1) * 6
  local id, hash, position, compacted = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  if position ~= '' then
    local persisted = redis.call('GET', KEYS[k + 5])
    if not persisted or lt(persisted, position) then
      redis.call('SET', KEYS[k + 5], position, 'EX', ttl)
      persisted = position
    end
    local held = redis.call('GET', KEYS[k + 3]) or '0-0'
    if compacted ~= '' and lt(held, position) then
      redis.call('SET', KEYS[k + 1], compacted, 'EX', ttl)
      redis.call('SET', KEYS[k + 2], ARGV[a + 5], 'EX', ttl)
      redis.call('SET', KEYS[k + 3], position, 'EX', ttl)
      if redis.call('DECRBY', KEYS[k + 6], ARGV[a + 6]) < 0 then
        redis.call('SET', KEYS[k + 6], 0)
      end
      redis.call('EXPIRE', KEYS[k + 6], ttl)
      held = position
    end
    local upto = persisted
    if lt(held, upto) then upto = held end
    local minid = after(upto)
    if lt(keep, minid) then minid = keep end
    redis.call('XTRIM', KEYS[k + 4], 'MINID', minid)
    local mark = redis.call('GET', KEYS[k + 8])
    if mark and lt(minid, mark) then minid = mark end
    redis.call('SET', KEYS[k + 8], minid, 'EX', ttl)
    local last = redis.call('XREVRANGE', KEYS[k + 4], '+', '-', 'COUNT', 1)
    if #last == 0 or not lt(position, last[1][1]) then redis.call('SREM', modified, id) end
  else
    local h = redis.call('GET', KEYS[k + 2])
    if h == hash or (not h and redis.call('XLEN', KEYS[k + 4]) == 0) then
      redis.call('SREM', modified, id)
    end
  end
  if redis.call('GET', KEYS[k + 7]) == ARGV[1] then redis.call('DEL', KEYS[k + 7]) end
end
return n"
    ))
});

/// A flush could not persist these documents: refresh their TTLs so nothing expires while they
/// wait, and release this replica's claims so any replica may try next.
/// KEYS: per document temp, lastSavedHash, stamp, pos, log, persisted, tail, flushing.
/// ARGV: replica, ttl.
pub(super) static KEEP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"for k = 0, #KEYS - 1, 8 do
  for j = 1, 7 do redis.call('EXPIRE', KEYS[k + j], ARGV[2]) end
  if redis.call('GET', KEYS[k + 8]) == ARGV[1] then redis.call('DEL', KEYS[k + 8]) end
end
return 1",
    )
});

/// The log after `temp` is compacted once it holds this many bytes of Yjs updates, or as many
/// as `temp` has if that is more (see [`CLAIM`]).
pub(super) const COMPACT_MIN_BYTES: usize = 64 * 1024;
/// ... or once the log holds this many entries (each one is a merge step for a reader).
pub(super) const COMPACT_MAX_ENTRIES: usize = 1_000;

/// Documents per `COMMIT`, `READ` or `KEEP` call. A script blocks Redis while it runs: a flush
/// of hundreds of documents in one call held every save behind it for tens of milliseconds (and
/// once past the response timeout, tripping the breaker, BENCHMARKS.md W7); small calls let
/// saves in between.
pub(super) const BATCH: usize = 8;

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
