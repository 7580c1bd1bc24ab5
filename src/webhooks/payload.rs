//! An event's JSON body and its signature (SPEC §9). The body is built once, at the event's
//! first attempt, and stored with it: a retry sends the same bytes and the same `delivery` id.
//!
//! What the outbox row does not fix is read then: the hash of `document.changed` and the client
//! events (the document's current content, as `GET /docs/{id}` reads it), the hash of a Yjs
//! `document.stored` (what PostgreSQL holds: the flush wrote only the updates it lacked), and
//! with `include_content` the content, rendered as `GET /docs/{id}` renders it.

use chrono::SecondsFormat;
use docroom_actors::doc::{DocId, Kind, Version};
use docroom_actors::protocol::yjs::YjsDoc;
use docroom_actors::registry::PeekRoom;
use docroom_actors::room::Current;
use docroom_actors::storage::{DocStore, PgStore};
use docroom_actors::supervisor::Load;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};

use super::outbox::Claimed;
use crate::state::AppState;

/// `sha256=HEX`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("hmac takes a key of any length");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Builds the body of `e`; an error leaves the event to its next attempt.
pub async fn build(state: &AppState, store: &PgStore, e: &Claimed) -> Result<String, String> {
    let doc = DocId::parse(&e.doc).map_err(|why| format!("bad document id: {why}"))?;
    let document_event = e.event.starts_with("document.");
    let content = document_event && state.settings.webhooks.include_content;
    let version = match (&e.hash, content) {
        (Some(_), false) => None,
        _ if e.event == "document.stored" => store.load(&doc).await.map_err(|e| e.to_string())?,
        _ => current(state, &doc).await?,
    };
    let hash = e
        .hash
        .clone()
        .or_else(|| version.as_ref().map(|v| v.hash.clone()));
    let mut body = json!({
        "event": e.event,
        "delivery": e.delivery,
        "doc": e.doc,
        "kind": e.kind,
        "hash": hash,
        "at": e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "users": e.users,
    });
    if let Some(replica) = e.replica.as_ref().filter(|_| !document_event) {
        body["replica"] = json!(replica);
    }
    if let (true, Some(v)) = (content, version) {
        for (name, value) in rendered(state, v).await? {
            body[name] = value;
        }
    }
    Ok(body.to_string())
}

/// The document's current version: its room's on this replica, else the cache's or
/// PostgreSQL's (as `GET /docs/{id}` reads it).
async fn current(state: &AppState, doc: &DocId) -> Result<Option<Version>, String> {
    let peek = state.registry.send(PeekRoom { doc: doc.clone() }).await;
    if let Ok(Some(room)) = peek {
        if let Ok(Ok(current)) = room.send(Current).await {
            return Ok(current);
        }
    }
    match state.supervisor.send(Load { doc: doc.clone() }).await {
        Ok(Ok(loaded)) => Ok(loaded.version),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// `content` (and for Yjs `prosemirror`), on the blocking pool, one rendering turn at a time
/// like `GET /docs/{id}`'s. A state that does not load is an error (retried with the event).
async fn rendered(state: &AppState, v: Version) -> Result<Vec<(&'static str, Value)>, String> {
    if v.kind == Kind::Json {
        let content: Value = serde_json::from_slice(&v.content).map_err(|e| e.to_string())?;
        return Ok(vec![("content", content)]);
    }
    let turn = state.renderings.wait().await.map_err(|e| e.to_string())?;
    let limits = state.settings.limits.yjs();
    actix_web::web::block(move || {
        let doc = YjsDoc::load_with(&v.content, limits).map_err(|e| e.to_string())?;
        // A rendering the document does not allow (no `default` fragment, nested too deep) is
        // null: the event still goes out.
        let content = doc.to_json().unwrap_or(Value::Null);
        let prosemirror = doc.to_prosemirror("default").unwrap_or(Value::Null);
        drop(turn);
        Ok(vec![("content", content), ("prosemirror", prosemirror)])
    })
    .await
    .map_err(|e| e.to_string())?
}
