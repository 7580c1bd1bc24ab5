//! ProseMirror JSON written and read back through the ProseMirror rendering, the change a write
//! makes measured in Yjs items.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use yrs::updates::decoder::Decode;
use yrs::{
    Any, ClientID, Doc, IdSet, OffsetKind, Options, ReadTxn, StateVector, Text, Transact, Update,
    XmlFragment, XmlTextPrelim, ID,
};

use super::write_prosemirror;
use crate::protocol::yjs::YjsDoc;

/// The fragment Tiptap binds by default.
pub(super) const FIELD: &str = "default";

/// A Tiptap document in the form the rendering gives: every mark with its `attrs`, a text
/// node's marks in name order.
pub(super) fn tiptap() -> Value {
    let bold = json!({"type": "bold", "attrs": {}});
    let italic = json!({"type": "italic", "attrs": {}});
    let link = json!({"type": "link",
        "attrs": {"href": "https://x.test", "target": "_blank", "class": null}});
    json!({"type": "doc", "content": [
        {"type": "heading", "attrs": {"level": 1},
         "content": [{"type": "text", "text": "Meeting notes"}]},
        {"type": "paragraph", "content": [
            {"type": "text", "text": "Hello "},
            {"type": "text", "text": "bold", "marks": [bold]},
            {"type": "text", "text": " and "},
            {"type": "text", "text": "both", "marks": [bold, italic]},
            {"type": "text", "text": " é 文 😀", "marks": [link]}
        ]},
        {"type": "paragraph"},
        {"type": "bulletList", "content": [
            {"type": "listItem", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "first"}]}]},
            {"type": "listItem", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "second"}]}]}
        ]},
        {"type": "codeBlock", "attrs": {"language": "rust"}, "content": [
            {"type": "text", "text": "fn main() {\n    println!(\"日本語 👋🏽\");\n}"}]},
        {"type": "paragraph", "content": [
            {"type": "text", "text": "line"},
            {"type": "hardBreak"},
            {"type": "text", "text": "next", "marks": [italic]}
        ]},
        {"type": "image", "attrs": {"src": "https://x.test/a.png", "alt": "A", "width": 640}},
        {"type": "horizontalRule"},
        {"type": "paragraph", "content": [{"type": "text", "text": "👨‍👩‍👧 家族 🇫🇷 한국어"}]}
    ]})
}

/// A document with one paragraph per text.
pub(super) fn paragraphs(texts: &[&str]) -> Value {
    let content: Vec<Value> = texts
        .iter()
        .map(|t| json!({"type": "paragraph", "content": [{"type": "text", "text": t}]}))
        .collect();
    json!({"type": "doc", "content": content})
}

/// The fragment as the service renders it, from the document's stored state.
pub(super) fn read(doc: &Doc) -> Value {
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    YjsDoc::load(&state).unwrap().to_prosemirror(FIELD).unwrap()
}

/// Writes `body`, answering the one Yjs update the write made (`None`: it made none).
pub(super) fn change(doc: &Doc, body: &Value) -> Option<Update> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    doc.observe_update_v1("test", move |_, event| {
        sink.lock().unwrap().push(event.update.clone());
    })
    .unwrap();
    let written = write_prosemirror(doc, FIELD, body);
    doc.unobserve_update_v1("test").unwrap();
    written.unwrap();
    let mut updates = std::mem::take(&mut *seen.lock().unwrap());
    assert!(updates.len() <= 1, "one transaction per write");
    updates.pop().map(|u| Update::decode_v1(&u).unwrap())
}

/// How many items (characters, formats, nodes, attributes) a set counts.
pub(super) fn count(set: &IdSet) -> u32 {
    let ranges = set
        .iter()
        .flat_map(|(_, ranges)| ranges.iter().cloned().collect::<Vec<_>>());
    ranges.map(|r| r.end - r.start).sum()
}

/// What an update inserted and deleted, in items.
fn size(update: &Update) -> (u32, u32) {
    (count(&update.insertions(true)), count(update.delete_set()))
}

/// A document counting text offsets in UTF-16 units, as JavaScript does (the service's count
/// UTF-8 bytes, yrs's default).
fn utf16(client: u64) -> Doc {
    let mut options = Options::with_client_id(ClientID::new(client));
    options.offset_kind = OffsetKind::Utf16;
    Doc::with_options(options)
}

#[test]
fn a_tiptap_document_reads_back_as_written() {
    for doc in [Doc::with_client_id(1), utf16(1)] {
        write_prosemirror(&doc, FIELD, &tiptap()).unwrap();

        assert_eq!(read(&doc), tiptap());
    }
}

/// What ProseMirror takes for the same document reads back in the rendering's form.
#[test]
fn marks_read_back_with_attrs_and_null_attrs_are_not_stored() {
    let doc = Doc::with_client_id(1);
    let body = json!({"type": "doc", "content": [
        {"type": "image", "attrs": {"src": "a.png", "title": null}},
        {"type": "paragraph", "attrs": null, "marks": null, "content": [
            {"type": "text", "text": "x", "marks": [{"type": "italic"}, {"type": "bold", "attrs": null}]}
        ]}
    ]});

    write_prosemirror(&doc, FIELD, &body).unwrap();

    assert_eq!(
        read(&doc),
        json!({"type": "doc", "content": [
            {"type": "image", "attrs": {"src": "a.png"}},
            {"type": "paragraph", "content": [{"type": "text", "text": "x", "marks": [
                {"type": "bold", "attrs": {}}, {"type": "italic", "attrs": {}}]}]}
        ]})
    );
    assert!(change(&doc, &body).is_none(), "the same document again");
}

#[test]
fn writing_the_same_document_again_changes_nothing() {
    let doc = Doc::with_client_id(1);
    assert!(change(&doc, &tiptap()).is_some());
    let before = doc.transact().state_vector();

    assert!(change(&doc, &tiptap()).is_none());
    assert_eq!(doc.transact().state_vector(), before);
    assert!(change(&doc, &json!({"type": "doc", "content": []})).is_some());
    assert!(change(&doc, &json!({"type": "doc"})).is_none());
    assert_eq!(read(&doc), json!({"type": "doc", "content": []}));
}

/// "brown" → "red": five characters deleted and three inserted, nothing else, in either way of
/// counting offsets, after characters of every width.
#[test]
fn changing_a_word_changes_only_its_characters() {
    for doc in [Doc::with_client_id(1), utf16(1)] {
        let first = "Hello 😀 world";
        write_prosemirror(&doc, FIELD, &paragraphs(&[first, "文字 the brown 👋🏽 fox"])).unwrap();
        let before = doc.transact().state_vector();

        let update = change(&doc, &paragraphs(&[first, "文字 the red 👋🏽 fox"])).unwrap();

        assert_eq!(size(&update), (3, 5));
        let me = ClientID::new(1);
        assert_eq!(doc.transact().state_vector().get(&me), before.get(&me) + 3);
        assert_eq!(read(&doc), paragraphs(&[first, "文字 the red 👋🏽 fox"]));
    }
}

/// Marks set, changed and removed on characters that stay: the characters' items are never
/// deleted, only formats are inserted around them.
#[test]
fn formatting_kept_characters_inserts_only_formats() {
    let doc = Doc::with_client_id(1);
    write_prosemirror(&doc, FIELD, &paragraphs(&["Hello world"])).unwrap();
    // The paragraph, its text, then its eleven characters.
    let characters: Vec<ID> = (2..13)
        .map(|clock| ID::new(ClientID::new(1), clock))
        .collect();
    let styled = |marks: Value| {
        json!({"type": "doc", "content": [{"type": "paragraph", "content": [
            {"type": "text", "text": "Hello "},
            {"type": "text", "text": "world", "marks": marks}
        ]}]})
    };
    let bold = json!([{"type": "bold", "attrs": {}}]);
    let link = |href: &str| json!([{"type": "link", "attrs": {"href": href}}]);
    let plain = paragraphs(&["Hello world"]);

    for body in [
        styled(bold),
        styled(link("https://a.test")),
        styled(link("https://b.test")),
        plain,
    ] {
        let update = change(&doc, &body).unwrap();

        let (inserted, _) = size(&update);
        assert!(inserted <= 4, "{inserted} formats");
        assert!(!characters.iter().any(|id| update.delete_set().contains(id)));
        assert_eq!(read(&doc), body);
    }
}

/// Nodes added, removed, retyped and given new attrs around nodes that stay: only the nodes
/// that changed are touched.
#[test]
fn nodes_that_stay_are_kept() {
    let doc = Doc::with_client_id(1);
    write_prosemirror(&doc, FIELD, &tiptap()).unwrap();
    let mut body = tiptap();
    let content = body["content"].as_array_mut().unwrap();
    content.insert(
        0,
        json!({"type": "paragraph", "content": [{"type": "text", "text": "top"}]}),
    );

    let update = change(&doc, &body).unwrap();
    assert_eq!(
        size(&update),
        (5, 0),
        "a paragraph, its text and three letters"
    );
    assert_eq!(read(&doc), body);

    let content = body["content"].as_array_mut().unwrap();
    content.remove(3); // the empty paragraph
    content[1]["attrs"]["level"] = json!(2);
    content[3]["content"][1]["content"][0]["content"][0]["text"] = json!("second!");
    content[6] = json!({"type": "image", "attrs": {"src": "https://x.test/b.png"}});
    let update = change(&doc, &body).unwrap();
    // Inserted: the level, the "!", the image's src. Deleted: the old level, the empty
    // paragraph, the old src, the image's two other attributes.
    assert_eq!(size(&update), (3, 5));
    assert_eq!(read(&doc), body);

    let content = body["content"].as_array_mut().unwrap();
    content[0] = json!({"type": "heading", "attrs": {"level": 3},
        "content": [{"type": "text", "text": "top"}]});
    let update = change(&doc, &body).unwrap();
    // A heading, its level, its text and three letters; the paragraph, its text and letters.
    assert_eq!(size(&update), (6, 5));
    assert_eq!(read(&doc), body);
}

/// A node's text emptied stays as an empty text, which the rendering shows as `content: []`:
/// the same document written again is no change.
#[test]
fn an_emptied_paragraph_keeps_its_text() {
    let doc = Doc::with_client_id(1);
    write_prosemirror(&doc, FIELD, &paragraphs(&["gone", "stays"])).unwrap();
    let emptied = json!({"type": "doc", "content": [
        {"type": "paragraph"},
        {"type": "paragraph", "content": [{"type": "text", "text": "stays"}]}
    ]});

    let update = change(&doc, &emptied).unwrap();

    assert_eq!(size(&update), (0, 4));
    assert_eq!(
        read(&doc)["content"][0],
        json!({"type": "paragraph", "content": []})
    );
    assert!(change(&doc, &emptied).is_none());
    assert!(change(&doc, &read(&doc)).is_none());
}

/// A mark that overlaps itself (a comment) is one format per instance, named with a suffix;
/// one y-prosemirror named keeps its name.
#[test]
fn marks_that_overlap_themselves_are_named_apart() {
    let doc = Doc::with_client_id(1);
    let comment = |id: &str| json!({"type": "comment", "attrs": {"id": id}});
    let body = |marks: Value| {
        json!({"type": "doc", "content": [{"type": "paragraph", "content": [
            {"type": "text", "text": "noted", "marks": marks}]}]})
    };
    let two = body(json!([comment("c1"), comment("c2")]));

    write_prosemirror(&doc, FIELD, &two).unwrap();

    let marks = read(&doc)["content"][0]["content"][0]["marks"].clone();
    let mut ids: Vec<&str> = marks
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["attrs"]["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["c1", "c2"]);
    assert!(change(&doc, &two).is_none());

    let theirs = Doc::with_client_id(2);
    {
        use std::collections::HashMap;
        use yrs::{Any, Text, XmlElementPrelim, XmlFragment, XmlTextPrelim};
        let fragment = theirs.get_or_insert_xml_fragment(FIELD);
        let mut txn = theirs.transact_mut();
        let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        let text = p.push_back(&mut txn, XmlTextPrelim::new(""));
        let id = Any::Map(Arc::new(HashMap::from([(
            "id".to_owned(),
            Any::from("c1"),
        )])));
        let attrs = HashMap::from([(Arc::from("comment--a1B2c3D4"), id)]);
        text.insert_with_attributes(&mut txn, 0, "noted", attrs);
    }
    assert!(change(&theirs, &body(json!([comment("c1")]))).is_none());
}

/// Whatever the rendering gives writes back as no change, a text at the top level included
/// (rendered, as y-prosemirror renders it, as the array of its runs), and can be edited so.
#[test]
fn the_rendering_writes_back_as_no_change() {
    let doc = Doc::with_client_id(1);
    write_prosemirror(&doc, FIELD, &tiptap()).unwrap();
    {
        let fragment = doc.get_or_insert_xml_fragment(FIELD);
        let mut txn = doc.transact_mut();
        let text = fragment.insert(&mut txn, 1, XmlTextPrelim::new("loose"));
        let bold = Any::Map(Arc::new(HashMap::new()));
        text.format(&mut txn, 0, 2, HashMap::from([(Arc::from("bold"), bold)]));
        fragment.push_back(&mut txn, XmlTextPrelim::new(""));
    }
    let rendered = read(&doc);
    assert_eq!(
        rendered["content"][1][1],
        json!({"type": "text", "text": "ose"})
    );
    assert_eq!(rendered["content"][10], json!([]));

    assert!(change(&doc, &rendered).is_none());

    let mut edited = rendered;
    edited["content"][1][1]["text"] = json!("ose!");
    assert_eq!(size(&change(&doc, &edited).unwrap()), (1, 0));
    assert_eq!(read(&doc), edited);
}
