//! Whatever happens to a room, in whatever order: members join, leave, send updates, repeats and
//! garbage; saves land or fail; time passes; backends and other replicas write. The room's core
//! never panics, and its simulator checks its rules at every step: at most one save in flight,
//! every waiter answered exactly once, frames only for members, nobody left waiting once the
//! room is saved. The first byte picks the room's kind; then two bytes a step
//! ([`Step::decode`]).
#![no_main]

use docroom_actors::doc::Kind;
use docroom_actors::room::core::sim::{Sim, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, script)) = data.split_first() else {
        return;
    };
    let kind = if kind % 2 == 0 { Kind::Yjs } else { Kind::Json };
    Sim::run(kind, &Step::decode(script));
});
