//! docroom's actors and the storage they drive. This crate knows nothing of HTTP.
//!
//! # Layout
//!
//! The data flow, in the order an update travels:
//!
//! - [`registry`]: `RoomRegistry`, document id → room, rooms spread over arbiters.
//! - [`room`]: `DocRoom`, one per open document: members, current version, broadcast, the
//!   per-document save queue, the last-member flush.
//! - [`supervisor`]: `CacheSupervisor`, owner of Redis and of the breaker; routes each save to
//!   Redis or to the fallback; the read path with the cache-fill lock.
//! - [`breaker`]: the circuit breaker as a pure state machine.
//! - [`fallback`]: the in-memory fallback (map + dirty set) and its fsync'd journal.
//! - [`flusher`]: `Flusher`, persists dirty documents to PostgreSQL in batches, drains at
//!   shutdown; [`schedule`] is its backoff as a pure state machine.
//! - [`storage`]: `RedisCache` and `PgStore`, the two external stores.
//! - [`doc`]: document ids, kinds, versions and the content hash.

pub mod breaker;
pub mod doc;
pub mod fallback;
pub mod flusher;
pub mod metrics;
pub mod registry;
pub mod room;
pub mod schedule;
pub mod storage;
pub mod supervisor;
pub mod yjs;
