//! `/admin/*`: the breaker, the flusher, the rooms and the replicas, behind
//! `DOCROOM_ADMIN_TOKEN`.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use docroom_actors::breaker::ForceMode;
use docroom_actors::flusher::{FlushNow, GetFlusher};
use docroom_actors::registry::ListRooms;
use docroom_actors::supervisor::{ForceBreaker, GetBreaker, ListReplicas};
use serde::Deserialize;

use crate::auth::bearer;
use crate::error::ApiError;
use crate::heartbeat::local_beat;
use crate::state::{constant_time_eq, AppState};

fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let expected = &state.settings.server.admin_token;
    if expected.is_empty() {
        return Err(ApiError::AdminDisabled);
    }
    let given = bearer(req).ok_or(ApiError::Unauthorized)?;
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The dashboard: one self-contained page; it asks for the token and calls the routes below.
#[get("/")]
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Never inside another site's frame, where a click could be steered onto its buttons:
        // both headers, for browsers that know only one of them.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             frame-ancestors 'none'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(include_str!("assets/dashboard.html"))
}

#[get("/breaker")]
async fn get_breaker(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(state.supervisor.send(GetBreaker).await?))
}

#[derive(Deserialize)]
struct ForceBody {
    state: String,
}

#[post("/breaker")]
async fn post_breaker(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let body: ForceBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"state\":\"open\"|\"closed\"|\"auto\"}}: {e}"
        ))
    })?;
    let mode = match body.state.as_str() {
        "open" => ForceMode::Open,
        "closed" => ForceMode::Closed,
        "auto" => ForceMode::Auto,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown breaker state {other:?}: use open, closed or auto"
            )))
        }
    };
    Ok(HttpResponse::Ok().json(state.supervisor.send(ForceBreaker { mode }).await?))
}

#[get("/flusher")]
async fn get_flusher(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(state.flusher.send(GetFlusher).await?))
}

#[post("/flusher/flush")]
async fn flush_now(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(state.flusher.send(FlushNow).await?))
}

/// How many webhook events wait, were delivered and failed, the oldest pending one's age, and
/// the last deliveries (SPEC §9); `{"enabled":false}` when `webhooks.url` is unset.
#[get("/webhooks")]
async fn webhooks(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let Some(webhooks) = &state.webhooks else {
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "enabled": false })));
    };
    let view = webhooks
        .outbox
        .view(RECENT_DELIVERIES)
        .await
        .map_err(|e| ApiError::Unavailable(format!("webhook outbox: {e}")))?;
    let mut body = serde_json::to_value(view).unwrap_or_default();
    body["enabled"] = true.into();
    Ok(HttpResponse::Ok().json(body))
}

/// Deliveries `GET /admin/webhooks` lists.
const RECENT_DELIVERIES: i64 = 20;

/// A document's versions for the dashboard (SPEC §10), newest first: `GET
/// /docs/{id}/versions` behind the admin token instead of a client token.
#[get("/versions/{id}")]
async fn versions(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let doc = super::doc_path::doc_id(&req, "/admin/versions/", super::doc_path::Extent::Segment)?;
    let versions = state
        .history
        .list(&doc, 100, None)
        .await
        .map_err(|e| ApiError::Unavailable(format!("history: {e}")))?;
    Ok(HttpResponse::Ok().json(versions))
}

#[get("/rooms")]
async fn rooms(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(state.registry.send(ListRooms).await?))
}

/// Every live replica (SPEC §3). This replica is always listed, with its current numbers; the
/// others come from their heartbeats in Redis, so while Redis is out of reach (breaker open, or
/// the read failing) the list holds this replica alone.
#[get("/replicas")]
async fn replicas(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let own = local_beat(&state).await;
    let mut all = match state.supervisor.send(ListReplicas).await? {
        Ok(beats) => beats,
        Err(e) => {
            tracing::debug!(error = %e, "replicas: listing this replica alone");
            Vec::new()
        }
    };
    all.retain(|beat| beat.replica != own.replica);
    all.push(own);
    all.sort_by(|a, b| a.replica.cmp(&b.replica));
    Ok(HttpResponse::Ok().json(all))
}
