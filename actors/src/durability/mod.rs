//! What "persisted" means, and the rules that keep it true, as pure code (SPEC §6).
//!
//! A document's update log lives in Redis; PostgreSQL records, in the transaction that writes a
//! document's content, the log point that content includes ([`crate::log::LogMark`]: the log's
//! incarnation and its last entry). That record is the only "persisted": Redis's `persisted`,
//! the trimming of the log, `modifiedDocs` and the ledger all follow from what a transaction
//! answered, never from what a flush read.
//!
//! - [`flush`]: what a flush does with what it read of one document.
//! - [`state`]: one replica's durability state (the ledger, the breaker, the debts to Redis,
//!   the move back's backoff) and the rules the cache supervisor carries out.
//! - [`announce`]: what a commit announces into the log, what Redis is owed when it cannot,
//!   and when the journal forgets.
//! - `sim` (tests): a seeded simulation of several replicas, a model Redis and a model
//!   PostgreSQL, searching schedules and faults for a lost or rolled-back acknowledged write.

pub mod announce;
pub mod flush;
#[cfg(test)]
mod sim;
pub mod state;
