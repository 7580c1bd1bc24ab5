//! The shell's half of the room: carrying out what the core decided. Frames go to members'
//! sessions, saves to the cache supervisor and the leave flush to the flusher, whose results
//! come back to the core; answers go to whoever waits; the core's next deadline is one timer.

use std::time::Instant;

use actix::prelude::*;
use tracing::{debug, warn};

use super::core::{Answer, Effect, RoomCore, WaiterId};
use super::{Ack, Changed, DocRoom, MemberId, Reply, RoomError};
use crate::doc::Version;
use crate::flusher::PersistNow;
use crate::supervisor::Publish;

impl DocRoom {
    /// Keeps `reply` until the core answers it; the id the core knows it by.
    pub(super) fn park(&mut self, reply: Reply) -> WaiterId {
        self.next_waiter += 1;
        let id = WaiterId(self.next_waiter);
        self.waiters.insert(id, reply);
        id
    }

    /// Hands the core a change answered by an ack once stored: parks the answer, runs `apply`
    /// (the core's entry point, given the waiter), carries out what it decided, and answers at
    /// once when the core refused the change.
    pub(super) fn acked(
        &mut self,
        ctx: &mut Context<Self>,
        apply: impl FnOnce(&mut RoomCore, WaiterId) -> Result<(), RoomError>,
    ) -> ResponseFuture<Result<Ack, RoomError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter = self.park(Reply::Ack(tx));
        let applied = apply(&mut self.core, waiter);
        self.carry_out(ctx);
        if let Err(e) = applied {
            self.waiters.remove(&waiter);
            return Box::pin(async { Err(e) });
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(RoomError::Unavailable("room stopped".into())))
        })
    }

    /// Carries out what the core decided, then arms the timer for its next deadline.
    pub(super) fn carry_out(&mut self, ctx: &mut Context<Self>) {
        self.run_effects(ctx);
        self.arm(ctx);
    }

    /// The effects in the order the core decided them; the recipients follow the core's
    /// members (a frame is only ever for a member the core still has).
    pub(super) fn run_effects(&mut self, ctx: &mut Context<Self>) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::Send { to, frame } => {
                    if let Some(to) = self.members.get(&to) {
                        to.do_send(frame);
                    }
                }
                Effect::Broadcast {
                    except,
                    skip,
                    frame,
                } => {
                    for (id, to) in &self.members {
                        if Some(*id) != except && !skip.contains(id) {
                            to.do_send(frame.clone());
                        }
                    }
                }
                Effect::Remove(id) => {
                    self.members.remove(&id);
                }
                Effect::Save(version) => self.start_save(version, ctx),
                Effect::Answer { waiter, answer } => self.answer(waiter, answer),
                Effect::Publish { kind, payload } => self.shared.supervisor.do_send(Publish {
                    doc: self.doc.clone(),
                    kind,
                    payload,
                }),
                Effect::Changed { users } => {
                    if let Some(to) = &self.shared.changes {
                        let (doc, kind) = (self.doc.clone(), self.core.kind());
                        to.do_send(Changed { doc, kind, users });
                    }
                }
                Effect::Cut(version) => {
                    if let Some(to) = &self.shared.history {
                        to.do_send(version);
                    }
                }
                Effect::Persist => self.persist(ctx),
                Effect::Stop => ctx.stop(),
            }
        }
    }

    /// Runs [`RoomCore::tick`](super::core::RoomCore::tick) at the core's next deadline (one timer, moved when the deadline
    /// moves).
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let due = self.core.next_deadline();
        if self.timer.as_ref().map(|(at, _)| *at) == due {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let Some(at) = due else { return };
        let wait = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(wait, move |act, ctx| {
            act.timer = None;
            // Never before the deadline: a tick that finds nothing due would arm it again.
            act.core.tick(Instant::now().max(at));
            act.carry_out(ctx);
        });
        self.timer = Some((at, handle));
    }

    fn answer(&mut self, waiter: WaiterId, answer: Answer) {
        // The asker may be gone already: nobody left to tell.
        match (self.waiters.remove(&waiter), answer) {
            (Some(Reply::Ack(tx)), Answer::Ack(ack)) => {
                let _ = tx.send(ack);
            }
            (Some(Reply::Status(tx)), Answer::Status(stored)) => {
                let _ = tx.send(stored);
            }
            (Some(Reply::Status(tx)), Answer::Ack(ack)) => {
                let _ = tx.send(ack.is_ok());
            }
            (Some(Reply::Ack(_)), Answer::Status(_)) | (None, _) => {}
        }
    }

    /// Hands a save to the supervisor's inbox and feeds its result back to the core.
    fn start_save(&mut self, version: Version, ctx: &mut Context<Self>) {
        let started = Instant::now();
        self.shared
            .saves
            .save(version)
            .into_actor(self)
            .map(move |res, act, ctx| {
                let took = started.elapsed().as_secs_f64();
                act.core.series().save_duration.record(took);
                let res = match res {
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(e)) => Err(RoomError::Unavailable(e.to_string())),
                    Err(e) => Err(RoomError::Unavailable(e.to_string())),
                };
                act.core.saved(res, Instant::now());
                act.carry_out(ctx);
            })
            .spawn(ctx);
    }

    /// The leave flush: the flusher persists what the ledger still holds for the document (it
    /// answers at once if nothing waits); the core then decides whether the room retires.
    fn persist(&mut self, ctx: &mut Context<Self>) {
        self.shared
            .flusher
            .send(PersistNow {
                doc: self.doc.clone(),
            })
            .into_actor(self)
            .map(move |res, act, ctx| {
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(doc = %act.doc, error = %e, "leave flush failed, the flusher retries"),
                    Err(e) => warn!(doc = %act.doc, error = %e, "flusher unreachable"),
                }
                act.core.persisted();
                act.carry_out(ctx);
            })
            .spawn(ctx);
    }

    /// Drops members whose session stopped without a `Leave`.
    pub(super) fn prune_gone(&mut self, ctx: &mut Context<Self>) {
        let gone: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, to)| !to.connected())
            .map(|(id, _)| *id)
            .collect();
        if gone.is_empty() {
            return;
        }
        self.core.gone(&gone, Instant::now());
        self.carry_out(ctx);
    }
}
