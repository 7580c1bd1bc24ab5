//! Writes from a backend (SPEC §9): `POST /docs/{id}/update` (one Yjs update) and `PUT
//! /docs/{id}/prosemirror` (the ProseMirror fragment changed to a body, with the smallest Yjs
//! change, optionally as an edit of what the backend read at `base`). Each is a change like a
//! member's, made through the document's room ([`BackendUpdate`]) and answered once stored;
//! `PUT /docs/{id}` (JSON documents) shares the way there ([`write`]).

use std::time::Duration;

use actix_web::{post, put, web, HttpRequest, HttpResponse};
use docroom_actors::doc::{DocId, Kind};
use docroom_actors::protocol::yjs::{prosemirror_edit, EditError};
use docroom_actors::room::{Ack, BackendUpdate, Current, DocRoom, RoomError};

use super::doc_path::{doc_id, Extent};
use super::docs::decode_base64;
use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// A send to a room can race the room retiring; asking the registry again then finds or starts
/// the next one. More failures than this mean something is really wrong.
const ROOM_ATTEMPTS: usize = 3;

/// How long an edit whose `base` is ahead of this replica waits for the log to bring the rest,
/// looking again every [`BASE_POLL`].
const BASE_WAIT: Duration = Duration::from_secs(2);
const BASE_POLL: Duration = Duration::from_millis(50);

/// What an edit of the ProseMirror fragment is made on (`PUT /docs/{id}/prosemirror`).
#[derive(serde::Deserialize)]
struct EditQuery {
    field: Option<String>,
    base: Option<String>,
}

/// The document a write names, once its token may write it and the replica takes writes; and
/// who the write is attributed to (the token's `sub`, or `"server"`).
pub(super) fn writable(req: &HttpRequest, state: &AppState) -> Result<(DocId, String), ApiError> {
    let doc = doc_id(req, "/docs/", Extent::Segment)?;
    let access = auth::authorize(req, &state.settings.auth, &doc)?;
    if !access.write {
        return Err(ApiError::ReadOnly);
    }
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let by = access.subject.unwrap_or_else(|| "server".to_owned());
    Ok((doc, by))
}

/// `POST /docs/{id}/update`: one Yjs update (v1), at most the frame limit. An id never stored
/// becomes a Yjs document.
#[post("/docs/{id}/update")]
async fn post_update(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (doc, by) = writable(&req, &state)?;
    let limit = state.settings.session.max_frame_bytes;
    if body.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "the update is {} bytes; the frame limit is {limit}",
            body.len()
        )));
    }
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body is empty: it must be a Yjs update".into(),
        ));
    }
    let ack = write(&state, &doc, Kind::Yjs, || BackendUpdate {
        update: body.clone(),
        by: by.clone(),
    })
    .await?;
    Ok(acknowledged(ack))
}

/// `PUT /docs/{id}/prosemirror?field=default&base=STATE_VECTOR`: the fragment changed to equal
/// the body. The edit is computed on the blocking pool from the room's current document (see
/// [`prosemirror_edit`]) and then sent like a posted update; members typing meanwhile are
/// concurrent with it, and Yjs keeps both.
#[put("/docs/{id}/prosemirror")]
async fn put_prosemirror(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (doc, by) = writable(&req, &state)?;
    let query = web::Query::<EditQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_inner();
    let field = query.field.unwrap_or_else(|| "default".to_owned());
    let base = query.base.as_deref().map(decode_base64).transpose()?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let json = std::sync::Arc::new(json);
    let waited = std::time::Instant::now();
    let update = loop {
        let current = current_yjs(&state, &doc).await?;
        let turn = state.renderings.wait().await?;
        let limits = state.settings.limits.yjs();
        let (field, json, base) = (field.clone(), json.clone(), base.clone());
        let edit = web::block(move || {
            let edit = prosemirror_edit(&current, &field, &json, base.as_deref(), limits);
            drop(turn);
            edit
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("the edit failed: {e}")))?;
        match edit {
            Ok(update) => break update,
            Err(EditError::BaseAhead) if waited.elapsed() < BASE_WAIT => {
                tokio::time::sleep(BASE_POLL).await;
            }
            Err(e) => return Err(edit_refused(e)),
        }
    };
    // An edit that changes nothing is answered once what the document holds is stored.
    let update = update.unwrap_or_else(|| vec![0, 0]);
    let ack = write(&state, &doc, Kind::Yjs, || BackendUpdate {
        update: update.clone().into(),
        by: by.clone(),
    })
    .await?;
    Ok(acknowledged(ack))
}

/// The HTTP answer to an edit that could not be made.
fn edit_refused(e: EditError) -> ApiError {
    match e {
        EditError::NotProsemirror(_) | EditError::BadBase(_) => ApiError::BadRequest(e.to_string()),
        EditError::BaseAhead => ApiError::Unavailable(format!(
            "{e} within {BASE_WAIT:?}: read the document again, or retry"
        )),
        EditError::Document(inner) => ApiError::Unrenderable(inner.to_string()),
    }
}

/// The Yjs document's current state, from its room (started if none is open; a document never
/// stored is an empty Yjs document). A JSON document is `wrong_kind`.
pub(super) async fn current_yjs(state: &AppState, doc: &DocId) -> Result<bytes::Bytes, ApiError> {
    let mut last_error = String::from("document room kept stopping");
    for _ in 0..ROOM_ATTEMPTS {
        let room = state.room(doc, Kind::Yjs).await?;
        match room.send(Current).await {
            Ok(Ok(Some(v))) if v.kind == Kind::Yjs => return Ok(v.content),
            Ok(Ok(Some(_))) => {
                return Err(ApiError::WrongKind(format!(
                    "{doc} is a JSON document: PUT /docs/{doc} writes it"
                )))
            }
            Ok(Ok(None)) => return Ok(bytes::Bytes::from_static(&[0, 0])),
            Ok(Err(RoomError::Unavailable(why))) => last_error = why,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {}
        }
    }
    Err(ApiError::Unavailable(last_error))
}

/// The answer to a write once stored (SPEC §9): `{"hash","stored"}`.
pub(super) fn acknowledged(ack: Ack) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "hash": ack.hash,
        "stored": ack.stored.as_str(),
    }))
}

/// Sends a write to the document's room and waits for its acknowledgement. A send can race the
/// room retiring, and a room that failed to load has already left the registry: asking the
/// registry again then finds or starts the next one.
pub(super) async fn write<M>(
    state: &AppState,
    doc: &DocId,
    kind: Kind,
    message: impl Fn() -> M,
) -> Result<Ack, ApiError>
where
    M: actix::Message<Result = Result<Ack, RoomError>> + Send + 'static,
    DocRoom: actix::Handler<M>,
{
    let mut last_error = String::from("document room kept stopping");
    for attempt in 0..ROOM_ATTEMPTS {
        let room = state.room(doc, kind).await?;
        if let Ok(ack) = room.send(message()).await {
            match ack {
                Err(RoomError::Unavailable(why)) if attempt + 1 < ROOM_ATTEMPTS => {
                    last_error = why;
                }
                other => return Ok(other?),
            }
        }
    }
    Err(ApiError::Unavailable(last_error))
}
