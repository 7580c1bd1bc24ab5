//! The TTLs a save gives a document's keys when the replica renewed them a moment ago but Redis
//! no longer has them (restarted empty, or the keys expired): the replica does not renew them
//! again for a tenth of the TTL, so the script must see that the keys are new to it.

use docroom_actors::storage::DocumentLog;

use crate::harness::app::SHARED_REDIS_URL;
use crate::harness::yclient::typed;

#[tokio::test]
async fn keys_that_redis_lost_get_their_ttl_back_from_the_next_save() {
    let p = super::Prefix::new();
    let cache = p.cache("a");
    cache.save(&typed("lost", 1, "one ")).await.unwrap();
    let mut redis = redis::Client::open(SHARED_REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pattern = format!("{}doc:lost:*", p.0);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the first save wrote no keys");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();

    // Within a tenth of the TTL of the first save: the replica would not renew by itself.
    cache.save(&typed("lost", 1, "two ")).await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .unwrap();
    for key in ["log", "head"] {
        assert!(
            keys.contains(&format!("{}doc:lost:{key}", p.0)),
            "{key} missing: {keys:?}"
        );
    }
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            (1..=125_000).contains(&ttl),
            "PTTL of {key} is {ttl} ms after the keys were lost"
        );
    }
}
