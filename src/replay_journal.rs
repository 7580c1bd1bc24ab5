//! `docroom replay-journal --data-dir DIR`: persists the journal of a replica retired for good
//! to PostgreSQL, from anywhere that reaches the database.
//!
//! Every entry of a journal is a version PostgreSQL lacked when its replica stopped. Each goes
//! through [`DocStore::upsert`], so the version rules of SPEC §6 hold (JSON: the larger stamp
//! wins, an older journal entry changes nothing; Yjs: merged), and then a commit record goes
//! into the journal, exactly as the replica's own flusher would have done. A second run finds
//! nothing left to do. The journal's lock (see `docroom_actors::fallback`) keeps a replay off the
//! directory of a replica that is still running, and a replica off one being replayed.
//!
//! Exit codes: [`ReplayError::exit_code`].

use std::path::{Path, PathBuf};

use docroom_actors::doc::Version;
use docroom_actors::fallback::{CommittedContent, Fallback, JournalError};
use docroom_actors::storage::{DocStore, PgStore};

use crate::db;
use crate::settings::Settings;

/// Documents upserted per statement; a failed batch is retried one document at a time, so one
/// bad document cannot hold back the rest.
const BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{} is not a directory", .0.display())]
    NoDirectory(PathBuf),
    #[error("{} holds no journal (no journal.log): is it a replica's DOCROOM_DATA_DIR?", .0.display())]
    NoJournal(PathBuf),
    #[error("{0}; stop that process first, or replay once it has exited")]
    InUse(JournalError),
    #[error("reading the journal: {0}")]
    Journal(JournalError),
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("{failed} of {total} documents could not be persisted (listed above); the journal keeps them, run again once the cause is fixed")]
    Incomplete { failed: usize, total: usize },
}

impl ReplayError {
    /// 2: nothing to replay at that path (not a directory, or no journal in it); 3: the journal
    /// is in use by a running process; 1: anything else (PostgreSQL unreachable, documents it
    /// refused, a journal that cannot be read or written). A replay that persisted everything,
    /// or found an empty journal, exits 0.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::NoDirectory(_) | ReplayError::NoJournal(_) => 2,
            ReplayError::InUse(_) => 3,
            _ => 1,
        }
    }
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub persisted: usize,
}

/// Replays the journal in `dir` into the database of `settings`, printing progress.
pub async fn run(settings: &Settings, dir: &Path) -> Result<Summary, ReplayError> {
    if !dir.is_dir() {
        return Err(ReplayError::NoDirectory(dir.to_owned()));
    }
    // Checked before opening: opening creates an empty journal where there is none.
    if !dir.join("journal.log").is_file() {
        return Err(ReplayError::NoJournal(dir.to_owned()));
    }
    let fallback = Fallback::open(dir).map_err(|e| match e {
        JournalError::InUse { .. } => ReplayError::InUse(e),
        e => ReplayError::Journal(e),
    })?;
    let mut entries = fallback.dirty();
    if entries.is_empty() {
        println!(
            "replay-journal: {}: nothing to replay, the journal holds nothing postgres lacks",
            dir.display()
        );
        return Ok(Summary::default());
    }
    entries.sort_by(|a, b| a.doc.cmp(&b.doc));
    let total = entries.len();
    println!(
        "replay-journal: {}: {total} documents to persist",
        dir.display()
    );
    let store = connect(settings).await?;
    let (mut persisted, mut failed) = (0, 0);
    for batch in entries.chunks(BATCH) {
        let done = persist(&store, batch, &mut failed).await;
        fallback
            .committed(&done)
            .await
            .map_err(ReplayError::Journal)?;
        persisted += done.len();
        println!("replay-journal: {persisted}/{total} persisted, {failed} failed");
    }
    store.close();
    if failed > 0 {
        return Err(ReplayError::Incomplete { failed, total });
    }
    println!(
        "replay-journal: done: {persisted} documents persisted to postgres; {} holds nothing postgres lacks",
        dir.display()
    );
    Ok(Summary { persisted })
}

async fn connect(settings: &Settings) -> Result<PgStore, ReplayError> {
    let d = &settings.database;
    let ca_file = Settings::path(&d.ca_file);
    let pg = |e: &dyn std::fmt::Display| ReplayError::Postgres(format!("{e:#}"));
    let store = PgStore::connect(&d.url, ca_file, 2, Settings::ms(d.statement_timeout_ms))
        .map_err(|e| pg(&e))?;
    // A database that never saw a replica (a fresh one) gets its schema first.
    db::ensure_database(&d.url, ca_file)
        .await
        .map_err(|e| pg(&format!("{e:#}")))?;
    db::migrate(&store)
        .await
        .map_err(|e| pg(&format!("{e:#}")))?;
    Ok(store)
}

/// Upserts `batch`; answers the `(doc, hash)` pairs PostgreSQL committed and counts the rest,
/// each reported, in `failed`.
async fn persist(store: &PgStore, batch: &[Version], failed: &mut usize) -> Vec<CommittedContent> {
    let content = |v: &Version| (v.doc.clone(), v.hash.clone(), v.stamp.clone());
    if store.upsert(batch).await.is_ok() {
        return batch.iter().map(content).collect();
    }
    let mut done = Vec::new();
    for version in batch {
        match store.upsert(std::slice::from_ref(version)).await {
            Ok(()) => done.push(content(version)),
            Err(e) => {
                *failed += 1;
                eprintln!("replay-journal: document {}: {e}", version.doc);
            }
        }
    }
    done
}
