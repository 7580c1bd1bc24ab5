//! `/hocuspocus` (SPEC §5b): what a Hocuspocus socket needs besides the socket itself. The
//! session actor (`session/hocuspocus.rs`, the only part that touches actix-web-actors) feeds
//! frames to the pure [`Connection`](docroom_actors::protocol::hocuspocus::Connection) and
//! carries out its actions with these:
//!
//! - [`link`]: a document's member as its room sees it: one small actor per document of a
//!   socket, tagging what the room sends with the document it came from.
//! - [`membership`]: a document the socket is a member of, and what its frames become in the
//!   room (Yjs frames with a SyncStatus due, awareness, stateless).
//! - [`admit`]: a document's token check and room join, before `Authenticated` goes out.

pub mod admit;
pub mod link;
pub mod membership;

pub use admit::{admit, Admitted};
pub use link::FromRoom;
pub use membership::Membership;
