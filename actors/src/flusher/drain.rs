//! The shutdown drain: PostgreSQL first, within the deadline; the journal for what it refuses,
//! and for everything not yet in it if PostgreSQL runs out of time.

use std::time::Duration;

use actix::prelude::*;
use tracing::warn;

use super::{Flusher, Scope};
use crate::doc::Version;
use crate::supervisor::Spill;

/// Shutdown: persist everything waiting plus `versions` (content the rooms could not save)
/// within `deadline`; journal what PostgreSQL refuses, and everything not yet in PostgreSQL if
/// it does not finish in four fifths of the deadline.
#[derive(Message)]
#[rtype(result = "DrainReport")]
pub struct Drain {
    pub versions: Vec<Version>,
    pub deadline: Duration,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DrainReport {
    pub persisted: usize,
    pub journaled: usize,
    /// Versions the journal refused (at least 1 when a spill of everything failed).
    pub lost: usize,
    /// PostgreSQL did not finish in time: everything not in it was journaled instead.
    pub timed_out: bool,
}

impl Handler<Drain> for Flusher {
    type Result = ResponseActFuture<Self, DrainReport>;

    /// The shutdown drain: PostgreSQL first, the journal for anything it refuses — or, once
    /// PostgreSQL has had four fifths of the deadline, for everything not yet in it.
    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let supervisor = self.supervisor.clone();
        let for_postgres = msg.deadline.saturating_sub(msg.deadline / 5);
        let rooms = msg.versions.clone();
        let run = self.run(Scope::All, msg.versions).timeout(for_postgres);
        Box::pin(run.then(move |res, act, _| {
            let (mut report, spill) = match res {
                Ok(res) => {
                    let report = DrainReport {
                        persisted: res.committed.len(),
                        ..DrainReport::default()
                    };
                    let spill = Spill {
                        versions: res.uncommitted,
                        redis_too: false,
                    };
                    (report, spill)
                }
                Err(()) => {
                    warn!("shutdown: postgres drain did not finish in time, journaling everything");
                    let report = DrainReport {
                        timed_out: true,
                        ..DrainReport::default()
                    };
                    let spill = Spill {
                        versions: rooms,
                        redis_too: true,
                    };
                    (report, spill)
                }
            };
            async move {
                if !spill.versions.is_empty() || spill.redis_too {
                    let n = spill.versions.len();
                    match supervisor.send(spill).await {
                        Ok(Ok(journaled)) => report.journaled = journaled,
                        _ => report.lost = n.max(1),
                    }
                }
                report
            }
            .into_actor(act)
        }))
    }
}
