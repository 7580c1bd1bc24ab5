//! The Hocuspocus protocol of `/hocuspocus` (SPEC §5b), sans IO: what `@hocuspocus/provider`
//! 2.x, 3.x and 4.x send and understand, over one socket that carries many documents.
//!
//! - [`frame`]: the codec, `varString(document) · varUint(type) · payload` (lib0), with a typed
//!   error for every way a frame can be wrong; fuzzed (`fuzz/fuzz_targets/hocuspocus_frame.rs`).
//! - [`outgoing`]: every frame the server sends, and the [`Scope`] a token grants.
//! - [`connection`]: one socket's document table as a pure state machine: which documents it
//!   has (bounded: one too many is refused alone), their token checks, the frames held meanwhile
//!   (bounded), and what the caller must do.
//!
//! Sync, Awareness and QueryAwareness are y-protocols messages behind a document name, so the
//! Yjs layer ([`super::yjs`]) handles them unchanged ([`Frame::to_yjs_message`],
//! [`outgoing::from_yjs_message`]).

pub mod connection;
pub mod frame;
pub mod outgoing;

pub use connection::{Action, Connection, ConnectionLimits};
pub use frame::{decode, Auth, Frame, FrameError};
pub use outgoing::Scope;

#[cfg(test)]
mod connection_bound_tests;
#[cfg(test)]
mod connection_tests;
#[cfg(test)]
mod frame_tests;
