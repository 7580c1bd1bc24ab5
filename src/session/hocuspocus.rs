//! The `/hocuspocus` session actor (SPEC §5b): one per socket, which may carry many documents.
//! Frames go through the pure [`Connection`], which says what they mean; this shell carries its
//! actions out: token checks and room joins ([`crate::hocuspocus::admit`]), frames to rooms,
//! frames from rooms framed with their document name, SyncStatus once the room says the content
//! is stored.
//!
//! Every frame goes out through the socket's [`Outbox`], so a document's sync step 2 (a share of
//! the room's one encoding, behind the document's name) leaves as the socket drains, and the
//! frames written after it follow it.
//!
//! Keepalive: the provider closes a socket that received nothing for 30 s, and a lone provider
//! has nobody to hear from. Like Hocuspocus, each awareness frame is echoed to its sender too
//! (providers renew their awareness every 15 s, and ignore their own state coming back), and a
//! 4.x provider, which announced its version, also gets a Ping every heartbeat interval. 2.x
//! and 3.x providers never get Ping: they throw on types they do not know.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use docroom_actors::doc::DocId;
use docroom_actors::protocol::hocuspocus::connection::CLOSE_TOO_BIG;
use docroom_actors::protocol::hocuspocus::{outgoing, Action, Connection, ConnectionLimits, Frame};
use docroom_actors::room::{Backlog, Outbound};
use tracing::{debug, info, warn};

use super::frame_gate::Verdict;
use super::frame_limit::FrameLimit;
use super::outbox::Outbox;
use crate::auth;
use crate::error::ApiError;
use crate::hocuspocus::{admit, FromRoom, Membership};
use crate::limits::{ConnectionSlot, TokenBucket};
use crate::state::AppState;

/// Upgrades to a `/hocuspocus` session; the socket's place under the overall connection limit
/// is already reserved.
pub fn start(
    slot: ConnectionSlot,
    req: &HttpRequest,
    stream: actix_web::web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    ws::handshake(req)
        .map_err(|e| ApiError::BadRequest(format!("websocket upgrade failed: {e}")))?;
    let s = &state.settings.session;
    let l = &state.settings.limits;
    let frame_limit = FrameLimit::yjs(l);
    let session = |gate, outbox| HocuspocusSession {
        connection: Connection::new(ConnectionLimits {
            max_held_bytes: l.hocuspocus_held_bytes,
            max_held_messages: l.hocuspocus_held_messages,
            max_documents: l.hocuspocus_documents_per_socket,
        }),
        docs: HashMap::new(),
        state: state.clone(),
        span: tracing::info_span!("hocuspocus"),
        _slot: slot,
        rate: TokenBucket::new(l.messages_per_sec, l.message_burst, Instant::now()),
        last_seen: Instant::now(),
        heartbeat: Duration::from_millis(s.heartbeat_interval_ms),
        timeout: Duration::from_millis(s.client_timeout_ms),
        gate,
        frame_limit,
        outbox,
    };
    super::upgrade(session, req, stream, frame_limit.bytes)
}

pub struct HocuspocusSession {
    connection: Connection,
    /// The documents that are members of their rooms (joined, maybe not yet authenticated).
    docs: HashMap<Arc<str>, Membership>,
    state: AppState,
    span: tracing::Span,
    /// Released when the session is dropped.
    _slot: ConnectionSlot,
    rate: TokenBucket,
    last_seen: Instant,
    heartbeat: Duration,
    timeout: Duration,
    /// Set when the socket's input ended at a frame over `frame_limit`.
    gate: Verdict,
    frame_limit: FrameLimit,
    /// Where every frame goes out, as the socket drains.
    outbox: Outbox,
}

type Ctx = ws::WebsocketContext<HocuspocusSession>;

impl HocuspocusSession {
    /// A frame over the limit closes the whole socket: which document it was for is in the
    /// part of it never read.
    fn frame_too_large(&self, declared: Option<u64>, ctx: &mut Ctx) {
        let refusals = &self.state.refusals;
        self.frame_limit.refused(refusals, "/hocuspocus", declared);
        self.close(ctx, CLOSE_TOO_BIG, "frame too large");
    }

    fn close(&self, ctx: &mut Ctx, code: u16, reason: &str) {
        self.outbox.close();
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    fn run(&mut self, actions: Vec<Action>, ctx: &mut Ctx) {
        for action in actions {
            match action {
                Action::CheckToken { doc, token, ticket } => self.check(doc, token, ticket, ctx),
                Action::Join { doc, .. } => self.joined(&doc, ctx),
                Action::Deliver { doc, frame } => self.deliver(doc, frame, ctx),
                Action::Leave { doc } => self.leave(&doc, ctx),
                Action::Send(bytes) => self.binary(bytes, ctx),
                Action::CloseSocket { code, reason } => {
                    info!(code, reason, "hocuspocus socket closed");
                    return self.close(ctx, code, &reason);
                }
            }
        }
    }

    /// Checks a document's token; a first token also joins the document's room, and only then
    /// answers the connection (so a refused join is a `PermissionDenied`).
    fn check(&mut self, doc: String, token: String, ticket: u64, ctx: &mut Ctx) {
        let checked = DocId::parse(&doc)
            .map_err(|e| e.to_string())
            .and_then(|id| {
                auth::authorize_token(Some(&token), &self.state.settings.auth, &id)
                    .map(|access| (id, access))
                    .map_err(|e| denial(&e))
            });
        let (id, access) = match checked {
            Ok(ok) => ok,
            Err(reason) => {
                debug!(doc, reason, "hocuspocus document refused");
                let actions = self.connection.token_checked(&doc, ticket, Err(reason));
                return self.run(actions, ctx);
            }
        };
        let scope = match access.write {
            true => outgoing::Scope::ReadWrite,
            false => outgoing::Scope::ReadOnly,
        };
        let expires_at = access.expires_at;
        if self.docs.contains_key(doc.as_str()) {
            // A refreshed token for a member: its expiry moves.
            self.expire_at(&doc, expires_at, ctx);
            let actions = self.connection.token_checked(&doc, ticket, Ok(scope));
            return self.run(actions, ctx);
        }
        let admission = admit(
            id,
            self.state.clone(),
            ctx.address().recipient(),
            access.subject.clone(),
        );
        ctx.spawn(admission.into_actor(self).map(move |res, act, ctx| {
            let _span = act.span.clone().entered();
            let outcome = match res {
                Ok(admitted) => {
                    act.docs.insert(doc.as_str().into(), admitted.membership);
                    if let Some(m) = act.docs.get_mut(doc.as_str()) {
                        // The greeting goes first, once `Authenticated` is out.
                        m.early = Some(admitted.greeting);
                    }
                    act.expire_at(&doc, expires_at, ctx);
                    Ok(scope)
                }
                Err(reason) => Err(reason),
            };
            let actions = act.connection.token_checked(&doc, ticket, outcome);
            act.run(actions, ctx);
            // The document was closed while it was joining: the join is undone.
            if act.connection.scope(&doc).is_none() {
                act.leave(&doc, ctx);
            }
        }));
    }

    /// Ends the document when its token expires.
    fn expire_at(&mut self, doc: &str, expires_at: Option<u64>, ctx: &mut Ctx) {
        let Some(m) = self.docs.get_mut(doc) else {
            return;
        };
        if let Some(old) = m.expiry.take() {
            ctx.cancel_future(old);
        }
        let Some(exp) = expires_at else { return };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let doc = doc.to_owned();
        m.expiry = Some(ctx.run_later(
            Duration::from_secs(exp.saturating_sub(now)),
            move |act, ctx| {
                let actions = act.connection.end_document(&doc, "token expired");
                act.run(actions, ctx);
            },
        ));
    }

    /// `Authenticated` went out: what the room sent meanwhile follows, greeting first.
    fn joined(&mut self, doc: &str, ctx: &mut Ctx) {
        let Some(m) = self.docs.get_mut(doc) else {
            return;
        };
        let early = m.early.take().unwrap_or_default();
        for frame in early {
            self.write(doc, frame, ctx);
        }
    }

    fn deliver(&mut self, doc: String, frame: Frame, ctx: &mut Ctx) {
        let (Some(m), Some(scope)) = (self.docs.get(doc.as_str()), self.connection.scope(&doc))
        else {
            return;
        };
        if let Frame::Awareness { .. } = &frame {
            self.binary(frame.encode(), ctx);
        }
        let Some(stored) = m.deliver(frame, scope) else {
            return;
        };
        ctx.spawn(stored.into_actor(self).map(move |answer, act, ctx| {
            // No answer: the room dropped the frame (it is closing, or closed this document).
            let applied = answer.unwrap_or(false);
            if act.connection.scope(&doc).is_some() {
                act.binary(outgoing::sync_status(&doc, applied), ctx);
            }
        }));
    }

    fn leave(&mut self, doc: &str, ctx: &mut Ctx) {
        if let Some(mut m) = self.docs.remove(doc) {
            if let Some(expiry) = m.expiry.take() {
                ctx.cancel_future(expiry);
            }
            m.leave();
        }
    }

    /// Writes a frame of the session's own.
    fn binary(&self, frame: Vec<u8>, ctx: &mut Ctx) {
        self.outbox.send(ctx, vec![Bytes::from(frame)], || {});
    }

    /// Writes a room's frame for `doc`, framed with its name; it counts against the document's
    /// backlog until it is handed to the socket.
    fn write(&mut self, doc: &str, frame: Outbound, ctx: &mut Ctx) {
        let backlog = self.docs.get(doc).map(|m| m.backlog.clone());
        let parts = match &frame {
            Outbound::Binary(message) => match outgoing::from_yjs_message(doc, message) {
                Ok(bytes) => vec![Bytes::from(bytes)],
                Err(e) => {
                    warn!(doc, error = %e, "room frame not sent: not a hocuspocus message");
                    Vec::new()
                }
            },
            Outbound::SyncStep2 { update, .. } => vec![
                Bytes::from(outgoing::sync_step2_head(doc, update.len())),
                update.clone(),
            ],
            Outbound::Stateless(payload) => vec![Bytes::from(outgoing::stateless(doc, payload))],
            Outbound::Text(_) | Outbound::Close { .. } => Vec::new(),
        };
        if !parts.is_empty() {
            let sent = move || credit(backlog.as_ref(), &frame);
            return self.outbox.send(ctx, parts, sent);
        }
        credit(backlog.as_ref(), &frame);
        match frame {
            Outbound::Binary(_) | Outbound::SyncStep2 { .. } | Outbound::Stateless(_) => {}
            Outbound::Text(_) => {}
            // Shutdown: the whole socket goes.
            Outbound::Close { code: 1001, reason } => self.close(ctx, 1001, reason),
            // The room refused this document's frames (malformed, over a limit): only this
            // document ends.
            Outbound::Close { reason, .. } => {
                let actions = self.connection.end_document(doc, reason);
                self.run(actions, ctx);
            }
        }
    }
}

/// A room's frame for a document is out of its backlog (if the document is still open).
fn credit(backlog: Option<&Backlog>, frame: &Outbound) {
    if let Some(backlog) = backlog {
        backlog.taken(frame);
    }
}

/// The `PermissionDenied` reason for a refused token.
fn denial(e: &ApiError) -> String {
    match e {
        ApiError::Unauthorized => "missing, invalid or expired token".to_owned(),
        other => other.to_string(),
    }
}

impl Actor for HocuspocusSession {
    type Context = Ctx;

    fn started(&mut self, ctx: &mut Ctx) {
        let _span = self.span.clone().entered();
        metrics::gauge!(docroom_actors::metrics::CONNECTIONS).increment(1.0);
        debug!("hocuspocus socket connected");
        ctx.run_interval(self.heartbeat, |act, ctx| {
            if act.last_seen.elapsed() > act.timeout {
                debug!("hocuspocus client timed out");
                return act.close(ctx, 1008, "heartbeat timeout");
            }
            ctx.ping(b"");
            if act.connection.may_ping() {
                act.binary(outgoing::ping(), ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Ctx) {
        self.outbox.close();
        metrics::gauge!(docroom_actors::metrics::CONNECTIONS).decrement(1.0);
        for (_, m) in self.docs.drain() {
            m.leave();
        }
    }
}

impl Handler<FromRoom> for HocuspocusSession {
    type Result = ();

    /// Writes what a room sends for one of the socket's documents; closes the socket (1008) if
    /// a room dropped it for not taking its frames.
    fn handle(&mut self, msg: FromRoom, ctx: &mut Ctx) {
        let _span = self.span.clone().entered();
        let Some(m) = self.docs.get_mut(&msg.doc) else {
            return;
        };
        if m.backlog.overflowed() {
            info!(doc = %msg.doc, "hocuspocus client too slow to read, closing");
            return self.close(ctx, 1008, "too slow: backlog limit exceeded");
        }
        if let Some(early) = m.early.as_mut() {
            // Not authenticated yet: it waits, still counted against the backlog.
            return early.push(msg.frame);
        }
        self.write(&msg.doc, msg.frame, ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for HocuspocusSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Ctx) {
        let _span = self.span.clone().entered();
        self.last_seen = Instant::now();
        let is_message = matches!(item, Ok(ws::Message::Text(_) | ws::Message::Binary(_)));
        // A dropped frame would desynchronize a document: over the rate, the socket goes (the
        // provider reconnects and resyncs), as on /yjs.
        if is_message && !self.rate.take(self.last_seen) {
            return self.close(ctx, 1008, "message rate limit exceeded");
        }
        match item {
            Ok(ws::Message::Binary(data)) => {
                let actions = self.connection.receive(&data);
                self.run(actions, ctx);
            }
            Ok(ws::Message::Text(_)) => {
                self.close(ctx, 1003, "the hocuspocus protocol uses binary frames")
            }
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Continuation(_)) => {
                self.close(ctx, 1003, "fragmented frames are not supported")
            }
            Ok(ws::Message::Close(reason)) => {
                self.outbox.close();
                ctx.close(reason);
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => self.frame_too_large(None, ctx),
            Err(e) => {
                debug!(error = %e, "websocket protocol error");
                self.close(ctx, 1002, "protocol error");
            }
        }
    }

    /// The input ended: the provider went away, or the frame gate stopped it at a frame over
    /// the limit (every frame before it was handled).
    fn finished(&mut self, ctx: &mut Ctx) {
        let _span = self.span.clone().entered();
        match self.gate.refused() {
            Some(declared) => self.frame_too_large(Some(declared), ctx),
            None => ctx.stop(),
        }
    }
}
