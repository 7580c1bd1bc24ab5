//! One flush's writes: one per document, upserted in batches, several in flight, and what came
//! of it.

use std::cell::Cell;
use std::collections::HashMap;

use futures_util::StreamExt;

use super::FlushReport;
use crate::doc::{later, DocId, Version};
use crate::storage::{Commit, DocStore, Write};
use crate::supervisor::Dirty;

/// What one run did, applied to the flusher's state afterwards.
#[derive(Default)]
pub(super) struct RunResult {
    pub report: FlushReport,
    /// Every write PostgreSQL now holds (or holds something later than).
    pub committed: Vec<Commit>,
    pub uncommitted: Vec<Version>,
    pub error: Option<String>,
}

/// The writes of one run, one per document (a statement cannot write a row twice): a version
/// the ledger or the caller holds and one read from Redis for the same document merge into one
/// write, which commits what Redis's commit would (its log position, its compaction) and the
/// merged hash.
pub(crate) fn one_write_per_document(
    local: HashMap<DocId, Version>,
    cached: Vec<Dirty>,
) -> Vec<Dirty> {
    let mut local = local;
    let mut writes: Vec<Dirty> = cached
        .into_iter()
        .map(|mut d| {
            if let Some(held) = local.remove(&d.version.doc) {
                d.version = later(held, d.version.clone()).unwrap_or(d.version);
                d.commit.hash = d.version.hash.clone();
                d.commit.stamp = d.version.stamp.clone();
            }
            d
        })
        .collect();
    writes.extend(local.into_values().map(|version| Dirty {
        commit: Commit {
            stamp: version.stamp.clone(),
            ..Commit::written(&version)
        },
        includes: None,
        version,
    }));
    writes
}

/// Upserts `writes` in statements of at most `batch` rows, `parallel` of them in flight. The
/// batches hold distinct documents, so their order does not matter; after the first failure no
/// further batch is started (PostgreSQL is likely down) and the rest counts as failed.
pub(super) async fn upsert_batches(
    store: &dyn DocStore,
    writes: Vec<Dirty>,
    batch: usize,
    parallel: usize,
) -> RunResult {
    let mut res = RunResult {
        committed: Vec::with_capacity(writes.len()),
        ..RunResult::default()
    };
    let failed = Cell::new(false);
    let mut runs = futures_util::stream::iter(writes.chunks(batch))
        .map(|chunk| {
            let failed = &failed;
            async move {
                let outcome = match failed.get() {
                    true => None,
                    false => {
                        let batch: Vec<Write<'_>> = chunk
                            .iter()
                            .map(|w| Write {
                                version: &w.version,
                                includes: w.includes,
                            })
                            .collect();
                        Some(store.write(&batch).await)
                    }
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
            Some(Ok(written)) => {
                res.report.flushed += chunk.len();
                res.committed.extend(
                    chunk
                        .iter()
                        .zip(written)
                        .map(|(w, written)| w.commit.answered(written)),
                );
                continue;
            }
            Some(Err(e)) => {
                res.error.get_or_insert_with(|| e.to_string());
            }
            None => {}
        }
        res.report.failed += chunk.len();
        res.uncommitted
            .extend(chunk.iter().map(|w| w.version.clone()));
    }
    res
}
