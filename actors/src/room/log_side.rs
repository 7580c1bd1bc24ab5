//! A room and its document's log (SPEC §8): what other replicas appended reaches this room's
//! members. The room follows the log from the position its loaded content includes; the
//! [`LogReader`](crate::log_reader::LogReader) hands it other replicas' entries, which it
//! applies — Yjs merged, JSON if its stamp is larger — and relays. Those entries are durable in
//! Redis already (their replica appended them), so applying one saves nothing. An edit reaches
//! other replicas' members once it is saved: a room saves as soon as its previous save landed
//! (`core/yjs.rs`), and the save's notice carries the entry to the other readers.
//!
//! Awareness and stateless messages travel through the document's channel (Redis pub/sub,
//! `doc:{id}:events`): what members here announce is published, what members elsewhere
//! announced is applied and relayed, and what was published while nobody listened is gone
//! (awareness is repeated).

use std::time::Instant;

use actix::prelude::*;

use super::DocRoom;
use crate::log::LogPos;
use crate::log_reader::{Apply, Follow, Resync, Unfollow};
use crate::supervisor::Load;

impl DocRoom {
    /// Follows the document's log after `from`.
    pub(super) fn follow(&self, from: LogPos, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.shared.log.do_send(Follow {
            doc: self.doc.clone(),
            from,
            room: me.clone().recipient(),
            resync: me.recipient(),
        });
    }

    pub(super) fn unfollow(&self, ctx: &mut Context<Self>) {
        self.shared.log.do_send(Unfollow {
            doc: self.doc.clone(),
            room: ctx.address().recipient(),
        });
    }
}

impl Handler<Apply> for DocRoom {
    type Result = ();

    /// Other replicas' entries of this document's log, and its events.
    fn handle(&mut self, msg: Apply, ctx: &mut Context<Self>) {
        let _span = self.span.clone().entered();
        let entries = msg.entries.into_iter().map(|e| e.version).collect();
        self.core.remote(entries, msg.events, Instant::now());
        self.carry_out(ctx);
    }
}

impl Handler<Resync> for DocRoom {
    type Result = ();

    /// The log reader was away: reload the document (Redis's content and log, the ledger's)
    /// and merge in what is missing, then follow the log from there.
    fn handle(&mut self, _: Resync, ctx: &mut Context<Self>) {
        let load = self.shared.supervisor.send(Load {
            doc: self.doc.clone(),
        });
        ctx.spawn(load.into_actor(self).map(|res, act, ctx| {
            let Ok(Ok(loaded)) = res else { return };
            act.core.resynced(loaded.version, Instant::now());
            act.carry_out(ctx);
            act.follow(loaded.position, ctx);
        }));
    }
}
