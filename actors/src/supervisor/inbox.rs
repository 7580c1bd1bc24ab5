//! How rooms hand the supervisor their saves: into a shared inbox, which the supervisor drains at
//! most once per `save_linger` while saves keep coming, so saves that come while they are
//! frequent share one Redis call (`redis_cache/saves.rs`) — and one wake-up of the supervisor's
//! thread. A room's save as an actor message woke that thread for every save, then waited there
//! for the others: at a few thousand updates a second the thread parked and woke more than it
//! worked.
//!
//! - A save that finds nobody told tells the supervisor ([`SavesWaiting`]), which drains at
//!   once: a save after a quiet spell does not wait.
//! - A drain that took saves schedules the next a linger later, and until then saves ride along
//!   without a message; a drain that finds the inbox empty schedules none, and the next save
//!   tells again.
//! - A JSON save tells at once whatever is scheduled (an HTTP write waits for its ack).
//! - The linger is `save_linger_alone` instead while the cache says no other replica follows any
//!   document: no other replica then waits to hear of the saves sooner.
//!
//! Once drained, each save is the [`Save`](super::Save) it would be as a message: routed,
//! stored, answered.

use std::future::Future;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{CacheSupervisor, SaveAnswer, SupervisorError};
use crate::doc::{Kind, Version};

type Answer = oneshot::Sender<Result<SaveAnswer, SupervisorError>>;

/// Whether the supervisor will take what waits without being told again.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Told {
    /// No: the next save tells it.
    #[default]
    Nobody,
    /// A [`SavesWaiting`] is on its way: it drains at once, taking every save that came.
    Message,
    /// A drain is scheduled a linger after the last: a JSON save, which does not wait, tells.
    Timer,
}

#[derive(Default)]
struct Waiting {
    saves: Vec<(Version, Answer)>,
    told: Told,
    /// The supervisor is gone: a save is refused at once rather than kept for no one.
    closed: bool,
}

/// The saves waiting, shared by the rooms' [`SaveInbox`]es and the supervisor (which holds
/// this, not an inbox: its own address would keep it alive).
#[derive(Default)]
pub(super) struct Waiters(Mutex<Waiting>);

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything waiting. Unless `scheduled` (a drain is due later, which takes what comes),
    /// saves that come next tell the supervisor again if this took none.
    fn take(&self, scheduled: bool) -> Vec<(Version, Answer)> {
        let mut w = self.lock();
        let saves = std::mem::take(&mut w.saves);
        w.told = match scheduled || !saves.is_empty() {
            true => Told::Timer,
            false => Told::Nobody,
        };
        saves
    }

    /// The supervisor is gone: what waits, and what comes, is answered [`Unanswered`].
    fn close(&self) {
        let mut w = self.lock();
        w.closed = true;
        w.saves.clear();
    }
}

/// The supervisor's inbox for saves. Cloning is shallow.
#[derive(Clone)]
pub struct SaveInbox {
    waiting: Arc<Waiters>,
    supervisor: Addr<CacheSupervisor>,
}

/// Why a save got no answer.
#[derive(Debug, thiserror::Error)]
#[error("the cache supervisor stopped before answering")]
pub struct Unanswered;

impl SaveInbox {
    pub fn new(supervisor: Addr<CacheSupervisor>) -> Self {
        SaveInbox {
            waiting: Arc::default(),
            supervisor,
        }
    }

    /// Stores `version` as [`Save`](super::Save) would, answering once it is stored.
    pub fn save(
        &self,
        version: Version,
    ) -> impl Future<Output = Result<Result<SaveAnswer, SupervisorError>, Unanswered>> + 'static
    {
        let (answer, answered) = oneshot::channel();
        let json = version.kind == Kind::Json;
        let tell = {
            let mut w = self.waiting.lock();
            let tell = match w.told {
                _ if w.closed => false,
                Told::Nobody => true,
                Told::Timer => json,
                Told::Message => false,
            };
            if !w.closed {
                w.saves.push((version, answer));
            }
            if tell {
                w.told = Told::Message;
            }
            tell
        };
        if tell {
            self.supervisor.do_send(SavesWaiting);
        }
        async move { answered.await.map_err(|_| Unanswered) }
    }

    /// The supervisor's side of this inbox.
    pub(super) fn draining(&self) -> Draining {
        Draining {
            waiting: Some(self.waiting.clone()),
            scheduled: false,
        }
    }
}

/// Saves wait in the inbox that no scheduled drain will take soon enough: drain it now.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SavesWaiting;

/// The supervisor's side: the inbox, and whether a drain is scheduled. (`None` waiting: no
/// inbox was given, and nothing sends [`SavesWaiting`].)
#[derive(Default)]
pub(super) struct Draining {
    waiting: Option<Arc<Waiters>>,
    scheduled: bool,
}

/// The supervisor stopped (or its thread did): nothing will drain the inbox again.
impl Drop for Draining {
    fn drop(&mut self) {
        if let Some(waiting) = &self.waiting {
            waiting.close();
        }
    }
}

impl Handler<SavesWaiting> for CacheSupervisor {
    type Result = ();

    fn handle(&mut self, _: SavesWaiting, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

impl CacheSupervisor {
    /// Stores everything waiting in the inbox, each save as its own [`Save`](super::Save), and
    /// if there was any, drains again a linger later.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let Some(waiting) = self.draining.waiting.clone() else {
            return;
        };
        let saves = waiting.take(self.draining.scheduled);
        if saves.is_empty() {
            return;
        }
        if !std::mem::replace(&mut self.draining.scheduled, true) {
            let linger = match self.stores.cache.others_may_follow() {
                true => self.settings.save_linger,
                false => self.settings.save_linger_alone,
            };
            ctx.run_later(linger, |act, ctx| {
                act.draining.scheduled = false;
                act.drain(ctx);
            });
        }
        for (version, answer) in saves {
            let save = self.save(version).map(move |res, _, _| {
                let _ = answer.send(res);
            });
            ctx.spawn(save);
        }
    }
}
