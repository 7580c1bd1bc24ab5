//! What docroom runs inside Redis, and how a version is laid out there: the Lua scripts that
//! make a save, a cache fill and a mark-clean each one atomic step, and the encoding of
//! `doc:{id}:temp`.

use std::sync::LazyLock;

use bytes::Bytes;

use crate::doc::{DocId, Kind, Stamp, Version};

/// Removes a document from modifiedDocs only if the hash PostgreSQL committed is still the last
/// saved one (or the cache entry is gone): a save that raced the flush stays dirty. Sent with
/// EVAL (Redis caches the compiled script), so a Redis restarted empty needs no SCRIPT LOAD.
pub(super) const MARK_CLEAN: &str = r"local modified = KEYS[#KEYS]
local n = #KEYS - 1
local cleared = 0
for i = 1, n do
  local h = redis.call('GET', KEYS[i])
  if h == ARGV[i] or not h then
    redis.call('SREM', modified, ARGV[n + i])
    cleared = cleared + 1
  end
end
return cleared";

/// A save (SPEC §6): content, hash and stamp with the TTL, and the dirty mark, in one step. A
/// JSON version is written only over a smaller stamp (an unstamped one, written before stamps
/// existed, is the smallest); Yjs content has no stamp and is always written.
/// KEYS: temp, lastSavedHash, stamp, modifiedDocs. ARGV: content, hash, stamp, ttl, id, kind.
pub(super) static SAVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if ARGV[6] == 'json' then
  local held = redis.call('GET', KEYS[3])
  if held and (ARGV[3] == '' or held >= ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
if ARGV[3] == '' then redis.call('DEL', KEYS[3])
else redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
redis.call('SADD', KEYS[4], ARGV[5])
return 1",
    )
});

/// A cache fill from PostgreSQL: only into an empty slot of a document that is not dirty, so a
/// fill that raced a save (and a flush) can never put older content back. Same keys and
/// arguments as [`SAVE`].
pub(super) static FILL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SISMEMBER', KEYS[4], ARGV[5]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
return 1",
    )
});

/// Documents per `MARK_CLEAN` call: one script run per batch instead of one per document.
pub(super) const MARK_CLEAN_BATCH: usize = 500;

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
