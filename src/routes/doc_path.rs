//! The document id in a request path (SPEC §3): one percent-encoded segment (`org%2Fdoc` is the
//! id `org/doc`), or on `/yjs/` everything after the prefix (see [`Extent::Rest`]).
//!
//! The id is read from the raw URI rather than from actix-web's match info: actix-web decodes
//! paths lossily (invalid UTF-8 becomes U+FFFD, so `%FF` would turn into a valid id), and a
//! refused id must be refused, not silently renamed.

use actix_web::HttpRequest;
use docroom_actors::doc::DocId;

use crate::error::ApiError;

/// How much of the path after the route's prefix is the id.
#[derive(Clone, Copy, Debug)]
pub enum Extent {
    /// One segment: the id ends at the next `/` (`/docs/{id}`, `/docs/{id}/ws`).
    Segment,
    /// The rest of the path. y-websocket's provider appends its room name to the URL as is, so a
    /// room `org/doc` arrives as `/yjs/org/doc`; taking the rest makes that the id `org/doc`, the
    /// same document as `/yjs/org%2Fdoc`.
    Rest,
}

/// The id after `prefix` (e.g. `"/docs/"`) in the request's raw path, percent-decoded strictly.
pub fn doc_id(req: &HttpRequest, prefix: &str, extent: Extent) -> Result<DocId, ApiError> {
    id_in(req.uri().path(), prefix, extent)
}

fn id_in(path: &str, prefix: &str, extent: Extent) -> Result<DocId, ApiError> {
    let after = path.strip_prefix(prefix).unwrap_or_default();
    let raw = match extent {
        Extent::Segment => after.split('/').next().unwrap_or_default(),
        Extent::Rest => after,
    };
    Ok(DocId::parse(&percent_decode(raw)?)?)
}

/// RFC 3986 percent-decoding: every `%` starts two hex digits, and the result must be UTF-8.
/// `+` is a plus sign in a path (only query strings use it for a space).
fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let malformed = || {
        ApiError::BadRequest(
            "invalid document id: a % in the path must start a two-digit hex escape".into(),
        )
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or_else(malformed)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(malformed());
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| malformed())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        ApiError::BadRequest("invalid document id: the decoded id is not UTF-8".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str, prefix: &str, extent: Extent) -> Result<String, String> {
        id_in(path, prefix, extent)
            .map(|d| d.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_segment_is_decoded_once_and_ends_at_the_next_slash() {
        let seg = Extent::Segment;
        assert_eq!(
            id("/docs/org%2Fdoc", "/docs/", seg).as_deref(),
            Ok("org/doc")
        );
        assert_eq!(
            id("/docs/org%2fdoc/ws", "/docs/", seg).as_deref(),
            Ok("org/doc")
        );
        assert_eq!(id("/docs/a%20b+c", "/docs/", seg).as_deref(), Ok("a b+c"));
        assert_eq!(
            id("/docs/%C3%A9%E6%96%87", "/docs/", seg).as_deref(),
            Ok("é文")
        );
        assert_eq!(id("/docs/%252F", "/docs/", seg).as_deref(), Ok("%2F"));
        assert_eq!(id("/docs/doc:1", "/docs/", seg).as_deref(), Ok("doc:1"));
    }

    #[test]
    fn the_rest_of_a_yjs_path_is_the_id_slashes_and_all() {
        let rest = Extent::Rest;
        assert_eq!(id("/yjs/org/doc", "/yjs/", rest).as_deref(), Ok("org/doc"));
        assert_eq!(
            id("/yjs/org%2Fdoc", "/yjs/", rest).as_deref(),
            Ok("org/doc")
        );
        assert!(id("/yjs/", "/yjs/", rest).is_err());
    }

    #[test]
    fn malformed_escapes_invalid_utf8_and_invalid_ids_are_bad_requests() {
        for path in [
            "/docs/%",
            "/docs/a%2",
            "/docs/%zz",
            "/docs/%+1",
            "/docs/%FF",
            "/docs/%C3",
            "/docs/%00",
            "/docs/a%0Ab",
            "/docs/%2E%2E",
            "/docs/.",
            "/docs/",
        ] {
            let err = id_in(path, "/docs/", Extent::Segment).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{path}: {err:?}");
            assert!(
                err.to_string().contains("invalid document id"),
                "{path}: {err}"
            );
        }
    }
}
