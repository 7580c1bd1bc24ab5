//! The WebSocket session actors: one per connection. All use of actix-web-actors lives in this
//! module (this file for `/docs/{id}/ws` and `/yjs/{id}`, [`hocuspocus`] for `/hocuspocus`), so
//! moving to actix-ws stays a change to one module.
//!
//! Frames go out through the session's [`Outbox`]: a large one (a joiner's sync step 2, a large
//! update) is handed to the connection as its socket drains, in slices of the buffer the room
//! shares between members, rather than copied whole into send buffers at once.
//!
//! A session joins its room before reading any message (joining runs under `ctx.wait`), forwards
//! updates to the room and writes back acks, errors and whatever the room broadcasts. It proves
//! the client alive with a WebSocket Ping every `heartbeat_interval_ms` and closes the
//! connection after `client_timeout_ms` without a frame.

mod frame_gate;
mod frame_limit;
pub mod hocuspocus;
mod outbox;

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::body::BoxBody;
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws;
use docroom_actors::doc::{DocId, Kind};
use docroom_actors::refusal_log::RefusalLog;
use docroom_actors::registry::{GetRoom, NoRoom, RoomRegistry};
use docroom_actors::room::{
    Backlog, DocRoom, Join, Leave, MemberId, Outbound, RoomError, Update, YjsFrame,
};
use tracing::{debug, info};

use crate::auth::Access;
use crate::error::ApiError;
use crate::limits::{ConnectionSlot, TokenBucket};
use crate::state::AppState;
use crate::webhooks::{ClientEvent, Recorder};
use bytes::Bytes;
use docroom_actors::protocol::json::{self as protocol, error_frame, Inbound};
use docroom_actors::protocol::yjs::step2;
use frame_gate::{FrameGate, Verdict};
use frame_limit::FrameLimit;
use outbox::{Drained, Outbox};

/// Starts a session for `doc` if the request is a valid upgrade and the document has a room
/// (503 when the server is at its room limit).
pub async fn start(
    doc: DocId,
    kind: Kind,
    access: Access,
    slot: ConnectionSlot,
    req: &HttpRequest,
    stream: actix_web::web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    // A valid handshake first: a request that cannot upgrade must not open (and load) a room.
    ws::handshake(req)
        .map_err(|e| ApiError::BadRequest(format!("websocket upgrade failed: {e}")))?;
    // The room is opened now, so a full server answers 503 rather than upgrading to say so; the
    // session's join then finds it in the registry.
    state.room(&doc, kind).await?;
    let s = &state.settings.session;
    let member = MemberId::next();
    let span = tracing::info_span!("session", doc = %doc, member = member.get());
    let frame_limit = match kind {
        Kind::Json => FrameLimit::json(s.max_frame_bytes),
        Kind::Yjs => FrameLimit::yjs(&state.settings.limits),
    };
    let session = |gate, outbox| Session {
        doc,
        kind,
        member,
        span,
        access,
        _slot: slot,
        rate: TokenBucket::new(
            state.settings.limits.messages_per_sec,
            state.settings.limits.message_burst,
            Instant::now(),
        ),
        rate_violations: 0,
        max_rate_violations: state.settings.limits.max_rate_violations,
        max_document_bytes: state.settings.limits.max_document_bytes,
        registry: state.registry.clone(),
        room: None,
        backlog: Backlog::default(),
        last_seen: Instant::now(),
        heartbeat: Duration::from_millis(s.heartbeat_interval_ms),
        timeout: Duration::from_millis(s.client_timeout_ms),
        gate,
        frame_limit,
        refusals: state.refusals.clone(),
        outbox,
        webhooks: state.webhooks.as_ref().map(|w| w.recorder.clone()),
    };
    upgrade(session, req, stream, frame_limit.bytes)
}

/// Upgrades the request to a WebSocket driven by the actor `make` builds, frames up to
/// `frame_size` bytes: a longer one ends the connection's input at its header (see
/// [`FrameGate`]), and `make` gets the [`Verdict`] that says so, and the [`Outbox`] its frames
/// go out through.
fn upgrade<A>(
    make: impl FnOnce(Verdict, Outbox) -> A,
    req: &HttpRequest,
    stream: actix_web::web::Payload,
    frame_size: usize,
) -> Result<HttpResponse, ApiError>
where
    A: Actor<Context = ws::WebsocketContext<A>>
        + StreamHandler<Result<ws::Message, ws::ProtocolError>>,
{
    let (input, verdict) = FrameGate::new(stream, frame_size);
    let outbox = Outbox::default();
    let response = ws::WsResponseBuilder::new(make(verdict, outbox.clone()), req, input)
        .frame_size(frame_size)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("websocket upgrade failed: {e}")))?;
    Ok(response.map_body(|_, context| BoxBody::new(Drained::new(context, outbox))))
}

pub struct Session {
    doc: DocId,
    kind: Kind,
    member: MemberId,
    /// Entered while this connection's frames are handled, so every log line names it.
    span: tracing::Span,
    access: Access,
    /// Released when the session is dropped, freeing its place under the connection limits.
    _slot: ConnectionSlot,
    rate: TokenBucket,
    rate_violations: u32,
    max_rate_violations: u32,
    max_document_bytes: usize,
    registry: Addr<RoomRegistry>,
    room: Option<Addr<DocRoom>>,
    /// Shared with the room: what it queued for this session and the session has not handled.
    backlog: Backlog,
    last_seen: Instant,
    heartbeat: Duration,
    timeout: Duration,
    /// Set when the connection's input ended at a frame over `frame_limit`.
    gate: Verdict,
    frame_limit: FrameLimit,
    refusals: RefusalLog,
    /// Where the room's frames go out, as the connection drains.
    outbox: Outbox,
    /// Told when the client connects and leaves (`None`: webhooks off).
    webhooks: Option<Addr<Recorder>>,
}

impl Session {
    fn frame_too_large(&self, declared: Option<u64>, ctx: &mut ws::WebsocketContext<Self>) {
        self.frame_limit
            .refused(&self.refusals, self.doc.as_str(), declared);
        self.close(ctx, ws::CloseCode::Size, "frame too large");
    }

    fn close(&self, ctx: &mut ws::WebsocketContext<Self>, code: ws::CloseCode, reason: &str) {
        self.outbox.close();
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    /// `client.connected` / `client.disconnected` for the webhooks.
    fn client_event(&self, connected: bool) {
        let (recorder, user) = (self.webhooks.as_ref(), self.access.subject.as_deref());
        ClientEvent::tell(recorder, connected, &self.doc, self.kind, user);
    }

    /// Joins the room; a room that retired between lookup and join is looked up again.
    fn join(&mut self, attempt: usize, ctx: &mut ws::WebsocketContext<Self>) {
        let (registry, doc, kind) = (self.registry.clone(), self.doc.clone(), self.kind);
        let join = Join {
            member: self.member,
            kind,
            outbound: ctx.address().recipient(),
            backlog: self.backlog.clone(),
            subject: self.access.subject.clone(),
        };
        let fut = async move {
            let room = registry
                .send(GetRoom {
                    doc,
                    kind,
                    home: Some(actix::Arbiter::current()),
                })
                .await
                .map_err(|e| RoomError::Unavailable(e.to_string()))?
                .map_err(|refused| match refused {
                    NoRoom::ShuttingDown => RoomError::Closing,
                    NoRoom::Full(_) => RoomError::Unavailable(refused.to_string()),
                })?;
            match room.send(join).await {
                Ok(res) => res.map(|snapshot| Some((room, snapshot))),
                Err(_) => Ok(None),
            }
        };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some((room, greeting))) => {
                act.room = Some(room);
                for frame in greeting {
                    // The room's answer to the join: charged to no backlog.
                    act.write(frame, None, ctx);
                }
            }
            Ok(None) if attempt < 3 => act.join(attempt + 1, ctx),
            Ok(None) => act.close(ctx, ws::CloseCode::Error, "document room unavailable"),
            Err(e @ RoomError::WrongKind { .. }) => {
                if act.kind == Kind::Json {
                    ctx.text(error_frame(None, "wrong_kind", &e.to_string()));
                }
                act.close(ctx, ws::CloseCode::Unsupported, "wrong_kind");
            }
            Err(RoomError::Closing) => act.close(ctx, ws::CloseCode::Away, "server shutting down"),
            // Unavailable (a join is never refused as a posted update is).
            Err(e) => {
                ctx.text(error_frame(None, "unavailable", &e.to_string()));
                act.close(ctx, ws::CloseCode::Error, "document unavailable");
            }
        }));
    }

    /// Writes a room's frame; `charged` is the backlog it counts against until it is handed
    /// to the connection.
    fn write(
        &mut self,
        frame: Outbound,
        charged: Option<&Backlog>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let parts = match &frame {
            Outbound::Binary(bytes) => vec![bytes.clone()],
            Outbound::SyncStep2 { update, .. } => {
                vec![Bytes::from(step2::header(update.len())), update.clone()]
            }
            _ => Vec::new(),
        };
        if !parts.is_empty() {
            let backlog = charged.cloned();
            let sent = move || backlog.iter().for_each(|b| b.taken(&frame));
            return self.outbox.send(ctx, parts, sent);
        }
        if let Some(backlog) = charged {
            backlog.taken(&frame);
        }
        match frame {
            Outbound::Text(text) => ctx.text(text),
            Outbound::Binary(_) | Outbound::SyncStep2 { .. } => {}
            // Hocuspocus only: neither the JSON protocol nor y-websocket has such a message.
            Outbound::Stateless(_) => {}
            Outbound::Close { code, reason } => {
                // A room closing us (shutdown) needs no Leave; any other close is a refusal of
                // this connection only, and the room still has to forget the member.
                if code == 1001 {
                    self.room = None;
                }
                self.close(ctx, ws::CloseCode::from(code), reason);
            }
        }
    }

    fn on_binary(&mut self, data: bytes::Bytes, ctx: &mut ws::WebsocketContext<Self>) {
        match (self.kind, &self.room) {
            (Kind::Yjs, Some(room)) => room.do_send(YjsFrame {
                from: self.member,
                data,
                may_write: self.access.write,
                stored: None,
            }),
            (Kind::Yjs, None) => {}
            (Kind::Json, _) => ctx.text(error_frame(
                None,
                "bad_message",
                "binary frames are not accepted on the JSON route",
            )),
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let arrived = Instant::now();
        let (version, reference) = match protocol::decode(&self.doc, text, self.max_document_bytes)
        {
            Ok(Inbound::Ping) => return ctx.text(protocol::PONG),
            Ok(Inbound::Update { version, reference }) => (version, reference),
            Err(refusal) => return ctx.text(refusal.frame()),
        };
        if !self.access.write {
            let message = "this connection's token is read-only";
            return ctx.text(error_frame(reference.as_ref(), "read_only", message));
        }
        let Some(room) = self.room.clone() else {
            return ctx.text(error_frame(reference.as_ref(), "unavailable", "not joined"));
        };
        let update = Update {
            from: Some(self.member),
            version,
            by: None,
        };
        room.send(update)
            .into_actor(self)
            .map(move |res, _, ctx| {
                let r = reference.as_ref();
                let frame = match res {
                    Ok(Ok(ack)) => {
                        metrics::histogram!(docroom_actors::metrics::ACK_LATENCY)
                            .record(arrived.elapsed().as_secs_f64());
                        protocol::ack_frame(r, &ack.hash, ack.stored.as_str())
                    }
                    Ok(Err(e @ RoomError::WrongKind { .. })) => {
                        error_frame(r, "wrong_kind", &e.to_string())
                    }
                    Ok(Err(e)) => error_frame(r, "unavailable", &e.to_string()),
                    Err(e) => error_frame(r, "unavailable", &e.to_string()),
                };
                ctx.text(frame);
            })
            .spawn(ctx);
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let _span = self.span.clone().entered();
        metrics::gauge!(docroom_actors::metrics::CONNECTIONS).increment(1.0);
        info!(
            doc = %self.doc,
            kind = self.kind.as_str(),
            member = ?self.member,
            sub = self.access.subject.as_deref().unwrap_or("-"),
            write = self.access.write,
            "client connected"
        );
        self.client_event(true);
        if let Some(exp) = self.access.expires_at {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            ctx.run_later(Duration::from_secs(exp.saturating_sub(now)), |act, ctx| {
                act.close(ctx, ws::CloseCode::Policy, "token expired");
            });
        }
        ctx.run_interval(self.heartbeat, |act, ctx| {
            if act.last_seen.elapsed() > act.timeout {
                debug!(doc = %act.doc, "client timed out");
                act.close(ctx, ws::CloseCode::Policy, "heartbeat timeout");
            } else {
                ctx.ping(b"");
            }
        });
        self.join(0, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let _span = self.span.clone().entered();
        self.outbox.close();
        debug!(doc = %self.doc, member = ?self.member, "client disconnected");
        metrics::gauge!(docroom_actors::metrics::CONNECTIONS).decrement(1.0);
        self.client_event(false);
        if let Some(room) = self.room.take() {
            room.do_send(Leave {
                member: self.member,
            });
        }
    }
}

impl Handler<Outbound> for Session {
    type Result = ();

    /// Writes what the room sends; closes with 1008 if the room dropped this member for not
    /// taking its frames (the first thing a stalled session does once it runs again).
    fn handle(&mut self, msg: Outbound, ctx: &mut Self::Context) {
        let _span = self.span.clone().entered();
        if self.backlog.overflowed() {
            info!(doc = %self.doc, member = ?self.member, "client too slow to read, closing");
            return self.close(
                ctx,
                ws::CloseCode::Policy,
                "too slow: backlog limit exceeded",
            );
        }
        let backlog = self.backlog.clone();
        self.write(msg, Some(&backlog), ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let _span = self.span.clone().entered();
        self.last_seen = Instant::now();
        let is_message = matches!(item, Ok(ws::Message::Text(_) | ws::Message::Binary(_)));
        if is_message && !self.rate.take(self.last_seen) {
            self.rate_violations += 1;
            // A dropped Yjs update would silently desynchronize the client, so a Yjs connection
            // over the limit is closed at once (its provider reconnects and resyncs).
            if self.kind == Kind::Yjs || self.rate_violations > self.max_rate_violations {
                return self.close(ctx, ws::CloseCode::Policy, "message rate limit exceeded");
            }
            if self.kind == Kind::Json {
                let msg = "message rate limit exceeded, message dropped";
                ctx.text(error_frame(None, "unavailable", msg));
            }
            return;
        }
        match item {
            Ok(ws::Message::Text(text)) if self.kind == Kind::Json => self.on_text(&text, ctx),
            Ok(ws::Message::Text(_)) => self.close(
                ctx,
                ws::CloseCode::Unsupported,
                "the yjs protocol uses binary frames",
            ),
            Ok(ws::Message::Binary(data)) => self.on_binary(data, ctx),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Continuation(_)) => ctx.text(error_frame(
                None,
                "bad_message",
                "fragmented frames are not supported",
            )),
            Ok(ws::Message::Close(reason)) => {
                self.outbox.close();
                ctx.close(reason);
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => self.frame_too_large(None, ctx),
            Err(e) => {
                debug!(doc = %self.doc, error = %e, "websocket protocol error");
                self.close(ctx, ws::CloseCode::Protocol, "protocol error");
            }
        }
    }

    /// The input ended: the client went away, or the frame gate stopped it at a frame over the
    /// limit (every frame before it was handled).
    fn finished(&mut self, ctx: &mut Self::Context) {
        let _span = self.span.clone().entered();
        match self.gate.refused() {
            Some(declared) => self.frame_too_large(Some(declared), ctx),
            None => ctx.stop(),
        }
    }
}
