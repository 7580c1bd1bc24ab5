//! The rendering of stored documents, whose roots carry no type: the same JSON yrs gives for
//! the typed document, for any text, without the thread's stack growing with the nesting.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use yrs::branch::BranchPtr;
use yrs::types::ToJson;
use yrs::{
    Any, Array, ArrayPrelim, Doc, Map, MapPrelim, MapRef, ReadTxn, StateVector, Text, TextPrelim,
    Transact, Xml, XmlElementPrelim, XmlFragment, XmlTextPrelim,
};

use super::{value, walker};
use crate::protocol::yjs::YjsDoc;

/// How a server that never typed the roots renders `doc`: from its encoded state.
fn stored_rendering(doc: &Doc) -> Value {
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    YjsDoc::load(&state).unwrap().to_json().unwrap()
}

/// yrs's own rendering of `doc`, whose roots were all typed by whoever wrote it.
fn typed_rendering(doc: &Doc) -> Value {
    let txn = doc.transact();
    let roots: serde_json::Map<String, Value> = txn
        .root_refs()
        .map(|(name, out)| {
            let any = out.to_json(&txn);
            (name.to_string(), serde_json::to_value(&any).unwrap())
        })
        .collect();
    Value::Object(roots)
}

fn text_document(text: &str) -> Doc {
    let doc = Doc::with_client_id(1);
    let root = doc.get_or_insert_text("text");
    // In pieces, as typing sends it: several items, some of them merged.
    for piece in text.split_inclusive(' ') {
        let mut txn = doc.transact_mut();
        let end = root.len(&txn);
        root.insert(&mut txn, end, piece);
    }
    doc
}

#[test]
fn text_renders_as_its_text_in_any_script() {
    for text in [
        "plain ascii words",
        "héllo wörld, ça va",
        "emoji 😀 and 🎉 beside text",
        "日本語のテキスト と español",
        "é",
    ] {
        let rendered = stored_rendering(&text_document(text));
        assert_eq!(rendered, json!({ "text": text }), "{text:?}");
    }
}

#[test]
fn a_megabyte_of_text_renders_whole() {
    let text: String = (0..100_000).map(|i| format!("wörd{i} ")).collect();
    assert!(text.len() > 1 << 20);
    let doc = Doc::with_client_id(1);
    let root = doc.get_or_insert_text("text");
    root.insert(&mut doc.transact_mut(), 0, &text);
    assert_eq!(stored_rendering(&doc), json!({ "text": text }));
}

#[test]
fn maps_arrays_and_nested_types_render_as_yrs_renders_the_typed_document() {
    let doc = Doc::with_client_id(7);
    let map = doc.get_or_insert_map("map");
    let list = doc.get_or_insert_array("list");
    {
        let mut txn = doc.transact_mut();
        map.insert(&mut txn, "title", "Stored");
        map.insert(&mut txn, "count", 3);
        map.insert(&mut txn, "ratio", 0.25);
        map.insert(&mut txn, "big", 1e300);
        map.insert(&mut txn, "done", false);
        map.insert(&mut txn, "none", Any::Null);
        map.insert(&mut txn, "bytes", Any::from(vec![0u8, 7, 255]));
        map.insert(&mut txn, "tags", ArrayPrelim::from(["a", "b"]));
        map.insert(&mut txn, "body", TextPrelim::new("nested text, ünïcode"));
        let inner = map.insert(&mut txn, "inner", MapPrelim::default());
        inner.insert(&mut txn, "deeper", MapPrelim::from([("x", 1)]));
        list.insert_range(&mut txn, 0, [1, 2, 3]);
        list.push_back(&mut txn, "one");
        list.push_back(&mut txn, MapPrelim::from([("k", "v")]));
        list.push_back(&mut txn, ArrayPrelim::from([true]));
        list.push_back(&mut txn, TextPrelim::new("text in a list"));
    }
    let expected = typed_rendering(&doc);
    assert_eq!(expected["map"]["body"], "nested text, ünïcode");
    assert_eq!(stored_rendering(&doc), expected);
}

#[test]
fn an_array_of_one_character_strings_stays_an_array() {
    let doc = Doc::with_client_id(1);
    let list = doc.get_or_insert_array("letters");
    list.insert_range(&mut doc.transact_mut(), 0, ["a", "b", "é"]);
    assert_eq!(stored_rendering(&doc), json!({"letters": ["a", "b", "é"]}));
}

#[test]
fn arrays_holding_text_items_render_as_their_text() {
    // No Yjs type writes text items into an array, but an update can: yrs's own array reads
    // would spin forever on the multi-byte character.
    let doc = Doc::with_client_id(2);
    let root = doc.get_or_insert_array("list");
    let meta = doc.get_or_insert_map("meta");
    {
        let mut txn = doc.transact_mut();
        root.push_back(&mut txn, 1);
        let nested = meta.insert(&mut txn, "nested", ArrayPrelim::from([2]));
        for array in [root.clone(), nested] {
            let as_text = yrs::TextRef::from(BranchPtr::from(array.as_ref()));
            as_text.insert(&mut txn, 0, "é");
        }
    }
    assert_eq!(
        stored_rendering(&doc),
        json!({"list": "é", "meta": {"nested": "é"}})
    );
}

/// A Tiptap document: paragraphs and nested lists, marks on text runs, one attribute per
/// element (yrs prints several in the order of a hash map).
fn tiptap_document() -> Doc {
    let doc = Doc::with_client_id(3);
    let fragment = doc.get_or_insert_xml_fragment("default");
    {
        let mut txn = doc.transact_mut();
        let heading = fragment.push_back(&mut txn, XmlElementPrelim::empty("heading"));
        heading.insert_attribute(&mut txn, "level", "1");
        heading.push_back(&mut txn, XmlTextPrelim::new("Títle"));
        let paragraph = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        let run = paragraph.push_back(&mut txn, XmlTextPrelim::new("some bold and plain text"));
        let bold: HashMap<Arc<str>, Any> = [(Arc::from("bold"), Any::Bool(true))].into();
        run.format(&mut txn, 5, 4, bold);
        let list = fragment.push_back(&mut txn, XmlElementPrelim::empty("bulletList"));
        let item = list.push_back(&mut txn, XmlElementPrelim::empty("listItem"));
        let inner = item.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        inner.push_back(&mut txn, XmlTextPrelim::new("an item 😀"));
        fragment.push_back(&mut txn, XmlElementPrelim::empty("horizontalRule"));
    }
    doc
}

#[test]
fn xml_fragments_render_as_their_xml_text() {
    let doc = tiptap_document();
    let expected = typed_rendering(&doc);
    assert_eq!(
        expected["default"],
        "<heading level=\"1\">Títle</heading>\
         <paragraph>some <bold>bold</bold> and plain text</paragraph>\
         <bulletList><listItem><paragraph>an item 😀</paragraph></listItem></bulletList>\
         <horizontalRule></horizontalRule>"
    );
    assert_eq!(stored_rendering(&doc), expected);
}

#[test]
fn xml_inside_a_map_renders_as_its_xml_text() {
    let doc = Doc::with_client_id(4);
    let map = doc.get_or_insert_map("meta");
    {
        let mut txn = doc.transact_mut();
        let fragment = map.insert(&mut txn, "summary", yrs::XmlFragmentPrelim::default());
        let paragraph = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        paragraph.push_back(&mut txn, XmlTextPrelim::new("short"));
    }
    let expected = json!({"meta": {"summary": "<paragraph>short</paragraph>"}});
    assert_eq!(typed_rendering(&doc), expected);
    assert_eq!(stored_rendering(&doc), expected);
}

#[test]
fn emptied_roots_render_as_null() {
    let doc = Doc::with_client_id(5);
    let map = doc.get_or_insert_map("emptied_map");
    let text = doc.get_or_insert_text("emptied_text");
    let list = doc.get_or_insert_array("emptied_list");
    {
        let mut txn = doc.transact_mut();
        map.insert(&mut txn, "gone", true);
        text.insert(&mut txn, 0, "gone");
        list.push_back(&mut txn, 1);
    }
    {
        let mut txn = doc.transact_mut();
        map.remove(&mut txn, "gone");
        text.remove_range(&mut txn, 0, 4);
        list.remove(&mut txn, 0);
    }
    assert_eq!(
        stored_rendering(&doc),
        json!({"emptied_map": null, "emptied_text": null, "emptied_list": null})
    );
}

#[test]
fn a_text_with_embedded_objects_renders_as_its_text() {
    let doc = Doc::with_client_id(6);
    let text = doc.get_or_insert_text("quill");
    {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "before  after");
        let image: HashMap<String, Any> = [("image".into(), Any::from("a.png"))].into();
        text.insert_embed(&mut txn, 7, Any::from(image));
    }
    // What Y.Text's toString gives, and what yrs renders for the typed text.
    assert_eq!(typed_rendering(&doc), json!({"quill": "before  after"}));
    assert_eq!(stored_rendering(&doc), json!({"quill": "before  after"}));
}

/// Runs `f` on a thread with a stack far smaller than a walk recursing once per level would
/// need at `DEPTH`.
fn on_a_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

const DEPTH: usize = 2_000;

/// Descends `depth` levels through `key` (iteratively: dropping or comparing whole values of
/// this depth would recurse).
fn depth_through(mut value: &Value, key: &str) -> usize {
    let mut depth = 0;
    while let Some(inner) = value.get(key) {
        value = inner;
        depth += 1;
    }
    depth
}

#[test]
fn types_nested_thousands_deep_render_on_a_small_stack() {
    let rendered = on_a_small_stack(|| {
        let doc = Doc::with_client_id(8);
        let root = doc.get_or_insert_map("deep");
        {
            let mut txn = doc.transact_mut();
            let mut map: MapRef = root.clone();
            for _ in 0..DEPTH {
                map = map.insert(&mut txn, "k", MapPrelim::default());
            }
        }
        let any = walker::render(yrs::Out::YMap(root), &doc.transact());
        // Dropped on the caller's thread, whose stack a recursive drop of this depth fits.
        (value::json(&any), any)
    });
    assert_eq!(depth_through(&rendered.0, "k"), DEPTH);
}

#[test]
fn values_nested_thousands_deep_convert_and_print_on_a_small_stack() {
    let mut any = Any::from("bottom");
    for level in 0..DEPTH {
        any = if level % 2 == 0 {
            Any::Array(Arc::from([any]))
        } else {
            Any::from(HashMap::from([("k".to_string(), any)]))
        };
    }
    let any = Arc::new(any);
    let shared = any.clone();
    let (json, printed) = on_a_small_stack(move || {
        let mut printed = String::new();
        value::print(&shared, &mut printed);
        (value::json(&shared), printed)
    });
    assert!(printed.starts_with("{k: [{k: ["), "{}", &printed[..20]);
    assert!(printed.contains("[bottom]"));
    assert_eq!(printed.len(), "bottom".len() + DEPTH / 2 * "{k: []}".len());
    let mut level = &json;
    let mut depth = 0;
    while let Some(inner) = level.get("k").or_else(|| level.get(0)) {
        level = inner;
        depth += 1;
    }
    assert_eq!((depth, level), (DEPTH, &json!("bottom")));
}

#[test]
fn values_print_as_yrs_prints_them() {
    let map: HashMap<String, Any> = [("k".into(), Any::from(vec![1u8, 171]))].into();
    let any = Any::Array(Arc::from([
        Any::Null,
        Any::Undefined,
        Any::Bool(true),
        Any::from(2.5),
        Any::from(-3),
        Any::from("s"),
        Any::from(map),
        Any::Array(Arc::from([])),
    ]));
    let mut printed = String::new();
    value::print(&any, &mut printed);
    assert_eq!(printed, any.to_string());
    assert_eq!(value::json(&any), serde_json::to_value(&any).unwrap());
}
