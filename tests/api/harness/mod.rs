//! What every test gets: its own docroom (in this process by default, the built binary as a
//! child process where a signal or a kill is the story), Redis key prefix, PostgreSQL database
//! and data directory, so tests run in parallel against the machine's shared Redis and
//! PostgreSQL without seeing each other. Faults go to private instances or proxies, never to the
//! shared servers.
//!
//! # Layout
//! - [`app`]: `TestApp`: start, restart, stop, signals, captured logs, cleanup
//! - [`options`]: `TestOptions`, how one test's app differs (`process()` for a child process)
//! - [`in_process`]: the app on its own thread and actix `System` in this process
//! - [`child`]: the binary as a child process, on a port the harness picks, or run to its exit
//! - [`logs`]: each in-process app's log lines and panics, told apart by `System`
//! - [`storage`]: Redis and PostgreSQL read directly, not through the service's answers
//! - [`http`]: document routes, the `Admin` API, raw HTTP for targets `reqwest` would rewrite
//! - [`ws`]: `WsClient` (JSON protocol, answers Pings) and `MuteClient` (stops answering)
//! - [`redis_server`]: `PrivateRedis`, to kill, pause and restart
//! - [`tls_stores`]: certificates, a TLS-only Redis and a TLS-only PostgreSQL with passwords
//! - [`redis_nodes`]: private Redis configurations: a Sentinel set, TLS only, small `maxmemory`
//! - [`proxy`]: `Proxy`, a TCP proxy to cut or stall
//! - [`sha256`]: SHA-256 from `ring` (the service uses `sha2`), for the content hash
//! - `fault_tools`, `app_modes`: tests of the fault tools and of the two app modes themselves

// The harness is shared by every suite (the fault-injection and Yjs ones too); helpers one
// suite does not call yet are not dead.
#![allow(dead_code)]

pub mod app;
mod app_modes;
pub mod child;
mod fault_tools;
pub mod http;
pub mod in_process;
pub mod logs;
pub mod options;
pub mod proxy;
pub mod redis_nodes;
pub mod redis_server;
pub mod sha256;
pub mod storage;
pub mod tls_stores;
pub mod tokens;
pub mod traffic;
pub mod ws;
pub mod yclient;

use std::time::{Duration, Instant};

use serde_json::Value;

pub use app::TestApp;
pub use http::raw_request;
pub use options::TestOptions;
pub use proxy::Proxy;
#[allow(unused_imports)]
pub use redis_server::PrivateRedis;
pub use ws::{Frame, MuteClient, WsClient};

/// Returns early from an `eventually` check with a reason, when `cond` does not hold yet.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}
pub(crate) use ensure;

/// Polls `check` until it returns `Ok`, and returns that value; panics with the last reason once
/// `within` has passed. `within` is an upper bound for waiting, never a claim about speed.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// Waits (at most 30 s) until `GET /admin/breaker` reports `state`; answers that view.
pub async fn await_breaker(app: &TestApp, state: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("the breaker {state}"),
        async || {
            let breaker = app.admin().breaker().await;
            ensure!(breaker["state"] == state, "breaker {breaker}");
            Ok(breaker)
        },
    )
    .await
}

/// The SPEC's content hash: lowercase hex SHA-256 of `serde_json::to_string` of the value (keys
/// sorted: serde_json's map is ordered here).
pub fn content_hash(content: &Value) -> String {
    sha256::hex(serde_json::to_string(content).unwrap().as_bytes())
}

/// Asserts that `actual` has every field of `expected` with the same value (it may have more).
#[track_caller]
pub fn assert_fields(actual: &Value, expected: Value) {
    let Value::Object(fields) = expected else {
        panic!("assert_fields takes an object")
    };
    for (name, value) in fields {
        assert_eq!(actual[&name], value, "field {name:?} of {actual}");
    }
}

pub fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}
