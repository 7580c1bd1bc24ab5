use actix_web::{get, web, HttpResponse};
use docroom_actors::supervisor::GetBreaker;

use crate::state::AppState;

/// 200 while the process runs.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Prometheus text format.
#[get("/metrics")]
async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render_metrics())
}

/// 200 while accepting work, 503 once shutdown began; names the breaker state.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let breaker = state
        .supervisor
        .send(GetBreaker)
        .await
        .map(|b| b.state)
        .unwrap_or("unknown");
    if state.is_shutting_down() {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "shutting_down", "breaker": breaker}))
    } else {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready", "breaker": breaker}))
    }
}
