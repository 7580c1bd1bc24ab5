//! The metric names docroom exports (through the `metrics` facade; the service installs the
//! Prometheus recorder and serves `/metrics`), the buckets of its histograms, and their values
//! at start.

use std::time::Duration;

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::breaker::BreakerState;
use crate::doc::Kind;
use crate::durability::state::Stored;
use crate::refusal_log::Refusal;

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
pub const DOCS_LEFT_FRESH: &str = "docroom_docs_left_fresh_total";
pub const REDIS_ERRORS: &str = "docroom_redis_errors_total";
pub const POSTGRES_ERRORS: &str = "docroom_postgres_errors_total";
pub const SHUTDOWN_DRAIN: &str = "docroom_shutdown_drain_seconds";
pub const ACK_LATENCY: &str = "docroom_ack_latency_seconds";
pub const LOG_FOLLOWED: &str = "docroom_log_followed_docs";
pub const LOG_ENTRIES_RECEIVED: &str = "docroom_log_entries_received_total";
pub const LOG_READ_LAG: &str = "docroom_log_read_lag_seconds";
pub const LOG_LENGTH: &str = "docroom_log_length";
pub const COMPACTIONS: &str = "docroom_compactions_total";
pub const COMPACTION_DURATION: &str = "docroom_compaction_duration_seconds";
pub const OLDEST_UNPERSISTED: &str = "docroom_oldest_unpersisted_seconds";
pub const SAVE_DURATION: &str = "docroom_save_duration_seconds";
pub const SAVE_WAIT: &str = "docroom_save_wait_seconds";
pub const REFUSED_FRAMES: &str = "docroom_refused_frames_total";
pub const SYNC_ANSWERS: &str = "docroom_sync_answers_total";

/// The series a room touches for every update, looked up once when the room opens: with the
/// Prometheus recorder a `counter!` or `histogram!` call finds its series by name and labels each
/// time (about a thousand instructions, three thousand an update). A room opened before the
/// recorder is installed keeps no-op handles; the service installs it before it listens.
#[derive(Clone)]
pub struct RoomSeries {
    pub yjs_updates: metrics::Counter,
    pub json_updates: metrics::Counter,
    pub fanout: metrics::Histogram,
    pub save_wait: metrics::Histogram,
    pub save_duration: metrics::Histogram,
}

impl RoomSeries {
    pub fn new() -> RoomSeries {
        RoomSeries {
            yjs_updates: counter!(UPDATES, "kind" => "yjs"),
            json_updates: counter!(UPDATES, "kind" => "json"),
            fanout: histogram!(BROADCAST_FANOUT),
            save_wait: histogram!(SAVE_WAIT),
            save_duration: histogram!(SAVE_DURATION),
        }
    }
}

impl Default for RoomSeries {
    fn default() -> Self {
        RoomSeries::new()
    }
}

/// Seconds, 0.1 ms to 5 s: an ack to Redis on a quiet machine takes well under a millisecond,
/// and one waiting on Redis retries or a busy journal should stand out.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Seconds, 1 ms to 30 s: one flush is a few upserts, or a statement timeout when PostgreSQL
/// hangs.
pub const FLUSH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds, 10 ms to 2 min: the drain deadline defaults to 25 s; above it is a drain that
/// overran.
pub const DRAIN_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0,
];
/// Members, not seconds: how many sessions one update went to.
pub const FANOUT_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
];

/// Every histogram docroom records, with its buckets. Exported as Prometheus histograms
/// (`_bucket` series) because summaries' quantiles cannot be aggregated across replicas.
pub const HISTOGRAMS: [(&str, &[f64]); 9] = [
    (FLUSH_DURATION, FLUSH_BUCKETS),
    (SHUTDOWN_DRAIN, DRAIN_BUCKETS),
    (ACK_LATENCY, LATENCY_BUCKETS),
    (BROADCAST_FANOUT, FANOUT_BUCKETS),
    (LOG_READ_LAG, LATENCY_BUCKETS),
    (LOG_LENGTH, FANOUT_BUCKETS),
    (COMPACTION_DURATION, FLUSH_BUCKETS),
    (SAVE_DURATION, LATENCY_BUCKETS),
    (SAVE_WAIT, LATENCY_BUCKETS),
];

/// Creates every series with its value at start, so the first scrape already has all of them
/// (an alert on `docroom_breaker_state` must see 0 on a healthy start, not nothing). Gauges and
/// counters are touched without being reset — a value an actor already set stays — except the
/// flusher period, which starts at `flusher_base_period`.
pub fn register(flusher_base_period: Duration) {
    for name in [
        CONNECTIONS,
        ROOMS,
        FALLBACK_DOCS,
        JOURNAL_BYTES,
        LOG_FOLLOWED,
        OLDEST_UNPERSISTED,
    ] {
        gauge!(name).increment(0.0);
    }
    // 0 is closed, the state every breaker starts in.
    gauge!(BREAKER_STATE).increment(0.0);
    gauge!(FLUSHER_PERIOD).set(flusher_base_period.as_secs_f64());
    for kind in [Kind::Json, Kind::Yjs] {
        counter!(UPDATES, "kind" => kind.as_str()).increment(0);
    }
    for stored in [Stored::Cache, Stored::Fallback, Stored::Duplicate] {
        counter!(ACKS, "stored" => stored.as_str()).increment(0);
    }
    for to in [
        BreakerState::Closed,
        BreakerState::HalfOpen,
        BreakerState::Open,
    ] {
        counter!(BREAKER_TRANSITIONS, "to" => to.as_str()).increment(0);
    }
    for name in [
        DOCS_FLUSHED,
        DOCS_FLUSH_FAILED,
        DOCS_LEFT_FRESH,
        REDIS_ERRORS,
        POSTGRES_ERRORS,
        LOG_ENTRIES_RECEIVED,
        COMPACTIONS,
    ] {
        counter!(name).increment(0);
    }
    for why in Refusal::ALL {
        counter!(REFUSED_FRAMES, "reason" => why.as_str()).increment(0);
    }
    for encoding in ["new", "shared"] {
        counter!(SYNC_ANSWERS, "encoding" => encoding).increment(0);
    }
    for (name, _) in HISTOGRAMS {
        // Registering is enough: the exporter renders an empty histogram with zero counts.
        let _ = histogram!(name);
    }
}

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
    describe_counter!(
        DOCS_LEFT_FRESH,
        "dirty documents a periodic flush left because another replica's flush had just taken them"
    );
    describe_counter!(REDIS_ERRORS, "failed redis operations");
    describe_counter!(
        REFUSED_FRAMES,
        "frames refused with their connection (on /hocuspocus, their document) closed, by reason: frame_size, state_limit, nesting_limit, awareness_limit, malformed"
    );
    describe_counter!(
        SYNC_ANSWERS,
        "yjs sync step 2 answers to clients' sync step 1, by encoding: new (encoded for that client) or shared (one encoded for an earlier client with the same state vector, since the document last changed)"
    );
    describe_counter!(POSTGRES_ERRORS, "failed postgres writes");
    describe_histogram!(
        SHUTDOWN_DRAIN,
        Unit::Seconds,
        "duration of the shutdown drain"
    );
    describe_gauge!(LOG_FOLLOWED, "document logs this replica reads");
    describe_counter!(
        LOG_ENTRIES_RECEIVED,
        "log entries other replicas appended, handed to this replica's rooms"
    );
    describe_histogram!(
        LOG_READ_LAG,
        Unit::Seconds,
        "time from a log entry's append to this replica reading it"
    );
    describe_histogram!(
        LOG_LENGTH,
        "log entries after the compacted content, per document a flush read"
    );
    describe_counter!(
        COMPACTIONS,
        "compactions of a document's log into its content"
    );
    describe_histogram!(
        COMPACTION_DURATION,
        Unit::Seconds,
        "time to merge a document's compacted content with the log entries after it (reads and flushes)"
    );
    describe_gauge!(
        OLDEST_UNPERSISTED,
        Unit::Seconds,
        "age of the oldest content this replica accepted that postgres lacks"
    );
    describe_histogram!(
        ACK_LATENCY,
        Unit::Seconds,
        "time from a json update arriving at its session to its ack being written"
    );
    describe_histogram!(
        SAVE_DURATION,
        Unit::Seconds,
        "time from a room starting a save to its landing (redis or the journal)"
    );
    describe_histogram!(
        SAVE_WAIT,
        Unit::Seconds,
        "time an applied yjs update waited for its save to start (behind the save in flight, or the save budget)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_histogram_has_increasing_buckets() {
        for (name, buckets) in HISTOGRAMS {
            assert!(buckets.len() >= 3, "{name} has too few buckets");
            assert!(
                buckets.windows(2).all(|w| w[0] < w[1]),
                "{name}: buckets must increase: {buckets:?}"
            );
        }
    }
}
