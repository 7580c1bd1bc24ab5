//! Who pays for a save's notice (SPEC §8): it goes on the document's channel only while another
//! replica follows the document. A lone replica publishes nothing for its own saves (its reader
//! hears of them from the save's answer), and a replica that opens the document is registered
//! before its first read, so from then on every save reaches it by notice, not by the poll.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::harness::{ensure, eventually, TestApp, TestOptions, WsClient};

/// Longer than a notice takes, far shorter than the poll (held off for a minute here).
const PROMPTLY: Duration = Duration::from_secs(3);
const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_lone_replica_publishes_no_notices_and_a_second_one_hears_them_once_it_follows() {
    let no_poll = ("DOCROOM__CACHE__LOG_POLL_MS", "60000");
    let a = TestApp::spawn(TestOptions::new().env(no_poll.0, no_poll.1)).await;
    let mut channel = a.redis_listen("doc:lone:events").await;
    let mut writer = WsClient::connect(&a, "lone").await;
    let mut local = WsClient::connect(&a, "lone").await;
    for n in 0..5 {
        writer.update(json!({ "n": n }), &n.to_string()).await;
        let content = json!({ "n": n });
        local
            .recv_where("the update on the same replica", |m| {
                m["content"] == content
            })
            .await;
    }
    let heard = tokio::time::timeout(Duration::from_millis(500), channel.next()).await;
    assert!(
        heard.is_err(),
        "a lone replica published {:?} for its own saves",
        heard
            .ok()
            .flatten()
            .map(|m| String::from_utf8_lossy(&m).into_owned())
    );

    let b = TestApp::spawn(a.replica_options().env(no_poll.0, no_poll.1)).await;
    let mut watcher = WsClient::connect(&b, "lone").await;
    assert_eq!(
        watcher.snapshot["content"],
        json!({ "n": 4 }),
        "the content so far"
    );
    // b's reader registers b as a follower once its subscription is in effect, then reads the
    // log once; a save after the registration can only reach b by notice.
    let followers = a.key("doc:lone:followers");
    eventually(WITHIN, "b registered as a follower", async || {
        let held: Vec<String> = redis::cmd("ZRANGE")
            .arg(&followers)
            .arg(0)
            .arg(-1)
            .query_async(&mut a.redis().await)
            .await
            .map_err(|e| e.to_string())?;
        ensure!(held.len() == 2, "followers: {held:?}");
        Ok(())
    })
    .await;
    for n in 5..8 {
        super::arrives_within(PROMPTLY, &mut writer, &mut watcher, n).await;
    }
    let notice = tokio::time::timeout(PROMPTLY, channel.next())
        .await
        .ok()
        .flatten()
        .expect("a notice on the channel once b follows the document");
    assert_eq!(notice.first(), Some(&b'E'), "an entry's notice");
}
