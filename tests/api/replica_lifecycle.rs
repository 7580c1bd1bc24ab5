//! Replica heartbeats (SPEC §3 `GET /admin/replicas`, §6 `replica:{id}`): replicas on one key
//! prefix see each other with their rooms and connections; a killed one drops out once its
//! heartbeat expires, a stopped one at once; while Redis is out of reach a replica lists itself.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{ensure, eventually, TestApp, TestOptions, WsClient};

const WITHIN: Duration = Duration::from_secs(20);

/// A replica named `id` on `prefix` (`None`: its own), beating every 100 ms with `ttl_ms`.
fn replica(id: &str, prefix: Option<&str>, ttl_ms: u64) -> TestOptions {
    let opts = TestOptions::new()
        .env("DOCROOM_REPLICA_ID", id)
        .env("DOCROOM__REPLICAS__HEARTBEAT_INTERVAL_MS", 100)
        .env("DOCROOM__REPLICAS__HEARTBEAT_TTL_MS", ttl_ms);
    match prefix {
        Some(prefix) => opts.env("DOCROOM__CACHE__KEY_PREFIX", prefix),
        None => opts,
    }
}

/// `(replica, rooms, connections)` of every entry, after checking each entry's shape.
fn summary(replicas: &[Value]) -> Result<Vec<(String, u64, u64)>, String> {
    replicas
        .iter()
        .map(|r| {
            let last_seen = r["last_seen"].as_str().unwrap_or_default();
            ensure!(
                chrono::DateTime::parse_from_rfc3339(last_seen).is_ok(),
                "last_seen is not RFC 3339: {r}"
            );
            let (Some(id), Some(rooms), Some(conns)) = (
                r["replica"].as_str(),
                r["rooms"].as_u64(),
                r["connections"].as_u64(),
            ) else {
                return Err(format!("not a replica entry: {r}"));
            };
            Ok((id.to_owned(), rooms, conns))
        })
        .collect()
}

async fn await_replicas(app: &TestApp, want: &[(&str, u64, u64)]) {
    let want: Vec<(String, u64, u64)> = want
        .iter()
        .map(|(i, r, c)| (i.to_string(), *r, *c))
        .collect();
    eventually(
        WITHIN,
        &format!("GET /admin/replicas to list {want:?}"),
        async || {
            let got = summary(&app.admin().replicas().await)?;
            ensure!(got == want, "listed {got:?}");
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn replicas_on_one_prefix_list_each_other_and_a_killed_one_leaves_within_its_ttl() {
    let a = TestApp::spawn(replica("replica-a", None, 1_500)).await;
    // A process, so the kill is a SIGKILL: an in-process app's threads wind down after the drop
    // and may write one more heartbeat.
    let mut b = TestApp::spawn(replica("replica-b", Some(&a.prefix), 1_500).process()).await;
    let _on_a = WsClient::connect(&a, "doc-on-a").await;
    let _on_b = [
        WsClient::connect(&b, "doc-on-b").await,
        WsClient::connect(&b, "doc-on-b").await,
        WsClient::connect(&b, "other-on-b").await,
    ];

    let both = [("replica-a", 1, 1), ("replica-b", 2, 3)];
    await_replicas(&a, &both).await;
    await_replicas(&b, &both).await;
    assert!(
        a.redis_pttl("replica:replica-b").await > 0,
        "the heartbeat has a ttl"
    );

    // No drain, no cleanup of its heartbeat.
    drop(_on_b);
    b.sigkill().await;

    await_replicas(&a, &[("replica-a", 1, 1)]).await;
    assert_eq!(a.redis_get("replica:replica-b").await, None);
}

#[tokio::test]
async fn a_replica_stopped_with_sigterm_deletes_its_heartbeat_at_once() {
    // A ttl far longer than the test: only the replica's own delete can remove the key.
    let a = TestApp::spawn(replica("replica-a", None, 600_000)).await;
    let mut b = TestApp::spawn(replica("replica-b", Some(&a.prefix), 600_000).process()).await;
    await_replicas(&a, &[("replica-a", 0, 0), ("replica-b", 0, 0)]).await;

    let status = b.sigterm().await;

    assert!(status.success(), "{status}");
    assert_eq!(a.redis_get("replica:replica-b").await, None);
    let listed = summary(&a.admin().replicas().await).unwrap();
    assert_eq!(listed, vec![("replica-a".to_owned(), 0, 0)]);
}

#[tokio::test]
async fn with_the_breaker_open_a_replica_lists_itself_alone() {
    let a = TestApp::spawn(replica("replica-a", None, 600_000)).await;
    let _b = TestApp::spawn(replica("replica-b", Some(&a.prefix), 600_000)).await;
    let _client = WsClient::connect(&a, "doc").await;
    await_replicas(&a, &[("replica-a", 1, 1), ("replica-b", 0, 0)]).await;

    let forced = a.admin().set_breaker("open").await;
    assert_eq!(forced.status, 200, "{}", forced.text);

    // Redis still holds b's heartbeat; a does not ask Redis while its breaker is open.
    assert!(a.redis_get("replica:replica-b").await.is_some());
    let alone = summary(&a.admin().replicas().await).unwrap();
    assert_eq!(alone, vec![("replica-a".to_owned(), 1, 1)]);

    a.admin().set_breaker("auto").await;
    await_replicas(&a, &[("replica-a", 1, 1), ("replica-b", 0, 0)]).await;
}

#[tokio::test]
async fn the_replicas_route_needs_the_admin_token() {
    let app = TestApp::start().await;

    let refused = app.admin_as(Some("Bearer wrong")).get("replicas").await;

    assert_eq!(refused.status, 401, "{}", refused.text);
    let listed = app.admin().replicas().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["connections"], json!(0));
}
