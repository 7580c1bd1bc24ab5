//! Members standing in for WebSocket sessions, for the benches and examples that drive a real
//! `DocRoom` (benches/fanout.rs, examples/hot_path.rs): each credits its backlog as a session
//! does, so the room's accounting is part of what is measured, and counts the frames it is
//! sent. The socket writes are not included.

#![allow(dead_code)] // each binary uses a different part

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use docroom_actors::doc::Kind;
use docroom_actors::room::{Backlog, DocRoom, Join, MemberId, Outbound};
use tokio::sync::Notify;

/// Counts down the members still to receive the current frame.
#[derive(Default)]
pub struct Countdown {
    remaining: AtomicUsize,
    done: Notify,
}

impl Countdown {
    /// The next frame is to reach `members` members.
    pub fn expect(&self, members: usize) {
        self.remaining.store(members, Ordering::Release);
    }

    /// Returns once every member expected has the frame in its mailbox.
    pub async fn done(&self) {
        self.done.notified().await;
    }

    fn hit(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

struct Member {
    countdown: Option<Arc<Countdown>>,
    backlog: Backlog,
}

impl Actor for Member {
    type Context = Context<Self>;
}

impl Handler<Outbound> for Member {
    type Result = ();

    fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
        self.backlog.taken(&msg);
        if let (Some(c), Outbound::Text(_) | Outbound::Binary(_)) = (&self.countdown, msg) {
            c.hit();
        }
    }
}

/// Joins a member of `kind` to `room`, counted by `countdown` if given, on the current
/// thread; its id. The greeting (the room's state) comes back as the join's answer, not as a
/// frame.
pub async fn join(
    room: &Addr<DocRoom>,
    kind: Kind,
    countdown: Option<Arc<Countdown>>,
) -> Result<MemberId, String> {
    let member = MemberId::next();
    let backlog = Backlog::default();
    let outbound = Member {
        countdown,
        backlog: backlog.clone(),
    }
    .start()
    .recipient();
    let join = Join {
        member,
        kind,
        outbound,
        backlog,
        subject: None,
    };
    (room.send(join).await)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(member)
}
