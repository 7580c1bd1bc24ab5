//! PostgreSQL unreachable (a cut proxy between the service and the shared server): the flusher
//! backs off, nothing acknowledged is lost, and everything lands once the database is back.

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    assert_fields, content_hash, ensure, eventually, Proxy, TestApp, TestOptions, WsClient,
};

/// The harness's scaled flusher periods: base, after one error, after two or more.
const BASE_MS: u64 = 200;
const ERROR_MS: u64 = 600;
const MAX_MS: u64 = 1200;
/// The shrunken cache TTL of the outage test, in seconds.
const TTL_SECS: u64 = 1;

#[tokio::test]
async fn a_failing_flush_backs_off_and_recovers_when_the_database_returns() {
    let proxy = Proxy::to_postgres();
    let app = TestApp::spawn(TestOptions::new().database_through(proxy.addr)).await;
    let mut client = WsClient::connect(&app, "journal").await;
    assert_fields(&app.admin().flusher().await, json!({"period_ms": BASE_MS}));

    proxy.cut();
    let content = json!({"entry": "written while the database is down"});
    let ack = client.update(content.clone(), "1").await;
    assert_fields(&ack, json!({"stored": "cache"}));

    // Every observation must match the schedule; the test ends once two flushes have failed.
    let mut seen = Vec::new();
    eventually(
        Duration::from_secs(30),
        "two consecutive failed flushes",
        async || {
            let flusher = app.admin().flusher().await;
            let errors = flusher["consecutive_errors"]
                .as_u64()
                .expect("consecutive_errors");
            let period = flusher["period_ms"].as_u64().expect("period_ms");
            let expected = match errors {
                0 => BASE_MS,
                1 => ERROR_MS,
                _ => MAX_MS,
            };
            assert_eq!(
                period, expected,
                "period after {errors} consecutive errors: {flusher}"
            );
            if errors > 0 {
                assert!(
                    flusher["last_error"].is_string(),
                    "no last_error: {flusher}"
                );
                assert!(flusher["pending_docs"].as_u64() >= Some(1), "{flusher}");
            }
            if seen.last() != Some(&(errors, period)) {
                seen.push((errors, period));
            }
            ensure!(errors >= 2, "schedule so far {seen:?}");
            Ok(())
        },
    )
    .await;
    assert!(
        seen.contains(&(1, ERROR_MS)),
        "never saw one error and {ERROR_MS} ms: {seen:?}"
    );
    assert_eq!(
        app.pg_content("journal").await,
        None,
        "written through a cut proxy?"
    );

    proxy.restore();
    eventually(
        Duration::from_secs(30),
        "the flusher to recover",
        async || {
            let flusher = app.admin().flusher().await;
            ensure!(
                flusher["consecutive_errors"] == 0 && flusher["period_ms"] == BASE_MS,
                "flusher is {flusher}"
            );
            ensure!(
                !app.is_modified("journal").await,
                "journal still in modifiedDocs"
            );
            Ok(())
        },
    )
    .await;
    let row = app
        .pg_row("journal")
        .await
        .expect("the document reached PostgreSQL");
    assert_eq!(row.content, Some(content.clone()));
    assert_eq!(row.content_hash, content_hash(&content));
}

#[tokio::test]
async fn content_outlives_its_cache_ttl_while_the_database_is_down() {
    let proxy = Proxy::to_postgres();
    // A TTL (1 s) shorter than the longest flusher period (1.2 s): the cached copy expires for
    // sure, so what reaches PostgreSQL must come from the rooms, which hold the content until
    // PostgreSQL has it. The outage lasts more than twice the TTL.
    let options = TestOptions::new()
        .database_through(proxy.addr)
        .env("DOCROOM__CACHE__TTL_SECS", TTL_SECS);
    let app = TestApp::spawn(options).await;
    let mut stays = WsClient::connect(&app, "stays").await;
    let mut leaves = WsClient::connect(&app, "leaves").await;
    // Rooms open before the outage: a room cannot load a document while PostgreSQL is down.
    let watcher = WsClient::connect(&app, "pushed").await;

    proxy.cut();
    let kept = json!({"who": "a client that stays connected"});
    let left = json!({"who": "a client that leaves during the outage"});
    let pushed = json!({"who": "a PUT, then its room's only member vanishes"});
    stays.update(kept.clone(), "s").await;
    leaves.update(left.clone(), "l").await;
    let put = app.put_doc("pushed", &pushed).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let ttl = app.redis_pttl("doc:pushed:temp").await;
    assert!(
        (1..=TTL_SECS as i64 * 1000).contains(&ttl),
        "the {TTL_SECS} s TTL is not in effect: {ttl} ms"
    );
    leaves.close().await;
    drop(watcher);

    // The outage outlasts the cache TTL twice over: the fault itself, not a wait for a result.
    tokio::time::sleep(Duration::from_millis(2 * TTL_SECS * 1000 + 1000)).await;
    proxy.restore();

    let expected = [("stays", &kept), ("leaves", &left), ("pushed", &pushed)];
    eventually(
        Duration::from_secs(30),
        "every document persisted",
        async || {
            for (doc, content) in expected {
                let row = app.pg_row(doc).await;
                ensure!(
                    row.as_ref().and_then(|r| r.content.as_ref()) == Some(content),
                    "{doc} row is {row:?}"
                );
                ensure!(
                    row.unwrap().content_hash == content_hash(content),
                    "{doc} hash"
                );
            }
            Ok(())
        },
    )
    .await;
    for (doc, content) in expected {
        let got = app.get_doc(doc).await;
        assert_fields(&got.body, json!({"content": content}));
    }
}

#[tokio::test]
async fn a_document_waiting_for_the_database_keeps_its_cache_entry_through_a_sigkill() {
    // The open room holds the newest copy, so flushes do not read the document back from Redis;
    // each failed flush must still keep its cache entry alive, or a SIGKILL after an outage
    // longer than the TTL would lose an acknowledged update. The TTL (3 s) outlasts the longest
    // flusher period (1.2 s) so refreshes can keep up; the outage lasts three TTLs.
    const KEPT_TTL_SECS: u64 = 3;
    let proxy = Proxy::to_postgres();
    let options = TestOptions::new()
        .database_through(proxy.addr)
        .env("DOCROOM__CACHE__TTL_SECS", KEPT_TTL_SECS);
    let mut app = TestApp::spawn(options.process()).await;
    let mut client = WsClient::connect(&app, "waiting").await;

    proxy.cut();
    let content = json!({"who": "acknowledged while the database is down"});
    let ack = client.update(content.clone(), "w").await;
    assert_fields(&ack, json!({"stored": "cache"}));
    tokio::time::sleep(Duration::from_secs(3 * KEPT_TTL_SECS)).await;
    let ttl = app.redis_pttl("doc:waiting:temp").await;
    assert!(
        ttl > 0,
        "the cache entry expired while waiting (PTTL {ttl})"
    );
    assert!(
        app.is_modified("waiting").await,
        "no longer in modifiedDocs"
    );

    app.sigkill().await;
    drop(client);
    proxy.restore();
    app.restart().await;
    eventually(
        Duration::from_secs(30),
        "the document persisted after the restart",
        async || {
            let row = app.pg_row("waiting").await;
            ensure!(
                row.as_ref().and_then(|r| r.content.as_ref()) == Some(&content),
                "row is {row:?}"
            );
            Ok(())
        },
    )
    .await;
}

/// Yjs flushes append updates (SPEC §6): a typist keeps typing while the connection to
/// PostgreSQL is cut and restored again and again, so flushes die in the middle of their
/// transaction; afterwards PostgreSQL holds every token (state plus appended updates), and a
/// cold read of the document, Redis emptied, renders them all.
#[tokio::test]
async fn yjs_updates_typed_across_database_cuts_all_reach_postgres() {
    use crate::harness::yclient::{text_of_state, YClient};

    let proxy = Proxy::to_postgres();
    let app = TestApp::spawn(TestOptions::new().database_through(proxy.addr)).await;
    let alice = YClient::connect(&app, "typed").await;
    let mut tokens = Vec::new();
    for i in 0..40 {
        match i % 10 {
            3 => proxy.cut(),
            7 => proxy.restore(),
            _ => {}
        }
        let token = format!("<{i}>");
        alice.type_text(&token);
        tokens.push(token);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    proxy.restore();

    eventually(
        Duration::from_secs(30),
        "every token in PostgreSQL",
        async || {
            let text = app
                .pg_yjs_state("typed")
                .await
                .map(|s| text_of_state(&s))
                .unwrap_or_default();
            let missing: Vec<&String> = tokens.iter().filter(|t| !text.contains(*t)).collect();
            ensure!(missing.is_empty(), "missing {missing:?}");
            Ok(())
        },
    )
    .await;
    drop(alice);
    eventually(Duration::from_secs(10), "the room to retire", async || {
        ensure!(app.admin().rooms().await.is_empty(), "a room is open");
        Ok(())
    })
    .await;
    app.redis_delete_all().await;
    let cold = app.get_doc("typed").await;
    assert_eq!(cold.status, 200, "{}", cold.text);
    for t in &tokens {
        assert!(
            cold.text.contains(t.as_str()),
            "{t} missing from {}",
            cold.text
        );
    }
}
