//! Client tokens (SPEC §3): HS256 JWTs naming the documents a client may open and whether it may
//! write; the `Authorization: Bearer` header client and admin tokens come in; and the WebSocket
//! Origin allow-list.

use actix_web::http::header;
use actix_web::HttpRequest;
use docroom_actors::doc::DocId;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::ApiError;
use crate::settings::AuthSettings;

/// What a request may do with its document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    /// Unix seconds after which the token is no longer valid (open sessions are closed then).
    pub expires_at: Option<u64>,
    /// The token's `sub`, at most [`MAX_SUBJECT_BYTES`] of it: it is only logged, and the
    /// client picks its length.
    pub subject: Option<String>,
}

/// How much of a token's `sub` is kept (and so logged), in bytes (SPEC §3).
pub const MAX_SUBJECT_BYTES: usize = 256;

impl Access {
    fn open() -> Self {
        Access {
            write: true,
            expires_at: None,
            subject: None,
        }
    }
}

/// Seconds of clock skew forgiven on both `exp` and `nbf`: none, as `exp` has always been
/// checked; one setting for both, so the two bounds can never drift apart.
const CLOCK_LEEWAY_SECS: u64 = 0;

#[derive(Deserialize)]
struct Claims {
    docs: Vec<String>,
    scope: String,
    exp: u64,
    #[serde(default)]
    sub: Option<String>,
}

/// Checks the request's token for `doc`: 401 if missing, malformed, badly signed, expired or not
/// valid yet (`nbf`); 403 if valid but not for this document. Without a configured secret
/// everyone may write.
pub fn authorize(req: &HttpRequest, auth: &AuthSettings, doc: &DocId) -> Result<Access, ApiError> {
    if auth.jwt_secret.is_empty() {
        return Ok(Access::open());
    }
    let token = bearer(req).map(str::to_owned).or_else(|| query_token(req));
    authorize_token(token.as_deref(), auth, doc)
}

/// [`authorize`] for a token that did not come with the request (a `/hocuspocus` provider's
/// Auth message, one per document). An empty token is a missing one.
pub fn authorize_token(
    token: Option<&str>,
    auth: &AuthSettings,
    doc: &DocId,
) -> Result<Access, ApiError> {
    if auth.jwt_secret.is_empty() {
        return Ok(Access::open());
    }
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = CLOCK_LEEWAY_SECS;
    // RFC 7519 §4.1.5: a token must not be accepted before its `nbf` (checked when present;
    // jsonwebtoken skips it unless asked).
    validation.validate_nbf = true;
    let claims = decode::<Claims>(
        token.as_bytes(),
        &DecodingKey::from_secret(auth.jwt_secret.as_bytes()),
        &validation,
    )
    .map_err(|_| ApiError::Unauthorized)?
    .claims;
    // RFC 7519: the token must not be accepted on or after `exp` (jsonwebtoken only refuses
    // after it).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if claims.exp.saturating_add(CLOCK_LEEWAY_SECS) <= now {
        return Err(ApiError::Unauthorized);
    }
    let write = match claims.scope.as_str() {
        "rw" => true,
        "ro" => false,
        _ => return Err(ApiError::Unauthorized),
    };
    if !claims.docs.iter().any(|entry| covers(entry, doc.as_str())) {
        return Err(ApiError::Forbidden(format!(
            "token does not grant access to document {doc}"
        )));
    }
    Ok(Access {
        write,
        expires_at: Some(claims.exp),
        subject: claims.sub.map(|sub| cut(sub, MAX_SUBJECT_BYTES)),
    })
}

/// `text` cut to at most `max` bytes, on a char boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `"team-7/*"` covers every id starting with `team-7/` (ids may hold `/` and `*`, SPEC §3): a
/// plain string prefix, so `team-7/*` does not cover `team-70/x`, and a trailing `*` is always
/// the prefix marker. Anything else must match exactly.
fn covers(entry: &str, doc: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => doc.starts_with(prefix),
        None => entry == doc,
    }
}

/// The credentials of an `Authorization: Bearer TOKEN` header, for client and admin tokens
/// alike. The scheme is matched in any case (RFC 7235 §2.1: `bearer` and `BEARER` are `Bearer`).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn query_token(req: &HttpRequest) -> Option<String> {
    req.query_string().split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        percent_decode(value)
    })
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// 403 for a WebSocket upgrade from an Origin outside `DOCROOM_ALLOWED_ORIGINS` (when set).
/// Requests without an Origin header (non-browser clients) are not cross-site and pass.
pub fn check_origin(req: &HttpRequest, auth: &AuthSettings) -> Result<(), ApiError> {
    if auth.allowed_origins.trim().is_empty() {
        return Ok(());
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    let allowed = auth
        .allowed_origins
        .split(',')
        .map(|o| o.trim().trim_end_matches('/'))
        .any(|o| o.eq_ignore_ascii_case(origin));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "origin {origin:?} is not allowed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_entries_cover_ids_that_start_with_them() {
        assert!(covers("team7-*", "team7-notes"));
        assert!(covers("team7-*", "team7-"));
        assert!(!covers("team7-*", "team8-notes"));
        assert!(covers("a", "a"));
        assert!(!covers("a", "ab"));
        assert!(covers("*", "anything"));
    }

    #[test]
    fn prefix_entries_with_slashes_cover_the_folder_they_name() {
        assert!(covers("team-7/*", "team-7/notes"));
        assert!(covers("team-7/*", "team-7/a/b c"));
        assert!(!covers("team-7/*", "team-70/notes"));
        assert!(!covers("team-7/*", "team-7"));
        assert!(covers("org/doc:1", "org/doc:1"));
        assert!(!covers("org/doc", "org/doc:1"));
        assert!(covers("é文/*", "é文/x"));
    }

    #[test]
    fn a_subject_is_cut_to_its_bound_on_a_char_boundary() {
        assert_eq!(cut("short".into(), 256), "short");
        assert_eq!(cut("a".repeat(300), 256).len(), 256);
        // 3 bytes a char: 85 whole chars fit in 256 bytes, the 86th would not.
        assert_eq!(cut("語".repeat(100), 256), "語".repeat(85));
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case_and_no_other_scheme_is() {
        let token = |value: &str| {
            let req = actix_web::test::TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request();
            bearer(&req).map(str::to_owned)
        };

        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert_eq!(token(&format!("{scheme} t0k")).as_deref(), Some("t0k"));
        }
        assert_eq!(token("Bearer  spaced ").as_deref(), Some("spaced"));
        assert_eq!(token("Basic dXNlcjpwdw=="), None);
        assert_eq!(token("Bearertoken"), None);
        assert_eq!(token("Bearer"), None);
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Eb").as_deref(), Some("a.b"));
        assert_eq!(percent_decode("%zz"), None);
    }
}
