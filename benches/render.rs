//! What `GET /docs/{id}` pays to render a Yjs document as JSON, next to what encoding the same
//! document's state costs (what every save and every joining client costs): a text of 100 KiB,
//! 1 MiB and 4 MiB, typed at its end (yrs merges the runs into a few items) and typed in short
//! runs that each stay an item of their own (as many writers' edits leave a text). Both costs
//! should grow linearly with the document, the rendering's within a small factor of the
//! encoding's.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docroom_actors::protocol::yjs::YjsDoc;
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

const LINE: &str = "wörds typed into the text, ";

/// The stored state of a text of at least `bytes` bytes (some of its characters multi-byte),
/// typed by one client in runs of `run` bytes, each at the end (`at_end`) or each at the
/// start, where it stays an item of its own.
fn typed_text(bytes: usize, run: usize, at_end: bool) -> Vec<u8> {
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("text");
    let run: String = LINE.repeat(run.div_ceil(LINE.len()));
    let mut written = 0;
    while written < bytes {
        let mut txn = doc.transact_mut();
        let at = if at_end { text.len(&txn) } else { 0 };
        text.insert(&mut txn, at, &run);
        written += run.len();
    }
    let txn = doc.transact();
    txn.encode_state_as_update_v1(&StateVector::default())
}

fn render_and_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("yjs_text_render_vs_encode");
    for (shape, run, at_end) in [("appended", 1000, true), ("items", LINE.len(), false)] {
        for (size, bytes) in [("100KiB", 100 << 10), ("1MiB", 1 << 20), ("4MiB", 4 << 20)] {
            let doc = YjsDoc::load(&typed_text(bytes, run, at_end)).expect("a valid state");
            let rendered = doc.to_json().expect("renders");
            assert!(rendered["text"].as_str().is_some_and(|t| t.len() >= bytes));
            group.throughput(Throughput::Bytes(bytes as u64));
            let id = |what: &str| BenchmarkId::new(format!("{what}/{shape}"), size);
            group.bench_function(id("render"), |b| b.iter(|| doc.to_json().expect("renders")));
            group.bench_function(id("encode"), |b| b.iter(|| doc.encode_state()));
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = render_and_encode
}
criterion_main!(benches);
