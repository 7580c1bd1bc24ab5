//! `/docs/{id}` (GET, PUT), `/docs/{id}/ws` (JSON protocol) and `/yjs/{id}` (Yjs protocol). The
//! id comes from the raw path ([`doc_path`](super::doc_path)), never from actix-web's lossy
//! decoding.

use actix_web::{get, put, web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use docroom_actors::doc::{DocId, Kind, Version};
use docroom_actors::protocol::yjs::{YjsDoc, YjsLimits};
use docroom_actors::registry::PeekRoom;
use docroom_actors::room::{Current, Update};
use docroom_actors::supervisor::Load;

use super::doc_path::{doc_id, Extent};
use super::writes::{acknowledged, writable, write};
use crate::auth;
use crate::error::ApiError;
use crate::session;
use crate::state::AppState;
use docroom_actors::protocol::json::{document_body, json_version};

/// `GET /docs/{id}`'s query (SPEC §9): the rendering, the XML fragment it reads, and the state
/// vector an `update` rendering starts from.
#[derive(serde::Deserialize)]
pub(super) struct Rendering {
    #[serde(default)]
    format: Format,
    field: Option<String>,
    state_vector: Option<String>,
}

#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Prosemirror,
    Text,
    Update,
}

#[get("/docs/{id}")]
async fn get_doc(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let doc = doc_id(&req, "/docs/", Extent::Segment)?;
    auth::authorize(&req, &state.settings.auth, &doc)?;
    let query = rendering(&req)?;
    let version = match state.registry.send(PeekRoom { doc: doc.clone() }).await? {
        Some(room) => match room.send(Current).await {
            Ok(current) => current?,
            Err(_) => load(&state, &doc).await?,
        },
        None => load(&state, &doc).await?,
    };
    render(&state, version.ok_or(ApiError::NotFound)?, query).await
}

/// The rendering a `GET` of a document (or of one of its versions) asks for.
pub(super) fn rendering(req: &HttpRequest) -> Result<Rendering, ApiError> {
    web::Query::<Rendering>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::BadRequest(format!("{e} (format is json, prosemirror, text or update)"))
        })
}

/// `v` as `query` asks: the JSON body of SPEC §3, or a backend rendering of SPEC §9.
pub(super) async fn render(
    state: &AppState,
    v: Version,
    query: Rendering,
) -> Result<HttpResponse, ApiError> {
    let Rendering {
        format,
        field,
        state_vector,
    } = query;
    let state_vector = state_vector.as_deref().map(decode_base64).transpose()?;
    if format != Format::Json {
        let field = field.unwrap_or_else(|| "default".to_owned());
        return backend_rendering(state, v, format, field, state_vector).await;
    }
    let body = match v.kind {
        Kind::Json => document_body(&v),
        Kind::Yjs => {
            // Decoding a state and rendering it cost CPU in proportion to the document, which a
            // client chooses: on the blocking pool, they never stall this worker's requests and
            // rooms.
            let turn = state.renderings.wait().await?;
            let limits = state.settings.limits.yjs();
            web::block(move || {
                let body = yjs_body(&v, limits);
                drop(turn);
                body
            })
            .await
            .map_err(|e| ApiError::Unavailable(format!("rendering failed: {e}")))??
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The header on a backend rendering that names the state vector it was read at (base64): the
/// `base` of an edit of it (`PUT /docs/{id}/prosemirror?base=`).
const STATE_VECTOR_HEADER: &str = "X-Docroom-State-Vector";

/// A Yjs document as a backend reads it (SPEC §9): ProseMirror JSON, text, or a Yjs update,
/// with the state vector it was read at ([`STATE_VECTOR_HEADER`]). Decoding and rendering run
/// on the blocking pool, one of `renderings` at a time, as the JSON rendering does.
async fn backend_rendering(
    state: &AppState,
    v: Version,
    format: Format,
    field: String,
    state_vector: Option<Vec<u8>>,
) -> Result<HttpResponse, ApiError> {
    if v.kind == Kind::Json {
        return Err(ApiError::WrongKind(format!(
            "{} is a JSON document: only format=json renders it",
            v.doc
        )));
    }

    let turn = state.renderings.wait().await?;
    let limits = state.settings.limits.yjs();
    let rendered = web::block(move || {
        let doc = YjsDoc::load_with(&v.content, limits)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let read_at = doc.state_vector();
        let rendered = match format {
            Format::Prosemirror => doc.to_prosemirror(&field).map(|json| {
                let body = json.to_string().into_bytes();
                ("application/json", body)
            }),
            Format::Text => doc
                .to_text(&field)
                .map(|text| ("text/plain; charset=utf-8", text.into_bytes())),
            Format::Update | Format::Json => {
                let update = doc.update_since(state_vector.as_deref()).map_err(|e| {
                    ApiError::BadRequest(format!("state_vector does not decode: {e}"))
                })?;
                Ok(("application/octet-stream", update))
            }
        };
        drop(turn);
        let (content_type, body) = rendered.map_err(|e| ApiError::Unrenderable(e.to_string()))?;
        Ok::<_, ApiError>((content_type, body, read_at))
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("rendering failed: {e}")))??;
    let (content_type, body, read_at) = rendered;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((STATE_VECTOR_HEADER, STANDARD.encode(read_at)))
        .body(body))
}

/// A state vector in a query: base64, standard or URL-safe, padded or not (a `+` a client did
/// not escape arrives as a space).
pub(super) fn decode_base64(text: &str) -> Result<Vec<u8>, ApiError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let text = text.trim().replace(' ', "+");
    let unpadded = text.trim_end_matches('=');
    STANDARD
        .decode(&text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
        .map_err(|e| ApiError::BadRequest(format!("state_vector is not base64: {e}")))
}

/// A Yjs document's `GET /docs/{id}` body: its state decoded and rendered as JSON.
fn yjs_body(v: &Version, limits: YjsLimits) -> Result<String, ApiError> {
    use base64::Engine as _;
    let rendered = YjsDoc::load_with(&v.content, limits)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .to_json()
        .map_err(|e| ApiError::Unrenderable(e.to_string()))?;
    Ok(serde_json::json!({
        "doc": v.doc.as_str(),
        "kind": "yjs",
        "content": rendered,
        "hash": v.hash,
        "state": base64::engine::general_purpose::STANDARD.encode(&v.content),
    })
    .to_string())
}

async fn load(state: &AppState, doc: &DocId) -> Result<Option<Version>, ApiError> {
    state
        .supervisor
        .send(Load { doc: doc.clone() })
        .await?
        .map(|loaded| loaded.version)
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

#[put("/docs/{id}")]
async fn put_doc(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (doc, by) = writable(&req, &state)?;
    let content: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let version = json_version(
        doc.clone(),
        &content,
        state.settings.limits.max_document_bytes,
    )
    .map_err(ApiError::BadRequest)?;
    let ack = write(&state, &doc, Kind::Json, || Update {
        from: None,
        version: version.clone(),
        by: Some(by.clone()),
    })
    .await?;
    Ok(acknowledged(ack))
}

#[get("/docs/{id}/ws")]
async fn ws_json(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let doc = doc_id(&req, "/docs/", Extent::Segment);
    upgrade(Kind::Json, doc, req, stream, state).await
}

/// The whole rest of the path is the id: y-websocket puts a room named `org/doc` into the URL
/// unencoded, as `/yjs/org/doc`.
#[get("/yjs/{id:.+}")]
async fn ws_yjs(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let doc = doc_id(&req, "/yjs/", Extent::Rest);
    upgrade(Kind::Yjs, doc, req, stream, state).await
}

/// The checks before any WebSocket upgrade, in the order the SPEC answers them: bad id (400),
/// shutting down (503), foreign origin (403), token (401/403), connection limits (503), no room
/// for the document (503: the room limit).
async fn upgrade(
    kind: Kind,
    doc: Result<DocId, ApiError>,
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let doc = doc?;
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    auth::check_origin(&req, &state.settings.auth)?;
    let access = auth::authorize(&req, &state.settings.auth, &doc)?;
    let slot = state.connections.reserve(&doc, &state.settings.limits)?;
    session::start(doc, kind, access, slot, &req, stream, &state).await
}
