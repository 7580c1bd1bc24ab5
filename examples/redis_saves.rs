//! Saves through docroom's own Redis client, for counting what a save costs Redis
//! (tools/bench-instructions runs `redis-server` under callgrind and this program beside it).
//!
//! COUNT Yjs saves of a typed character (about 25 bytes, as W1's clients send) go to 500
//! documents in turn, SHARE at a time side by side, so each SAVE call carries SHARE saves: W1's
//! calls carry about six. One replica, no other following, webhooks off: a lone replica's
//! saves under W1. Each wave is awaited before the next, so the count does not depend on how
//! slowly Redis runs under valgrind.
//!
//! Usage: redis_saves REDIS_URL COUNT [SHARE] (SHARE defaults to 6). Keys go behind the prefix
//! `bench-saves:`; the program deletes none of them (run it on a Redis of its own).

use std::time::Duration;

use bytes::Bytes;
use docroom_actors::doc::{DocId, Kind, Version};
use docroom_actors::storage::{CacheSettings, DocumentLog, RedisCache, RedisTarget};
use yrs::{Doc, GetString, Text, Transact};

const DOCS: usize = 500;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: redis_saves REDIS_URL COUNT [SHARE]";
    let url = args.first().ok_or(usage)?;
    let count: usize = args.get(1).ok_or(usage)?.parse()?;
    let share: usize = args.get(2).map_or(Ok(6), |s| s.parse())?;
    let ms = Duration::from_millis;
    let cache = RedisCache::new(CacheSettings {
        // Redis runs under valgrind here.
        response_timeout: ms(60_000),
        connection_timeout: ms(60_000),
        ..CacheSettings::standalone(RedisTarget::plain(url), "bench-saves:", "bench")
    });
    let docs: Vec<DocId> = (0..DOCS)
        .map(|i| DocId::parse(&format!("doc-{i}")))
        .collect::<Result<_, _>>()?;
    let typist = Doc::new();
    let text = typist.get_or_insert_text("t");
    let mut sent = 0;
    while sent < count {
        let wave: Vec<Version> = (sent..count.min(sent + share))
            .map(|i| {
                let mut txn = typist.transact_mut();
                let at = text.get_string(&txn).len() as u32;
                text.insert(&mut txn, at, "x");
                let update = txn.encode_update_v1();
                Version::new(docs[i % DOCS].clone(), Kind::Yjs, Bytes::from(update))
            })
            .collect();
        let saves = wave.iter().map(|v| cache.save(v));
        for saved in futures_util::future::join_all(saves).await {
            saved?;
        }
        sent += wave.len();
    }
    Ok(())
}
