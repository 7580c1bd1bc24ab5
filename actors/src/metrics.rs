//! The metric names docroom exports (through the `metrics` facade; the service installs the
//! Prometheus recorder and serves `/metrics`).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const CONNECTIONS: &str = "docroom_connections";
pub const ROOMS: &str = "docroom_rooms";
pub const UPDATES: &str = "docroom_updates_total";
pub const ACKS: &str = "docroom_acks_total";
pub const BROADCAST_FANOUT: &str = "docroom_broadcast_fanout";
pub const BREAKER_STATE: &str = "docroom_breaker_state";
pub const BREAKER_TRANSITIONS: &str = "docroom_breaker_transitions_total";
pub const FALLBACK_DOCS: &str = "docroom_fallback_docs";
pub const JOURNAL_BYTES: &str = "docroom_journal_bytes";
pub const FLUSHER_PERIOD: &str = "docroom_flusher_period_seconds";
pub const FLUSH_DURATION: &str = "docroom_flush_duration_seconds";
pub const DOCS_FLUSHED: &str = "docroom_docs_flushed_total";
pub const DOCS_FLUSH_FAILED: &str = "docroom_docs_flush_failed_total";
pub const REDIS_ERRORS: &str = "docroom_redis_errors_total";
pub const POSTGRES_ERRORS: &str = "docroom_postgres_errors_total";
pub const SHUTDOWN_DRAIN: &str = "docroom_shutdown_drain_seconds";

pub fn describe() {
    describe_gauge!(CONNECTIONS, "open websocket connections");
    describe_gauge!(ROOMS, "open document rooms");
    describe_counter!(UPDATES, "document updates received, by kind");
    describe_counter!(
        ACKS,
        "json updates acknowledged, by where they were stored (cache, fallback, duplicate)"
    );
    describe_histogram!(BROADCAST_FANOUT, "members an update was broadcast to");
    describe_gauge!(
        BREAKER_STATE,
        "circuit breaker state: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        "circuit breaker transitions, by new state"
    );
    describe_gauge!(FALLBACK_DOCS, "documents held by the in-memory fallback");
    describe_gauge!(JOURNAL_BYTES, Unit::Bytes, "size of the fallback journal");
    describe_gauge!(FLUSHER_PERIOD, Unit::Seconds, "current flusher period");
    describe_histogram!(FLUSH_DURATION, Unit::Seconds, "duration of one flush");
    describe_counter!(DOCS_FLUSHED, "documents committed to postgres");
    describe_counter!(DOCS_FLUSH_FAILED, "documents whose flush failed");
    describe_counter!(REDIS_ERRORS, "failed redis operations");
    describe_counter!(POSTGRES_ERRORS, "failed postgres writes");
    describe_histogram!(
        SHUTDOWN_DRAIN,
        Unit::Seconds,
        "duration of the shutdown drain"
    );
}
