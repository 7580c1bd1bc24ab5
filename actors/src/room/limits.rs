//! The limits rooms and the registry enforce (issue 11, items 9, 10 and 13), from `[limits]`.

use crate::protocol::yjs::YjsLimits;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomLimits {
    /// Open rooms on this replica; a new document beyond it is refused.
    pub max_rooms: usize,
    /// Frames a room may have queued for one member that its session has not taken yet ...
    pub member_backlog_messages: usize,
    /// ... and their bytes. A member over either is dropped from the room.
    pub member_backlog_bytes: usize,
    /// Awareness and document-size bounds of Yjs rooms.
    pub yjs: YjsLimits,
}

impl RoomLimits {
    /// No limits (benches, unit tests that are not about limits).
    pub const fn unlimited() -> Self {
        RoomLimits {
            max_rooms: usize::MAX,
            member_backlog_messages: usize::MAX,
            member_backlog_bytes: usize::MAX,
            yjs: YjsLimits::unlimited(),
        }
    }
}
