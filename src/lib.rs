//! docroom, the service: HTTP and WebSocket in front of the actors of `docroom-actors`.
//!
//! # Layout
//!
//! - [`settings`]: the typed settings tree (`config/*.toml` + environment).
//! - [`startup`]: `Application::build` / `run_until_stopped`, used by `main` and the tests.
//! - [`routes`]: HTTP routes (health, documents, admin) and [`error`], their error mapping.
//! - [`session`]: the WebSocket session actors (the only user of actix-web-actors).
//! - [`hocuspocus`]: what a `/hocuspocus` socket needs besides the socket: per-document room
//!   membership, token checks and joins (SPEC §5b).
//! - [`shutdown`]: signals and the drain; [`heartbeat`]: this replica's `replica:{id}`.
//! - [`replay_journal`]: `docroom replay-journal`, a retired replica's journal to PostgreSQL.
//! - [`import_hocuspocus`]: the `import-hocuspocus` command (a Hocuspocus table into
//!   `documents`).
//! - [`webhooks`]: SPEC §9 webhooks: the outbox in PostgreSQL, the recorder of this replica's
//!   events and the delivery worker.
//! - [`history`]: SPEC §10 versions: proposed by rooms, stored as deltas with checkpoints,
//!   read back and pruned.
//! - [`db`]: database creation and migrations; [`telemetry`]: logging; [`state`]: what handlers
//!   share.
//!
//! The data flow continues in `docroom-actors`: session → room → cache supervisor (Redis,
//! breaker, journaled fallback) → flusher → PostgreSQL.

pub mod auth;
pub mod db;
pub mod error;
pub mod heartbeat;
pub mod history;
pub mod hocuspocus;
pub mod import_hocuspocus;
pub mod limits;
pub mod replay_journal;
pub mod routes;
pub mod session;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod webhooks;
