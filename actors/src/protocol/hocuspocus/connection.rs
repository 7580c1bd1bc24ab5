//! One socket's documents as a pure state machine: frames in, [`Action`]s out. The session that
//! will own it does the IO (token checks, rooms, the socket); this decides what each frame means.
//!
//! A document is `AwaitingAuth` from its first frame until its token is checked, then
//! `Authenticated` or `Denied`. Frames that arrive while the token is checked are held, within
//! per-socket bounds, and replayed in order once it is accepted. A document beyond the socket's
//! document bound is refused on its own (`PermissionDenied`); the socket and its other documents
//! go on.

use std::collections::{HashMap, VecDeque};

use super::frame::{decode, document_of, Auth, Frame, FrameError};
use super::outgoing::{self, Scope};

/// Whole-socket close codes, as Hocuspocus's `CloseEvents` and RFC 6455 name them.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// A frame whose document name cannot be read: nothing narrower than the socket can be ended.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// Per-socket bounds; the defaults are Hocuspocus 4's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Bytes of frames held, over all documents awaiting their token check.
    pub max_held_bytes: usize,
    /// Frames held, over all documents awaiting their token check.
    pub max_held_messages: usize,
    /// Documents open on the socket at once, whatever their state; one more is refused.
    pub max_documents: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_held_bytes: 5 * 1024 * 1024,
            max_held_messages: 1_000,
            max_documents: 100,
        }
    }
}

/// The `PermissionDenied` reason for a document beyond [`ConnectionLimits::max_documents`].
pub const TOO_MANY_DOCUMENTS: &str = "too many documents open on this socket";

/// How many documents refused for the document bound a socket remembers. Forgetting one costs
/// only a repeated `PermissionDenied`.
const REMEMBERED_REFUSALS: usize = 16;

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check `token` for `doc`, then answer [`Connection::token_checked`] with `ticket`.
    CheckToken {
        doc: String,
        token: String,
        ticket: u64,
    },
    /// `doc` was accepted: make the socket a member of its room with `scope`.
    Join { doc: String, scope: Scope },
    /// A frame for the room of an authenticated `doc` (Sync, Awareness, QueryAwareness,
    /// Stateless).
    Deliver { doc: String, frame: Frame },
    /// The socket is no longer a member of `doc`'s room.
    Leave { doc: String },
    /// Bytes to write to the socket.
    Send(Vec<u8>),
    /// Close the whole socket; nothing after this matters.
    CloseSocket { code: u16, reason: String },
}

#[derive(Debug)]
enum DocState {
    AwaitingAuth {
        ticket: u64,
        held: Vec<(Frame, usize)>,
        /// Re-checking a member's new token: it leaves the room if the token is refused.
        member: bool,
    },
    Authenticated {
        scope: Scope,
    },
    Denied,
}

#[derive(Debug)]
pub struct Connection {
    limits: ConnectionLimits,
    docs: HashMap<String, DocState>,
    /// Documents refused for the document bound, newest last. A provider sends its first
    /// frames (Auth, SyncStep1, Awareness) without waiting for an answer: remembering the name
    /// lets the frames after Auth be dropped quietly instead of each drawing another
    /// `PermissionDenied`. Bounded, since the client picks the names.
    refused: VecDeque<String>,
    held_bytes: usize,
    held_messages: usize,
    next_ticket: u64,
    /// Set from the first Auth that carries one: only 4.x providers send it, and only they
    /// understand Ping and Pong.
    provider_version: Option<String>,
    closed: bool,
}

impl Connection {
    pub fn new(limits: ConnectionLimits) -> Self {
        Connection {
            limits,
            docs: HashMap::new(),
            refused: VecDeque::new(),
            held_bytes: 0,
            held_messages: 0,
            next_ticket: 0,
            provider_version: None,
            closed: false,
        }
    }

    /// Whether Ping may be sent: never to a provider that did not announce a version.
    pub fn may_ping(&self) -> bool {
        self.provider_version.is_some()
    }

    pub fn provider_version(&self) -> Option<&str> {
        self.provider_version.as_deref()
    }

    /// The scope of an authenticated document.
    pub fn scope(&self, doc: &str) -> Option<Scope> {
        match self.docs.get(doc) {
            Some(DocState::Authenticated { scope }) => Some(*scope),
            _ => None,
        }
    }

    pub fn document_count(&self) -> usize {
        self.docs.len()
    }

    /// Frames held over all documents awaiting their token check: (messages, bytes).
    pub fn held(&self) -> (usize, usize) {
        (self.held_messages, self.held_bytes)
    }

    /// Handles one binary frame from the socket.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        match decode(bytes) {
            Ok(frame) => self.receive_frame(frame, bytes.len()),
            Err(error) => self.refuse(bytes, error),
        }
    }

    fn receive_frame(&mut self, frame: Frame, size: usize) -> Vec<Action> {
        let doc = match &frame {
            Frame::Ping => return self.answer_ping(),
            // Liveness is the session's: any frame counts, so a Pong needs nothing more.
            Frame::Pong => return Vec::new(),
            other => other.doc().unwrap_or_default().to_owned(),
        };
        match frame {
            Frame::Auth {
                auth:
                    Auth::Token {
                        token,
                        provider_version,
                    },
                ..
            } => {
                if provider_version.is_some() {
                    self.provider_version = provider_version;
                }
                self.authenticate(doc, token)
            }
            Frame::Close { .. } => {
                self.refused.retain(|name| *name != doc);
                self.forget(&doc)
            }
            // Server → client messages mean nothing from a provider.
            Frame::Auth { .. } | Frame::SyncStatus { .. } => Vec::new(),
            frame => self.route(doc, frame, size),
        }
    }

    fn answer_ping(&self) -> Vec<Action> {
        if self.may_ping() {
            vec![Action::Send(outgoing::pong())]
        } else {
            Vec::new()
        }
    }

    /// A token for `doc`: a first one opens the document, a later one (a refreshed token)
    /// checks it again, holding the document's frames meanwhile.
    fn authenticate(&mut self, doc: String, token: String) -> Vec<Action> {
        let member = match self.docs.get(&doc) {
            // The check already under way decides; the provider sends one token per attach.
            Some(DocState::AwaitingAuth { .. }) => return Vec::new(),
            Some(DocState::Authenticated { .. }) => true,
            Some(DocState::Denied) => false,
            None if self.docs.len() >= self.limits.max_documents => return self.refuse_extra(doc),
            None => {
                self.refused.retain(|name| *name != doc);
                false
            }
        };
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.docs.insert(
            doc.clone(),
            DocState::AwaitingAuth {
                ticket,
                held: Vec::new(),
                member,
            },
        );
        vec![Action::CheckToken { doc, token, ticket }]
    }

    fn route(&mut self, doc: String, frame: Frame, size: usize) -> Vec<Action> {
        match self.docs.get(&doc) {
            Some(DocState::Authenticated { .. }) => vec![Action::Deliver { doc, frame }],
            // Refused until the provider sends a new token.
            Some(DocState::Denied) => Vec::new(),
            Some(DocState::AwaitingAuth { .. }) => self.hold(&doc, frame, size),
            // Refused for the document bound until the provider sends Auth again.
            None if self.refused.contains(&doc) => Vec::new(),
            None => {
                // A 2.x provider without a token sends no Auth: its first frame stands for one
                // with an empty token.
                let mut actions = self.authenticate(doc.clone(), String::new());
                if self.docs.contains_key(&doc) {
                    actions.extend(self.hold(&doc, frame, size));
                }
                actions
            }
        }
    }

    /// A document beyond the socket's bound: only it is refused, and its name remembered so
    /// that the frames its provider sends next are dropped without another answer. Once the
    /// provider closes one of its documents, a new Auth may take the freed place.
    fn refuse_extra(&mut self, doc: String) -> Vec<Action> {
        let denied = outgoing::permission_denied(&doc, TOO_MANY_DOCUMENTS);
        if !self.refused.contains(&doc) {
            if self.refused.len() >= REMEMBERED_REFUSALS {
                self.refused.pop_front();
            }
            self.refused.push_back(doc);
        }
        vec![Action::Send(denied)]
    }

    fn hold(&mut self, doc: &str, frame: Frame, size: usize) -> Vec<Action> {
        if self.held_messages + 1 > self.limits.max_held_messages {
            return self.close_socket(CLOSE_TOO_BIG, "too many messages before authentication");
        }
        if self.held_bytes.saturating_add(size) > self.limits.max_held_bytes {
            return self.close_socket(CLOSE_TOO_BIG, "too many bytes before authentication");
        }
        if let Some(DocState::AwaitingAuth { held, .. }) = self.docs.get_mut(doc) {
            held.push((frame, size));
            self.held_messages += 1;
            self.held_bytes += size;
        }
        Vec::new()
    }

    /// The answer to [`Action::CheckToken`]: `Ok(scope)` accepts the document, `Err(reason)`
    /// refuses it (the provider is told why; the socket stays open). A stale ticket (the
    /// document was closed or re-authenticated meanwhile) changes nothing.
    pub fn token_checked(
        &mut self,
        doc: &str,
        ticket: u64,
        outcome: Result<Scope, String>,
    ) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        let Some(DocState::AwaitingAuth {
            ticket: expected, ..
        }) = self.docs.get(doc)
        else {
            return Vec::new();
        };
        if *expected != ticket {
            return Vec::new();
        }
        let next = match outcome {
            Ok(scope) => DocState::Authenticated { scope },
            Err(_) => DocState::Denied,
        };
        let Some(DocState::AwaitingAuth { held, member, .. }) =
            self.docs.insert(doc.to_owned(), next)
        else {
            return Vec::new();
        };
        self.release(&held);
        let doc = doc.to_owned();
        let mut actions = Vec::new();
        match outcome {
            Ok(scope) => {
                // `Authenticated` first: a provider takes a document's other frames only once
                // it is authenticated, and joining sends the room's greeting.
                actions.push(Action::Send(outgoing::authenticated(&doc, scope)));
                if !member {
                    actions.push(Action::Join {
                        doc: doc.clone(),
                        scope,
                    });
                }
                actions.extend(held.into_iter().map(|(frame, _)| Action::Deliver {
                    doc: doc.clone(),
                    frame,
                }));
            }
            Err(reason) => {
                if member {
                    actions.push(Action::Leave { doc: doc.clone() });
                }
                actions.push(Action::Send(outgoing::permission_denied(&doc, &reason)));
            }
        }
        actions
    }

    /// Ends one document from the server's side (token expired, document refused, a bad
    /// frame): the provider gets CLOSE with `reason`, the socket's other documents go on.
    pub fn end_document(&mut self, doc: &str, reason: &str) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        let mut actions = self.forget(doc);
        actions.push(Action::Send(outgoing::close(doc, reason)));
        actions
    }

    /// Drops `doc` from the table: the provider closed it, or the server ends it.
    fn forget(&mut self, doc: &str) -> Vec<Action> {
        match self.docs.remove(doc) {
            Some(DocState::Authenticated { .. }) => vec![Action::Leave {
                doc: doc.to_owned(),
            }],
            Some(DocState::AwaitingAuth { held, member, .. }) => {
                self.release(&held);
                if member {
                    vec![Action::Leave {
                        doc: doc.to_owned(),
                    }]
                } else {
                    Vec::new()
                }
            }
            Some(DocState::Denied) | None => Vec::new(),
        }
    }

    fn release(&mut self, held: &[(Frame, usize)]) {
        self.held_messages -= held.len();
        self.held_bytes -= held.iter().map(|(_, size)| size).sum::<usize>();
    }

    /// A frame that does not decode: with a readable document name only that document ends;
    /// otherwise there is nothing narrower than the socket to end.
    fn refuse(&mut self, bytes: &[u8], error: FrameError) -> Vec<Action> {
        match document_of(bytes) {
            Some(doc) => self.end_document(&doc, &error.to_string()),
            None => self.close_socket(CLOSE_PROTOCOL_ERROR, &error.to_string()),
        }
    }

    /// Closes the socket: every document the socket is a member of is left first.
    fn close_socket(&mut self, code: u16, reason: &str) -> Vec<Action> {
        self.closed = true;
        let mut docs: Vec<String> =
            self.docs
                .drain()
                .filter_map(|(doc, state)| match state {
                    DocState::Authenticated { .. }
                    | DocState::AwaitingAuth { member: true, .. } => Some(doc),
                    _ => None,
                })
                .collect();
        docs.sort();
        self.held_bytes = 0;
        self.held_messages = 0;
        let mut actions: Vec<Action> = docs.into_iter().map(|doc| Action::Leave { doc }).collect();
        actions.push(Action::CloseSocket {
            code,
            reason: close_reason(reason),
        });
        actions
    }
}

/// A WebSocket close reason holds at most 123 bytes.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
