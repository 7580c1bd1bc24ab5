//! Valid Yjs updates, as real and hostile clients send them. Random bytes (`yjs_frame`) rarely
//! decode as an update and never as one nested thousands of levels deep, yet a 7,500-level array
//! in one update overflowed the server's stack. Here the input is decoded into a small editing
//! program ([`program`]) that a few client `yrs::Doc`s carry out ([`clients`], [`shared`]):
//! nested shared types and values, formatting, embeds, deletions, map overwrites,
//! client-to-client syncs. Their updates and awareness states reach a room's document
//! ([`room`]) as the frames a client would send, some held back and delivered late.
//!
//! Asserted: nothing panics or overflows a stack (a panic inside yrs, which the room catches
//! and answers by starting afresh from what is stored, is played as that); the room's state
//! always loads back and renders as the live document does; a refused frame, and any frame of
//! a read-only sender, changes nothing; a replica fed what the room applied renders the same;
//! every frame the room answers or relays decodes.
#![no_main]

#[path = "yjs_structured/clients.rs"]
mod clients;
#[path = "yjs_structured/program.rs"]
mod program;
#[path = "yjs_structured/room.rs"]
mod room;
#[path = "yjs_structured/shared.rs"]
mod shared;

use std::sync::mpsc;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The deepest anything may nest: shared types, values inside them, awareness JSON.
const MAX_DEPTH: usize = 20_000;
/// Levels one input may build in all, so that the average run stays cheap.
const MAX_LEVELS: usize = 20_000;
const MAX_OPS: usize = 64;
/// Rooms run on actix arbiters' threads and documents are rendered on actix-web's workers,
/// all with std's default stack: an update that would overflow the server must overflow here.
const ROOM_STACK: usize = 2 << 20;
/// yrs recurses over nesting on the clients' side too (deletions, syncs); the clients are the
/// instrument, not the subject, so their stack is ample.
const CLIENT_STACK: usize = 256 << 20;

fuzz_target!(|data: &[u8]| {
    PANICS_INSIDE_YRS.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().contains("/yrs-")) {
                abort(info);
            }
        }));
    });
    let Ok(program) = program::Program::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let steps = CLIENTS.with(|clients| clients.run(move || clients::Clients::new().run(program)));
    ROOM.with(|room| room.run(move || room::serve(steps)));
});

/// A panic inside yrs is caught by the room (`YjsError::Broken`: the room starts afresh from
/// what is stored), so it is no crash here; any other panic aborts, as libFuzzer's hook does.
static PANICS_INSIDE_YRS: std::sync::Once = std::sync::Once::new();

thread_local! {
    static CLIENTS: Worker = Worker::new(CLIENT_STACK);
    static ROOM: Worker = Worker::new(ROOM_STACK);
}

/// A thread with a stack of a chosen size, kept for the whole run: spawning one per input
/// would cost more than most inputs do. A panic or an overflow on it aborts the process, as on
/// the fuzzer's own thread.
struct Worker {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Worker {
    fn new(stack_size: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .stack_size(stack_size)
            .spawn(move || queue.into_iter().for_each(|job| job()))
            .unwrap();
        Worker { jobs }
    }

    fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = mpsc::sync_channel(1);
        let job = move || done.send(job()).unwrap();
        self.jobs.send(Box::new(job)).unwrap();
        result.recv().unwrap()
    }
}
