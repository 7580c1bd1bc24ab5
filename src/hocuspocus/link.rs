//! One document of a `/hocuspocus` socket, as a member of that document's room. Rooms send a
//! member bare [`Outbound`] frames; a socket carrying many documents must know which document
//! each came from, so every document gets its own recipient: this actor, which tags each frame
//! with its document and passes it on to the session.
//!
//! It lives as long as something holds it: the room (its member's recipient) and the session
//! (the membership). It stops by itself once the session is gone, so the room's sweep of
//! vanished members sees it go.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use docroom_actors::room::Outbound;

/// How often a link checks that its session still runs.
const SESSION_CHECK: Duration = Duration::from_secs(1);

/// A room's frame for one document of the session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromRoom {
    pub doc: Arc<str>,
    pub frame: Outbound,
}

pub struct DocLink {
    doc: Arc<str>,
    session: Recipient<FromRoom>,
}

impl DocLink {
    pub fn new(doc: Arc<str>, session: Recipient<FromRoom>) -> Self {
        DocLink { doc, session }
    }
}

impl Actor for DocLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SESSION_CHECK, |act, ctx| {
            if !act.session.connected() {
                ctx.stop();
            }
        });
    }
}

impl Handler<Outbound> for DocLink {
    type Result = ();

    /// Passes the room's frame on, tagged with the document.
    fn handle(&mut self, frame: Outbound, ctx: &mut Self::Context) {
        if !self.session.connected() {
            return ctx.stop();
        }
        self.session.do_send(FromRoom {
            doc: self.doc.clone(),
            frame,
        });
    }
}
