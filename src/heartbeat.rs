//! This replica's heartbeat (SPEC §3 `GET /admin/replicas`, §6 `replica:{id}`): written every
//! `replicas.heartbeat_interval_ms` with a TTL of `replicas.heartbeat_ttl_ms`, through the cache
//! supervisor like every Redis call. A clean stop deletes it; a kill leaves it to expire.

use std::time::Duration;

use chrono::Utc;
use docroom_actors::registry::CountRooms;
use docroom_actors::storage::ReplicaBeat;
use docroom_actors::supervisor::{Beat, Retire};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The running heartbeat task. Dropping it without [`Heartbeat::stop`] ends the task without
/// deleting the key (what a kill does).
pub struct Heartbeat {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts beating at once, then every interval. Needs a running actix `System`.
    pub fn start(state: &AppState) -> Heartbeat {
        let (stop, mut stopped) = oneshot::channel();
        let state = state.clone();
        let s = &state.settings.replicas;
        let (interval, ttl) = (
            Duration::from_millis(s.heartbeat_interval_ms),
            Duration::from_millis(s.heartbeat_ttl_ms),
        );
        let task = actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // Awaited, so a beat can never land after the retire below.
                        let beat = local_beat(&state).await;
                        let _ = state.supervisor.send(Beat { beat, ttl }).await;
                    }
                    asked = &mut stopped => {
                        if asked.is_ok() {
                            let replica = state.replica.to_string();
                            let _ = state.supervisor.send(Retire { replica }).await;
                        }
                        return;
                    }
                }
            }
        });
        Heartbeat { stop, task }
    }

    /// Stops beating and deletes this replica's key (best effort: the TTL covers a failure).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// This replica as it is now: what its heartbeat carries.
pub async fn local_beat(state: &AppState) -> ReplicaBeat {
    ReplicaBeat {
        replica: state.replica.to_string(),
        rooms: state.registry.send(CountRooms).await.unwrap_or(0),
        connections: state.connections.total(),
        last_seen: Utc::now(),
    }
}
