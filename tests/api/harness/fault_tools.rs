//! The fault tools checked on their own, so a fault-injection test that fails is failing on the
//! service, not on a proxy that did not cut or a Redis that did not stop.

use std::time::Duration;

use tokio::time::timeout;

use super::proxy::Proxy;
use super::redis_server::PrivateRedis;
use super::storage::redis_connect;

async fn pg_through(proxy: &Proxy) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!("postgres://postgres@{}/postgres", proxy.addr);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[tokio::test]
async fn a_cut_proxy_drops_connections_and_refuses_new_ones_until_restored() {
    let proxy = Proxy::to_postgres();
    let open = pg_through(&proxy).await.expect("connect through the proxy");
    open.simple_query("SELECT 1")
        .await
        .expect("query through the proxy");

    proxy.cut();
    let bound = Duration::from_secs(5);
    let dropped = timeout(bound, open.simple_query("SELECT 1")).await;
    assert!(
        matches!(dropped, Ok(Err(_))),
        "an open connection survived the cut"
    );
    let refused = timeout(bound, pg_through(&proxy)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a new connection got through the cut"
    );

    proxy.restore();
    let again = pg_through(&proxy).await.expect("connect after restore");
    again
        .simple_query("SELECT 1")
        .await
        .expect("query after restore");

    // Stalled: nothing answers, nothing is closed; restored: the same connection carries on.
    proxy.stall();
    let stalled = timeout(Duration::from_millis(300), again.simple_query("SELECT 1")).await;
    assert!(stalled.is_err(), "a stalled proxy answered");
    proxy.restore();
    again
        .simple_query("SELECT 2")
        .await
        .expect("the stalled connection resumes");
}

#[tokio::test]
async fn a_private_redis_can_be_paused_killed_and_restarted_empty() {
    let mut redis = PrivateRedis::start().await;
    let mut con = redis_connect(&redis.url()).await.unwrap();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async::<()>(&mut con)
        .await
        .unwrap();

    redis.pause();
    let get = redis::cmd("GET").arg("k").clone();
    let paused = timeout(
        Duration::from_millis(300),
        get.query_async::<String>(&mut con),
    )
    .await;
    assert!(!matches!(paused, Ok(Ok(_))), "a paused redis answered");
    redis.resume();
    let mut con = redis_connect(&redis.url()).await.unwrap();
    let value: String = get.query_async(&mut con).await.unwrap();
    assert_eq!(value, "v");

    redis.kill();
    assert!(
        redis_connect(&redis.url()).await.is_err(),
        "a killed redis accepted a connection"
    );
    redis.restart().await;
    let mut con = redis_connect(&redis.url()).await.unwrap();
    let value: Option<String> = get.query_async(&mut con).await.unwrap();
    assert_eq!(value, None, "a restarted redis kept its data");
}
