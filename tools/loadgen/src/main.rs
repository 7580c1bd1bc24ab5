//! `docroom-loadgen`: opens documents × clients WebSocket connections to docroom (JSON, Yjs or
//! Hocuspocus protocol), to Hocuspocus or to the reference y-websocket server, drives updates
//! through them and reports throughput and latency. See `--help` and BENCHMARKS.md.
//!
//! # Layout
//!
//! - [`options`]: flags, presets W1–W4, W6 and W8, the resolved [`options::Plan`].
//! - [`protocol`]: one codec per connection for JSON, Yjs (y-websocket) and Hocuspocus framing.
//! - [`marker`]: the `~lg<conn>.<seq>.<sent_us>~` text each update carries, and the clock.
//! - [`client`]: one task per connection: connect, handshake, send, receive, record.
//! - [`seed`]: filling a document with text before the run (large-document workloads).
//! - [`stats`]: counters and latency histograms shared by all connections.
//! - [`report`]: the final table and JSON.
//!
//! The run: connect everything (bounded concurrency), then publish one [`client::Schedule`]
//! (warmup, measured window, grace) that every connection follows, printing a progress line
//! each second on stderr. With several `--url`s each document's clients are spread over them
//! (several replicas of one service, each client on its own); `--window-hook` runs a command as
//! the measured window opens and closes, so a script can sample server CPU exactly over it.
//!
//! A join storm (`--join-storm`, W8) connects only each document's seeder first; once they are
//! done, every other client connects at once, and the window hook runs as the storm starts and
//! once the last joiner is synced.

mod client;
mod marker;
mod options;
mod protocol;
mod report;
mod seed;
mod stats;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use client::{Conn, Schedule, Shared};
use marker::now_us;
use options::{Args, Plan};
use report::Report;
use stats::{load, Stats, Window};

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match args.plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("docroom-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("docroom-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(run(plan)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("docroom-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        eprint!("{}", report.table());
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print!("{}", report.table());
    }
    let problems = report.problems();
    if args.check && !problems.is_empty() {
        eprintln!("docroom-loadgen: check failed: {}", problems.join("; "));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn run(plan: Plan) -> Result<Report, String> {
    let mut servers = Vec::with_capacity(plan.urls.len());
    for url in &plan.urls {
        servers.push(server_addr(url).await?);
    }
    let began = Instant::now();
    let _ = now_us(); // fix the epoch before any timestamp is taken
    let total = plan.docs * plan.clients;
    eprintln!(
        "docroom-loadgen: {} connections ({} docs x {}) to {} ({}), prefix {}",
        total,
        plan.docs,
        plan.clients,
        plan.urls.join(" + "),
        plan.protocol.name(),
        plan.doc_prefix
    );
    let shared = Arc::new(Shared {
        connect_permits: Semaphore::new(plan.connect_concurrency),
        stats: Stats::new(),
        plan,
    });
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (schedule_tx, schedule_rx) = watch::channel(None);
    let progress = tokio::spawn(progress(shared.clone(), schedule_rx.clone()));

    let mut tasks = JoinSet::new();
    let p = &shared.plan;
    let spawn = |tasks: &mut JoinSet<()>, d: usize, c: usize, storm_start_us: Option<u64>| {
        let id = (d * p.clients + c) as u64;
        let target = p.server_of(id);
        let conn = Conn {
            id,
            doc: format!("{}-{d}", p.doc_prefix),
            writer: c < p.writers,
            seeder: c == 0 && p.seed_bytes > 0,
            storm_start_us,
            peers: (p.clients - 1) as u64,
            server: servers[target],
            url: p.urls[target].clone(),
            bind: (!p.bind.is_empty()).then(|| p.bind[id as usize % p.bind.len()]),
        };
        tasks.spawn(client::run(
            conn,
            shared.clone(),
            ready_tx.clone(),
            schedule_rx.clone(),
        ));
    };
    // In a join storm, the seeders alone first.
    let first = if p.join_storm { 1 } else { p.clients };
    for d in 0..p.docs {
        for c in 0..first {
            spawn(&mut tasks, d, c, None);
        }
    }
    let mut answered = 0;
    while answered < p.docs * first && ready_rx.recv().await.is_some() {
        answered += 1;
    }
    if p.join_storm {
        if let Some(cmd) = &p.window_hook {
            run_hook(cmd.clone(), "start").await;
        }
        let start_us = now_us();
        for d in 0..p.docs {
            for c in 1..p.clients {
                spawn(&mut tasks, d, c, Some(start_us));
            }
        }
        while answered < total && ready_rx.recv().await.is_some() {
            answered += 1;
        }
        if let Some(cmd) = &p.window_hook {
            run_hook(cmd.clone(), "end").await;
        }
    }
    drop(ready_tx);
    let connect_secs = began.elapsed().as_secs_f64();

    let p = &shared.plan;
    let lead = Duration::from_millis(200);
    let start = Instant::now() + lead;
    let start_us = now_us() + lead.as_micros() as u64;
    let window = Window {
        start_us: start_us + p.warmup.as_micros() as u64,
        end_us: start_us + (p.warmup + p.duration).as_micros() as u64,
    };
    let stop_sending = start + p.warmup + p.duration;
    let _ = schedule_tx.send(Some(Schedule {
        start,
        window,
        stop_sending,
        close_at: stop_sending + p.grace,
    }));
    let hooks = p
        .window_hook
        .clone()
        .filter(|_| !p.join_storm)
        .map(|cmd| tokio::spawn(window_hooks(cmd, start + p.warmup, stop_sending)));
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            shared.stats.error(format!("connection task failed: {e}"));
        }
    }
    progress.abort();
    let _ = progress.await;
    if let Some(h) = hooks {
        if let Err(e) = h.await {
            shared.stats.error(format!("window hook task failed: {e}"));
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    let shared = Arc::try_unwrap(shared).map_err(|_| "connections still running")?;
    Ok(Report::new(
        shared.plan,
        &shared.stats,
        connect_secs,
        elapsed,
    ))
}

/// The server's socket address, from a `ws://host:port/...` URL.
async fn server_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut addrs = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("cannot resolve {with_port}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{with_port} resolves to nothing"))
}

/// Runs `cmd` with `LOADGEN_PHASE=start` when the measured window opens and `end` when it
/// closes. A hook that fails is reported on stderr; the run goes on (its numbers are the
/// script's to miss).
async fn window_hooks(cmd: String, opens: Instant, closes: Instant) {
    for (phase, at) in [("start", opens), ("end", closes)] {
        tokio::time::sleep_until(at).await;
        run_hook(cmd.clone(), phase).await;
    }
}

/// Runs the window hook `cmd` for `phase` ("start" or "end") and waits for it.
async fn run_hook(cmd: String, phase: &'static str) {
    let ran = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("LOADGEN_PHASE", phase)
            .status()
    })
    .await;
    match ran {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => eprintln!("docroom-loadgen: window hook ({phase}) exited with {s}"),
        Ok(Err(e)) => eprintln!("docroom-loadgen: window hook ({phase}) did not run: {e}"),
        Err(e) => eprintln!("docroom-loadgen: window hook ({phase}) task failed: {e}"),
    }
}

/// One line a second on stderr: phase, connections, rates since the last line.
async fn progress(shared: Arc<Shared>, schedule: watch::Receiver<Option<Schedule>>) {
    let c = &shared.stats.counters;
    let began = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    let mut last = (0, 0, 0);
    loop {
        every.tick().await;
        let now_total = (
            load(&c.sent_total),
            load(&c.acks_total),
            load(&c.broadcasts_total),
        );
        let phase = match *schedule.borrow() {
            None => "connecting",
            Some(s) => {
                let t = now_us();
                if t < s.window.start_us {
                    "warmup"
                } else if t < s.window.end_us {
                    "measuring"
                } else {
                    "draining"
                }
            }
        };
        eprintln!(
            "[{:>4.0}s {phase:<10}] conns {} (failed {}, dropped {}) | sent {}/s acks {}/s broadcasts {}/s | errors {}",
            began.elapsed().as_secs_f64(),
            load(&c.connected),
            load(&c.connect_failed),
            load(&c.dropped),
            now_total.0 - last.0,
            now_total.1 - last.1,
            now_total.2 - last.2,
            load(&c.errors),
        );
        last = now_total;
    }
}
