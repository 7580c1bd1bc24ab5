//! What every JSON update costs before it reaches a room: parse, canonical serialization and
//! SHA-256, for a small and a large document.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docroom_actors::doc::{canonical_json, check_storable, sha256_hex};

fn document(paragraphs: usize) -> String {
    let blocks: Vec<serde_json::Value> = (0..paragraphs)
        .map(|i| {
            serde_json::json!({
                "type": "paragraph",
                "attrs": {"id": format!("p{i}"), "align": "left"},
                "content": [{"type": "text", "text": "The quick brown fox jumps over the lazy dog. ".repeat(4)}],
            })
        })
        .collect();
    serde_json::json!({"type": "doc", "content": blocks}).to_string()
}

fn canonical_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_canonical_sha256");
    for paragraphs in [1usize, 1000] {
        let text = document(paragraphs);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(text.len()), &text, |b, text| {
            b.iter(|| {
                let value: serde_json::Value = serde_json::from_str(text).unwrap();
                check_storable(&value).unwrap();
                sha256_hex(canonical_json(&value).as_bytes())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, canonical_hash);
criterion_main!(benches);
