//! Replica heartbeats (SPEC §3 `GET /admin/replicas`, §6 `replica:{id}`) through the
//! supervisor, like every other Redis call, so the breaker counts their outcomes and none is
//! tried while it is open.

use std::time::Duration;

use actix::prelude::*;

use super::{CacheSupervisor, Outcome};
use crate::storage::ReplicaBeat;

/// Writes this replica's heartbeat; skipped while the breaker keeps Redis out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Beat {
    pub beat: ReplicaBeat,
    /// How long the heartbeat stays without the next one.
    pub ttl: Duration,
}

/// The live replicas' heartbeats, as Redis holds them.
#[derive(Message)]
#[rtype(result = "Result<Vec<ReplicaBeat>, ReplicasUnknown>")]
pub struct ListReplicas;

/// Deletes a replica's heartbeat: it is shutting down. Best effort; the TTL covers a failure.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire {
    pub replica: String,
}

/// Why the other replicas cannot be listed now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicasUnknown {
    #[error("the breaker is open: redis is not asked")]
    BreakerOpen,
    #[error("{0}")]
    Redis(String),
}

impl Handler<Beat> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    /// One heartbeat write, counted by the breaker.
    fn handle(&mut self, msg: Beat, _: &mut Context<Self>) -> Self::Result {
        if !self.allows_redis() {
            return Box::pin(actix::fut::ready(()));
        }
        let cache = self.stores.cache.clone();
        self.best_effort("heartbeat write failed", async move {
            cache.beat(&msg.beat, msg.ttl).await
        })
    }
}

impl Handler<ListReplicas> for CacheSupervisor {
    type Result = ResponseActFuture<Self, Result<Vec<ReplicaBeat>, ReplicasUnknown>>;

    /// Every heartbeat in Redis, counted by the breaker.
    fn handle(&mut self, _: ListReplicas, _: &mut Context<Self>) -> Self::Result {
        if !self.allows_redis() {
            return Box::pin(actix::fut::ready(Err(ReplicasUnknown::BreakerOpen)));
        }
        let cache = self.stores.cache.clone();
        let read = async move { cache.replicas().await };
        Box::pin(read.into_actor(self).map(|res, act, ctx| {
            act.account(Outcome::from(&res), ctx);
            res.map_err(|e| ReplicasUnknown::Redis(e.to_string()))
        }))
    }
}

impl Handler<Retire> for CacheSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    /// Deletes the heartbeat, unless the breaker keeps Redis out.
    fn handle(&mut self, msg: Retire, _: &mut Context<Self>) -> Self::Result {
        if !self.allows_redis() {
            return Box::pin(actix::fut::ready(()));
        }
        let cache = self.stores.cache.clone();
        self.best_effort("heartbeat delete failed", async move {
            cache.retire(&msg.replica).await
        })
    }
}
