//! What every connection records: counters (atomics, read each second by the progress line) and
//! latency histograms (sharded by connection, so thousands of tasks rarely share a lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

const SHARDS: usize = 64;
/// Latencies are recorded in microseconds up to a minute, three significant digits.
const MAX_US: u64 = 60_000_000;
const MAX_ERROR_SAMPLES: usize = 10;

/// The measured window, in microseconds since the marker epoch.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start_us: u64,
    pub end_us: u64,
}

impl Window {
    pub fn contains(&self, t_us: u64) -> bool {
        t_us >= self.start_us && t_us < self.end_us
    }
}

#[derive(Default)]
pub struct Counters {
    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    /// Connections that closed or failed before the run ended.
    pub dropped: AtomicU64,
    /// Error frames from the server, unparsable frames, refused updates.
    pub errors: AtomicU64,
    /// Every update sent / ack and broadcast received, measured or not (progress line).
    pub sent_total: AtomicU64,
    pub acks_total: AtomicU64,
    pub broadcasts_total: AtomicU64,
    /// Within the measured window.
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub broadcasts: AtomicU64,
    /// Broadcast receipts the measured updates should cause (members of the room - 1 each).
    pub broadcasts_expected: AtomicU64,
}

pub struct Stats {
    pub counters: Counters,
    ack: Vec<Mutex<Histogram<u64>>>,
    broadcast: Vec<Mutex<Histogram<u64>>>,
    /// The broadcasts of `broadcast` whose sender was connected to another server (several
    /// `--url`s: another replica).
    across: Vec<Mutex<Histogram<u64>>>,
    /// A join storm's joiners: from the storm's start to each one's sync step 2.
    sync: Mutex<Histogram<u64>>,
    error_samples: Mutex<Vec<String>>,
}

impl Stats {
    pub fn new() -> Self {
        let shards = || {
            (0..SHARDS)
                .map(|_| {
                    Mutex::new(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds"))
                })
                .collect()
        };
        Stats {
            counters: Counters::default(),
            ack: shards(),
            broadcast: shards(),
            across: shards(),
            sync: Mutex::new(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds")),
            error_samples: Mutex::new(Vec::new()),
        }
    }

    pub fn record_ack(&self, conn: u64, latency_us: u64) {
        record(&self.ack[conn as usize % SHARDS], latency_us);
        self.counters.acked.fetch_add(1, Ordering::Relaxed);
    }

    /// `across`: the sender was connected to another server than the receiver.
    pub fn record_broadcast(&self, conn: u64, latency_us: u64, across: bool) {
        record(&self.broadcast[conn as usize % SHARDS], latency_us);
        if across {
            record(&self.across[conn as usize % SHARDS], latency_us);
        }
        self.counters.broadcasts.fetch_add(1, Ordering::Relaxed);
    }

    /// A joiner of a join storm synced `since_start_us` after the storm began.
    pub fn record_sync(&self, since_start_us: u64) {
        record(&self.sync, since_start_us);
    }

    /// Counts an error and keeps the first few messages for the report.
    pub fn error(&self, what: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.error_samples.lock().unwrap();
        if samples.len() < MAX_ERROR_SAMPLES {
            samples.push(what);
        }
    }

    /// Remembers why a connection failed, without counting it as a server error.
    pub fn note(&self, what: String) {
        let mut samples = self.error_samples.lock().unwrap();
        if samples.len() < MAX_ERROR_SAMPLES {
            samples.push(what);
        }
    }

    pub fn error_samples(&self) -> Vec<String> {
        self.error_samples.lock().unwrap().clone()
    }

    pub fn ack_latency(&self) -> Histogram<u64> {
        merged(&self.ack)
    }

    pub fn broadcast_latency(&self) -> Histogram<u64> {
        merged(&self.broadcast)
    }

    pub fn across_latency(&self) -> Histogram<u64> {
        merged(&self.across)
    }

    pub fn sync_times(&self) -> Histogram<u64> {
        self.sync.lock().unwrap().clone()
    }
}

fn record(shard: &Mutex<Histogram<u64>>, latency_us: u64) {
    shard
        .lock()
        .unwrap()
        .saturating_record(latency_us.clamp(1, MAX_US));
}

fn merged(shards: &[Mutex<Histogram<u64>>]) -> Histogram<u64> {
    let mut all = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds");
    for s in shards {
        all.add(&*s.lock().unwrap()).expect("same bounds");
    }
    all
}

pub fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

pub fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}
