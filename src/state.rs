//! What every HTTP handler and session shares: the actor addresses, the settings, and the
//! shutdown flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::Addr;
use docroom_actors::doc::{DocId, Kind};
use docroom_actors::flusher::Flusher;
use docroom_actors::ledger::Ledger;
use docroom_actors::refusal_log::RefusalLog;
use docroom_actors::registry::{GetRoom, NoRoom, RoomRegistry};
use docroom_actors::room::DocRoom;
use docroom_actors::supervisor::CacheSupervisor;

use crate::error::ApiError;
use crate::limits::{ConnectionCounts, RenderingTurns};
use crate::settings::Settings;

/// Cloning is shallow; one per HTTP worker via `web::Data`.
#[derive(Clone)]
pub struct AppState {
    pub registry: Addr<RoomRegistry>,
    pub supervisor: Addr<CacheSupervisor>,
    pub flusher: Addr<Flusher>,
    /// What PostgreSQL does not have yet (read by the shutdown drain's journal fallback).
    pub ledger: Ledger,
    pub settings: Arc<Settings>,
    /// This replica's id (`DOCROOM_REPLICA_ID`, or host name and process id).
    pub replica: Arc<str>,
    /// Set once by the shutdown sequence; read by `/readyz` and by every new upgrade or write.
    pub shutting_down: Arc<AtomicBool>,
    pub connections: ConnectionCounts,
    pub renderings: RenderingTurns,
    /// Which refused frames were logged (shared with the rooms).
    pub refusals: RefusalLog,
    /// `None` when `webhooks.url` is unset.
    pub webhooks: Option<crate::webhooks::Webhooks>,
    /// Versions of every document (SPEC §10); off when `history.retention_days` is 0.
    pub history: crate::history::History,
}

impl AppState {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub async fn room(&self, doc: &DocId, kind: Kind) -> Result<Addr<DocRoom>, ApiError> {
        self.registry
            .send(GetRoom {
                doc: doc.clone(),
                kind,
                home: Some(actix::Arbiter::current()),
            })
            .await?
            .map_err(|refused| match refused {
                NoRoom::ShuttingDown => ApiError::ShuttingDown,
                NoRoom::Full(_) => ApiError::Unavailable(refused.to_string()),
            })
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
