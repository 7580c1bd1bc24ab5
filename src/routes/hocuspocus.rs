//! `GET /hocuspocus` (SPEC §5b): one WebSocket for any number of documents. Tokens come later,
//! per document, in the provider's Auth messages; what can be checked before the upgrade is.

use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::auth;
use crate::error::ApiError;
use crate::session;
use crate::state::AppState;

/// Shutting down (503), foreign origin (403), connection limit (503), then the upgrade.
#[get("/hocuspocus")]
async fn ws_hocuspocus(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    auth::check_origin(&req, &state.settings.auth)?;
    let slot = state.connections.reserve_socket(&state.settings.limits)?;
    session::hocuspocus::start(slot, &req, stream, &state)
}
