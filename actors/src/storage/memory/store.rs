//! The in-memory document store (PostgreSQL's stand-in for unit tests), with the store's
//! version rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::Faults;
use crate::doc::{later, DocId, Kind, Version};
use crate::log::LogMark;
use crate::storage::postgres::answer;
use crate::storage::{DocStore, StoreAnswer, StoreError, StoreResult, Write};

/// An in-memory document store. Cloning is shallow.
#[derive(Clone, Default)]
pub struct MemoryStore {
    rows: Arc<Mutex<HashMap<DocId, Version>>>,
    /// The log point recorded with each row's content (see [`DocStore::write`]).
    points: Arc<Mutex<HashMap<DocId, LogMark>>>,
    pub faults: Faults,
}

impl MemoryStore {
    fn rows(&self) -> MutexGuard<'_, HashMap<DocId, Version>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log point recorded for `doc`, read without any fault.
    pub fn point(&self, doc: &DocId) -> Option<LogMark> {
        self.points
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(doc)
            .copied()
    }

    /// The stored version of `doc`, read without any fault.
    pub fn peek(&self, doc: &DocId) -> Option<Version> {
        self.rows().get(doc).cloned()
    }
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn load(&self, doc: &DocId) -> StoreResult<Option<Version>> {
        self.faults.enter().await.map_err(StoreError::Unavailable)?;
        Ok(self.rows().get(doc).cloned())
    }

    async fn write(&self, writes: &[Write<'_>]) -> StoreResult<Vec<StoreAnswer>> {
        self.faults.enter().await.map_err(StoreError::Unavailable)?;
        let mut rows = self.rows();
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        let mut answers = Vec::with_capacity(writes.len());
        for w in writes {
            let v = w.version;
            if let Some(mark) = w.includes {
                let held = points.entry(v.doc.clone()).or_insert(mark);
                *held = (*held).max(mark);
            }
            // `v` first: on a tie (rows written before stamps) the new write wins, as in SQL.
            let next = match rows.remove(&v.doc) {
                // Equal content takes the larger stamp, as `UPSERT_JSON` does.
                Some(held) if held.hash == v.hash && held.stamp > v.stamp => held,
                Some(held) => later(v.clone(), held).map_err(|e| StoreError::BadRow {
                    doc: v.doc.clone(),
                    why: e.to_string(),
                })?,
                None => v.clone(),
            };
            answers.push(StoreAnswer {
                recorded: answer(w.includes, points.get(&v.doc)),
                kept: Some(next.clone()).filter(|n| n.kind == Kind::Json && n.hash != v.hash),
            });
            rows.insert(v.doc.clone(), next);
        }
        Ok(answers)
    }
}
