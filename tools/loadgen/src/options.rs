//! Command-line options and the standard workloads they can start from (W1–W5 of issue 5, W6
//! of issue 12, W8 of issue 26).
//!
//! A preset fills in every option; any flag given explicitly overrides it, so
//! `--preset w1 --duration-secs 20` is W1 shortened.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::protocol::Protocol;

#[derive(Parser, Debug)]
#[command(
    name = "docroom-loadgen",
    about = "Load generator for docroom and its peers (Hocuspocus, y-websocket)",
    long_about = "Opens DOCS documents x CLIENTS connections, lets WRITERS of each document send \
                  updates at RATE per second (or closed loop), and reports achieved updates/s, \
                  update->ack and update->broadcast latency percentiles, errors and drops.\n\n\
                  Presets (issues 5 and 12): w1 many rooms, w2 hot room, w3 save throughput, w4 \
                  idle scale, w6 large documents, w8 join storm. W5 (one flush of 10,000 dirty documents) and \
                  W7 (W1 over two replicas: --preset w1 with --url given twice) are run by \
                  tools/bench-compare."
)]
pub struct Args {
    /// Standard workload to start from; other flags override its values
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Wire protocol of the target server
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// Target URL; `{doc}` is replaced by the document name. Defaults per protocol:
    /// json ws://127.0.0.1:8080/docs/{doc}/ws, yjs ws://127.0.0.1:8080/yjs/{doc},
    /// hocuspocus ws://127.0.0.1:8080/hocuspocus (docroom's route; Hocuspocus itself answers on
    /// any path; the document name travels in each message).
    /// Given several times (several replicas of one service), each document's clients are
    /// spread over them round-robin: client c of every document uses URL c mod N
    #[arg(long)]
    pub url: Vec<String>,
    /// Number of documents
    #[arg(long)]
    pub docs: Option<usize>,
    /// Connections per document
    #[arg(long)]
    pub clients: Option<usize>,
    /// Connections per document that send updates (the others only receive)
    #[arg(long)]
    pub writers: Option<usize>,
    /// Updates per second per writer; 0 means closed loop (next update once the previous one
    /// is acknowledged; json and hocuspocus only)
    #[arg(long)]
    pub rate: Option<f64>,
    /// Each writer stops after this many updates (0 = no limit); with a low --rate this makes
    /// every document dirty exactly once and then holds the connections (W5)
    #[arg(long, default_value_t = 0)]
    pub updates_per_writer: u64,
    /// Measured period
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Updates sent but not measured before the measured period
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    /// After the measured period: how long to wait for acks and broadcasts still in flight
    #[arg(long, default_value_t = 2.0)]
    pub grace_secs: f64,
    /// Before the run, the first client of each document inserts this much text into it in
    /// --seed-insert-bytes inserts, through the same protocol (yjs and hocuspocus), and waits
    /// until the server has applied them all; the seeding is not measured
    #[arg(long)]
    pub seed_bytes: Option<usize>,
    /// Size of one seeding insert, in bytes
    #[arg(long, default_value_t = 1024)]
    pub seed_insert_bytes: usize,
    /// A join storm: client 0 of each document seeds it (--seed-bytes), then every other client
    /// connects at once; each one's time from the storm's start to its sync step 2 is reported
    /// (the last of them: the time to the last sync), and --window-hook runs as the storm
    /// starts and once every joiner is synced. They then hold their connections for
    /// --duration-secs, so a joiner closed afterwards counts as dropped
    #[arg(long)]
    pub join_storm: bool,
    /// Seeding inserts per second per document (docroom's per-connection budget is 200/s)
    #[arg(long, default_value_t = 150.0)]
    pub seed_rate: f64,
    /// A shell command run (sh -c) when the measured window opens and when it closes, with
    /// LOADGEN_PHASE=start or end in its environment (bench-compare samples CPU and Redis there)
    #[arg(long)]
    pub window_hook: Option<String>,
    /// Size of each update's padding text, in bytes
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Document names are PREFIX-0, PREFIX-1, ...; default lg-PROTOCOL-RUNID (fresh documents)
    #[arg(long)]
    pub doc_prefix: Option<String>,
    /// Connections opened at once while ramping up
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Local source addresses to spread connections over (comma-separated, e.g.
    /// 127.0.0.2,127.0.0.3); needed beyond ~28,000 connections to one server port
    #[arg(long, value_delimiter = ',')]
    pub bind: Vec<IpAddr>,
    /// Seconds between keepalives (Yjs/Hocuspocus: an awareness update, as real providers send;
    /// JSON relies on the server's WebSocket pings, answered automatically); 0 = none
    #[arg(long, default_value_t = 15.0)]
    pub keepalive_secs: f64,
    /// Worker threads of the tokio runtime (default: number of cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the final report as JSON on stdout (the table then goes to stderr)
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 if a connection failed or dropped, an error occurred, or nothing was
    /// acknowledged / broadcast (for CI smoke runs)
    #[arg(long)]
    pub check: bool,
    /// Extra label copied into the JSON report (e.g. the server's name)
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Many rooms: 500 documents x 4 clients, each client one Yjs update per second, 60 s
    W1,
    /// Hot room: 1 document x 200 clients, 20 of them writing 20 updates/s each, 60 s
    W2,
    /// Save throughput: 64 clients on 64 documents, closed loop, JSON protocol, 30 s
    W3,
    /// Idle scale: 10,000 JSON connections (1,000 documents x 10) held for 60 s, no writes
    W4,
    /// Large documents: 10 documents seeded with 1 MiB of text (1 KiB inserts), one typist at
    /// 5 updates/s and one receiver each, Yjs, 30 s
    W6,
    /// Join storm: 1 document seeded with 20 MiB of text, then 150 clients join it at once
    /// (--join-storm), Yjs, held 10 s
    W8,
}

/// Everything a run needs, presets and flags resolved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub preset: Option<String>,
    pub label: Option<String>,
    pub protocol: Protocol,
    /// One or more; client c of each document uses `urls[c % urls.len()]`.
    pub urls: Vec<String>,
    pub docs: usize,
    pub clients: usize,
    pub writers: usize,
    /// `None`: closed loop.
    pub rate: Option<f64>,
    /// 0: no limit.
    pub updates_per_writer: u64,
    #[serde(with = "secs")]
    pub duration: Duration,
    #[serde(with = "secs")]
    pub warmup: Duration,
    #[serde(with = "secs")]
    pub grace: Duration,
    pub payload_bytes: usize,
    /// Text each document is seeded with before the run (0: none).
    pub seed_bytes: usize,
    /// The clients but the seeder join at once once the documents are seeded.
    pub join_storm: bool,
    pub seed_insert_bytes: usize,
    pub seed_rate: f64,
    #[serde(skip)]
    pub window_hook: Option<String>,
    pub doc_prefix: String,
    pub connect_concurrency: usize,
    #[serde(skip)]
    pub bind: Vec<IpAddr>,
    #[serde(skip)]
    pub keepalive: Option<Duration>,
}

impl Plan {
    /// Which of `urls` connection `conn` uses: client c of each document uses `c % urls.len()`.
    pub fn server_of(&self, conn: u64) -> usize {
        (conn as usize % self.clients.max(1)) % self.urls.len().max(1)
    }
}

struct Defaults {
    protocol: Protocol,
    docs: usize,
    clients: usize,
    writers: usize,
    rate: f64,
    duration: f64,
    warmup: f64,
    seed_bytes: usize,
}

impl Preset {
    fn defaults(self) -> Defaults {
        match self {
            Preset::W1 => Defaults {
                protocol: Protocol::Yjs,
                docs: 500,
                clients: 4,
                writers: 4,
                rate: 1.0,
                duration: 60.0,
                warmup: 5.0,
                seed_bytes: 0,
            },
            Preset::W2 => Defaults {
                protocol: Protocol::Yjs,
                docs: 1,
                clients: 200,
                writers: 20,
                rate: 20.0,
                duration: 60.0,
                warmup: 5.0,
                seed_bytes: 0,
            },
            Preset::W3 => Defaults {
                protocol: Protocol::Json,
                docs: 64,
                clients: 1,
                writers: 1,
                rate: 0.0,
                duration: 30.0,
                warmup: 3.0,
                seed_bytes: 0,
            },
            Preset::W4 => Defaults {
                protocol: Protocol::Json,
                docs: 1000,
                clients: 10,
                writers: 0,
                rate: 0.0,
                duration: 60.0,
                warmup: 0.0,
                seed_bytes: 0,
            },
            Preset::W6 => Defaults {
                protocol: Protocol::Yjs,
                docs: 10,
                clients: 2,
                writers: 1,
                rate: 5.0,
                duration: 30.0,
                warmup: 5.0,
                seed_bytes: 1 << 20,
            },
            Preset::W8 => Defaults {
                protocol: Protocol::Yjs,
                docs: 1,
                clients: 151,
                writers: 0,
                rate: 1.0,
                duration: 10.0,
                warmup: 0.0,
                seed_bytes: 20 << 20,
            },
        }
    }
}

impl Args {
    pub fn plan(&self) -> Result<Plan, String> {
        let d = self.preset.map(Preset::defaults).unwrap_or(Defaults {
            protocol: Protocol::Json,
            docs: 10,
            clients: 2,
            writers: 1,
            rate: 10.0,
            duration: 10.0,
            warmup: 1.0,
            seed_bytes: 0,
        });
        let protocol = self.protocol.unwrap_or(d.protocol);
        let clients = self.clients.unwrap_or(d.clients);
        let join_storm = self.join_storm || self.preset == Some(Preset::W8);
        // In a storm the clients only join: nobody writes.
        let writers = match join_storm {
            true => 0,
            false => self.writers.unwrap_or(d.writers).min(clients),
        };
        let rate = self.rate.unwrap_or(d.rate);
        if !(rate >= 0.0 && rate.is_finite()) {
            return Err("--rate must be 0 (closed loop) or a positive number".into());
        }
        if rate == 0.0 && writers > 0 && !protocol.has_acks() {
            return Err(format!(
                "closed loop needs per-update acknowledgements; {} has none (give --rate)",
                protocol.name()
            ));
        }
        let docs = self.docs.unwrap_or(d.docs);
        if docs == 0 || clients == 0 {
            return Err("--docs and --clients must be at least 1".into());
        }
        let seed_bytes = self.seed_bytes.unwrap_or(d.seed_bytes);
        if seed_bytes > 0 && protocol == Protocol::Json {
            return Err("--seed-bytes needs the yjs or hocuspocus protocol".into());
        }
        if self.seed_insert_bytes == 0 || !(self.seed_rate > 0.0 && self.seed_rate.is_finite()) {
            return Err("--seed-insert-bytes and --seed-rate must be positive".into());
        }
        if join_storm && (seed_bytes == 0 || clients < 2) {
            return Err("a join storm needs --seed-bytes and at least 2 --clients".into());
        }
        let urls = if self.url.is_empty() {
            vec![protocol.default_url().to_string()]
        } else {
            self.url.clone()
        };
        let run_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_millis() % 100_000_000)
            .unwrap_or(0);
        Ok(Plan {
            preset: self.preset.map(|p| format!("{p:?}")),
            label: self.label.clone(),
            protocol,
            urls,
            docs,
            clients,
            writers,
            rate: (rate > 0.0).then_some(rate),
            updates_per_writer: self.updates_per_writer,
            duration: secs_arg(self.duration_secs.unwrap_or(d.duration))?,
            warmup: secs_arg(self.warmup_secs.unwrap_or(d.warmup))?,
            grace: secs_arg(self.grace_secs)?,
            payload_bytes: self.payload_bytes,
            seed_bytes,
            join_storm,
            seed_insert_bytes: self.seed_insert_bytes,
            seed_rate: self.seed_rate,
            window_hook: self.window_hook.clone(),
            doc_prefix: self
                .doc_prefix
                .clone()
                .unwrap_or_else(|| format!("lg-{}-{run_id}", protocol.name())),
            connect_concurrency: self.connect_concurrency.max(1),
            bind: self.bind.clone(),
            keepalive: (self.keepalive_secs > 0.0)
                .then(|| Duration::from_secs_f64(self.keepalive_secs)),
        })
    }
}

fn secs_arg(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("not a duration in seconds: {s}"))
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
