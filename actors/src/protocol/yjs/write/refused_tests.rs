//! Bodies that are not ProseMirror documents, refused before anything is written, and the
//! bound on how deeply a body may nest.

use serde_json::{json, Value};
use yrs::{Doc, ReadTxn, StateVector, Transact};

use super::tests::{paragraphs, FIELD};
use super::{write_prosemirror, NotProsemirror};
use crate::protocol::yjs::{YjsDoc, YjsLimits, DEPTH_CEILING};

/// A body that is not a ProseMirror document is refused whole, with where it went wrong, and
/// the document is left as it was.
#[test]
fn bodies_that_are_not_prosemirror_change_nothing() {
    let text =
        |node: Value| json!({"type": "doc", "content": [{"type": "paragraph", "content": [node]}]});
    let refused = [
        (json!([1, 2]), "not a JSON object"),
        (json!({"type": "paragraph"}), r#"not "doc""#),
        (json!({"content": []}), r#"not "doc""#),
        (
            json!({"type": "doc", "content": {}}),
            "doc: `content` is not an array",
        ),
        (
            json!({"type": "doc", "content": ["p"]}),
            "doc.content[0]: a node is not a JSON object",
        ),
        (
            json!({"type": "doc", "content": [{"type": 7}]}),
            "doc.content[0]: a node needs",
        ),
        (
            text(json!({"type": "text"})),
            "doc.content[0].content[0]: a text node needs",
        ),
        (
            text(json!({"type": "text", "text": ""})),
            "a text node needs a non-empty",
        ),
        (
            text(json!({"type": "text", "text": "x", "marks": {}})),
            "`marks` is not an array",
        ),
        (
            text(json!({"type": "text", "text": "x", "marks": ["bold"]})),
            "marks[0]: a mark is not",
        ),
        (
            text(json!({"type": "text", "text": "x", "marks": [{"type": "a", "attrs": 1}]})),
            "marks[0]: `attrs`",
        ),
        (
            json!({"type": "doc", "content": [{"type": "image", "attrs": []}]}),
            "`attrs` is not an object",
        ),
        (
            json!({"type": "doc", "content": [[{"type": "paragraph"}]]}),
            "doc.content[0][0]: a run of a text is not a text node",
        ),
        (
            json!({"type": "doc", "content": [[{"type": "text", "text": "a", "marks": 1}]]}),
            "doc.content[0][0]: `marks` is not an array",
        ),
        (
            text(json!([])),
            "doc.content[0].content[0]: a node is not a JSON object",
        ),
    ];
    let doc = Doc::with_client_id(1);
    write_prosemirror(&doc, FIELD, &paragraphs(&["kept"])).unwrap();
    let before = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    // A valid node before the bad one: nothing is written until the whole body is checked.
    let late = json!({"type": "doc", "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "new"}]}, {"type": 1}]});

    for (body, why) in refused.into_iter().chain([(late, "doc.content[1]")]) {
        let NotProsemirror(message) = write_prosemirror(&doc, FIELD, &body).unwrap_err();
        assert!(message.contains(why), "{message} (expected {why})");
    }
    let after = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    assert_eq!(after, before);
}

/// `levels` blockquotes around a text.
fn nested(levels: usize, text: &str) -> Value {
    // Built by hand: `json!` serializes what it interpolates, recursing once per level.
    let wrap = |kind: &str, node: Value| {
        let node = [("type", json!(kind)), ("content", Value::Array(vec![node]))];
        Value::Object(node.map(|(k, v)| (k.to_owned(), v)).into_iter().collect())
    };
    let mut node = json!({"type": "text", "text": text});
    for _ in 0..levels {
        node = wrap("blockquote", node);
    }
    wrap("doc", node)
}

/// Takes a deep value apart a level at a time: dropping it whole recurses once per level.
fn dismantle(mut value: Value) {
    while let Some(inner) = value.get_mut("content").and_then(|c| c.get_mut(0)) {
        value = inner.take();
    }
}

/// A text 1,000 levels down is written, then changed, on a quarter of a MiB of stack, and reads
/// back; a level deeper, or 5,000, is refused; an attr nested past the limit too.
#[test]
fn nesting_is_bounded_at_a_thousand_levels() {
    let doc = Doc::with_client_id(1);
    let limits = YjsLimits {
        max_depth: DEPTH_CEILING,
        ..YjsLimits::unlimited()
    };
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().stack_size(256 << 10);
        let written = thread.spawn_scoped(scope, || {
            for text in ["deep", "deep", "deeper"] {
                let deepest = nested(999, text);
                write_prosemirror(&doc, FIELD, &deepest).unwrap();
                dismantle(deepest);
            }
            for levels in [1000, 5000] {
                let deeper = nested(levels, "deep");
                let NotProsemirror(message) = write_prosemirror(&doc, FIELD, &deeper).unwrap_err();
                assert!(message.contains("deeper than 1000 levels"), "{message}");
                assert!(message.len() < 300, "{message}");
                dismantle(deeper);
            }
        });
        written.unwrap().join().unwrap();
    });
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    assert_eq!(
        YjsDoc::load_with(&state, limits)
            .unwrap()
            .to_text(FIELD)
            .unwrap(),
        "deeper"
    );

    let mut attr = json!("leaf");
    for _ in 0..1000 {
        attr = Value::Array(vec![attr]);
    }
    let body = json!({"type": "doc", "content": [{"type": "image", "attrs": {"a": attr}}]});
    let NotProsemirror(message) = write_prosemirror(&doc, FIELD, &body).unwrap_err();
    assert!(
        message.contains("doc.content[0].attrs: attrs nest deeper"),
        "{message}"
    );
    assert_eq!(
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default()),
        state
    );
}
