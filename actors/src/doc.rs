//! What a document is, independent of where it is stored: its id, its kind, and one stored
//! version of it (content plus the SHA-256 that names that content).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// A validated document id (SPEC §3, the names Hocuspocus accepts): 1 to 255 bytes of UTF-8
/// with no control character, and not `.` or `..`.
///
/// "Control character" is Unicode's Cc category (`char::is_control`): C0 (U+0000–U+001F), DEL
/// (U+007F) and C1 (U+0080–U+009F). None of them is typed into a document name, and refusing
/// them keeps ids printable in logs (no forged log lines through `\n`) and storable in
/// PostgreSQL text (no NUL). Format characters such as U+200D or U+202E stay valid: they occur
/// in real names (emoji sequences, right-to-left scripts).
///
/// 255 bytes is what the journal's `u8` id length holds. Cloning is shallow (an `Arc<str>`), so
/// ids travel in every message for free.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(Arc<str>);

/// The longest id, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid document id: ids are 1 to 255 bytes of UTF-8 without control characters, and not . or .."
)]
pub struct InvalidDocId;

impl DocId {
    pub fn parse(raw: &str) -> Result<Self, InvalidDocId> {
        let valid = !raw.is_empty()
            && raw.len() <= MAX_ID_BYTES
            && raw != "."
            && raw != ".."
            && !raw.chars().any(char::is_control);
        if valid {
            Ok(DocId(raw.into()))
        } else {
            Err(InvalidDocId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A document id has exactly one kind for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Content is a JSON value, replaced whole by each update.
    Json,
    /// Content is a Yjs document state, encoded as a v1 update.
    Yjs,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Yjs => "yjs",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "json" => Some(Kind::Json),
            "yjs" => Some(Kind::Yjs),
            _ => None,
        }
    }
}

/// A hybrid-logical-clock stamp (SPEC §6 "Versions"): wall-clock milliseconds, a counter for
/// stamps taken within one millisecond (or behind a clock seen from elsewhere), and the replica
/// that took it. The derived order (millis, counter, replica) is the one every store agrees on:
/// a larger stamp is later. Cloning is cheap (the replica id is an `Arc<str>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub millis: u64,
    pub counter: u32,
    pub replica: Arc<str>,
}

impl Stamp {
    /// Text whose byte order is the stamp order (fixed-width hex time and counter, then the
    /// replica), so Redis scripts and PostgreSQL compare stamps as plain strings.
    pub fn encode(&self) -> String {
        format!("{:016x}.{:08x}.{}", self.millis, self.counter, self.replica)
    }

    pub fn decode(text: &str) -> Option<Stamp> {
        let (millis, rest) = text.split_once('.')?;
        let (counter, replica) = rest.split_once('.')?;
        if millis.len() != 16 || counter.len() != 8 {
            return None;
        }
        Some(Stamp {
            millis: u64::from_str_radix(millis, 16).ok()?,
            counter: u32::from_str_radix(counter, 16).ok()?,
            replica: replica.into(),
        })
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.millis, self.counter, self.replica)
    }
}

/// One version of a document as the storage layers hold it.
///
/// `content` is the canonical JSON text for [`Kind::Json`] and the v1-encoded state for
/// [`Kind::Yjs`]; `hash` is the lowercase hex SHA-256 of exactly those bytes. `Bytes` makes the
/// copies handed to Redis, the journal and PostgreSQL share one buffer.
///
/// `stamp` orders JSON versions (`None`, content written before stamps existed, is older than
/// any stamp). Yjs versions carry none: their states merge instead of replacing each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub doc: DocId,
    pub kind: Kind,
    pub hash: String,
    pub content: Bytes,
    pub stamp: Option<Stamp>,
}

impl Version {
    /// A version whose hash is computed from `content`, without a stamp.
    pub fn new(doc: DocId, kind: Kind, content: Bytes) -> Self {
        let hash = sha256_hex(&content);
        Version {
            doc,
            kind,
            hash,
            content,
            stamp: None,
        }
    }

    /// The same version with `stamp`.
    pub fn stamped(mut self, stamp: Stamp) -> Self {
        self.stamp = Some(stamp);
        self
    }
}

/// Two versions of one document could not be combined.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CombineError {
    #[error("document {doc} is held as both json and yjs")]
    KindMismatch { doc: DocId },
    #[error("yjs states of {doc} could not be merged: {why}")]
    Unmergeable { doc: DocId, why: String },
}

/// The later of two versions of one document (SPEC §6 "Versions"): for JSON the one with the
/// larger stamp (`a` on a tie, so callers pass the copy they prefer as `a`); for Yjs both merged,
/// since Yjs content is never replaced, only merged. Equal hashes return `a` untouched.
pub fn later(a: Version, b: Version) -> Result<Version, CombineError> {
    if a.hash == b.hash {
        return Ok(a);
    }
    Ok(combine([a, b])?.expect("two versions combine into one"))
}

/// [`later`] over any number of versions of one document, in one pass: JSON the one with the
/// largest stamp (the first of equals), Yjs all merged at once (states or incremental updates
/// alike: the merge is an update holding all of them). `None` for none.
///
/// A Yjs merge is encoded as a document holding every part encodes its state, so equal content
/// has equal bytes (and hash) wherever it was merged: in a room, a flush or PostgreSQL.
pub fn combine(parts: impl IntoIterator<Item = Version>) -> Result<Option<Version>, CombineError> {
    let mut parts: Vec<Version> = parts.into_iter().collect();
    if parts.len() <= 1 {
        return Ok(parts.pop());
    }
    let (doc, kind) = (parts[0].doc.clone(), parts[0].kind);
    if parts.iter().any(|p| p.kind != kind) {
        return Err(CombineError::KindMismatch { doc });
    }
    match kind {
        Kind::Json => Ok(parts
            .into_iter()
            .reduce(|a, b| if b.stamp > a.stamp { b } else { a })),
        Kind::Yjs => {
            let merged = std::panic::catch_unwind(|| canonical_yjs(&parts));
            match merged {
                Ok(Ok(state)) => Ok(Some(Version::new(doc, Kind::Yjs, Bytes::from(state)))),
                Ok(Err(e)) => Err(CombineError::Unmergeable {
                    doc,
                    why: e.to_string(),
                }),
                Err(_) => Err(CombineError::Unmergeable {
                    doc,
                    why: "the yjs decoder panicked".into(),
                }),
            }
        }
    }
}

/// The state of a Yjs document holding every part (updates still missing a dependency
/// included, as yrs encodes them).
fn canonical_yjs(parts: &[Version]) -> Result<Vec<u8>, String> {
    use yrs::{ReadTxn, Transact};
    let ydoc = yrs::Doc::new();
    for p in parts {
        crate::protocol::yjs::decodable(&p.content)?;
        let update = crate::protocol::yjs::decode_squashed(&p.content)?;
        ydoc.transact_mut()
            .apply_update(update)
            .map_err(|e| e.to_string())?;
    }
    let state = ydoc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    Ok(state)
}

/// Lowercase hex SHA-256 (sha2 0.11 digests have no `LowerHex`). Every save hashes its content:
/// the digits are written into a buffer at once (`hex::encode` collects them a `char` at a
/// time, which cost more than the hash of a typed character's update).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut digits = [0u8; 64];
    // 32 bytes always fill the 64 digits, and hex digits are ASCII: neither can fail.
    let _ = hex::encode_to_slice(Sha256::digest(bytes), &mut digits);
    String::from_utf8(digits.to_vec()).unwrap_or_default()
}

/// The canonical text of a JSON value: `serde_json::to_string` of the parsed value. serde_json is
/// built without `preserve_order`, so object keys come out sorted.
pub fn canonical_json(value: &serde_json::Value) -> String {
    serde_json::to_string(value).expect("serializing a serde_json::Value cannot fail")
}

/// PostgreSQL's jsonb cannot hold a NUL character in a string; refuse such content up front
/// rather than acknowledge what could never be persisted.
pub fn check_storable(value: &serde_json::Value) -> Result<(), &'static str> {
    use serde_json::Value;
    const NUL: &str = "strings may not contain \\u0000 (PostgreSQL jsonb cannot store it)";
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return Err(NUL),
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (k, v) in map {
                    if k.contains('\0') {
                        return Err(NUL);
                    }
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_take_what_hocuspocus_names_documents() {
        let longest = "é".repeat(127) + "x"; // 255 bytes
        assert_eq!(longest.len(), MAX_ID_BYTES);
        for ok in [
            "a",
            "doc-1",
            "A.b_c-9",
            "org/doc",
            "doc:1",
            "a b",
            "é文",
            "..a",
            "../etc",
            "🏳️‍🌈",
            "\u{202e}rtl",
            longest.as_str(),
        ] {
            assert_eq!(DocId::parse(ok).map(|d| d.to_string()).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn empty_dot_overlong_and_control_character_ids_are_refused() {
        let too_long = "é".repeat(128); // 256 bytes, 128 characters
        for bad in [
            "",
            ".",
            "..",
            too_long.as_str(),
            &"x".repeat(256),
            "a\n",
            "a\0b",
            "\t",
            "del\u{7f}",
            "c1\u{85}",
            "c1\u{9f}",
        ] {
            assert_eq!(DocId::parse(bad), Err(InvalidDocId), "{bad:?}");
        }
    }

    fn stamp(millis: u64, counter: u32, replica: &str) -> Stamp {
        Stamp {
            millis,
            counter,
            replica: replica.into(),
        }
    }

    #[test]
    fn stamps_order_by_time_then_counter_then_replica_and_none_is_oldest() {
        assert!(stamp(2, 0, "a") > stamp(1, 9, "z"));
        assert!(stamp(1, 2, "a") > stamp(1, 1, "z"));
        assert!(stamp(1, 1, "b") > stamp(1, 1, "a"));
        assert!(Some(stamp(0, 0, "")) > None);
    }

    #[test]
    fn encoded_stamps_sort_as_the_stamps_do_and_decode_back() {
        let stamps = [
            stamp(1, 0, "b"),
            stamp(1, 1, "a"),
            stamp(2, 0, ""),
            stamp(0x1_0000_0000, 7, "r.1"),
        ];
        for pair in stamps.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].encode() < pair[1].encode(), "{:?}", pair);
        }
        for s in &stamps {
            assert_eq!(Stamp::decode(&s.encode()).as_ref(), Some(s));
        }
        assert_eq!(Stamp::decode("nope"), None);
    }

    #[test]
    fn the_later_json_version_is_the_one_with_the_larger_stamp() {
        let doc = DocId::parse("d").unwrap();
        let old = Version::new(doc.clone(), Kind::Json, Bytes::from("1")).stamped(stamp(5, 0, "a"));
        let new = Version::new(doc.clone(), Kind::Json, Bytes::from("2")).stamped(stamp(6, 0, "b"));
        let legacy = Version::new(doc, Kind::Json, Bytes::from("0"));
        assert_eq!(later(old.clone(), new.clone()).unwrap(), new);
        assert_eq!(later(new.clone(), old.clone()).unwrap(), new);
        assert_eq!(later(legacy.clone(), old.clone()).unwrap(), old);
    }

    #[test]
    fn yjs_versions_merge_so_neither_side_loses_an_edit() {
        use crate::testing::yjs_edit;
        let merged = later(yjs_edit("y", 1, "left"), yjs_edit("y", 2, "right")).unwrap();
        let text = crate::testing::yjs_text(&merged);
        assert!(text.contains("left") && text.contains("right"), "{text}");
    }

    #[test]
    fn canonical_json_sorts_keys_so_equal_values_hash_equal() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[true,null]}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "a": [true, null], "b": 1 }"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":[true,null],"b":1}"#);
        assert_eq!(
            sha256_hex(canonical_json(&a).as_bytes()),
            sha256_hex(canonical_json(&b).as_bytes())
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
