//! The wire protocols, sans IO: bytes or text in, frames out. One module per protocol builds
//! every frame of it, so no actor formats a frame by hand; each decoder is fuzzed
//! (`fuzz/`).
//!
//! - [`json`]: the JSON protocol of `/docs/{id}/ws` (SPEC §4) and the JSON document bodies of
//!   `/docs/{id}`.
//! - [`yjs`]: the y-protocols sync and awareness messages of `/yjs/{id}` (SPEC §5), around a
//!   room's live Yjs document.
//! - [`hocuspocus`]: the Hocuspocus protocol (SPEC §5b) — frame codec, the frames the server
//!   sends, and the per-socket document table; the `/hocuspocus` route that uses it comes next.

pub mod hocuspocus;
pub mod json;
pub mod yjs;
