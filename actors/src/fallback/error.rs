//! What can go wrong with the fallback journal.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::doc::{CombineError, DocId};

/// `Clone` because one failed group write answers every `put` in the group with the same error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: Arc<io::Error>,
    },
    #[error("version of document {doc} has a hash that does not match its content")]
    HashMismatch { doc: DocId },
    #[error("version of document {doc} is too large for a journal record")]
    TooLarge { doc: DocId },
    #[error(transparent)]
    Combine(#[from] CombineError),
    #[error("journal writer has stopped")]
    WriterStopped,
    /// Another open journal holds `dir/journal.lock`: a running replica, or a replay.
    #[error("the journal in {} is in use by another docroom process (a running replica or replay-journal)", dir.display())]
    InUse { dir: PathBuf },
}

pub(crate) fn io_error(action: &'static str, path: &Path, cause: io::Error) -> JournalError {
    JournalError::Io {
        action,
        path: path.to_owned(),
        cause: Arc::new(cause),
    }
}
