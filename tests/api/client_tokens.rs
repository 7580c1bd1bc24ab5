//! SPEC §3 "Client tokens": with `DOCROOM_JWT_SECRET` set, every document route needs an HS256
//! JWT (`Authorization: Bearer` or `?token=`) whose `docs` cover the document; `ro` tokens read
//! and receive but never write; a token that expires closes its open sessions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

mod expiry;
mod read_only_yjs;

use crate::harness::{assert_fields, raw_request, Frame, TestApp, TestOptions, WsClient};

const SECRET: &str = "client-token-test-secret";

/// The four document routes, as raw requests (method, target suffix after the id, headers, body).
const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs any claims with `secret` and `alg`.
fn sign_with(claims: &Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign the token")
}

/// A valid token for `docs` with `scope`, expiring in an hour.
fn token(docs: &[&str], scope: &str) -> String {
    token_expiring(docs, scope, now() + 3600)
}

fn token_expiring(docs: &[&str], scope: &str, exp: i64) -> String {
    let claims = json!({"docs": docs, "scope": scope, "exp": exp, "sub": "tester"});
    sign_with(&claims, SECRET, Algorithm::HS256)
}

async fn app_with_tokens() -> TestApp {
    TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await
}

/// The four document routes for `json_doc` / `yjs_doc`, each sent raw with `auth` headers and
/// an optional query; answers (route, status, body).
async fn every_route(
    app: &TestApp,
    json_doc: &str,
    yjs_doc: &str,
    auth: &[(&str, &str)],
    query: &str,
) -> Vec<(String, u16, String)> {
    let mut upgrade: Vec<(&str, &str)> = UPGRADE.to_vec();
    upgrade.extend_from_slice(auth);
    let mut put: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    put.extend_from_slice(auth);
    let requests = [
        ("GET", format!("/docs/{json_doc}{query}"), auth.to_vec(), ""),
        ("PUT", format!("/docs/{json_doc}{query}"), put, r#"{"x":1}"#),
        (
            "GET",
            format!("/docs/{json_doc}/ws{query}"),
            upgrade.clone(),
            "",
        ),
        ("GET", format!("/yjs/{yjs_doc}{query}"), upgrade, ""),
    ];
    let mut out = Vec::new();
    for (method, target, headers, body) in requests {
        let reply = raw_request(app.addr, method, &target, &headers, body).await;
        out.push((format!("{method} {target}"), reply.status, reply.text));
    }
    out
}

/// A JSON-protocol client that sends `headers` (e.g. a bearer token), reading the snapshot.
async fn connect_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> WsClient {
    let mut client = WsClient::open(app, path, headers)
        .await
        .unwrap_or_else(|r| panic!("upgrade of {path} refused: {} {}", r.status, r.body));
    let snapshot = client.recv_json().await;
    assert_eq!(snapshot["type"], "snapshot", "first message on {path}");
    client.snapshot = snapshot;
    client
}

#[tokio::test]
async fn missing_malformed_badly_signed_or_expired_tokens_get_401_before_any_upgrade() {
    let app = app_with_tokens().await;
    // The document exists, so a route that forgot the check would answer 200, not 404.
    let writer = format!("Bearer {}", token(&["secret-doc"], "rw"));
    let stored = raw_request(
        app.addr,
        "PUT",
        "/docs/secret-doc",
        &[
            ("Authorization", &writer),
            ("Content-Type", "application/json"),
        ],
        r#"{"classified":true}"#,
    )
    .await;
    assert_eq!(
        stored.status, 200,
        "PUT with a valid token: {}",
        stored.text
    );

    let docs = ["secret-doc", "secret-yjs"];
    let in_an_hour = now() + 3600;
    let bad_tokens: Vec<(&str, String)> = vec![
        ("not a JWT", "not-a-jwt".into()),
        ("three dots of nothing", "a.b.c".into()),
        (
            "wrong signature",
            sign_with(
                &json!({"docs": docs, "scope": "rw", "exp": in_an_hour}),
                "some-other-secret",
                Algorithm::HS256,
            ),
        ),
        ("expired", token_expiring(&docs, "rw", now() - 120)),
        (
            "no exp",
            sign_with(
                &json!({"docs": docs, "scope": "rw"}),
                SECRET,
                Algorithm::HS256,
            ),
        ),
        (
            "not HS256",
            sign_with(
                &json!({"docs": docs, "scope": "rw", "exp": in_an_hour}),
                SECRET,
                Algorithm::HS512,
            ),
        ),
        (
            "no docs claim",
            sign_with(
                &json!({"scope": "rw", "exp": in_an_hour}),
                SECRET,
                Algorithm::HS256,
            ),
        ),
    ];

    let mut failures = Vec::new();
    let mut check = |case: &str, results: Vec<(String, u16, String)>| {
        for (route, status, body) in results {
            if status != 401 {
                failures.push(format!("{case}: {route} -> {status} {body}"));
            } else if !body.contains("unauthorized") {
                failures.push(format!(
                    "{case}: {route} -> 401 without a JSON reason: {body}"
                ));
            }
        }
    };

    check(
        "no token",
        every_route(&app, docs[0], docs[1], &[], "").await,
    );
    check(
        "Basic instead of Bearer",
        every_route(
            &app,
            docs[0],
            docs[1],
            &[("Authorization", "Basic dXNlcjpwdw==")],
            "",
        )
        .await,
    );
    check(
        "empty bearer",
        every_route(&app, docs[0], docs[1], &[("Authorization", "Bearer ")], "").await,
    );
    for (case, bad) in &bad_tokens {
        let header = format!("Bearer {bad}");
        check(
            &format!("{case} (header)"),
            every_route(&app, docs[0], docs[1], &[("Authorization", &header)], "").await,
        );
        check(
            &format!("{case} (query)"),
            every_route(&app, docs[0], docs[1], &[], &format!("?token={bad}")).await,
        );
    }
    assert!(
        failures.is_empty(),
        "requests without a usable token were not refused with 401:\n{}",
        failures.join("\n")
    );

    // None of that reached the document.
    let read = raw_request(
        app.addr,
        "GET",
        "/docs/secret-doc",
        &[("Authorization", &writer)],
        "",
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["content"], json!({"classified": true}));
}

#[tokio::test]
async fn a_valid_token_for_another_document_gets_403() {
    let app = app_with_tokens().await;
    let other = format!("Bearer {}", token(&["not-this-one", "team7-*"], "rw"));
    let results = every_route(
        &app,
        "this-one",
        "this-yjs",
        &[("Authorization", &other)],
        "",
    )
    .await;
    for (route, status, body) in results {
        assert_eq!(status, 403, "{route}: {body}");
        assert!(body.contains("forbidden"), "{route}: {body}");
    }
    let rejection = WsClient::open(&app, "/docs/this-one/ws", &[("Authorization", &other)])
        .await
        .err()
        .expect("a token for other documents opened this one");
    assert_eq!(rejection.status, 403, "{}", rejection.body);
}

#[tokio::test]
async fn prefix_entries_cover_the_ids_that_start_with_them_and_no_others() {
    let app = app_with_tokens().await;
    let team = format!("Bearer {}", token(&["team7-*", "exact"], "rw"));
    let auth = [("Authorization", team.as_str())];

    for doc in ["team7-notes", "team7-", "team7-a.b_c", "exact"] {
        let put = raw_request(
            app.addr,
            "PUT",
            &format!("/docs/{doc}"),
            &[auth[0], ("Content-Type", "application/json")],
            &json!({"doc": doc}).to_string(),
        )
        .await;
        assert_eq!(put.status, 200, "PUT {doc}: {}", put.text);
        let client = connect_with(&app, &format!("/docs/{doc}/ws"), &auth).await;
        assert_fields(
            &client.snapshot,
            json!({"doc": doc, "content": {"doc": doc}}),
        );
    }
    let yjs = WsClient::open(&app, "/yjs/team7-yjs", &auth).await;
    assert!(yjs.is_ok(), "/yjs/team7-yjs refused with a team7-* token");
    for doc in [
        "team7",
        "team8-notes",
        "xteam7-notes",
        "Team7-notes",
        "exactly",
        "exac",
    ] {
        for (route, status, body) in every_route(&app, doc, doc, &auth, "").await {
            assert_eq!(status, 403, "{route} with team7-* and exact: {body}");
        }
    }
}

#[tokio::test]
async fn tokens_are_taken_from_the_bearer_header_or_the_token_query_parameter() {
    let app = app_with_tokens().await;
    let rw = token(&["both-ways"], "rw");
    let header = format!("Bearer {rw}");

    let by_query = app
        .http()
        .put(app.url(&format!("/docs/both-ways?token={rw}")))
        .header("content-type", "application/json")
        .body(r#"{"via":"query"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200, "PUT with ?token=");

    let read = app
        .http()
        .get(app.url("/docs/both-ways"))
        .header("authorization", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "GET with a bearer header");
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["content"], json!({"via": "query"}));

    // y-websocket passes `params` as the query; browsers cannot set headers on a WebSocket.
    let mut by_header =
        connect_with(&app, "/docs/both-ways/ws", &[("Authorization", &header)]).await;
    let mut by_query = connect_with(&app, &format!("/docs/both-ways/ws?token={rw}"), &[]).await;
    assert_fields(&by_query.snapshot, json!({"content": {"via": "query"}}));
    let content = json!({"via": "websocket"});
    by_header.update(content.clone(), "h1").await;
    let seen = by_query
        .recv_where("the update", |m| m["type"] == "update")
        .await;
    assert_eq!(seen["content"], content);
    by_query.update(json!({"via": "query socket"}), "q1").await;

    let yjs = WsClient::open(&app, &format!("/yjs/both-ways-y?other=1&token={rw}"), &[]).await;
    assert!(yjs.is_err(), "a token for both-ways opened both-ways-y");
    let yjs_token = token(&["both-ways-y"], "rw");
    let yjs = WsClient::open(
        &app,
        &format!("/yjs/both-ways-y?other=1&token={yjs_token}"),
        &[],
    )
    .await;
    assert!(yjs.is_ok(), "?token= after another parameter was not read");
}

#[tokio::test]
async fn a_read_only_token_reads_and_receives_but_cannot_write() {
    let app = app_with_tokens().await;
    let rw = format!("Bearer {}", token(&["ro-doc"], "rw"));
    let ro = format!("Bearer {}", token(&["ro-doc"], "ro"));

    let first = json!({"title": "draft"});
    let put = raw_request(
        app.addr,
        "PUT",
        "/docs/ro-doc",
        &[("Authorization", &rw), ("Content-Type", "application/json")],
        &first.to_string(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);

    let mut reader = connect_with(&app, "/docs/ro-doc/ws", &[("Authorization", &ro)]).await;
    assert_fields(&reader.snapshot, json!({"content": first}));
    let mut writer = connect_with(&app, "/docs/ro-doc/ws", &[("Authorization", &rw)]).await;

    // It receives what others write ...
    let second = json!({"title": "second"});
    writer.update(second.clone(), "w1").await;
    let seen = reader
        .recv_where("the writer's update", |m| m["type"] == "update")
        .await;
    assert_eq!(seen["content"], second);

    // ... but its own update is refused, and the connection stays open.
    let refused = reader
        .try_update(json!({"title": "vandalized"}), "r1")
        .await;
    assert_fields(
        &refused,
        json!({"type": "error", "code": "read_only", "ref": "r1"}),
    );
    reader.ping().await;

    // Over HTTP: reading is fine, writing is 403.
    let put = raw_request(
        app.addr,
        "PUT",
        "/docs/ro-doc",
        &[("Authorization", &ro), ("Content-Type", "application/json")],
        r#"{"title":"vandalized"}"#,
    )
    .await;
    assert_eq!(put.status, 403, "PUT with a ro token: {}", put.text);
    let get = raw_request(
        app.addr,
        "GET",
        "/docs/ro-doc",
        &[("Authorization", &ro)],
        "",
    )
    .await;
    assert_eq!(get.status, 200, "GET with a ro token: {}", get.text);
    assert_eq!(get.body["content"], second, "a read-only write got through");

    // The writer never saw the refused content.
    writer.ping().await;
    while let Some(frame) = writer.recv_within(Duration::from_millis(200)).await {
        assert!(
            !matches!(&frame, Frame::Json(m) if m["type"] == "update"),
            "a read-only update reached the writer: {frame:?}"
        );
    }
}
