//! Replica heartbeats in Redis: `replica:{id}` (behind the key prefix) holds a JSON
//! [`ReplicaBeat`] with a short TTL, so a replica that stops beating (SIGKILL, lost network)
//! drops out of the list by itself; one that stops cleanly deletes its key.

use std::time::Duration;

use super::{CacheResult, RedisCache};
use crate::storage::ReplicaBeat;

/// Keys asked per SCAN step: a hint to Redis, not a limit on the answer.
const SCAN_COUNT: usize = 100;

impl RedisCache {
    fn key_replica(&self, replica: &str) -> String {
        format!("{}replica:{}", self.settings.key_prefix, replica)
    }

    pub(super) async fn write_beat(&self, beat: &ReplicaBeat, ttl: Duration) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        let value = serde_json::to_string(beat).expect("a heartbeat serializes");
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call(
            redis::cmd("SET")
                .arg(self.key_replica(&beat.replica))
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// SCAN for `replica:*` under the prefix, then one MGET. A key that expires between the two
    /// reads as nil and is skipped; a value that does not parse (written by something else) too.
    pub(super) async fn read_beats(&self) -> CacheResult<Vec<ReplicaBeat>> {
        let mut conn = self.connection().await?;
        let pattern = format!("{}replica:*", glob_escape(&self.settings.key_prefix));
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .call(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut conn),
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key more than once.
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = self
            .call(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
            .await?;
        let mut beats: Vec<ReplicaBeat> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        beats.sort_by(|a, b| a.replica.cmp(&b.replica));
        Ok(beats)
    }

    pub(super) async fn delete_beat(&self, replica: &str) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        self.call(
            redis::cmd("DEL")
                .arg(self.key_replica(replica))
                .query_async::<()>(&mut conn),
        )
        .await?;
        Ok(())
    }
}

/// `text` as a SCAN MATCH pattern that matches only itself: a prefix like `team[1]:` must not
/// be read as a character class.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_in_a_prefix_are_escaped() {
        assert_eq!(glob_escape("t1:"), "t1:");
        assert_eq!(glob_escape(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
    }
}
