//! What docroom runs inside Redis, and how a version is laid out there: the Lua scripts that
//! make a save (an append to the document's log), a read, a cache fill and a commit each one
//! atomic step, and the encoding of `doc:{id}:temp`.
//!
//! Per document: `doc:{id}:temp` the compacted content, `doc:{id}:pos` the last log entry it
//! includes, `doc:{id}:lastSavedHash` its hash (JSON: the last saved content's), `doc:{id}:stamp`
//! a JSON version's stamp, `doc:{id}:log` the Stream of updates, `doc:{id}:flushing` the claim
//! of the replica flushing it. Every key has the cache TTL, refreshed by each save and each
//! flush, so nothing expires while the document is dirty.
//!
//! Compaction: a flush reads `temp` plus the log after `pos`, persists the combination, and its
//! commit writes it back as `temp` only if it includes more than the `temp` there (so two
//! replicas compacting at once cannot undo each other), then trims the entries that both
//! PostgreSQL and `temp` include. The trigger is therefore every flush of a dirty document.
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
/// position. Yjs updates only append: `temp` changes by compaction. An append is announced on
/// the document's channel (`log::notice`'s `L` frame: replica, entry id), so other replicas'
/// readers read the log when it grew instead of polling it.
/// KEYS: temp, lastSavedHash, stamp, pos, log, modifiedDocs.
/// ARGV: content, hash, stamp, ttl, id, kind, replica, channel. Returns {0|1|2, entry id}.
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
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
end
redis.call('EXPIRE', KEYS[5], ttl)
redis.call('SADD', KEYS[6], ARGV[5])
redis.call('PUBLISH', ARGV[8], 'L' .. #ARGV[7] .. ':' .. ARGV[7] .. id)
return {1, id}",
    )
});

/// A cache fill from PostgreSQL: only into an empty slot of a document that is not dirty, so a
/// fill that raced a save (and a flush) can never put older content back. A clean document's
/// log holds only entries PostgreSQL has, so the filled content includes the whole log.
/// KEYS: temp, lastSavedHash, stamp, pos, log, modifiedDocs. ARGV: content, hash, stamp, ttl, id.
pub(super) static FILL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SISMEMBER', KEYS[6], ARGV[5]) == 1 then
  return 0
end
local last = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
local pos = '0-0'
if #last > 0 then pos = last[1][1] end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
redis.call('SET', KEYS[4], pos, 'EX', ARGV[4])
return 1",
    )
});

/// Reads documents: per document {temp, stamp, pos, log entries after pos, dirty}, or {'busy'}
/// when claiming and another replica holds the document's flush claim. With claim = 1 the
/// claim is taken (`SET NX PX`) and the TTLs refreshed.
/// KEYS: per document temp, lastSavedHash, stamp, pos, log, flushing; then modifiedDocs.
/// ARGV: claim (0|1), replica, claim ms, ttl, then the document ids.
pub(super) static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{IDS}
local n = (#KEYS - 1) / 6
local modified = KEYS[#KEYS]
local out = {{}}
for i = 1, n do
  local k = (i - 1) * 6
  local mine = true
  if ARGV[1] == '1' then
    local held = redis.call('GET', KEYS[k + 6])
    if held and held ~= ARGV[2] then mine = false
    else redis.call('SET', KEYS[k + 6], ARGV[2], 'PX', ARGV[3]) end
  end
  if not mine then
    out[i] = {{'busy'}}
  else
    local pos = redis.call('GET', KEYS[k + 4]) or '0-0'
    out[i] = {{
      redis.call('GET', KEYS[k + 1]) or false,
      redis.call('GET', KEYS[k + 3]) or false,
      pos,
      redis.call('XRANGE', KEYS[k + 5], '(' .. pos, '+'),
      redis.call('SISMEMBER', modified, ARGV[4 + i]),
    }}
    if ARGV[1] == '1' then
      for j = 1, 5 do redis.call('EXPIRE', KEYS[k + j], ARGV[4]) end
    end
  end
end
return out"
    ))
});

/// A commit (PostgreSQL holds what a flush wrote), per document: with a log position, compact
/// (write the given whole content if it includes more than `temp`), trim what both PostgreSQL
/// and `temp` include, and clear the dirty mark unless an entry came after; without one (content
/// not read from the cache), clear the mark only if the committed hash is the last saved one
/// or nothing at all is cached. Then release this replica's claim.
///
/// Trimming keeps the entries of the last `retention` milliseconds (by Redis's clock; entry ids
/// are append times) whatever PostgreSQL holds: a room opened a moment ago follows the log from
/// the position its content included, and its replica's reader may not have read that far yet.
/// KEYS: per document temp, lastSavedHash, pos, log, flushing; then modifiedDocs.
/// ARGV: replica, ttl, retention ms, then per document: id, hash, position or '', compacted or
/// '', its hash.
pub(super) static COMMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{IDS}
local n = (#KEYS - 1) / 5
local modified = KEYS[#KEYS]
local ttl = ARGV[2]
local now = redis.call('TIME')
local keep = string.format('%d-0', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3]))
for i = 1, n do
  local k = (i - 1) * 5
  local a = 3 + (i - 1) * 5
  local id, hash, position, compacted = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  if position ~= '' then
    local held = redis.call('GET', KEYS[k + 3]) or '0-0'
    if compacted ~= '' and lt(held, position) then
      redis.call('SET', KEYS[k + 1], compacted, 'EX', ttl)
      redis.call('SET', KEYS[k + 2], ARGV[a + 5], 'EX', ttl)
      redis.call('SET', KEYS[k + 3], position, 'EX', ttl)
      held = position
    end
    local upto = position
    if lt(held, upto) then upto = held end
    local minid = after(upto)
    if lt(keep, minid) then minid = keep end
    redis.call('XTRIM', KEYS[k + 4], 'MINID', minid)
    local last = redis.call('XREVRANGE', KEYS[k + 4], '+', '-', 'COUNT', 1)
    if #last == 0 or not lt(position, last[1][1]) then redis.call('SREM', modified, id) end
  else
    local h = redis.call('GET', KEYS[k + 2])
    if h == hash or (not h and redis.call('XLEN', KEYS[k + 4]) == 0) then
      redis.call('SREM', modified, id)
    end
  end
  if redis.call('GET', KEYS[k + 5]) == ARGV[1] then redis.call('DEL', KEYS[k + 5]) end
end
return n"
    ))
});

/// A flush could not persist these documents: refresh their TTLs so nothing expires while they
/// wait, and release this replica's claims so any replica may try next.
/// KEYS: per document temp, lastSavedHash, stamp, pos, log, flushing. ARGV: replica, ttl.
pub(super) static KEEP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"for k = 0, #KEYS - 1, 6 do
  for j = 1, 5 do redis.call('EXPIRE', KEYS[k + j], ARGV[2]) end
  if redis.call('GET', KEYS[k + 6]) == ARGV[1] then redis.call('DEL', KEYS[k + 6]) end
end
return 1",
    )
});

/// Documents per `COMMIT`, `READ` or `KEEP` call. A script blocks Redis while it runs: a flush
/// of hundreds of documents in one call held every save behind it for tens of milliseconds (and
/// once past the response timeout, tripping the breaker, BENCHMARKS.md W7); small calls let
/// saves in between.
pub(super) const BATCH: usize = 25;

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
