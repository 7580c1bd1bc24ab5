//! A document's history (SPEC §10): its versions, any of them in every rendering, and a
//! restore, which is a change like any other (made by the caller, merged, broadcast and
//! answered once stored) between two versions: one of the content it replaces, one of what it
//! restored.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use docroom_actors::doc::{sha256_hex, DocId, Kind, Version};
use docroom_actors::protocol::json::json_version;
use docroom_actors::protocol::yjs::restore_update;
use docroom_actors::room::{BackendUpdate, Current, CutReason, CutVersion, Update};

use super::doc_path::{doc_id, Extent};
use super::docs::{render, rendering};
use super::writes::{acknowledged, current_yjs, writable, write};
use crate::auth;
use crate::error::ApiError;
use crate::history::HistoryError;
use crate::state::AppState;

/// The most versions one page lists.
const MAX_PAGE: i64 = 1000;

#[derive(serde::Deserialize)]
struct Page {
    limit: Option<i64>,
    before: Option<i64>,
}

#[derive(serde::Deserialize)]
struct Restore {
    version: i64,
}

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        ApiError::Unavailable(format!("history: {e}"))
    }
}

/// `GET /docs/{id}/versions?limit=N&before=V`: newest first.
#[get("/docs/{id}/versions")]
async fn list_versions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let doc = doc_id(&req, "/docs/", Extent::Segment)?;
    auth::authorize(&req, &state.settings.auth, &doc)?;
    let page = web::Query::<Page>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_inner();
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let versions = state.history.list(&doc, limit, page.before).await?;
    Ok(HttpResponse::Ok().json(versions))
}

/// `GET /docs/{id}/versions/{v}?format=F`: the document as it was at version `v`, in the
/// renderings of `GET /docs/{id}`; 404 for a version that does not exist or has expired.
#[get("/docs/{id}/versions/{version}")]
async fn read_version(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let doc = doc_id(&req, "/docs/", Extent::Segment)?;
    auth::authorize(&req, &state.settings.auth, &doc)?;
    let query = rendering(&req)?;
    let version = version_number(&req)?;
    let old = old_version(&state, &doc, version).await?;
    render(&state, old, query).await
}

/// `POST /docs/{id}/restore {"version":V}`: the content becomes what it was at `V`, as a change
/// by the caller. The content it replaces becomes a version first, and what it restored one
/// after.
#[post("/docs/{id}/restore")]
async fn restore(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (doc, by) = writable(&req, &state)?;
    let Restore { version } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body must be {{\"version\": N}}: {e}")))?;
    let old = old_version(&state, &doc, version).await?;
    let replaced = current(&state, &doc, old.kind).await?;
    cut(&state, &replaced, Vec::new()).await?;
    let ack = match old.kind {
        Kind::Yjs => {
            let (now, then) = (replaced.content.clone(), old.content.clone());
            let turn = state.renderings.wait().await?;
            let update = web::block(move || {
                let update = restore_update(&now, &then);
                drop(turn);
                update
            })
            .await
            .map_err(|e| ApiError::Unavailable(format!("the restore failed: {e}")))?
            .map_err(|e| ApiError::Unrenderable(e.to_string()))?
            .unwrap_or_else(|| vec![0, 0]);
            write(&state, &doc, Kind::Yjs, || BackendUpdate {
                update: update.clone().into(),
                by: by.clone(),
            })
            .await?
        }
        Kind::Json => {
            let content: serde_json::Value = serde_json::from_slice(&old.content)
                .map_err(|e| ApiError::Unavailable(format!("version {version}: {e}")))?;
            let restored =
                json_version(doc.clone(), &content, usize::MAX).map_err(ApiError::Unavailable)?;
            write(&state, &doc, Kind::Json, || Update {
                from: None,
                version: restored.clone(),
                by: Some(by.clone()),
            })
            .await?
        }
    };
    let restored = current(&state, &doc, old.kind).await?;
    cut(&state, &restored, vec![by]).await?;
    Ok(acknowledged(ack))
}

/// The version number in the path.
fn version_number(req: &HttpRequest) -> Result<i64, ApiError> {
    req.match_info()
        .get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::BadRequest("a version is a number".into()))
}

/// The document as it was at `version`, or 404.
async fn old_version(state: &AppState, doc: &DocId, version: i64) -> Result<Version, ApiError> {
    let (kind, content) = state
        .history
        .read(doc, version)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Version::new(doc.clone(), kind, content))
}

/// The document's content now, from its room.
async fn current(state: &AppState, doc: &DocId, kind: Kind) -> Result<Version, ApiError> {
    if kind == Kind::Yjs {
        let content = current_yjs(state, doc).await?;
        return Ok(Version::new(doc.clone(), Kind::Yjs, content));
    }
    let room = state.room(doc, Kind::Json).await?;
    let current = room
        .send(Current)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))??;
    match current {
        Some(v) if v.kind == Kind::Json => Ok(v),
        _ => Err(ApiError::WrongKind(format!(
            "{doc} is not the kind of document its version was"
        ))),
    }
}

/// Records `v` as a version (a restore's: not held back by the interval).
async fn cut(state: &AppState, v: &Version, users: Vec<String>) -> Result<(), ApiError> {
    let hash = match v.kind {
        Kind::Yjs => sha256_hex(&v.content),
        Kind::Json => v.hash.clone(),
    };
    state
        .history
        .cut(&CutVersion {
            doc: v.doc.clone(),
            kind: v.kind,
            content: v.content.clone(),
            hash,
            users,
            why: CutReason::Restore,
        })
        .await?;
    Ok(())
}
