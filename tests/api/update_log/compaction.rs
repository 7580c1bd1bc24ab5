//! The bytes that trigger a compaction: a save keeps no count of them, a commit counts the Yjs
//! bytes PostgreSQL recorded (`doc:{id}:tail`), and a flush adds the bytes it reads after them.

use docroom_actors::doc::DocId;
use docroom_actors::storage::{Claimed, DocumentLog, FlushClaims, RedisCache};

use super::{claimed, text_of, written, Prefix};
use crate::harness::yclient::typed;

/// Saves `kib` KiB of 8 KiB Yjs updates to `c`, each from the next client (`n`); their bytes.
async fn save(cache: &RedisCache, n: &mut u64, kib: usize) -> u64 {
    let chunk = "x".repeat(CHUNK);
    let mut saved = 0;
    while saved < kib * 1024 {
        *n += 1;
        let v = typed("c", *n, &chunk);
        saved += v.content.len();
        cache.save(&v).await.unwrap();
    }
    saved as u64
}

const CHUNK: usize = 8 * 1024;

#[tokio::test]
async fn bytes_postgres_recorded_in_earlier_flushes_count_towards_the_next_compaction() {
    let p = Prefix::new();
    let cache = p.cache("a");
    let doc = DocId::parse("c").unwrap();
    let mut n = 0;

    // 40 KiB: short of 64 KiB, so the flush only writes them, and its commit counts them.
    let first = save(&cache, &mut n, 40).await;
    let Claimed::Found(read) = claimed(&cache, &doc).await else {
        panic!("claimable")
    };
    assert!(read.compaction.is_none(), "40 KiB of log waits for more");
    assert_eq!(read.added, first, "the flush read every byte saved");
    let recorded = read.position;
    cache.committed(&[written(&doc, &read)]).await.unwrap();

    // 30 KiB more: the claim alone sees 40 KiB, the flush's read 30 more: together past 64 KiB,
    // so the flush also reads the 40 KiB PostgreSQL has, and folds all 70.
    let second = save(&cache, &mut n, 30).await;
    let Claimed::Found(read) = claimed(&cache, &doc).await else {
        panic!("claimable")
    };
    assert_eq!(read.persisted, recorded);
    assert_eq!(read.added, second, "PostgreSQL lacks only the last 30 KiB");
    let compaction = read
        .compaction
        .clone()
        .expect("70 KiB after the compacted content");
    assert_eq!(compaction.folded, first + second, "every entry is folded");
    assert!(
        !compaction.whole,
        "nothing was compacted before: only the log"
    );
    let pieces = text_of(&compaction.version).len() / CHUNK;
    assert_eq!(pieces as u64, n, "the compaction holds every update");
    cache.committed(&[written(&doc, &read)]).await.unwrap();

    // The folded bytes are off the count: a small save does not compact again.
    let loaded = cache.load(&doc).await.unwrap().unwrap();
    assert!(loaded.whole && loaded.tail == 0, "the log is compacted");
    save(&cache, &mut n, 1).await;
    let Claimed::Found(read) = claimed(&cache, &doc).await else {
        panic!("claimable")
    };
    assert!(read.compaction.is_none(), "the log is short again");
}
