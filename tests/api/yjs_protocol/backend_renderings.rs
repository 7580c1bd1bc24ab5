//! SPEC §9, reading: a Yjs document as ProseMirror JSON, as text, and as a Yjs update (whole, or
//! what a state vector lacks), written by a peer on `/yjs` as y-prosemirror writes a Tiptap
//! document. The rendering is checked against y-prosemirror itself in tests/browser.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Doc, GetString, ReadTxn, Text, Transact, Update, Xml, XmlElementPrelim, XmlFragment,
    XmlTextPrelim,
};

use super::WITHIN;
use crate::harness::yclient::YClient;
use crate::harness::{ensure, eventually, random_suffix, TestApp, TestOptions};

fn bold() -> Attrs {
    HashMap::from([(Arc::from("bold"), Any::Map(Arc::new(HashMap::new())))])
}

/// `GET path` as raw bytes, with its status.
async fn bytes(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(app.url(path)).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// The text of the XML fragment `default` of a document holding `update`.
fn fragment_text(update: &[u8]) -> String {
    let doc = Doc::new();
    let fragment = doc.get_or_insert_xml_fragment("default");
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).expect("an update"))
        .expect("it applies");
    let txn = doc.transact();
    fragment.get_string(&txn)
}

#[tokio::test]
async fn a_backend_reads_a_tiptap_document_as_prosemirror_json_text_and_updates() {
    let app = TestApp::spawn(TestOptions::new()).await;
    let doc = format!("tiptap-{}", random_suffix());
    let editor = YClient::connect(&app, &doc).await;
    // The root is taken before a transaction: yrs's document lock is not reentrant.
    let fragment = editor.doc.get_or_insert_xml_fragment("default");
    editor.edit(|_, txn| {
        let heading = fragment.push_back(txn, XmlElementPrelim::empty("heading"));
        heading.insert_attribute(txn, "level", Any::from(2));
        heading.push_back(txn, XmlTextPrelim::new("Notes"));
        let p = fragment.push_back(txn, XmlElementPrelim::empty("paragraph"));
        let text = p.push_back(txn, XmlTextPrelim::new("Hi "));
        text.insert_with_attributes(txn, 3, "there", bold());
    });
    let read_at = editor.doc.transact().state_vector().encode_v1();
    editor.edit(|_, txn| {
        let p = fragment.push_back(txn, XmlElementPrelim::empty("paragraph"));
        p.push_back(txn, XmlTextPrelim::new("later"));
    });
    let path = format!("/docs/{doc}");

    eventually(WITHIN, "the later paragraph", async || {
        let text = app.get(&format!("{path}?format=text")).await;
        ensure!(text.status == 200, "{}: {}", text.status, text.text);
        ensure!(text.text == "Notes\nHi there\nlater", "{:?}", text.text);
        Ok(())
    })
    .await;
    let rendered = app.get(&format!("{path}?format=prosemirror")).await;
    assert_eq!(
        rendered.body,
        json!({"type": "doc", "content": [
            {"type": "heading", "attrs": {"level": 2},
             "content": [{"type": "text", "text": "Notes"}]},
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Hi "},
                {"type": "text", "text": "there", "marks": [{"type": "bold", "attrs": {}}]}
            ]},
            {"type": "paragraph", "content": [{"type": "text", "text": "later"}]}
        ]})
    );
    let other = app
        .get(&format!("{path}?format=prosemirror&field=notes"))
        .await;
    assert_eq!(other.body, json!({"type": "doc", "content": []}));

    let (status, whole) = bytes(&app, &format!("{path}?format=update")).await;
    assert_eq!(status, 200);
    assert!(fragment_text(&whole).ends_with("<paragraph>later</paragraph>"));
    // A `+` the client did not escape arrives as a space: both spellings are taken.
    let sv = base64::engine::general_purpose::STANDARD.encode(&read_at);
    let sv = sv
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let (status, since) = bytes(&app, &format!("{path}?format=update&state_vector={sv}")).await;
    assert_eq!(status, 200);
    assert!(
        since.len() < whole.len(),
        "{} of {}",
        since.len(),
        whole.len()
    );
    let behind = Doc::new();
    let fragment = behind.get_or_insert_xml_fragment("default");
    let (_, first) = bytes(&app, &format!("{path}?format=update")).await;
    behind
        .transact_mut()
        .apply_update(Update::decode_v1(&first).unwrap())
        .unwrap();
    behind
        .transact_mut()
        .apply_update(Update::decode_v1(&since).unwrap())
        .unwrap();
    assert!(fragment.get_string(&behind.transact()).contains("later"));
}

#[tokio::test]
async fn renderings_a_document_cannot_have_are_refused_with_a_reason() {
    let app = TestApp::spawn(TestOptions::new()).await;
    let json_doc = format!("plain-{}", random_suffix());
    assert_eq!(app.put_doc(&json_doc, &json!({"a": 1})).await.status, 200);
    let yjs_doc = format!("yjs-{}", random_suffix());
    let editor = YClient::connect(&app, &yjs_doc).await;
    editor.type_text("x");
    eventually(WITHIN, "the yjs document", async || {
        let reply = app.get_doc(&yjs_doc).await;
        ensure!(reply.status == 200, "{}", reply.status);
        Ok(())
    })
    .await;

    let wrong_kind = app
        .get(&format!("/docs/{json_doc}?format=prosemirror"))
        .await;
    assert_eq!(wrong_kind.status, 409, "{}", wrong_kind.text);
    assert_eq!(
        wrong_kind.body["error"], "wrong_kind",
        "{}",
        wrong_kind.text
    );
    let unknown = app.get(&format!("/docs/{yjs_doc}?format=html")).await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert!(unknown.text.contains("prosemirror"), "{}", unknown.text);
    // Not base64; base64 of a varint that never ends.
    for sv in ["!!!", "gICAgICAgICAgA=="] {
        let path = format!("/docs/{yjs_doc}?format=update&state_vector={sv}");
        let bad = app.get(&path).await;
        assert_eq!(bad.status, 400, "{sv}: {}", bad.text);
    }
    let missing = app
        .get(&format!("/docs/never-{}?format=text", random_suffix()))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    let json_still = app.get_doc(&json_doc).await;
    assert_eq!(json_still.body["content"], json!({"a": 1}));
}
