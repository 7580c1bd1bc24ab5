//! A long double outage: PostgreSQL down, then Redis down too, while a Yjs document of a
//! megabyte takes ten updates a second for a minute from a Hocuspocus provider. Redis's death
//! spills the unflushed document into the journal, so every later save lands on an entry holding
//! the whole megabyte. A save is journaled as the update it carries, and the ledger holds it as
//! one, so neither the memory of the process nor what it writes grows with saves × document size.
//! Then the "kill something in the middle" rule: SIGKILL, PostgreSQL back, a restart on the same
//! journal, and every update the provider saw acknowledged (SyncStatus 1) is in PostgreSQL; the
//! journal then lets go of the content, keeping only the record that Redis is owed it.
//!
//! The process's memory is read from `/proc/PID/status`: the peak resident set (`VmHWM`, reset
//! through `clear_refs` when the outage starts) and `VmRSS` sampled at every update; what it
//! wrote, from `/proc/PID/io` (`wchar`: the journal, logs and sockets alike).

use std::time::{Duration, Instant};

use docroom_actors::protocol::hocuspocus::Frame;
use yrs::updates::decoder::Decode;
use yrs::{GetString, Transact};

use crate::harness::{
    await_breaker, ensure, eventually, random_suffix, PrivateRedis, Proxy, TestApp, TestOptions,
};
use crate::hocuspocus::HpClient;

const MIB: u64 = 1024 * 1024;
/// The document before the outage, typed as 16 pastes of 64 KiB.
const PASTES: usize = 16;
const PASTE_BYTES: usize = 64 * 1024;
const UPDATES_PER_SECOND: u32 = 10;
const OUTAGE: Duration = Duration::from_secs(60);
/// The bound on the peak resident set's growth through the outage.
const MAX_RSS_GROWTH: u64 = 64 * MIB;
/// The bound on what the process writes through the outage: the updates, the logs and the spill
/// of the document fit many times over; one copy of the document per save (600 MiB) does not.
const MAX_WRITTEN: u64 = 32 * MIB;
const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_megabyte_document_edited_through_a_minute_of_double_outage_keeps_memory_flat_and_every_acked_update(
) {
    let mut redis = PrivateRedis::start().await;
    let database = Proxy::to_postgres();
    let options = TestOptions::new()
        .process()
        .redis_url(redis.url())
        .database_through(database.addr)
        .env("DOCROOM__CACHE__RESPONSE_TIMEOUT_MS", 200)
        .env("DOCROOM__CACHE__CONNECTION_TIMEOUT_MS", 300);
    let mut app = TestApp::spawn(options).await;
    let doc = format!("double-outage-{}", random_suffix());
    let mut provider = HpClient::open(&app).await;
    provider.join(&doc, "").await;

    // PostgreSQL goes first: the megabyte is acknowledged into Redis and never flushed.
    database.cut();
    for i in 0..PASTES {
        provider.type_text(&doc, &paste(i));
        assert!(sync_status(&mut provider, &doc).await, "paste {i} stored");
    }
    let pid = app.pid().expect("the service runs");
    let before = Usage::now(pid);
    let peak_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();

    redis.kill();
    await_breaker(&app, "open").await;
    let updates = OUTAGE.as_secs() as usize * UPDATES_PER_SECOND as usize;
    let mut acked = Vec::new();
    let mut sampled_peak = before.rss;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / UPDATES_PER_SECOND);
    let started = Instant::now();
    for i in 0..updates {
        ticks.tick().await;
        provider.type_text(&doc, &marker(i));
        if sync_status(&mut provider, &doc).await {
            acked.push(i);
        }
        sampled_peak = sampled_peak.max(Usage::now(pid).rss);
    }
    let took = started.elapsed();
    let after = Usage::now(pid);

    let peak = match peak_reset {
        true => after.peak.max(sampled_peak),
        false => sampled_peak,
    };
    let growth = peak.saturating_sub(before.rss);
    let written = after.written.saturating_sub(before.written);
    eprintln!(
        "double outage: {} updates in {took:.1?}, {} acknowledged; rss before {} KiB, peak {} KiB \
         ({}), growth {} KiB; written {} KiB",
        updates,
        acked.len(),
        before.rss / 1024,
        peak / 1024,
        if peak_reset { "VmHWM" } else { "sampled VmRSS" },
        growth / 1024,
        written / 1024,
    );
    assert_eq!(
        acked.len(),
        updates,
        "every update acknowledged from the journal"
    );
    assert!(
        growth < MAX_RSS_GROWTH,
        "peak resident set grew by {} KiB",
        growth / 1024
    );
    assert!(
        written < MAX_WRITTEN,
        "wrote {} KiB during the outage",
        written / 1024
    );

    // Killed in the middle of the outage; PostgreSQL comes back, Redis does not.
    drop(provider);
    app.sigkill().await;
    database.restore();
    app.restart().await;

    let journal = app.data_dir.join("journal.log");
    eventually(
        WITHIN,
        "every acknowledged update in postgres",
        async || {
            app.admin().flush_now().await;
            let state = app.pg_yjs_state(&doc).await;
            let text = state.as_deref().map(text_t).unwrap_or_default();
            let pastes: String = (0..PASTES).map(paste).collect();
            ensure!(text.starts_with(&pastes), "{} bytes of text", text.len());
            let missing: Vec<&usize> = acked
                .iter()
                .filter(|i| !text.contains(&marker(**i)))
                .collect();
            ensure!(missing.is_empty(), "missing updates {missing:?}");
            Ok(())
        },
    )
    .await;
    // What stays is the record that Redis, still dead, is owed the document: no content.
    eventually(WITHIN, "the journal to let go of it", async || {
        app.admin().flush_now().await;
        let len = std::fs::metadata(&journal).map(|m| m.len());
        ensure!(matches!(len, Ok(1..=256)), "journal {len:?}");
        Ok(())
    })
    .await;
}

/// Paste `i`: 64 KiB of text, different for every `i`.
fn paste(i: usize) -> String {
    let line = format!("paste {i:02} ");
    line.repeat(PASTE_BYTES / line.len() + 1)[..PASTE_BYTES].to_owned()
}

/// Update `i` of the outage, findable in the text afterwards.
fn marker(i: usize) -> String {
    format!("<{i:04}>")
}

/// Waits for the SyncStatus of the content message sent last: whether it was stored.
async fn sync_status(provider: &mut HpClient, doc: &str) -> bool {
    let status = provider
        .until(
            "sync status",
            |f| matches!(f, Frame::SyncStatus { doc: d, .. } if d == doc),
        )
        .await;
    matches!(status, Frame::SyncStatus { applied: true, .. })
}

/// The root text `t` (what `HpClient::type_text` types into) of a v1 state.
fn text_t(state: &[u8]) -> String {
    let ydoc = yrs::Doc::new();
    let t = ydoc.get_or_insert_text("t");
    let update = yrs::Update::decode_v1(state).expect("the stored state decodes");
    ydoc.transact_mut()
        .apply_update(update)
        .expect("the stored state applies");
    let text = t.get_string(&ydoc.transact());
    text
}

/// What `/proc` says of a process, in bytes.
struct Usage {
    rss: u64,
    /// The peak resident set since the process started, or since `clear_refs` reset it.
    peak: u64,
    /// Bytes passed to `write` and its kin.
    written: u64,
}

impl Usage {
    fn now(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("io");
        let field = |text: &str, name: &str| -> u64 {
            let line = text.lines().find(|l| l.starts_with(name)).expect(name);
            let number = line[name.len()..].trim().trim_end_matches(" kB");
            number.parse().unwrap_or_else(|_| panic!("{line}"))
        };
        Usage {
            rss: field(&status, "VmRSS:") * 1024,
            peak: field(&status, "VmHWM:") * 1024,
            written: field(&io, "wchar:"),
        }
    }
}
