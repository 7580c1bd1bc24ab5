//! One flush's writes: versions upserted in batches, several in flight, and what came of it.

use std::cell::Cell;

use futures_util::StreamExt;

use super::FlushReport;
use crate::doc::{DocId, Version};
use crate::storage::DocStore;

/// What one run did, applied to the flusher's state afterwards.
#[derive(Default)]
pub(super) struct RunResult {
    pub report: FlushReport,
    /// (doc, hash) of every version PostgreSQL now holds (or holds something later than).
    pub committed: Vec<(DocId, String)>,
    pub uncommitted: Vec<Version>,
    pub error: Option<String>,
}

impl RunResult {
    /// Adds what another part of the same run did (the first error wins).
    pub fn absorb(&mut self, other: RunResult) {
        self.report.flushed += other.report.flushed;
        self.report.failed += other.report.failed;
        self.committed.extend(other.committed);
        self.uncommitted.extend(other.uncommitted);
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

/// Upserts `versions` in statements of at most `batch` rows, `parallel` of them in flight. The
/// batches hold distinct documents, so their order does not matter; after the first failure no
/// further batch is started (PostgreSQL is likely down) and the rest counts as failed.
pub(super) async fn upsert_batches(
    store: &dyn DocStore,
    versions: Vec<Version>,
    batch: usize,
    parallel: usize,
) -> RunResult {
    let mut res = RunResult {
        committed: Vec::with_capacity(versions.len()),
        ..RunResult::default()
    };
    let failed = Cell::new(false);
    let mut runs = futures_util::stream::iter(versions.chunks(batch))
        .map(|chunk| {
            let failed = &failed;
            async move {
                let outcome = match failed.get() {
                    true => None,
                    false => Some(store.upsert(chunk).await),
                };
                if let Some(Err(_)) = &outcome {
                    failed.set(true);
                }
                (chunk, outcome)
            }
        })
        .buffer_unordered(parallel);
    while let Some((chunk, outcome)) = runs.next().await {
        match outcome {
            Some(Ok(())) => {
                res.report.flushed += chunk.len();
                res.committed
                    .extend(chunk.iter().map(|v| (v.doc.clone(), v.hash.clone())));
                continue;
            }
            Some(Err(e)) => {
                res.error.get_or_insert_with(|| e.to_string());
            }
            None => {}
        }
        res.report.failed += chunk.len();
        res.uncommitted.extend_from_slice(chunk);
    }
    res
}
