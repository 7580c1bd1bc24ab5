//! The final report, as a table for people and as JSON for scripts (`--json`).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::options::Plan;
use crate::stats::{load, Stats};

#[derive(serde::Serialize)]
pub struct Report {
    pub plan: Plan,
    pub connections: Connections,
    pub updates: Updates,
    /// Update → ack at the sender; `None` where the protocol has no acks (Yjs).
    pub ack_latency_ms: Option<Latency>,
    /// Update → receipt at every other member of the room.
    pub broadcast_latency_ms: Option<Latency>,
    /// The part of those whose sender was on another server (several `--url`s); `None` with
    /// one server.
    pub across_latency_ms: Option<Latency>,
    pub broadcasts: Broadcasts,
    /// A join storm's joiners (`--join-storm`); `None` otherwise.
    pub join_storm: Option<Storm>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Wall time of the whole run, connecting included.
    pub elapsed_secs: f64,
}

#[derive(serde::Serialize)]
pub struct Connections {
    pub target: u64,
    pub opened: u64,
    pub failed: u64,
    pub dropped: u64,
    pub connect_secs: f64,
}

#[derive(serde::Serialize)]
pub struct Updates {
    /// Sent inside the measured window.
    pub sent: u64,
    pub sent_per_sec: f64,
    pub acked: u64,
    pub acked_per_sec: f64,
    /// Measured updates still unacknowledged at the end (protocols with acks).
    pub unacked: u64,
    /// Including warmup and grace.
    pub sent_total: u64,
    pub acks_total: u64,
}

#[derive(serde::Serialize)]
pub struct Broadcasts {
    pub received: u64,
    pub received_per_sec: f64,
    pub expected: u64,
    pub missing: u64,
    pub received_total: u64,
}

#[derive(serde::Serialize)]
pub struct Storm {
    /// Clients that joined in the storm.
    pub joiners: u64,
    /// Of those, synced (got their sync step 2).
    pub synced: u64,
    /// From the storm's start to each joiner's sync step 2.
    pub sync_ms: Option<Latency>,
    /// From the storm's start to the last joiner's sync step 2.
    pub time_to_last_sync_secs: Option<f64>,
}

#[derive(serde::Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        let ms = |us: u64| us as f64 / 1000.0;
        (!h.is_empty()).then(|| Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }
}

impl Report {
    pub fn new(plan: Plan, stats: &Stats, connect_secs: f64, elapsed_secs: f64) -> Report {
        let c = &stats.counters;
        let secs = plan.duration.as_secs_f64().max(1e-9);
        let (sent, acked) = (load(&c.sent), load(&c.acked));
        let (received, expected) = (load(&c.broadcasts), load(&c.broadcasts_expected));
        let has_acks = plan.protocol.has_acks();
        let syncs = stats.sync_times();
        let join_storm = plan.join_storm.then(|| Storm {
            joiners: (plan.docs * (plan.clients - 1)) as u64,
            synced: syncs.len(),
            time_to_last_sync_secs: (!syncs.is_empty()).then(|| syncs.max() as f64 / 1e6),
            sync_ms: Latency::of(&syncs),
        });
        Report {
            connections: Connections {
                target: (plan.docs * plan.clients) as u64,
                opened: load(&c.connected),
                failed: load(&c.connect_failed),
                dropped: load(&c.dropped),
                connect_secs,
            },
            updates: Updates {
                sent,
                sent_per_sec: sent as f64 / secs,
                acked,
                acked_per_sec: acked as f64 / secs,
                unacked: if has_acks {
                    sent.saturating_sub(acked)
                } else {
                    0
                },
                sent_total: load(&c.sent_total),
                acks_total: load(&c.acks_total),
            },
            ack_latency_ms: if has_acks {
                Latency::of(&stats.ack_latency())
            } else {
                None
            },
            broadcast_latency_ms: Latency::of(&stats.broadcast_latency()),
            across_latency_ms: Latency::of(&stats.across_latency()),
            broadcasts: Broadcasts {
                received,
                received_per_sec: received as f64 / secs,
                expected,
                missing: expected.saturating_sub(received),
                received_total: load(&c.broadcasts_total),
            },
            join_storm,
            errors: load(&c.errors),
            error_samples: stats.error_samples(),
            elapsed_secs,
            plan,
        }
    }

    /// Problems a smoke run must fail on.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let c = &self.connections;
        if c.failed > 0 || c.dropped > 0 {
            p.push(format!(
                "{} connections failed, {} dropped",
                c.failed, c.dropped
            ));
        }
        if self.errors > 0 {
            p.push(format!("{} errors", self.errors));
        }
        if let Some(s) = self.join_storm.as_ref().filter(|s| s.synced < s.joiners) {
            p.push(format!("{} of {} joiners synced", s.synced, s.joiners));
        }
        let writes = self.plan.writers > 0;
        if writes && self.updates.sent == 0 {
            p.push("no update was sent".into());
        }
        if writes && self.plan.protocol.has_acks() && self.updates.acked == 0 {
            p.push("no update was acknowledged".into());
        }
        if writes && self.plan.clients > 1 && self.broadcasts.received == 0 {
            p.push("no broadcast was received".into());
        }
        let across = self.plan.urls.len() > 1 && self.plan.clients > 1;
        if writes && across && self.broadcasts.received > 0 && self.across_latency_ms.is_none() {
            p.push("no broadcast crossed from one --url to another".into());
        }
        p
    }

    pub fn table(&self) -> String {
        let p = &self.plan;
        let mut t = String::new();
        let rate = match p.rate {
            Some(r) => format!("{r}/s each"),
            None => "closed loop".into(),
        };
        let _ = writeln!(
            t,
            "{}{} on {}: {} docs x {} clients, {} writers per doc at {rate}, {:.0} s measured after {:.0} s warmup",
            p.preset.as_deref().map(|s| format!("{s} ")).unwrap_or_default(),
            p.protocol.name(),
            p.urls.join(" + "),
            p.docs,
            p.clients,
            p.writers,
            p.duration.as_secs_f64(),
            p.warmup.as_secs_f64(),
        );
        if p.seed_bytes > 0 {
            let _ = writeln!(
                t,
                "each document seeded first with {} bytes of text in {}-byte inserts",
                p.seed_bytes, p.seed_insert_bytes
            );
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "| metric | value |");
        let _ = writeln!(t, "| --- | --- |");
        let c = &self.connections;
        let _ = writeln!(
            t,
            "| connections | {} of {} opened in {:.1} s, {} failed, {} dropped |",
            c.opened, c.target, c.connect_secs, c.failed, c.dropped
        );
        if let Some(s) = &self.join_storm {
            let last = s
                .time_to_last_sync_secs
                .map_or("n/a".into(), |t| format!("{t:.2} s"));
            let _ = writeln!(
                t,
                "| join storm | {} of {} joiners synced, the last {last} after the storm began |",
                s.synced, s.joiners
            );
            let _ = writeln!(t, "| time to sync ms | {} |", fmt_latency(&s.sync_ms));
        }
        let u = &self.updates;
        let _ = writeln!(t, "| updates sent | {} ({:.1}/s) |", u.sent, u.sent_per_sec);
        if p.protocol.has_acks() {
            let _ = writeln!(
                t,
                "| updates acked | {} ({:.1}/s), {} unacked |",
                u.acked, u.acked_per_sec, u.unacked
            );
        }
        let _ = writeln!(
            t,
            "| ack latency ms | {} |",
            fmt_latency(&self.ack_latency_ms)
        );
        let b = &self.broadcasts;
        let _ = writeln!(
            t,
            "| broadcasts received | {} of {} ({:.1}/s), {} missing |",
            b.received, b.expected, b.received_per_sec, b.missing
        );
        let _ = writeln!(
            t,
            "| broadcast latency ms | {} |",
            fmt_latency(&self.broadcast_latency_ms)
        );
        if self.across_latency_ms.is_some() {
            let _ = writeln!(
                t,
                "| of which across servers, ms | {} |",
                fmt_latency(&self.across_latency_ms)
            );
        }
        let _ = writeln!(t, "| errors | {} |", self.errors);
        for e in &self.error_samples {
            let _ = writeln!(t, "  - {e}");
        }
        t
    }
}

fn fmt_latency(l: &Option<Latency>) -> String {
    match l {
        None => "n/a".into(),
        Some(l) => format!(
            "p50 {:.2} · p95 {:.2} · p99 {:.2} · max {:.2} (n={})",
            l.p50, l.p95, l.p99, l.max, l.count
        ),
    }
}
