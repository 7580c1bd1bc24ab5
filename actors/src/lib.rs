//! docroom's actors and the storage they drive. This crate knows nothing of HTTP.
//!
//! # Layout
//!
//! The data flow, in the order an update travels:
//!
//! - [`protocol`]: the wire protocols, sans IO (JSON, Yjs): every frame is built there.
//! - [`registry`]: `RoomRegistry`, document id → room, rooms started where their first
//!   connection lives.
//! - [`room`]: `DocRoom`, one per open document, a thin actor around its
//!   [`RoomCore`](room::core::RoomCore): the room's decisions (members, current version,
//!   broadcast, the per-document [`SaveQueue`](room::SaveQueue), the last-member flush) as a
//!   pure state machine, inputs in, effects out.
//! - [`supervisor`]: `CacheSupervisor`, owner of Redis, of the breaker and of the journaled
//!   fallback; routes each save, records it in the [`ledger`]; the read path; recovery after
//!   an outage.
//! - [`ledger`]: what PostgreSQL does not have yet — the one owner of that fact.
//! - [`durability`]: what "persisted" means (the log point PostgreSQL records with the
//!   content) and the pure rules of a flush, with the simulation that searches their
//!   interleavings.
//! - [`log`]: the log between rooms, as data: each document's Redis Stream, which every replica
//!   appends to, announcing each append on the document's pub/sub channel.
//! - [`log_reader`]: `LogReader`, this replica's one reader of the logs: it listens, reads
//!   what moved and hands other replicas' entries and events to this replica's rooms.
//! - [`flusher`]: `Flusher`, persists what the ledger and Redis hold to PostgreSQL in batches,
//!   drains at shutdown; [`schedule`] is its backoff as a pure state machine.
//! - [`storage`]: the `Cache` and `DocStore` traits, `RedisCache` and `PgStore`, and in-memory
//!   stores for unit tests.
//! - [`fallback`]: the journaled fallback store.
//! - [`breaker`]: the circuit breaker as a pure state machine; [`clock`]: the hybrid logical
//!   clock that stamps JSON versions; [`doc`]: ids, kinds, versions, stamps, the version rule.
//! - [`refusal_log`]: frames refused with their connection closed, counted every time and
//!   logged once per document, so a client retrying a refused frame cannot flood the log.
//! - [`core`]: builds the actors and wires them, in dependency order.

pub mod breaker;
pub mod clock;
pub mod core;
pub mod doc;
pub mod durability;
pub mod fallback;
pub mod flusher;
pub mod ledger;
pub mod log;
pub mod log_reader;
pub mod metrics;
pub mod protocol;
pub mod refusal_log;
pub mod registry;
pub mod room;
pub mod schedule;
pub mod storage;
pub mod supervisor;
#[cfg(test)]
mod testing;
