//! What a loaded Yjs document costs in memory per byte of its encoded state (issue 26, item 5):
//! the figure y/hub reports as 11–13× for Yjs on Node.
//!
//! Documents are built as a provider writes them: text typed in 1 KiB inserts (a long editing
//! history), the same amount as paragraphs of a rich-text fragment (Tiptap's shape: an XML
//! element per paragraph with a text inside, some of it bold), and as 8-byte words each typed
//! somewhere else (the worst of the three: an item per word). Each state is loaded into
//! `YjsDoc`, as a room opens a document, and kept while the heap bytes it holds are counted (a
//! counting allocator: the resident set would also move with what the allocator kept from the
//! documents built before). Memory, not time, so it holds on a busy machine too.
//!
//! `cargo bench --bench doc_memory` (sizes in MiB: `DOC_MEMORY_SIZES="1 8 20"`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use docroom_actors::protocol::yjs::{YjsDoc, YjsLimits};
use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
use yrs::{Doc, ReadTxn, Text, Transact};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The system allocator, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// 1 KiB of text that differs from insert to insert.
fn kib(i: usize) -> String {
    let line = format!("{i:08} ");
    line.repeat(KIB / line.len() + 1)[..KIB].to_string()
}

/// `bytes` of text typed in 1 KiB inserts.
fn typed(bytes: usize) -> Vec<u8> {
    let doc = Doc::with_client_id(7);
    let text = doc.get_or_insert_text("t");
    for i in 0..bytes / KIB {
        let mut txn = doc.transact_mut();
        let end = text.len(&txn);
        text.insert(&mut txn, end, &kib(i));
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&Default::default());
    state
}

/// `bytes` of text as 8-byte words, each typed somewhere else in the text (as several editors
/// writing all over a document do): one item per word, none merged with its neighbour.
fn scattered(bytes: usize) -> Vec<u8> {
    let doc = Doc::with_client_id(7);
    let text = doc.get_or_insert_text("t");
    let mut at: u64 = 1;
    for i in 0..bytes / 8 {
        let mut txn = doc.transact_mut();
        let len = text.len(&txn) as u64;
        at = at
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let index = if len == 0 { 0 } else { (at >> 33) % len } as u32;
        text.insert(&mut txn, index, &format!("{:07} ", i % 10_000_000));
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&Default::default());
    state
}

/// `bytes` of text as paragraphs of a rich-text fragment, one 1 KiB paragraph per transaction,
/// every fourth one bold.
fn paragraphs(bytes: usize) -> Vec<u8> {
    let doc = Doc::with_client_id(7);
    let fragment = doc.get_or_insert_xml_fragment("default");
    for i in 0..bytes / KIB {
        let mut txn = doc.transact_mut();
        let end = fragment.len(&txn);
        let p = fragment.insert(&mut txn, end, XmlElementPrelim::empty("paragraph"));
        let text = p.insert(&mut txn, 0, XmlTextPrelim::new(kib(i)));
        if i % 4 == 0 {
            let bold = std::collections::HashMap::from([("bold".into(), true.into())]);
            text.format(&mut txn, 0, 64, bold);
        }
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&Default::default());
    state
}

/// Heap bytes a loaded `state` holds, per encoded byte.
fn per_byte(state: &[u8]) -> f64 {
    let limits = YjsLimits {
        max_state_bytes: usize::MAX,
        ..YjsLimits::default()
    };
    let before = LIVE.load(Ordering::Relaxed);
    let doc = YjsDoc::load_with(state, limits).expect("a state built here loads");
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    drop(doc);
    held as f64 / state.len() as f64
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used here.
    let sizes: Vec<usize> = std::env::var("DOC_MEMORY_SIZES")
        .ok()
        .map(|s| {
            s.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![1, 8, 20]);
    println!("| document | encoded state | heap bytes per encoded byte, loaded |");
    println!("| --- | --- | --- |");
    // Typing all over a text costs yrs a walk of it per word: 256 KiB are enough for the ratio.
    let state = scattered(256 * KIB);
    println!(
        "| 256 KiB of 8-byte words typed all over the text | {:.1} MiB | {:.1}× |",
        state.len() as f64 / MIB as f64,
        per_byte(&state)
    );
    for mib in sizes {
        for (shape, state) in [
            ("text typed in 1 KiB inserts", typed(mib * MIB)),
            ("rich-text paragraphs, 1 KiB each", paragraphs(mib * MIB)),
        ] {
            let ratio = per_byte(&state);
            println!(
                "| {mib} MiB of {shape} | {:.1} MiB | {ratio:.1}× |",
                state.len() as f64 / MIB as f64
            );
        }
    }
}
