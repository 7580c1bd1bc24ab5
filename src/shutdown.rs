//! One shutdown signal, fanned out, then drained: stop taking work, close every session with
//! 1001, then one drain (the flusher's `Drain`): every room and the fallback to PostgreSQL, or
//! to the journal when PostgreSQL refuses or runs out of time, all within the drain deadline.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use docroom_actors::flusher::Drain;
use docroom_actors::registry::CloseAll;
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
    let drained = state
        .flusher
        .send(Drain {
            versions,
            deadline: deadline.saturating_sub(started.elapsed()),
        })
        .await;
    match drained {
        Ok(report) if report.lost == 0 => info!(
            drain_seconds = {
                let secs = started.elapsed().as_secs_f64();
                metrics::histogram!(docroom_actors::metrics::SHUTDOWN_DRAIN).record(secs);
                secs
            },
            persisted = report.persisted,
            journaled = report.journaled,
            timed_out = report.timed_out,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shutdown: drained"
        ),
        Ok(report) => error!(
            lost = report.lost,
            "shutdown: journal refused documents, unpersisted documents may be lost"
        ),
        Err(e) => {
            error!(error = %e, "shutdown: the flusher is gone, unpersisted documents may be lost")
        }
    }
}
