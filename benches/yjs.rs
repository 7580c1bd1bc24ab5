//! What a Yjs room pays per update, through `docroom_actors::protocol::yjs::YjsDoc`: applying one typed
//! update (a y-protocols sync `Update` frame, as a member sends it) to documents with some
//! history, encoding the whole state (what each coalesced save writes), and loading a state
//! (what opening a room does).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docroom_actors::protocol::yjs::YjsDoc;
use std::time::{Duration, Instant};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Text, TextRef, Transact};

/// A simulated editor: one yrs document typing short runs of text, each run one update frame.
struct Typist {
    doc: Doc,
    text: TextRef,
    n: u64,
}

impl Typist {
    fn new(client_id: u64) -> Self {
        let doc = Doc::with_client_id(client_id);
        let text = doc.get_or_insert_text("content");
        Typist { doc, text, n: 0 }
    }

    /// The next keystroke-sized update, as the sync `Update` frame a provider sends.
    fn next_frame(&mut self) -> Vec<u8> {
        self.n += 1;
        let update = {
            let mut txn = self.doc.transact_mut();
            let len = self.text.len(&txn);
            self.text.insert(&mut txn, len, &format!("word{} ", self.n));
            txn.encode_update_v1()
        };
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    }
}

/// A room document that already took `history` updates from `typist`.
fn room_with_history(typist: &mut Typist, history: usize) -> YjsDoc {
    let mut doc = YjsDoc::new();
    for _ in 0..history {
        doc.handle(&typist.next_frame(), true)
            .expect("valid update");
    }
    doc
}

fn apply_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("yjs_apply_update");
    group.throughput(Throughput::Elements(1));
    for history in [0usize, 1_000, 10_000] {
        group.bench_with_input(
            BenchmarkId::new("history", history),
            &history,
            |b, &history| {
                b.iter_custom(|iters| {
                    let mut typist = Typist::new(1);
                    let mut doc = room_with_history(&mut typist, history);
                    let frames: Vec<Vec<u8>> = (0..iters).map(|_| typist.next_frame()).collect();
                    let start = Instant::now();
                    for f in &frames {
                        let handled = doc.handle(f, true).expect("valid update");
                        std::hint::black_box(handled);
                    }
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

fn encode_and_load(c: &mut Criterion) {
    let mut encode = c.benchmark_group("yjs_encode_state");
    for history in [100usize, 10_000] {
        let mut typist = Typist::new(1);
        let doc = room_with_history(&mut typist, history);
        let state = doc.encode_state();
        encode.throughput(Throughput::Bytes(state.len() as u64));
        encode.bench_function(BenchmarkId::new("updates", history), |b| {
            b.iter(|| doc.encode_state())
        });
    }
    encode.finish();

    let mut load = c.benchmark_group("yjs_load_state");
    for history in [100usize, 10_000] {
        let mut typist = Typist::new(1);
        let state = room_with_history(&mut typist, history).encode_state();
        let expected = typist.text.get_string(&typist.doc.transact()).len();
        load.throughput(Throughput::Bytes(state.len() as u64));
        load.bench_function(BenchmarkId::new("updates", history), |b| {
            b.iter(|| YjsDoc::load(&state).expect("valid state"))
        });
        assert!(expected > 0);
    }
    load.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = apply_update, encode_and_load
}
criterion_main!(benches);
