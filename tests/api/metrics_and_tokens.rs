//! What an operator's scraper and a client's token clock see: `/metrics` has every series from
//! the first scrape and exports durations as histograms (aggregatable across replicas), and a
//! client token is not accepted before its `nbf` (RFC 7519 §4.1.5).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::harness::{raw_request, TestApp, TestOptions, WsClient};

const SECRET: &str = "metrics-and-tokens-secret";

/// One scrape: every sample line as `series` (name and labels, as written) → value.
async fn scrape(app: &TestApp) -> (String, BTreeMap<String, f64>) {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 200, "GET /metrics: {}", reply.text);
    let samples = reply
        .text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    (reply.text, samples)
}

/// Asserts that each `(series, value)` is in the scrape with that value; lists every miss.
#[track_caller]
fn assert_samples(text: &str, samples: &BTreeMap<String, f64>, expected: &[(&str, f64)]) {
    let misses: Vec<String> = expected
        .iter()
        .filter(|(series, value)| samples.get(*series) != Some(value))
        .map(|(series, value)| format!("{series}: want {value}, got {:?}", samples.get(*series)))
        .collect();
    assert!(
        misses.is_empty(),
        "series missing or not at their starting value:\n{}\n--- scrape ---\n{text}",
        misses.join("\n")
    );
}

#[tokio::test]
async fn the_first_scrape_shows_every_series_at_its_starting_value() {
    // A paused flusher never runs by itself, so nothing but startup can have set its period.
    let app = TestApp::spawn(TestOptions::new().process().flusher_paused()).await;

    let (text, samples) = scrape(&app).await;

    assert_samples(
        &text,
        &samples,
        &[
            ("docroom_breaker_state", 0.0),
            ("docroom_connections", 0.0),
            ("docroom_rooms", 0.0),
            ("docroom_fallback_docs", 0.0),
            ("docroom_flusher_period_seconds", 3600.0),
            ("docroom_updates_total{kind=\"json\"}", 0.0),
            ("docroom_updates_total{kind=\"yjs\"}", 0.0),
            ("docroom_acks_total{stored=\"cache\"}", 0.0),
            ("docroom_acks_total{stored=\"fallback\"}", 0.0),
            ("docroom_acks_total{stored=\"duplicate\"}", 0.0),
            ("docroom_breaker_transitions_total{to=\"closed\"}", 0.0),
            ("docroom_breaker_transitions_total{to=\"half_open\"}", 0.0),
            ("docroom_breaker_transitions_total{to=\"open\"}", 0.0),
            ("docroom_docs_flushed_total", 0.0),
            ("docroom_docs_flush_failed_total", 0.0),
            ("docroom_docs_left_fresh_total", 0.0),
            ("docroom_redis_errors_total", 0.0),
            ("docroom_postgres_errors_total", 0.0),
            ("docroom_flush_duration_seconds_count", 0.0),
            ("docroom_shutdown_drain_seconds_count", 0.0),
            ("docroom_ack_latency_seconds_count", 0.0),
            ("docroom_broadcast_fanout_count", 0.0),
        ],
    );
    assert!(
        samples.contains_key("docroom_journal_bytes"),
        "no docroom_journal_bytes in the first scrape:\n{text}"
    );
}

#[tokio::test]
async fn durations_are_histograms_with_buckets_and_no_summary_quantiles() {
    let app = TestApp::spawn(TestOptions::new().process().flusher_paused()).await;
    let mut editor = WsClient::connect(&app, "metrics-doc").await;
    let mut watcher = WsClient::connect(&app, "metrics-doc").await;

    for n in 0..5 {
        let ack = editor.update(json!({"n": n}), &format!("m{n}")).await;
        assert_eq!(ack["type"], "ack", "update {n}: {ack}");
    }
    watcher
        .recv_where("the last update", |m| m["content"] == json!({"n": 4}))
        .await;
    let flushed = app.admin().flush_now().await;
    assert!(flushed["flushed"].as_u64() >= Some(1), "flush: {flushed}");

    let (text, samples) = scrape(&app).await;

    let quantiles: Vec<&str> = text.lines().filter(|l| l.contains("quantile=")).collect();
    assert!(
        quantiles.is_empty(),
        "summary quantiles cannot be aggregated across replicas:\n{}",
        quantiles.join("\n")
    );
    for histogram in [
        "docroom_flush_duration_seconds",
        "docroom_ack_latency_seconds",
        "docroom_broadcast_fanout",
    ] {
        let finite_buckets = samples
            .keys()
            .filter(|s| s.starts_with(&format!("{histogram}_bucket{{le=\"")))
            .filter(|s| !s.contains("+Inf"))
            .count();
        assert!(
            finite_buckets >= 3,
            "{histogram} has {finite_buckets} finite buckets:\n{text}"
        );
        let inf = samples.get(&format!("{histogram}_bucket{{le=\"+Inf\"}}"));
        let count = samples.get(&format!("{histogram}_count"));
        assert!(
            inf.is_some() && inf == count,
            "{histogram}: +Inf bucket {inf:?} must equal _count {count:?}"
        );
    }
    let count = |name: &str| samples.get(&format!("{name}_count")).copied();
    assert_eq!(
        count("docroom_ack_latency_seconds"),
        Some(5.0),
        "one ack latency per acknowledged update:\n{text}"
    );
    assert!(
        count("docroom_flush_duration_seconds") >= Some(1.0),
        "the flush was not timed:\n{text}"
    );
    // A room records to series it looked up once, when it opened: they are the exported ones.
    assert_eq!(
        samples.get("docroom_updates_total{kind=\"json\"}"),
        Some(&5.0),
        "five updates applied:\n{text}"
    );
    assert_eq!(
        count("docroom_broadcast_fanout"),
        Some(5.0),
        "one fan-out per update:\n{text}"
    );
    assert!(
        count("docroom_save_duration_seconds") >= Some(1.0),
        "no save was timed:\n{text}"
    );
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A read-write token for `docs`, valid for an hour, not before `nbf`.
fn token_not_before(docs: &[&str], nbf: i64) -> String {
    let claims = json!({"docs": docs, "scope": "rw", "exp": now() + 3600, "nbf": nbf});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign the token")
}

async fn app_with_tokens() -> TestApp {
    TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await
}

async fn put_with(app: &TestApp, doc: &str, bearer: &str, content: &Value) -> (u16, String) {
    let reply = raw_request(
        app.addr,
        "PUT",
        &format!("/docs/{doc}"),
        &[
            ("Authorization", bearer),
            ("Content-Type", "application/json"),
        ],
        &content.to_string(),
    )
    .await;
    (reply.status, reply.text)
}

#[tokio::test]
async fn a_token_whose_nbf_lies_in_the_future_gets_401_on_put_and_on_upgrade() {
    let app = app_with_tokens().await;
    let early = format!(
        "Bearer {}",
        token_not_before(&["nbf-doc", "nbf-yjs"], now() + 600)
    );
    let auth = [("Authorization", early.as_str())];

    let (status, body) = put_with(&app, "nbf-doc", &early, &json!({"too": "early"})).await;
    assert_eq!(status, 401, "PUT before nbf: {body}");
    for path in ["/docs/nbf-doc/ws", "/yjs/nbf-yjs"] {
        let refused = WsClient::open(&app, path, &auth)
            .await
            .err()
            .unwrap_or_else(|| panic!("{path} upgraded with a token not valid yet"));
        assert_eq!(refused.status, 401, "{path}: {}", refused.body);
    }
    // Nothing of it was stored: a token valid now finds no document.
    let valid = format!("Bearer {}", token_not_before(&["nbf-doc"], now() - 60));
    let read = raw_request(
        app.addr,
        "GET",
        "/docs/nbf-doc",
        &[("Authorization", &valid)],
        "",
    )
    .await;
    assert_eq!(read.status, 404, "GET after the refused PUT: {}", read.text);
}

#[tokio::test]
async fn a_token_whose_nbf_has_passed_is_accepted() {
    let app = app_with_tokens().await;
    let valid = format!(
        "Bearer {}",
        token_not_before(&["nbf-doc", "nbf-yjs"], now() - 60)
    );
    let auth = [("Authorization", valid.as_str())];

    let content = json!({"on": "time"});
    let (status, body) = put_with(&app, "nbf-doc", &valid, &content).await;
    assert_eq!(status, 200, "PUT after nbf: {body}");
    let mut client = WsClient::open(&app, "/docs/nbf-doc/ws", &auth)
        .await
        .unwrap_or_else(|r| panic!("upgrade after nbf refused: {} {}", r.status, r.body));
    let snapshot = client.recv_json().await;
    assert_eq!(snapshot["content"], content, "{snapshot}");
    assert!(
        WsClient::open(&app, "/yjs/nbf-yjs", &auth).await.is_ok(),
        "yjs upgrade after nbf refused"
    );
}
