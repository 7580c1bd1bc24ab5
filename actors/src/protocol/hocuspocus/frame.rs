//! One Hocuspocus frame: `varString(document) · varUint(type) · payload` (lib0), decoded and
//! encoded through yrs's lib0 readers and writers. Decoding borrows nothing past the call and
//! copies only bytes the input holds, so a frame never costs more memory than its own length.

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

/// y-protocols sync (step 1, step 2, update); the payload is the sync sub-message.
pub const MSG_SYNC: u64 = 0;
pub const MSG_AWARENESS: u64 = 1;
pub const MSG_AUTH: u64 = 2;
pub const MSG_QUERY_AWARENESS: u64 = 3;
/// Hocuspocus's `SyncReply`, exchanged between its own servers only.
pub const MSG_SYNC_REPLY: u64 = 4;
pub const MSG_STATELESS: u64 = 5;
/// Hocuspocus's `BroadcastStateless`, exchanged between its own servers only.
pub const MSG_BROADCAST_STATELESS: u64 = 6;
pub const MSG_CLOSE: u64 = 7;
pub const MSG_SYNC_STATUS: u64 = 8;
/// 4.x only, and a frame of this one byte: no document name precedes it.
pub const MSG_PING: u8 = 9;
/// 4.x only, like [`MSG_PING`].
pub const MSG_PONG: u8 = 10;

const AUTH_TOKEN: u64 = 0;
const AUTH_PERMISSION_DENIED: u64 = 1;
const AUTH_AUTHENTICATED: u64 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    /// A length, varint or string ran past the end of the frame, or was not UTF-8.
    #[error("malformed {field}: {detail}")]
    Malformed { field: &'static str, detail: String },
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// Types 4 and 6 travel between Hocuspocus servers; no provider sends them.
    #[error("message type {0} is for servers only")]
    ServerOnly(u64),
    #[error("unknown auth message type {0}")]
    UnknownAuthType(u64),
    #[error("sync status {0} is neither 0 nor 1")]
    BadSyncStatus(u64),
    /// Ping and Pong are one byte; with a document name in front they mean nothing.
    #[error("keepalive message type {0} after a document name")]
    NamedKeepalive(u64),
}

/// The Auth sub-messages (`@hocuspocus/common` `auth.ts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Client → server. 4.x providers append their version; 2.x and 3.x do not, which is how
    /// the server knows whether Ping/Pong may be sent.
    Token {
        token: String,
        provider_version: Option<String>,
    },
    PermissionDenied {
        reason: String,
    },
    /// `scope` is `"read-write"` or `"readonly"`.
    Authenticated {
        scope: String,
    },
}

/// A decoded frame. Payloads for the Yjs layer stay bytes: this module only frames them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `payload` is a y-protocols sync sub-message (`varUint(step) · varUint8Array(data)`).
    Sync {
        doc: String,
        payload: Vec<u8>,
    },
    /// `update` is a y-protocols awareness update (the frame length-prefixes it).
    Awareness {
        doc: String,
        update: Vec<u8>,
    },
    Auth {
        doc: String,
        auth: Auth,
    },
    QueryAwareness {
        doc: String,
    },
    Stateless {
        doc: String,
        payload: String,
    },
    /// From a provider (`destroy`/`detach`) it carries no reason; from the server it does.
    Close {
        doc: String,
        reason: Option<String>,
    },
    /// `true`: the update was stored (the provider's unsynced count goes down).
    SyncStatus {
        doc: String,
        applied: bool,
    },
    Ping,
    Pong,
}

impl Frame {
    /// The document the frame is about; `None` for Ping and Pong.
    pub fn doc(&self) -> Option<&str> {
        match self {
            Frame::Sync { doc, .. }
            | Frame::Awareness { doc, .. }
            | Frame::Auth { doc, .. }
            | Frame::QueryAwareness { doc }
            | Frame::Stateless { doc, .. }
            | Frame::Close { doc, .. }
            | Frame::SyncStatus { doc, .. } => Some(doc),
            Frame::Ping | Frame::Pong => None,
        }
    }

    /// The same message as a y-protocols (`/yjs`) message, for the Yjs layer: Hocuspocus's
    /// types 0, 1 and 3 are y-protocols' own, so only the document name differs.
    pub fn to_yjs_message(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Frame::Sync { payload, .. } => {
                out.write_var(MSG_SYNC);
                out.write_all(payload);
            }
            Frame::Awareness { update, .. } => {
                out.write_var(MSG_AWARENESS);
                out.write_buf(update);
            }
            Frame::QueryAwareness { .. } => out.write_var(MSG_QUERY_AWARENESS),
            _ => return None,
        }
        Some(out)
    }

    /// The wire bytes of this frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let doc = match self {
            Frame::Ping => return vec![MSG_PING],
            Frame::Pong => return vec![MSG_PONG],
            other => other.doc().unwrap_or_default(),
        };
        out.write_string(doc);
        // Sync, Awareness and QueryAwareness are y-protocols messages behind the name.
        if let Some(message) = self.to_yjs_message() {
            out.extend_from_slice(&message);
            return out;
        }
        match self {
            Frame::Auth { auth, .. } => {
                out.write_var(MSG_AUTH);
                encode_auth(&mut out, auth);
            }
            Frame::Stateless { payload, .. } => {
                out.write_var(MSG_STATELESS);
                out.write_string(payload);
            }
            Frame::Close { reason, .. } => {
                out.write_var(MSG_CLOSE);
                if let Some(reason) = reason {
                    out.write_string(reason);
                }
            }
            Frame::SyncStatus { applied, .. } => {
                out.write_var(MSG_SYNC_STATUS);
                out.write_var(u64::from(*applied));
            }
            // Written above: the keepalives without a document name, the y-protocols messages
            // behind it.
            Frame::Ping
            | Frame::Pong
            | Frame::Sync { .. }
            | Frame::Awareness { .. }
            | Frame::QueryAwareness { .. } => {}
        }
        out
    }
}

fn encode_auth(out: &mut Vec<u8>, auth: &Auth) {
    match auth {
        Auth::Token {
            token,
            provider_version,
        } => {
            out.write_var(AUTH_TOKEN);
            out.write_string(token);
            if let Some(version) = provider_version {
                out.write_string(version);
            }
        }
        Auth::PermissionDenied { reason } => {
            out.write_var(AUTH_PERMISSION_DENIED);
            out.write_string(reason);
        }
        Auth::Authenticated { scope } => {
            out.write_var(AUTH_AUTHENTICATED);
            out.write_string(scope);
        }
    }
}

/// The document name a frame starts with, if it can be read: lets the caller end just that
/// document when the rest of the frame is bad.
pub fn document_of(bytes: &[u8]) -> Option<String> {
    if is_keepalive(bytes) {
        return None;
    }
    Cursor::new(bytes).read_string().ok().map(str::to_owned)
}

fn is_keepalive(bytes: &[u8]) -> bool {
    matches!(bytes, [MSG_PING] | [MSG_PONG])
}

/// Decodes one frame. Bytes after a complete message are ignored, as Hocuspocus's server does
/// (it reads what a type needs), so a later provider that appends a field still works.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    match bytes {
        [] => return Err(FrameError::Empty),
        [MSG_PING] => return Ok(Frame::Ping),
        [MSG_PONG] => return Ok(Frame::Pong),
        _ => {}
    }
    let mut cursor = Cursor::new(bytes);
    let doc = string(&mut cursor, "document name")?;
    let kind: u64 = cursor.read_var().map_err(malformed("message type"))?;
    Ok(match kind {
        MSG_SYNC => {
            let payload = rest(&cursor);
            if payload.is_empty() {
                return Err(FrameError::Malformed {
                    field: "sync message",
                    detail: "no sync message".into(),
                });
            }
            Frame::Sync { doc, payload }
        }
        MSG_AWARENESS => {
            let update = cursor.read_buf().map_err(malformed("awareness update"))?;
            Frame::Awareness {
                doc,
                update: update.to_vec(),
            }
        }
        MSG_AUTH => Frame::Auth {
            doc,
            auth: decode_auth(&mut cursor)?,
        },
        MSG_QUERY_AWARENESS => Frame::QueryAwareness { doc },
        MSG_STATELESS => Frame::Stateless {
            payload: string(&mut cursor, "stateless payload")?,
            doc,
        },
        MSG_CLOSE => {
            let reason = if cursor.has_content() {
                Some(string(&mut cursor, "close reason")?)
            } else {
                None
            };
            Frame::Close { doc, reason }
        }
        MSG_SYNC_STATUS => {
            let status: u64 = cursor.read_var().map_err(malformed("sync status"))?;
            match status {
                0 | 1 => Frame::SyncStatus {
                    doc,
                    applied: status == 1,
                },
                other => return Err(FrameError::BadSyncStatus(other)),
            }
        }
        MSG_SYNC_REPLY | MSG_BROADCAST_STATELESS => return Err(FrameError::ServerOnly(kind)),
        k if k == u64::from(MSG_PING) || k == u64::from(MSG_PONG) => {
            return Err(FrameError::NamedKeepalive(k))
        }
        other => return Err(FrameError::UnknownType(other)),
    })
}

fn decode_auth(cursor: &mut Cursor<'_>) -> Result<Auth, FrameError> {
    let kind: u64 = cursor.read_var().map_err(malformed("auth type"))?;
    Ok(match kind {
        AUTH_TOKEN => Auth::Token {
            token: string(cursor, "token")?,
            provider_version: if cursor.has_content() {
                Some(string(cursor, "provider version")?)
            } else {
                None
            },
        },
        AUTH_PERMISSION_DENIED => Auth::PermissionDenied {
            reason: string(cursor, "denial reason")?,
        },
        AUTH_AUTHENTICATED => Auth::Authenticated {
            scope: string(cursor, "scope")?,
        },
        other => return Err(FrameError::UnknownAuthType(other)),
    })
}

/// A lib0 `varString`. yrs checks the declared length against the bytes left before it
/// slices, so a huge length is an error, never an allocation.
fn string(cursor: &mut Cursor<'_>, field: &'static str) -> Result<String, FrameError> {
    cursor
        .read_string()
        .map(str::to_owned)
        .map_err(malformed(field))
}

fn rest(cursor: &Cursor<'_>) -> Vec<u8> {
    cursor.buf.get(cursor.next..).unwrap_or_default().to_vec()
}

fn malformed(field: &'static str) -> impl Fn(yrs::encoding::read::Error) -> FrameError {
    move |e| FrameError::Malformed {
        field,
        detail: e.to_string(),
    }
}
