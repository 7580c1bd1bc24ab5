//! What happens to one row, decided without IO: which rows are refused before anything is
//! written, and how an incoming Yjs state meets what docroom already holds (merged, never
//! replaced — SPEC §6). The tally of a whole run is the [`Summary`].

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use docroom_actors::doc::DocId;
use docroom_actors::protocol::yjs::{YjsDoc, YjsError};
use docroom_actors::storage::Held;

use super::source::SourceRow;

/// A row docroom took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// docroom held nothing under that name.
    Imported,
    /// docroom held the document as Yjs: both states merged.
    Merged,
    /// docroom's state already held everything the row holds (a re-run).
    Unchanged,
}

/// Why a row was left out; nothing of it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    InvalidName(String),
    NoName,
    NoData,
    Undecodable(String),
    HeldAsJson,
    StoredStateUnreadable(String),
    TooLarge { bytes: usize, limit: usize },
}

impl Skip {
    /// The reason's name in the summary.
    fn kind(&self) -> &'static str {
        match self {
            Skip::InvalidName(_) | Skip::NoName => "invalid name",
            Skip::NoData => "no data",
            Skip::Undecodable(_) => "undecodable yjs",
            Skip::HeldAsJson => "held as json",
            Skip::StoredStateUnreadable(_) => "docroom's state unreadable",
            Skip::TooLarge { .. } => "too large",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::InvalidName(why) => write!(f, "{why}"),
            Skip::NoName => write!(f, "name is NULL"),
            Skip::NoData => write!(f, "data is NULL"),
            Skip::Undecodable(why) => write!(f, "data is not a Yjs update: {why}"),
            Skip::HeldAsJson => write!(
                f,
                "docroom holds this document as JSON (an id has one kind); left as it is"
            ),
            Skip::StoredStateUnreadable(why) => {
                write!(
                    f,
                    "docroom's stored state is unreadable, left as it is: {why}"
                )
            }
            Skip::TooLarge { bytes, limit } => write!(
                f,
                "the state would be {bytes} bytes, over limits.max_yjs_state_bytes ({limit}): \
                 docroom would refuse every edit of it"
            ),
        }
    }
}

/// A row ready to merge: a valid id and a decodable state, re-encoded as docroom stores it.
#[derive(Debug)]
pub struct Incoming {
    pub doc: DocId,
    /// The row's bytes, to merge into a state docroom holds.
    pub raw: Vec<u8>,
    /// The same content as docroom encodes a whole document: what is stored when docroom holds
    /// nothing yet.
    pub state: Vec<u8>,
}

/// Checks one row; the name is shown as `label` in reports either way.
pub fn check_row(row: SourceRow) -> Result<Incoming, Skip> {
    let name = row.name.ok_or(Skip::NoName)?;
    let doc = DocId::parse(&name).map_err(|e| Skip::InvalidName(e.to_string()))?;
    let raw = row.data.ok_or(Skip::NoData)?;
    let state = YjsDoc::load(&raw)
        .map_err(|e| Skip::Undecodable(reason(e)))?
        .encode_state();
    Ok(Incoming { doc, raw, state })
}

/// How `incoming` meets what docroom holds: the state to write (if any) and the outcome.
pub fn merge(held: Held, incoming: &Incoming, limit: usize) -> (Option<Bytes>, Result<Done, Skip>) {
    let (state, done) = match held {
        Held::Json => return (None, Err(Skip::HeldAsJson)),
        Held::Nothing => (incoming.state.clone(), Done::Imported),
        Held::Yjs(stored) => {
            let mut doc = match YjsDoc::load(&stored) {
                Ok(doc) => doc,
                Err(e) => return (None, Err(Skip::StoredStateUnreadable(e.to_string()))),
            };
            match doc.absorb(&incoming.raw) {
                Ok(None) => return (None, Ok(Done::Unchanged)),
                Ok(Some(_)) => (doc.encode_state(), Done::Merged),
                Err(e) => return (None, Err(Skip::Undecodable(reason(e)))),
            }
        }
    };
    if state.len() > limit {
        let bytes = state.len();
        return (None, Err(Skip::TooLarge { bytes, limit }));
    }
    (Some(Bytes::from(state)), Ok(done))
}

/// What yrs found wrong with a state, without the "stored state" wording of the room's loader.
fn reason(e: YjsError) -> String {
    match e {
        YjsError::BadState(why) => why,
        other => other.to_string(),
    }
}

/// The tally of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub imported: u64,
    pub merged: u64,
    pub unchanged: u64,
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Summary {
    pub fn record(&mut self, outcome: &Result<Done, Skip>) {
        self.rows += 1;
        match outcome {
            Ok(Done::Imported) => self.imported += 1,
            Ok(Done::Merged) => self.merged += 1,
            Ok(Done::Unchanged) => self.unchanged += 1,
            Err(skip) => *self.skipped.entry(skip.kind()).or_default() += 1,
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows: imported {}, merged {}, unchanged {}, skipped {}",
            self.rows,
            self.imported,
            self.merged,
            self.unchanged,
            self.skipped_total()
        )?;
        if !self.skipped.is_empty() {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(why, n)| format!("{why} {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, ReadTxn, Text, Transact};

    fn state(client: u64, text: &str) -> Vec<u8> {
        let doc = yrs::Doc::with_client_id(client);
        let t = doc.get_or_insert_text("t");
        t.insert(&mut doc.transact_mut(), 0, text);
        let txn = doc.transact();
        txn.encode_state_as_update_v1(&Default::default())
    }

    fn text_of(state: &[u8]) -> String {
        use yrs::updates::decoder::Decode;
        let doc = yrs::Doc::new();
        let t = doc.get_or_insert_text("t");
        doc.transact_mut()
            .apply_update(yrs::Update::decode_v1(state).unwrap())
            .unwrap();
        let txn = doc.transact();
        t.get_string(&txn)
    }

    fn row(name: Option<&str>, data: Option<Vec<u8>>) -> SourceRow {
        SourceRow {
            name: name.map(str::to_owned),
            data,
        }
    }

    #[test]
    fn bad_rows_are_refused_before_anything_is_merged() {
        assert_eq!(
            check_row(row(None, Some(state(1, "a")))).unwrap_err(),
            Skip::NoName
        );
        assert!(matches!(
            check_row(row(Some("a\nb"), Some(state(1, "a")))),
            Err(Skip::InvalidName(_))
        ));
        assert_eq!(check_row(row(Some("d"), None)).unwrap_err(), Skip::NoData);
        for junk in [vec![], vec![0xff; 9], b"not yjs".to_vec()] {
            assert!(
                matches!(
                    check_row(row(Some("d"), Some(junk.clone()))),
                    Err(Skip::Undecodable(_))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn a_new_document_is_imported_and_a_held_one_merged_then_unchanged() {
        let incoming = check_row(row(Some("org/doc"), Some(state(1, "from hocuspocus")))).unwrap();

        let (written, done) = merge(Held::Nothing, &incoming, usize::MAX);
        assert_eq!(done, Ok(Done::Imported));
        assert_eq!(text_of(&written.unwrap()), "from hocuspocus");

        let (written, done) = merge(Held::Yjs(state(2, "docroom's")), &incoming, usize::MAX);
        assert_eq!(done, Ok(Done::Merged));
        let merged = written.unwrap().to_vec();
        let text = text_of(&merged);
        assert!(
            text.contains("from hocuspocus") && text.contains("docroom's"),
            "{text}"
        );

        let (written, done) = merge(Held::Yjs(merged), &incoming, usize::MAX);
        assert_eq!((written, done), (None, Ok(Done::Unchanged)));
    }

    #[test]
    fn json_documents_unreadable_states_and_oversized_results_are_left_alone() {
        let incoming = check_row(row(Some("d"), Some(state(1, "hello")))).unwrap();
        assert_eq!(
            merge(Held::Json, &incoming, usize::MAX),
            (None, Err(Skip::HeldAsJson))
        );
        assert!(matches!(
            merge(Held::Yjs(vec![0xff; 4]), &incoming, usize::MAX),
            (None, Err(Skip::StoredStateUnreadable(_)))
        ));
        assert!(matches!(
            merge(Held::Nothing, &incoming, 4),
            (None, Err(Skip::TooLarge { limit: 4, .. }))
        ));
    }

    #[test]
    fn the_summary_counts_each_reason() {
        let mut s = Summary::default();
        s.record(&Ok(Done::Imported));
        s.record(&Ok(Done::Unchanged));
        s.record(&Err(Skip::NoData));
        s.record(&Err(Skip::NoName));
        s.record(&Err(Skip::InvalidName("x".into())));
        assert_eq!(
            s.to_string(),
            "5 rows: imported 1, merged 0, unchanged 1, skipped 3 (invalid name 2, no data 1)"
        );
    }
}
