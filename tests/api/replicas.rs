//! SPEC §8 and invariant 4: several replicas (in-process apps on one Redis key prefix and one
//! database, each with its own replica id and data directory) are one deployment: every member
//! of a document receives every accepted update whichever replica it is on, no replica's save
//! removes another's edit, and every replica, member and PostgreSQL end on the same content.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::yclient::{text_of_state, YClient};
use crate::harness::{
    await_breaker, ensure, eventually, Frame, PrivateRedis, TestApp, TestOptions, WsClient,
};

mod first_save;
mod notices;

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_json_update_on_one_replica_reaches_members_on_every_other() {
    let a = TestApp::start().await;
    let (b, c) = (a.replica().await, a.replica().await);
    let mut on_a = WsClient::connect(&a, "shared").await;
    let mut on_b = WsClient::connect(&b, "shared").await;
    let mut on_c = WsClient::connect(&c, "shared").await;

    let content = json!({"written": "on a"});
    on_a.update(content.clone(), "1").await;

    for (name, member) in [("b", &mut on_b), ("c", &mut on_c)] {
        let got = member
            .recv_where(&format!("a's update on replica {name}"), |m| {
                m["type"] == "update"
            })
            .await;
        assert_eq!(got["content"], content, "on replica {name}");
    }
    // And back: an update on c reaches a.
    let reply = json!({"written": "on c"});
    on_c.update(reply.clone(), "2").await;
    let got = on_a
        .recv_where("c's update on replica a", |m| {
            m["type"] == "update" && m["content"] == reply
        })
        .await;
    assert_eq!(got["content"], reply);
}

/// Updates a member receives until none has come for a while: its last one is its view.
async fn settle(member: &mut WsClient, mut view: Value) -> Value {
    while let Some(frame) = member.recv_within(Duration::from_millis(1500)).await {
        if let Frame::Json(m) = frame {
            if m["type"] == "update" {
                view = m["content"].clone();
            }
        }
    }
    view
}

#[tokio::test]
async fn racing_json_writers_on_two_replicas_end_on_one_content_everywhere() {
    let a = TestApp::start().await;
    let b = a.replica().await;
    let (mut writer_a, mut writer_b) = (
        WsClient::connect(&a, "race").await,
        WsClient::connect(&b, "race").await,
    );
    let (mut watcher_a, mut watcher_b) = (
        WsClient::connect(&a, "race").await,
        WsClient::connect(&b, "race").await,
    );

    for i in 0..25 {
        writer_a.send_json(&json!({"type": "update", "content": {"a": i}, "ref": format!("a{i}")}));
        writer_b.send_json(&json!({"type": "update", "content": {"b": i}, "ref": format!("b{i}")}));
    }
    for i in 0..25 {
        for (w, r) in [
            (&mut writer_a, format!("a{i}")),
            (&mut writer_b, format!("b{i}")),
        ] {
            let ack = w
                .recv_where(&format!("the ack of {r}"), |m| m["ref"] == r.as_str())
                .await;
            assert_eq!(ack["type"], "ack", "{ack}");
        }
    }

    let view_a = settle(&mut watcher_a, Value::Null).await;
    let view_b = settle(&mut watcher_b, Value::Null).await;
    assert_eq!(view_a, view_b, "members on the two replicas disagree");
    for app in [&a, &b] {
        let reply = app.get_doc("race").await;
        assert_eq!(reply.body["content"], view_a, "GET on a replica disagrees");
    }
    a.await_pg_content("race", &view_a, WITHIN).await;
}

#[tokio::test]
async fn yjs_typists_on_three_replicas_converge_and_postgres_keeps_every_token() {
    let a = TestApp::start().await;
    let (b, c) = (a.replica().await, a.replica().await);
    let mut typists = vec![
        YClient::connect(&a, "typed").await,
        YClient::connect(&b, "typed").await,
        YClient::connect(&c, "typed").await,
    ];

    let tokens: Vec<Vec<String>> = (0..3)
        .map(|t| (0..30).map(|i| format!("<{t}.{i}>")).collect())
        .collect();
    for i in 0..30 {
        for (typist, mine) in typists.iter().zip(&tokens) {
            typist.type_text(&mine[i]);
        }
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let every: Vec<String> = tokens.concat();
    for (t, typist) in typists.iter_mut().enumerate() {
        typist
            .until(&format!("every token at typist {t}"), |y| {
                let text = y.text();
                every.iter().all(|tok| text.contains(tok.as_str()))
            })
            .await;
    }
    let texts: Vec<String> = typists.iter().map(YClient::text).collect();
    assert!(
        texts.iter().all(|t| *t == texts[0]),
        "not one text: {texts:#?}"
    );
    drop(typists);

    // Every replica stops (draining), Redis forgets everything: PostgreSQL alone has it.
    let (mut a, mut b, mut c) = (a, b, c);
    for app in [&mut b, &mut c, &mut a] {
        app.stop().await;
    }
    a.redis_delete_all().await;
    a.restart().await;
    let reply = a.get_doc("typed").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    use base64::Engine as _;
    let state = base64::engine::general_purpose::STANDARD
        .decode(reply.body["state"].as_str().expect("a state"))
        .unwrap();
    let text = text_of_state(&state);
    let lost: Vec<&String> = every
        .iter()
        .filter(|t| !text.contains(t.as_str()))
        .collect();
    assert!(lost.is_empty(), "tokens lost: {lost:?}");
}

/// Two replicas on a private Redis that is killed and restarted empty while typists on both
/// replicas type: each replica serves from its own fallback meanwhile, and once Redis is back
/// both typists converge on every token without reconnecting, and PostgreSQL holds them all.
#[tokio::test]
async fn yjs_typists_on_two_replicas_converge_through_a_redis_outage() {
    let mut redis = PrivateRedis::start().await;
    let a = TestApp::spawn(outage_options(&redis)).await;
    let b = TestApp::spawn(outage_replica(&a)).await;
    let mut alice = YClient::connect(&a, "outage").await;
    let mut bob = YClient::connect(&b, "outage").await;

    let mut typed = Vec::new();
    let mut type_round = |round: &str, alice: &YClient, bob: &YClient| {
        for i in 0..5 {
            for (who, typist) in [("a", alice), ("b", bob)] {
                let token = format!("<{who}.{round}.{i}>");
                typist.type_text(&token);
                typed.push(token);
            }
        }
    };
    type_round("before", &alice, &bob);
    redis.kill();
    for app in [&a, &b] {
        await_breaker(app, "open").await;
    }
    type_round("during", &alice, &bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart().await;
    for app in [&a, &b] {
        await_breaker(app, "closed").await;
    }
    type_round("after", &alice, &bob);

    for (name, typist) in [("alice", &mut alice), ("bob", &mut bob)] {
        typist
            .until(&format!("every token at {name}"), |y| {
                let text = y.text();
                typed.iter().all(|t| text.contains(t.as_str()))
            })
            .await;
    }
    a.admin().flush_now().await;
    b.admin().flush_now().await;
    eventually(WITHIN, "PostgreSQL to hold every token", async || {
        let state = a.pg_yjs_state("outage").await;
        let text = state.map(|s| text_of_state(&s)).unwrap_or_default();
        let missing: Vec<&String> = typed
            .iter()
            .filter(|t| !text.contains(t.as_str()))
            .collect();
        ensure!(missing.is_empty(), "missing {missing:?}");
        Ok(())
    })
    .await;
}

/// The same with JSON writers: afterwards every member, every replica and PostgreSQL hold the
/// content with the largest stamp — a stale fallback write never overwrites a later one.
#[tokio::test]
async fn json_writers_on_two_replicas_agree_on_the_latest_content_after_a_redis_outage() {
    let mut redis = PrivateRedis::start().await;
    let a = TestApp::spawn(outage_options(&redis)).await;
    let b = TestApp::spawn(outage_replica(&a)).await;
    let (mut writer_a, mut writer_b) = (
        WsClient::connect(&a, "lww").await,
        WsClient::connect(&b, "lww").await,
    );
    let (mut watcher_a, mut watcher_b) = (
        WsClient::connect(&a, "lww").await,
        WsClient::connect(&b, "lww").await,
    );

    writer_a.update(json!({"a": "before"}), "a0").await;
    redis.kill();
    for app in [&a, &b] {
        await_breaker(app, "open").await;
    }
    // During the outage the replicas cannot see each other: b writes last.
    writer_a.update(json!({"a": "during"}), "a1").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let latest = json!({"b": "during, last"});
    writer_b.update(latest.clone(), "b1").await;
    redis.restart().await;
    for app in [&a, &b] {
        await_breaker(app, "closed").await;
    }

    for (name, watcher) in [("a", &mut watcher_a), ("b", &mut watcher_b)] {
        // A member's view is the last update it received, in order.
        let mut view = Value::Null;
        let deadline = tokio::time::Instant::now() + WITHIN;
        while view != latest && tokio::time::Instant::now() < deadline {
            view = settle(watcher, view).await;
        }
        assert_eq!(
            view, latest,
            "replica {name}'s member ends on another content"
        );
    }
    for app in [&a, &b] {
        let reply = app.get_doc("lww").await;
        assert_eq!(reply.body["content"], latest);
    }
    a.await_pg_content("lww", &latest, WITHIN).await;
}

/// A save announces its append on the document's channel, and that notice, not the log reader's
/// poll (held off for a minute here), is what brings an update to the other replicas promptly —
/// also once Redis was killed and restarted, and the replicas listened and subscribed again.
#[tokio::test]
async fn updates_reach_another_replica_by_notice_also_after_redis_restarts() {
    const PROMPTLY: Duration = Duration::from_secs(3);
    let no_poll = ("DOCROOM__CACHE__LOG_POLL_MS", "60000");
    let mut redis = PrivateRedis::start().await;
    let a = TestApp::spawn(outage_options(&redis).env(no_poll.0, no_poll.1)).await;
    let b = TestApp::spawn(outage_replica(&a).env(no_poll.0, no_poll.1)).await;
    let mut writer = WsClient::connect(&a, "notice").await;
    let mut watcher = WsClient::connect(&b, "notice").await;
    // The first update may reach b by the read its subscription starts with; once it has, b's
    // subscription is in effect, and the next one can only come by notice.
    writer.update(json!({"n": 0}), "0").await;
    watcher
        .recv_where("the first update", |m| m["content"] == json!({"n": 0}))
        .await;

    arrives_within(PROMPTLY, &mut writer, &mut watcher, 1).await;

    redis.kill();
    for app in [&a, &b] {
        await_breaker(app, "open").await;
    }
    redis.restart().await;
    for app in [&a, &b] {
        await_breaker(app, "closed").await;
    }
    let channel = a.key("doc:notice:events");
    eventually(WITHIN, "both replicas subscribed again", async || {
        let (_, listening): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut a.redis().await)
            .await
            .map_err(|e| e.to_string())?;
        ensure!(listening == 2, "{listening} listening on {channel}");
        Ok(())
    })
    .await;
    arrives_within(PROMPTLY, &mut writer, &mut watcher, 2).await;
}

/// `writer` sends `{"n": n}`, and `watcher` (on another replica) receives it within `within`.
async fn arrives_within(within: Duration, writer: &mut WsClient, watcher: &mut WsClient, n: u32) {
    let content = json!({ "n": n });
    writer.update(content.clone(), &n.to_string()).await;
    let wanted = |m: &Value| m["type"] == "update" && m["content"] == content;
    tokio::time::timeout(within, watcher.recv_where("the update", wanted))
        .await
        .unwrap_or_else(|_| panic!("update {n} did not reach the other replica within {within:?}"));
}

/// The replicas of the Redis outage stories run their storage actors on an HTTP worker's thread
/// (the other stories: on a thread of their own), so both placements go through a Redis death.
fn outage_options(redis: &PrivateRedis) -> TestOptions {
    TestOptions::new()
        .storage_on_worker()
        .redis_url(redis.url())
        .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
        .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300)
}

fn outage_replica(a: &TestApp) -> TestOptions {
    let mut options = a.replica_options().storage_on_worker();
    for (k, v) in [
        ("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", "200"),
        ("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", "300"),
    ] {
        options = options.env(k, v);
    }
    options
}

/// Awareness travels between replicas too (SPEC §8): a state announced on one replica reaches
/// members on another, and is removed there when its connection ends.
#[tokio::test]
async fn awareness_announced_on_one_replica_is_seen_and_removed_on_another() {
    let a = TestApp::start().await;
    let b = a.replica().await;
    let alice = YClient::connect(&a, "cursors").await;
    let mut bob = YClient::connect(&b, "cursors").await;
    // bob's replica hears events once its room's channel subscription is in effect: a moment.
    tokio::time::sleep(Duration::from_millis(600)).await;

    alice.set_awareness(77, 1, &json!({"user": "alice", "cursor": 3}));
    bob.until("alice's cursor on replica b", |y| {
        y.awareness_of(77) == Some(json!({"user": "alice", "cursor": 3}))
    })
    .await;

    drop(alice);
    bob.until("alice's cursor removed on replica b", |y| {
        y.awareness_of(77).is_none()
    })
    .await;
}

/// A Yjs update is appended once, by the replica that accepted it: the other replica's room
/// applies the log entry and relays it to its members, and saves nothing of it.
#[tokio::test]
async fn an_update_shown_on_another_replica_is_appended_once() {
    use docroom_actors::doc::DocId;
    use docroom_actors::log::LogPos;
    use docroom_actors::storage::DocumentLog;

    let a = TestApp::start().await;
    let b = a.replica().await;
    let alice = YClient::connect(&a, "once").await;
    let mut bob = YClient::connect(&b, "once").await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    for word in ["<one>", "<two>", "<three>"] {
        alice.type_text(word);
        bob.until(word, |y| y.text().contains(word)).await;
    }
    // Long enough for a save b might make to land.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cache = crate::harness::storage::redis_cache(&a.prefix, "test");
    let doc = DocId::parse("once").unwrap();
    let read = cache.read_logs(&[(doc, LogPos::ZERO)]).await.unwrap();
    let entries = &read[0].1.entries;
    assert!(!entries.is_empty());
    let writers: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.replica.as_ref()).collect();
    assert_eq!(writers.len(), 1, "appended by {writers:?}");
}
