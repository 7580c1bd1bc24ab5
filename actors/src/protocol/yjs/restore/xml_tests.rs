//! Restores of Tiptap documents (XML fragments in y-prosemirror's layout): rendered back as the
//! old version, changing only the paragraphs that differ, and merging with what an editor
//! typed meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::branch::{Branch, BranchID};
use yrs::types::xml::XmlOut;
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Doc, GetString, ReadTxn, Text, Transact, Update, Xml, XmlElementPrelim, XmlFragment,
    XmlFragmentRef, XmlTextPrelim, XmlTextRef,
};

use super::restore_update;
use super::tests::{apply, count, doc_of, prosemirror, restore, state, FIELD};

/// The format y-prosemirror writes for a mark without attrs.
fn bold() -> Attrs {
    HashMap::from([(Arc::from("bold"), Any::Map(Arc::new(HashMap::new())))])
}

/// A heading and one paragraph per text, each paragraph's second word bold.
fn tiptap(client: u64, texts: &[&str]) -> Doc {
    let doc = Doc::with_client_id(client);
    let fragment = doc.get_or_insert_xml_fragment(FIELD);
    let mut txn = doc.transact_mut();
    let heading = fragment.push_back(&mut txn, XmlElementPrelim::empty("heading"));
    heading.insert_attribute(&mut txn, "level", Any::from(1));
    heading.push_back(&mut txn, XmlTextPrelim::new("Meeting notes"));
    for text in texts {
        let paragraph = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        let run = paragraph.push_back(&mut txn, XmlTextPrelim::new(*text));
        if let Some(at) = text.find(' ') {
            let len = text[at + 1..].find(' ').unwrap_or(text.len() - at - 1);
            run.format(&mut txn, at as u32 + 1, len as u32, bold());
        }
    }
    drop(txn);
    doc
}

/// The text of the `i`th child of the fragment (a heading or a paragraph).
fn text(doc: &Doc, i: u32) -> XmlTextRef {
    let fragment = doc.get_or_insert_xml_fragment(FIELD);
    let txn = doc.transact();
    let Some(XmlOut::Element(node)) = fragment.get(&txn, i) else {
        panic!("no node {i}")
    };
    let Some(XmlOut::Text(text)) = node.get(&txn, 0) else {
        panic!("no text in node {i}")
    };
    text
}

fn id(shared: &impl AsRef<Branch>) -> BranchID {
    AsRef::<Branch>::as_ref(shared).id()
}

/// The ids of the fragment's nodes and of their texts.
fn ids(state: &[u8]) -> Vec<BranchID> {
    let doc = doc_of(state, 2000);
    let fragment: XmlFragmentRef = doc.get_or_insert_xml_fragment(FIELD);
    let txn = doc.transact();
    let mut ids = Vec::new();
    for node in fragment.children(&txn) {
        if let XmlOut::Element(node) = node {
            ids.push(id(&node));
            ids.extend(node.children(&txn).filter_map(|c| match c {
                XmlOut::Text(t) => Some(id(&t)),
                _ => None,
            }));
        }
    }
    ids
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("Paragraph number {i} says something"))
        .collect()
}

#[test]
fn a_tiptap_document_is_restored_nodes_attributes_and_marks() {
    let doc = tiptap(1, &["First paragraph here", "Second one", "Third and last"]);
    let old = state(&doc);
    let fragment = doc.get_or_insert_xml_fragment(FIELD);
    {
        let mut txn = doc.transact_mut();
        let Some(XmlOut::Element(heading)) = fragment.get(&txn, 0) else {
            panic!("the heading")
        };
        heading.insert_attribute(&mut txn, "level", Any::from(2));
        let Some(XmlOut::Element(second)) = fragment.get(&txn, 2) else {
            panic!("the second paragraph")
        };
        second.insert_attribute(&mut txn, "textAlign", Any::from("center"));
        fragment.remove_range(&mut txn, 3, 1);
        let added = fragment.insert(&mut txn, 1, XmlElementPrelim::empty("paragraph"));
        added.push_back(&mut txn, XmlTextPrelim::new("inserted later"));
    }
    {
        let first = text(&doc, 2);
        let mut txn = doc.transact_mut();
        first.format(
            &mut txn,
            6,
            9,
            HashMap::from([(Arc::from("bold"), Any::Null)]),
        );
        first.insert_with_attributes(&mut txn, 0, "New ", bold());
        first.remove_range(&mut txn, 10, 4);
    }
    doc.get_or_insert_text("title")
        .insert(&mut doc.transact_mut(), 0, "a root added later");
    let current = state(&doc);
    assert_ne!(prosemirror(&current), prosemirror(&old));

    restore(&current, &old);
    // And back again: the restore of a restore.
    restore(&old, &current);
}

#[test]
fn restoring_one_paragraph_leaves_the_others_alone() {
    let texts = texts(20);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let doc = tiptap(1, &texts);
    let old = state(&doc);
    {
        let fifth = text(&doc, 5);
        let mut txn = doc.transact_mut();
        fifth.remove_range(&mut txn, 10, 7);
        fifth.insert(&mut txn, 10, "NUMBER");
    }
    let current = state(&doc);

    let (update, restored) = restore(&current, &old);

    assert_eq!(ids(&restored), ids(&current), "every node and text kept");
    assert!(
        update.len() * 20 < old.len(),
        "{} of {}",
        update.len(),
        old.len()
    );
    let update = Update::decode_v1(&update).unwrap();
    assert!(count(&update.insertions(true)) <= "number ".len() as u32);
}

#[test]
fn what_an_editor_types_meanwhile_in_another_paragraph_survives() {
    let texts = texts(5);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let doc = tiptap(1, &texts);
    let old = state(&doc);
    {
        let third = text(&doc, 3);
        let mut txn = doc.transact_mut();
        third.insert(&mut txn, 0, "Edited: ");
    }
    let current = state(&doc);
    // An editor holding the current document types into the first paragraph and the third.
    let editor = doc_of(&current, 3);
    let before = editor.transact().state_vector();
    text(&editor, 1).insert(&mut editor.transact_mut(), 9, " (typed)");
    text(&editor, 3).push(&mut editor.transact_mut(), " and more");
    let typed = editor.transact().encode_state_as_update_v1(&before);

    let update = restore_update(&current, &old).unwrap().expect("a change");
    for (first, second) in [(&update, &typed), (&typed, &update)] {
        let merged = doc_of(&current, 4);
        apply(&merged, first);
        apply(&merged, second);

        let texts: Vec<XmlTextRef> = (0..4).map(|i| text(&merged, i)).collect();
        let txn = merged.transact();
        let string = |i: usize| texts[i].get_string(&txn);
        let bold = "<bold>number</bold>";
        assert_eq!(
            string(1),
            format!("Paragraph (typed) {bold} 0 says something")
        );
        assert_eq!(string(2), format!("Paragraph {bold} 1 says something"));
        assert_eq!(
            string(3),
            format!("Paragraph {bold} 2 says something and more"),
            "the restore's deletion and the editor's typing both kept"
        );
    }
}

#[test]
fn xml_no_editor_writes_is_restored_exactly_too() {
    let doc = Doc::with_client_id(1);
    let fragment = doc.get_or_insert_xml_fragment(FIELD);
    {
        let mut txn = doc.transact_mut();
        // A text at the top, a format that is no ProseMirror mark, an attribute set to null.
        let top = fragment.push_back(&mut txn, XmlTextPrelim::new("loose text"));
        top.format(
            &mut txn,
            0,
            5,
            HashMap::from([(Arc::from("b"), Any::Bool(true))]),
        );
        let node = fragment.push_back(&mut txn, XmlElementPrelim::empty("custom"));
        // (One attribute a node: the XML rendering lists them in no set order.)
        node.insert_attribute(&mut txn, "gone", Any::Null);
        let inner = node.push_back(&mut txn, XmlTextPrelim::new("x"));
        inner.insert_embed(&mut txn, 1, Any::from("embedded"));
    }
    let old = state(&doc);
    {
        let mut txn = doc.transact_mut();
        fragment.remove_range(&mut txn, 0, 1);
        fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
    }
    let current = state(&doc);

    restore(&current, &old);
    restore(&old, &current);
}

#[test]
fn a_fragment_that_was_a_text_is_rebuilt() {
    let old = state(&tiptap(1, &["Only paragraph"]));
    let other = Doc::with_client_id(2);
    other
        .get_or_insert_text(FIELD)
        .insert(&mut other.transact_mut(), 0, "plain text now");
    let current = state(&other);

    restore(&current, &old);
    restore(&old, &current);
}
