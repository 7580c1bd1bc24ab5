//! The JSON WebSocket protocol (SPEC §4), sans IO: client frames in, server frames out. Kept free
//! of actors and sockets so it can be unit-tested and fuzzed directly. Every frame of the
//! protocol is built here.

use bytes::Bytes;
use bytestring::ByteString;
use serde_json::{json, Value};

use crate::doc::{canonical_json, check_storable, DocId, Kind, Version};

/// A client message that passed validation.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Ping,
    Update {
        version: Version,
        reference: Option<Value>,
    },
}

/// A client message that did not: answered with an `error` frame, the connection stays open.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub reference: Option<Value>,
    pub message: String,
}

impl Refusal {
    pub fn frame(&self) -> String {
        error_frame(self.reference.as_ref(), "bad_message", &self.message)
    }
}

/// Parses one text frame from a client of `doc`.
pub fn decode(doc: &DocId, text: &str, max_document_bytes: usize) -> Result<Inbound, Refusal> {
    let msg: Value = serde_json::from_str(text).map_err(|e| Refusal {
        reference: None,
        message: format!("not JSON: {e}"),
    })?;
    let reference = msg.get("ref").cloned();
    let refuse = |message: String| Refusal {
        reference: reference.clone(),
        message,
    };
    match msg.get("type").and_then(Value::as_str) {
        Some("ping") => Ok(Inbound::Ping),
        Some("update") => {
            let content = msg
                .get("content")
                .ok_or_else(|| refuse("update needs a content field".into()))?;
            let version = json_version(doc.clone(), content, max_document_bytes).map_err(refuse)?;
            Ok(Inbound::Update { version, reference })
        }
        Some(other) => Err(refuse(format!("unknown message type {other:?}"))),
        None => Err(refuse("message needs a string type field".into())),
    }
}

/// The canonical version of JSON content, or what is wrong with it.
pub fn json_version(doc: DocId, content: &Value, max_bytes: usize) -> Result<Version, String> {
    check_storable(content)?;
    let text = canonical_json(content);
    if text.len() > max_bytes {
        return Err(format!(
            "document is {} bytes, over the {max_bytes} byte limit",
            text.len()
        ));
    }
    Ok(Version::new(doc, Kind::Json, Bytes::from(text)))
}

pub const PONG: &str = r#"{"type":"pong"}"#;

/// Content stored as canonical JSON text goes into frames as it is, without a re-parse.
fn content_text(v: &Version) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&v.content)
}

/// `{"type":"snapshot","doc":…,"content":…,"hash":…}`: what a member receives on joining.
pub fn snapshot_frame(doc: &DocId, current: Option<&Version>) -> ByteString {
    let doc = Value::String(doc.as_str().to_owned());
    match current {
        Some(v) => format!(
            r#"{{"type":"snapshot","doc":{doc},"content":{},"hash":"{}"}}"#,
            content_text(v),
            v.hash
        ),
        None => format!(r#"{{"type":"snapshot","doc":{doc},"content":null,"hash":null}}"#),
    }
    .into()
}

/// `{"type":"update","content":…,"hash":…}`: what the other members receive, built once.
pub fn update_frame(v: &Version) -> ByteString {
    format!(
        r#"{{"type":"update","content":{},"hash":"{}"}}"#,
        content_text(v),
        v.hash
    )
    .into()
}

/// The body of `GET /docs/{id}` for a JSON document.
pub fn document_body(v: &Version) -> String {
    let doc = Value::String(v.doc.as_str().to_owned());
    format!(
        r#"{{"doc":{doc},"kind":"json","content":{},"hash":"{}"}}"#,
        content_text(v),
        v.hash
    )
}

/// `{"type":"ack","ref":…,"hash":…,"stored":…}`, written straight from borrowed fields (this
/// is built once per save, so no intermediate `Value` map).
pub fn ack_frame(reference: Option<&Value>, hash: &str, stored: &str) -> String {
    #[derive(serde::Serialize)]
    struct AckFrame<'a> {
        r#type: &'static str,
        r#ref: Option<&'a Value>,
        hash: &'a str,
        stored: &'a str,
    }
    serde_json::to_string(&AckFrame {
        r#type: "ack",
        r#ref: reference,
        hash,
        stored,
    })
    .expect("an ack frame always serializes")
}

pub fn error_frame(reference: Option<&Value>, code: &str, message: &str) -> String {
    let mut frame = json!({"type": "error", "code": code, "message": message});
    if let Some(r) = reference {
        frame["ref"] = r.clone();
    }
    frame.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> DocId {
        DocId::parse("d").unwrap()
    }

    #[test]
    fn updates_carry_their_ref_and_canonical_content() {
        let Ok(Inbound::Update { version, reference }) = decode(
            &doc(),
            r#"{"type":"update","ref":"r1","content":{"b":1,"a":2}}"#,
            1024,
        ) else {
            panic!("not an update")
        };
        assert_eq!(reference, Some(json!("r1")));
        assert_eq!(&version.content[..], br#"{"a":2,"b":1}"#);
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason_and_their_ref() {
        for (text, needle) in [
            ("nope", "not JSON"),
            (r#"{"type":"dance","ref":7}"#, "unknown message type"),
            (r#"{"ref":7}"#, "type field"),
            (r#"{"type":"update","ref":7}"#, "content field"),
            (r#"{"type":"update","ref":7,"content":"a\u0000b"}"#, "u0000"),
            (
                r#"{"type":"update","ref":7,"content":"0123456789"}"#,
                "byte limit",
            ),
        ] {
            let refusal = decode(&doc(), text, 8).unwrap_err();
            assert!(
                refusal.message.contains(needle),
                "{text}: {}",
                refusal.message
            );
            if text != "nope" {
                assert_eq!(refusal.reference, Some(json!(7)), "{text}");
            }
        }
    }

    #[test]
    fn ack_frames_carry_type_ref_hash_and_stored() {
        let frame: Value = serde_json::from_str(&ack_frame(Some(&json!({"n": 1})), "h", "cache"))
            .expect("ack frame is JSON");
        assert_eq!(
            frame,
            json!({"type": "ack", "ref": {"n": 1}, "hash": "h", "stored": "cache"})
        );
        let frame: Value = serde_json::from_str(&ack_frame(None, "h", "duplicate")).unwrap();
        assert_eq!(frame["ref"], Value::Null);
    }

    #[test]
    fn server_frames_are_json_with_the_stored_content_as_is() {
        let v = json_version(doc(), &json!({"b": [1, "x"], "a": null}), 1024).unwrap();
        let snapshot: Value = serde_json::from_str(&snapshot_frame(&doc(), Some(&v))).unwrap();
        assert_eq!(
            snapshot,
            json!({"type": "snapshot", "doc": "d", "content": {"a": null, "b": [1, "x"]}, "hash": v.hash})
        );
        let empty: Value = serde_json::from_str(&snapshot_frame(&doc(), None)).unwrap();
        assert_eq!(
            empty,
            json!({"type": "snapshot", "doc": "d", "content": null, "hash": null})
        );
        let update: Value = serde_json::from_str(&update_frame(&v)).unwrap();
        assert_eq!(update["type"], "update");
        assert_eq!(update["content"], json!({"a": null, "b": [1, "x"]}));
        let body: Value = serde_json::from_str(&document_body(&v)).unwrap();
        assert_eq!(body["kind"], "json");
        assert_eq!(body["hash"], Value::String(v.hash.clone()));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!(r#"{{"type":"update","content":{deep}}}"#);
        assert!(decode(&doc(), &text, usize::MAX).is_err());
    }
}
