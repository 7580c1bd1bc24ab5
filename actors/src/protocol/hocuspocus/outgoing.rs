//! Every frame the server sends on `/hocuspocus`, built in one place.

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

use super::frame::{Auth, Frame, FrameError, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC};

/// What a document's token allows, as the provider reads it from `Authenticated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ReadWrite,
    ReadOnly,
}

impl Scope {
    /// The scope string providers expect (`onAuthenticated({ scope })`).
    pub fn as_wire(self) -> &'static str {
        match self {
            Scope::ReadWrite => "read-write",
            Scope::ReadOnly => "readonly",
        }
    }

    pub fn may_write(self) -> bool {
        self == Scope::ReadWrite
    }
}

pub fn authenticated(doc: &str, scope: Scope) -> Vec<u8> {
    Frame::Auth {
        doc: doc.to_owned(),
        auth: Auth::Authenticated {
            scope: scope.as_wire().to_owned(),
        },
    }
    .encode()
}

/// The provider emits `authenticationFailed` with `reason`; the socket stays open.
pub fn permission_denied(doc: &str, reason: &str) -> Vec<u8> {
    Frame::Auth {
        doc: doc.to_owned(),
        auth: Auth::PermissionDenied {
            reason: reason.to_owned(),
        },
    }
    .encode()
}

/// `true` only once the update is durable (SPEC §5b), unlike Hocuspocus's in-memory meaning.
pub fn sync_status(doc: &str, applied: bool) -> Vec<u8> {
    Frame::SyncStatus {
        doc: doc.to_owned(),
        applied,
    }
    .encode()
}

/// Ends one document of a shared socket; the others stay open.
pub fn close(doc: &str, reason: &str) -> Vec<u8> {
    Frame::Close {
        doc: doc.to_owned(),
        reason: Some(reason.to_owned()),
    }
    .encode()
}

pub fn stateless(doc: &str, payload: &str) -> Vec<u8> {
    Frame::Stateless {
        doc: doc.to_owned(),
        payload: payload.to_owned(),
    }
    .encode()
}

/// Only for a provider that announced a version (4.x): 2.x and 3.x throw on it.
pub fn ping() -> Vec<u8> {
    Frame::Ping.encode()
}

pub fn pong() -> Vec<u8> {
    Frame::Pong.encode()
}

/// The bytes in front of a shared sync step 2 update for `doc`
/// ([`step2`](crate::protocol::yjs::step2)): the document's name, then the y-protocols header.
/// The update follows them as it is, so the answer shared between joiners is never copied.
pub fn sync_step2_head(doc: &str, update_len: usize) -> Vec<u8> {
    let mut head = Vec::new();
    head.write_string(doc);
    head.extend_from_slice(&crate::protocol::yjs::step2::header(update_len));
    head
}

/// A y-protocols message from the Yjs layer (sync or awareness, one message, as
/// [`YjsDoc`](crate::protocol::yjs::YjsDoc) produces them) framed for `doc`. The types are the
/// same on both protocols, so the message follows the document name unchanged once it is known
/// to be one Hocuspocus carries.
pub fn from_yjs_message(doc: &str, message: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut cursor = Cursor::new(message);
    let kind: u64 = cursor.read_var().map_err(|e| FrameError::Malformed {
        field: "y-protocols message type",
        detail: e.to_string(),
    })?;
    let frame = match kind {
        MSG_SYNC => Frame::Sync {
            doc: doc.to_owned(),
            payload: message.get(cursor.next..).unwrap_or_default().to_vec(),
        },
        MSG_AWARENESS => Frame::Awareness {
            doc: doc.to_owned(),
            update: cursor
                .read_buf()
                .map_err(|e| FrameError::Malformed {
                    field: "awareness update",
                    detail: e.to_string(),
                })?
                .to_vec(),
        },
        MSG_QUERY_AWARENESS => Frame::QueryAwareness {
            doc: doc.to_owned(),
        },
        other => return Err(FrameError::UnknownType(other)),
    };
    Ok(frame.encode())
}
