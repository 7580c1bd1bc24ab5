//! The operator's hand on the breaker (`POST /admin/breaker`): forcing it open sends writes to
//! the journaled fallback (Redis maintenance), forcing it closed or handing it back (`auto`)
//! sends them to Redis again; only the admin token may do either.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    assert_fields, content_hash, ensure, eventually, PrivateRedis, TestApp, TestOptions, WsClient,
};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn forcing_the_breaker_moves_writes_between_redis_and_the_fallback() {
    let app = TestApp::start().await;
    let mut client = WsClient::connect(&app, "notes").await;
    let first = json!({"text": "before maintenance"});
    assert_fields(
        &client.update(first.clone(), "1").await,
        json!({"stored": "cache"}),
    );

    let forced = app.admin().set_breaker("open").await;
    assert_eq!(forced.status, 200, "{}", forced.text);
    assert_fields(&forced.body, json!({"state": "open", "forced": true}));
    let during = json!({"text": "during maintenance"});
    assert_fields(
        &client.update(during.clone(), "2").await,
        json!({"stored": "fallback", "hash": content_hash(&during)}),
    );
    let put = app.put_doc("memo", &json!({"by": "http"})).await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_fields(&put.body, json!({"stored": "fallback"}));
    assert_eq!(
        cached(&app, "notes").await,
        Some(first.clone()),
        "a write reached redis through a breaker forced open"
    );
    assert_eq!(app.redis_get("doc:memo:temp").await, None);
    let breaker = app.admin().breaker().await;
    assert_fields(&breaker, json!({"state": "open", "forced": true}));
    assert!(breaker["fallback_docs"].as_u64() >= Some(2), "{breaker}");
    // Forced open means no probe either: still open past the open period.
    assert_eq!(
        client
            .update(json!({"text": "still maintenance"}), "3")
            .await["stored"],
        "fallback"
    );

    let forced = app.admin().set_breaker("closed").await;
    assert_eq!(forced.status, 200, "{}", forced.text);
    assert_fields(&forced.body, json!({"state": "closed", "forced": true}));
    await_fallback_empty(&app).await;
    let after = json!({"text": "after maintenance"});
    assert_fields(
        &client.update(after.clone(), "4").await,
        json!({"stored": "cache"}),
    );
    assert_eq!(cached(&app, "notes").await, Some(after));
    assert_eq!(cached(&app, "memo").await, Some(json!({"by": "http"})));

    let auto = app.admin().set_breaker("auto").await;
    assert_eq!(auto.status, 200, "{}", auto.text);
    assert_fields(&auto.body, json!({"state": "closed", "forced": false}));
    let last = json!({"text": "automatic again"});
    assert_fields(
        &client.update(last.clone(), "5").await,
        json!({"stored": "cache"}),
    );
    let flushed = app.admin().flush_now().await;
    assert_fields(&flushed, json!({"failed": 0}));
    assert_eq!(app.pg_content("notes").await, Some(last));
    assert_eq!(app.pg_content("memo").await, Some(json!({"by": "http"})));
}

#[tokio::test]
async fn a_breaker_forced_closed_with_redis_dead_still_acknowledges_from_the_fallback() {
    let mut redis = PrivateRedis::start().await;
    let options = TestOptions::new()
        .redis_url(redis.url())
        .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
        .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300);
    let app = TestApp::spawn(options).await;
    let mut client = WsClient::connect(&app, "notes").await;
    client.update(json!({"n": 0}), "0").await;

    let forced = app.admin().set_breaker("closed").await;
    assert_eq!(forced.status, 200, "{}", forced.text);
    redis.kill();
    // The breaker cannot open, yet editing goes on: a save that fails on Redis lands in the
    // journal (and, while the journal holds the document, goes straight there), acknowledged
    // all the same, for as long as Redis stays dead (here about two seconds).
    const EDITS: u64 = 20;
    for n in 1..=EDITS {
        let ack = client.update(json!({"n": n}), &n.to_string()).await;
        assert_fields(&ack, json!({"stored": "fallback"}));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let breaker = app.admin().breaker().await;
    assert_fields(&breaker, json!({"state": "closed", "forced": true}));

    // Handed back, it opens on the next failures; with Redis back it closes again.
    let auto = app.admin().set_breaker("auto").await;
    assert_eq!(auto.status, 200, "{}", auto.text);
    let mut n = EDITS;
    eventually(WITHIN, "the breaker to open by itself", async || {
        n += 1;
        let ack = client.update(json!({"n": n}), &n.to_string()).await;
        ensure!(ack["stored"] == "fallback", "ack {ack}");
        let breaker = app.admin().breaker().await;
        ensure!(breaker["state"] == "open", "breaker {breaker}");
        ensure!(breaker["forced"] == false, "breaker {breaker}");
        Ok(())
    })
    .await;
    redis.restart().await;
    eventually(WITHIN, "acks from redis again", async || {
        n += 1;
        let ack = client.update(json!({"n": n}), &n.to_string()).await;
        ensure!(ack["stored"] == "cache", "ack {ack}");
        Ok(())
    })
    .await;
    assert_fields(&app.admin().flush_now().await, json!({"failed": 0}));
    assert_eq!(app.pg_content("notes").await, Some(json!({"n": n})));
}

#[tokio::test]
async fn the_breaker_answers_only_the_admin_token() {
    let app = TestApp::start().await;
    let token = app.admin_token.clone().unwrap();
    for authorization in [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {token}x")),
        Some(token.clone()),
    ] {
        let admin = app.admin_as(authorization.as_deref());
        let read = admin.get("breaker").await;
        assert_eq!(
            read.status, 401,
            "GET with {authorization:?}: {}",
            read.text
        );
        for state in ["open", "closed", "auto"] {
            let write = admin.post("breaker", &json!({ "state": state })).await;
            assert_eq!(
                write.status, 401,
                "POST {state} with {authorization:?}: {}",
                write.text
            );
        }
    }
    assert_fields(
        &app.admin().breaker().await,
        json!({"state": "closed", "forced": false}),
    );
    assert_eq!(app.put_doc("doc", &json!(1)).await.body["stored"], "cache");

    for body in [json!({"state": "sideways"}), json!({}), json!("open")] {
        let reply = app.admin().post("breaker", &body).await;
        assert_eq!(reply.status, 400, "POST {body}: {}", reply.text);
    }
    assert_fields(
        &app.admin().breaker().await,
        json!({"state": "closed", "forced": false}),
    );
}

/// The JSON content Redis caches for `doc`.
async fn cached(app: &TestApp, doc: &str) -> Option<Value> {
    let text = app.redis_get(&format!("doc:{doc}:temp")).await?;
    Some(serde_json::from_str(&text).expect("cached content is JSON"))
}

async fn await_fallback_empty(app: &TestApp) {
    eventually(WITHIN, "the fallback moved to redis", async || {
        let breaker = app.admin().breaker().await;
        ensure!(breaker["fallback_docs"] == 0, "breaker {breaker}");
        Ok(())
    })
    .await;
}
