//! What operators and orchestrators call: health, readiness, and the token-guarded admin API.

use serde_json::{json, Value};

use crate::harness::http::Admin;
use crate::harness::{assert_fields, TestApp, TestOptions};

#[tokio::test]
async fn health_and_readiness_answer_ok_while_serving() {
    let app = TestApp::start().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body, json!({"status": "ok"}));

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert!(
        ready.text.contains("closed"),
        "/readyz names no breaker state: {}",
        ready.text
    );
}

#[tokio::test]
async fn admin_routes_need_the_configured_bearer_token() {
    let app = TestApp::start().await;
    let token = app.admin_token.clone().unwrap();
    let refused = [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {token}x")),
        Some(format!("Basic {token}")),
        Some(token.clone()),
        Some("Bearer ".to_owned()),
    ];
    for authorization in &refused {
        let admin = app.admin_as(authorization.as_deref());
        every_admin_route_answers(&admin, 401, &format!("{authorization:?}")).await;
    }

    let admin = app.admin();
    assert_eq!(admin.get("flusher").await.status, 200);
    assert_eq!(admin.get("rooms").await.body, json!([]));
    assert_fields(&admin.flush_now().await, json!({"failed": 0}));
}

#[tokio::test]
async fn the_admin_api_is_disabled_when_no_token_is_configured() {
    let app = TestApp::spawn(TestOptions::new().no_admin_token()).await;
    for authorization in [None, Some("Bearer "), Some("Bearer anything")] {
        let admin = app.admin_as(authorization);
        every_admin_route_answers(&admin, 503, &format!("{authorization:?}")).await;
    }
    // The rest of the service does not depend on the admin API.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get_doc("anything").await.status, 404);
}

/// GET flusher, GET rooms and POST flusher/flush all answer `status`.
async fn every_admin_route_answers(admin: &Admin<'_>, status: u16, authorization: &str) {
    for (route, reply) in [
        ("GET flusher", admin.get("flusher").await),
        ("GET rooms", admin.get("rooms").await),
        (
            "POST flusher/flush",
            admin.post("flusher/flush", &Value::Null).await,
        ),
    ] {
        assert_eq!(
            reply.status, status,
            "{route} with authorization {authorization}: {}",
            reply.text
        );
    }
}
