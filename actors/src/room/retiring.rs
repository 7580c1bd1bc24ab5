//! How a room ends at shutdown: the core closes every member with 1001 and answers what is not
//! known to be saved (`core/lifecycle.rs`, where retiring when idle and starting afresh are
//! too).

use std::time::Instant;

use actix::prelude::*;

use super::{CloseRoom, DocRoom};
use crate::doc::Version;

impl Handler<CloseRoom> for DocRoom {
    type Result = Option<Version>;

    /// Shutdown: 1001 to every member; answers the content not known to be saved.
    fn handle(&mut self, _: CloseRoom, ctx: &mut Context<Self>) -> Self::Result {
        let unsaved = self.core.close(Instant::now());
        self.carry_out(ctx);
        unsaved
    }
}
