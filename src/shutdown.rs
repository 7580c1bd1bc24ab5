//! One shutdown signal, fanned out, then drained: stop taking work, close every session with
//! 1001, persist every room and the fallback to PostgreSQL (or to the journal when PostgreSQL
//! refuses), all within the drain deadline.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use docroom_actors::flusher::Drain;
use docroom_actors::ledger::Durable;
use docroom_actors::registry::CloseAll;
use docroom_actors::supervisor::{CollectDirty, Spill};
use tracing::{error, info, warn};

use crate::state::AppState;

/// Resolves at the first SIGTERM or SIGINT; later signals are logged and otherwise ignored, so
/// an impatient second Ctrl-C cannot skip the journal write.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = name, "shutdown requested");
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            warn!("already draining, finishing the drain first");
        }
    });
}

/// The drain itself; returns when everything acknowledged is in PostgreSQL or the journal.
pub async fn drain(state: &AppState) {
    let started = Instant::now();
    let deadline = Duration::from_millis(state.settings.server.shutdown_drain_deadline_ms);
    state.shutting_down.store(true, Ordering::Release);
    info!("shutdown: refusing new work, closing sessions");
    let versions = state.registry.send(CloseAll).await.unwrap_or_default();
    info!(
        rooms_dirty = versions.len(),
        "shutdown: sessions closed, draining to postgres"
    );
    // Leave room for the journal fallback inside the deadline.
    let for_postgres = deadline.saturating_sub(deadline / 5);
    let drained = tokio::time::timeout(
        for_postgres,
        state.flusher.send(Drain {
            versions: versions.clone(),
        }),
    )
    .await;
    match drained {
        Ok(Ok(report)) if report.lost == 0 => info!(
            drain_seconds = {
                let secs = started.elapsed().as_secs_f64();
                metrics::histogram!(docroom_actors::metrics::SHUTDOWN_DRAIN).record(secs);
                secs
            },
            persisted = report.persisted,
            journaled = report.journaled,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shutdown: drained"
        ),
        Ok(Ok(report)) => error!(lost = report.lost, "shutdown: journal refused documents"),
        _ => {
            warn!("shutdown: postgres drain did not finish in time, journaling everything");
            // What only Redis holds (the ledger's journaled entries are already in the journal).
            let collect = CollectDirty {
                everything: true,
                ..CollectDirty::default()
            };
            let collected = state.supervisor.send(collect).await.unwrap_or_default();
            let mut all: Vec<_> = collected.dirty.into_iter().map(|d| d.version).collect();
            all.extend(
                state
                    .ledger
                    .entries(Some(Durable::Cache))
                    .into_iter()
                    .map(|e| e.version),
            );
            all.extend(versions);
            match state.supervisor.send(Spill { versions: all }).await {
                Ok(Ok(())) => info!("shutdown: journaled"),
                _ => error!("shutdown: journal write failed, unpersisted documents may be lost"),
            }
        }
    }
}
