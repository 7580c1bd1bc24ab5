//! ProseMirror JSON and text from a Tiptap document as y-prosemirror writes one: elements named
//! for node types with their attrs, text runs formatted with marks whose value is their attrs.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use yrs::types::Attrs;
use yrs::{
    Any, Doc, GetString, ReadTxn, StateVector, Text, Transact, Xml, XmlElementPrelim, XmlFragment,
    XmlTextPrelim,
};

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use crate::protocol::yjs::YjsDoc;

/// The format y-prosemirror writes for a mark: its name, its attrs as the value.
fn mark(name: &str, attrs: HashMap<String, Any>) -> Attrs {
    HashMap::from([(Arc::from(name), Any::Map(Arc::new(attrs)))])
}

/// `# Meeting notes` / `Hello **bold** [é 文 😀](https://x.test)` / an empty paragraph / a
/// list of one item, written as y-prosemirror writes them.
fn tiptap() -> Doc {
    let doc = Doc::with_client_id(7);
    let fragment = doc.get_or_insert_xml_fragment("default");
    let mut txn = doc.transact_mut();
    let heading = fragment.push_back(&mut txn, XmlElementPrelim::empty("heading"));
    heading.insert_attribute(&mut txn, "level", Any::from(1));
    heading.push_back(&mut txn, XmlTextPrelim::new("Meeting notes"));
    let paragraph = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
    let text = paragraph.push_back(&mut txn, XmlTextPrelim::new("Hello "));
    let bold = mark("bold", HashMap::new());
    text.insert_with_attributes(&mut txn, 6, "bold", bold);
    let href = HashMap::from([("href".to_owned(), Any::from("https://x.test"))]);
    let link = mark("link", href);
    text.insert_with_attributes(&mut txn, 10, " é 文 😀", link);
    fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
    let list = fragment.push_back(&mut txn, XmlElementPrelim::empty("bulletList"));
    let item = list.push_back(&mut txn, XmlElementPrelim::empty("listItem"));
    let inner = item.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
    inner.push_back(&mut txn, XmlTextPrelim::new("item"));
    drop(txn);
    doc
}

fn stored(doc: &Doc) -> YjsDoc {
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    YjsDoc::load(&state).unwrap()
}

#[test]
fn a_tiptap_fragment_renders_as_prosemirror_json() {
    let rendered = stored(&tiptap()).to_prosemirror("default").unwrap();

    assert_eq!(
        rendered,
        json!({"type": "doc", "content": [
            {"type": "heading", "attrs": {"level": 1},
             "content": [{"type": "text", "text": "Meeting notes"}]},
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Hello "},
                {"type": "text", "text": "bold", "marks": [{"type": "bold", "attrs": {}}]},
                {"type": "text", "text": " é 文 😀",
                 "marks": [{"type": "link", "attrs": {"href": "https://x.test"}}]}
            ]},
            {"type": "paragraph"},
            {"type": "bulletList", "content": [{"type": "listItem", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "item"}]}
            ]}]}
        ]})
    );
}

#[test]
fn text_is_one_line_per_block_and_a_missing_field_is_an_empty_document() {
    let doc = stored(&tiptap());

    assert_eq!(
        doc.to_text("default").unwrap(),
        "Meeting notes\nHello bold é 文 😀\n\nitem"
    );
    assert_eq!(
        doc.to_prosemirror("other").unwrap(),
        json!({"type": "doc", "content": []})
    );
    assert_eq!(doc.to_text("other").unwrap(), "");
}

/// An element whose only child is an empty text has `content: []`, one without children has
/// none: y-prosemirror tells them apart the same way.
#[test]
fn an_element_holding_an_emptied_text_has_empty_content() {
    let doc = Doc::with_client_id(3);
    let fragment = doc.get_or_insert_xml_fragment("default");
    {
        let mut txn = doc.transact_mut();
        let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        let text = p.push_back(&mut txn, XmlTextPrelim::new("gone"));
        text.remove_range(&mut txn, 0, 4);
        assert_eq!(text.get_string(&txn), "");
    }

    let rendered = stored(&doc).to_prosemirror("default").unwrap();

    assert_eq!(
        rendered,
        json!({"type": "doc", "content": [{"type": "paragraph", "content": []}]})
    );
}

/// Nested to the depth limit's neighbourhood, the walk does not grow the thread's stack.
#[test]
fn a_deeply_nested_fragment_renders_on_a_small_stack() {
    let doc = Doc::with_client_id(5);
    let fragment = doc.get_or_insert_xml_fragment("default");
    {
        let mut txn = doc.transact_mut();
        let mut parent = fragment.push_back(&mut txn, XmlElementPrelim::empty("blockquote"));
        for _ in 0..120 {
            parent = parent.push_back(&mut txn, XmlElementPrelim::empty("blockquote"));
        }
        parent.push_back(&mut txn, XmlTextPrelim::new("deep"));
    }
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());

    let text = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || YjsDoc::load(&state).unwrap().to_text("default").unwrap())
        .unwrap()
        .join()
        .unwrap();

    assert_eq!(text, "deep");
}

#[test]
fn the_update_rendering_is_the_document_or_what_a_state_vector_lacks() {
    let doc = tiptap();
    let before = doc.transact().state_vector();
    {
        let fragment = doc.get_or_insert_xml_fragment("default");
        let mut txn = doc.transact_mut();
        let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        p.push_back(&mut txn, XmlTextPrelim::new("later"));
    }
    let loaded = stored(&doc);

    let whole = loaded.update_since(None).unwrap();
    let since = loaded.update_since(Some(&before.encode_v1())).unwrap();

    assert_eq!(
        YjsDoc::load(&whole)
            .unwrap()
            .to_text("default")
            .unwrap()
            .lines()
            .last(),
        Some("later")
    );
    assert!(
        since.len() < whole.len() / 2,
        "{} of {}",
        since.len(),
        whole.len()
    );
    let old = tiptap();
    old.transact_mut()
        .apply_update(yrs::Update::decode_v1(&since).unwrap())
        .unwrap();
    let caught_up = stored(&old).to_text("default").unwrap();
    assert!(caught_up.ends_with("\nlater"), "{caught_up}");
    assert!(loaded.update_since(Some(b"\xff\xff")).is_err());
}

#[test]
fn a_mark_that_overlaps_itself_is_named_without_its_suffix() {
    let doc = Doc::with_client_id(9);
    let fragment = doc.get_or_insert_xml_fragment("default");
    {
        let mut txn = doc.transact_mut();
        let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        let text = p.push_back(&mut txn, XmlTextPrelim::new(""));
        let id = HashMap::from([("id".to_owned(), Any::from("c1"))]);
        let mut marks = mark("comment--a1B2+/=x", id);
        marks.extend(mark("bold", HashMap::new()));
        marks.extend(mark("x--short", HashMap::new()));
        text.insert_with_attributes(&mut txn, 0, "noted", marks);
    }

    let rendered = stored(&doc).to_prosemirror("default").unwrap();

    assert_eq!(
        rendered["content"][0]["content"][0]["marks"],
        json!([
            {"type": "bold", "attrs": {}},
            {"type": "comment", "attrs": {"id": "c1"}},
            {"type": "x--short", "attrs": {}}
        ])
    );
}
