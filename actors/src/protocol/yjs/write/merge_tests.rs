//! A write merged with what an editor typed meanwhile: the writer (doc A) writes JSON made
//! from the document as it last read it, the editor (doc B) edits its copy through yrs as
//! y-prosemirror would; once they exchange updates, both hold both changes.

use serde_json::{json, Value};
use yrs::types::xml::XmlOut;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Text, Transact, Update, XmlFragment, XmlTextRef};

use super::tests::{paragraphs, read, FIELD};
use super::write_prosemirror;

/// The writer and an editor holding the same `texts`, one paragraph each.
fn pair(texts: &[&str]) -> (Doc, Doc) {
    let (a, b) = (Doc::with_client_id(1), Doc::with_client_id(2));
    write_prosemirror(&a, FIELD, &paragraphs(texts)).unwrap();
    exchange(&a, &b);
    (a, b)
}

/// Each document gets what the other has and it lacks.
fn exchange(a: &Doc, b: &Doc) {
    let to_b = a
        .transact()
        .encode_state_as_update_v1(&b.transact().state_vector());
    let to_a = b
        .transact()
        .encode_state_as_update_v1(&a.transact().state_vector());
    let apply = |doc: &Doc, update: &[u8]| {
        let update = Update::decode_v1(update).unwrap();
        doc.transact_mut().apply_update(update).unwrap();
    };
    apply(b, &to_b);
    apply(a, &to_a);
}

/// The text of the `i`th paragraph.
fn text(doc: &Doc, i: u32) -> XmlTextRef {
    let fragment = doc.get_or_insert_xml_fragment(FIELD);
    let txn = doc.transact();
    let Some(XmlOut::Element(paragraph)) = fragment.get(&txn, i) else {
        panic!("no paragraph {i}");
    };
    let Some(XmlOut::Text(text)) = paragraph.get(&txn, 0) else {
        panic!("paragraph {i} holds no text");
    };
    text
}

/// The editor types `typed` at byte `at` of paragraph `i`.
fn types(doc: &Doc, i: u32, at: u32, typed: &str) {
    let text = text(doc, i);
    text.insert(&mut doc.transact_mut(), at, typed);
}

/// Both documents render the same, and as `expected`.
fn converged(a: &Doc, b: &Doc, expected: Value) {
    exchange(a, b);
    assert_eq!(read(a), read(b));
    assert_eq!(read(a), expected);
}

#[test]
fn typing_in_one_paragraph_survives_a_write_to_another() {
    let (a, b) = pair(&["Hello world", "Second paragraph"]);
    types(&b, 0, 5, "XYZ");

    let written = paragraphs(&["Hello world", "Second paragraph, edited", "Third"]);
    write_prosemirror(&a, FIELD, &written).unwrap();

    converged(
        &a,
        &b,
        paragraphs(&["HelloXYZ world", "Second paragraph, edited", "Third"]),
    );
}

#[test]
fn typing_at_the_start_of_a_text_survives_a_write_to_its_end() {
    let (a, b) = pair(&["Hello world 😀", "文字"]);
    types(&b, 0, 0, "Oh! ");
    types(&b, 1, 3, "🇫🇷");

    let written = paragraphs(&["Hello there 😀", "文字!"]);
    write_prosemirror(&a, FIELD, &written).unwrap();

    converged(&a, &b, paragraphs(&["Oh! Hello there 😀", "文🇫🇷字!"]));
}

/// Marks set by the writer on characters the editor types around: the characters stay the
/// editor's, the writer's marks stay on what it marked.
#[test]
fn typing_survives_a_write_that_formats_the_same_text() {
    let (a, b) = pair(&["Hello world"]);
    types(&b, 0, 11, "!!");

    let written = json!({"type": "doc", "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": "Hello "},
        {"type": "text", "text": "world", "marks": [{"type": "bold", "attrs": {}}]}
    ]}]});
    write_prosemirror(&a, FIELD, &written).unwrap();

    converged(
        &a,
        &b,
        json!({"type": "doc", "content": [{"type": "paragraph", "content": [
            {"type": "text", "text": "Hello "},
            {"type": "text", "text": "world", "marks": [{"type": "bold", "attrs": {}}]},
            {"type": "text", "text": "!!"}
        ]}]}),
    );
}

/// A paragraph the writer empties keeps its text, so what the editor typed into it meanwhile
/// is not deleted with it (y-prosemirror's reason for the edge case).
#[test]
fn typing_survives_a_write_that_empties_the_paragraph() {
    let (a, b) = pair(&["gone", "stays"]);
    types(&b, 0, 4, " but this");

    let written = json!({"type": "doc", "content": [
        {"type": "paragraph"},
        {"type": "paragraph", "content": [{"type": "text", "text": "stays"}]}
    ]});
    write_prosemirror(&a, FIELD, &written).unwrap();

    converged(&a, &b, paragraphs(&[" but this", "stays"]));
}

/// Writer and editor both change the document's structure: paragraphs the writer adds before
/// and removes after the one the editor types into leave its typing where it was.
#[test]
fn typing_survives_paragraphs_added_and_removed_around_it() {
    let (a, b) = pair(&["one", "two", "three"]);
    types(&b, 1, 3, " and a half");

    let written = paragraphs(&["zero", "one", "two"]);
    write_prosemirror(&a, FIELD, &written).unwrap();

    converged(&a, &b, paragraphs(&["zero", "one", "two and a half"]));
}
