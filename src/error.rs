//! HTTP errors: one enum for the HTTP boundary, mapped to status codes in one place, always with
//! a JSON body `{"error":CODE,"message":TEXT}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("document not found")]
    NotFound,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("admin api disabled: DOCROOM_ADMIN_TOKEN is not set")]
    AdminDisabled,
    #[error("this token is read-only")]
    ReadOnly,
    #[error("{0}")]
    WrongKind(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Unavailable(String),
    /// A stored document that cannot be rendered within the limits (nested deeper than
    /// `limits.max_yjs_depth`): it is still served to editors, only not rendered.
    #[error("{0}")]
    Unrenderable(String),
    /// A body over a limit: the frame limit for a posted update, the state limit it would
    /// take the document over.
    #[error("{0}")]
    TooLarge(String),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound => "not_found",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::ReadOnly => "read_only",
            ApiError::WrongKind(_) => "wrong_kind",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unrenderable(_) => "too_deep",
            ApiError::TooLarge(_) => "too_large",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ReadOnly => StatusCode::FORBIDDEN,
            ApiError::WrongKind(_) => StatusCode::CONFLICT,
            ApiError::Unrenderable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::AdminDisabled | ApiError::ShuttingDown | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
        }))
    }
}

impl From<docroom_actors::doc::InvalidDocId> for ApiError {
    fn from(e: docroom_actors::doc::InvalidDocId) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<docroom_actors::room::RoomError> for ApiError {
    fn from(e: docroom_actors::room::RoomError) -> Self {
        use docroom_actors::room::RoomError;
        match e {
            RoomError::WrongKind { .. } => ApiError::WrongKind(e.to_string()),
            RoomError::Closing => ApiError::ShuttingDown,
            RoomError::Unavailable(m) => ApiError::Unavailable(m),
            RoomError::BadUpdate(m) => ApiError::BadRequest(m),
            RoomError::TooLarge(m) => ApiError::TooLarge(m),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Unavailable(format!("internal actor unavailable: {e}"))
    }
}
