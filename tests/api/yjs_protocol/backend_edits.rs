//! SPEC §9, editing: `PUT /docs/{id}/prosemirror` changes a Tiptap document's fragment to a
//! ProseMirror body with the smallest Yjs change, and with `base=` as an edit of what the backend
//! read. The story: an agent reads a document, thinks while a member types into the paragraph it
//! is about to change, and writes its version back; the member's typing survives.

use serde_json::{json, Value};
use yrs::sync::{Message, SyncMessage};
use yrs::{GetString, Text, Transact, Xml, XmlElementPrelim, XmlFragment, XmlTextPrelim};

use super::WITHIN;
use crate::harness::http::Reply;
use crate::harness::yclient::YClient;
use crate::harness::{ensure, eventually, random_suffix, TestApp, TestOptions};

/// `PUT /docs/{doc}/prosemirror` with `body` and the query `query` ("" or "?base=...").
async fn put_prosemirror(app: &TestApp, doc: &str, query: &str, body: &str) -> Reply {
    let response = app
        .http()
        .put(app.url(&format!("/docs/{doc}/prosemirror{query}")))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("PUT the document");
    let status = response.status().as_u16();
    let text = response.text().await.expect("the answer");
    let body = serde_json::from_str(&text).unwrap_or_default();
    Reply { status, body, text }
}

fn paragraph(text: &str) -> Value {
    json!({"type": "paragraph", "content": [{"type": "text", "text": text}]})
}

fn document(nodes: Vec<Value>) -> Value {
    json!({"type": "doc", "content": nodes})
}

/// A member whose editor holds a heading "Notes" and a paragraph "Hello world".
async fn member_with_notes(app: &TestApp, doc: &str) -> YClient {
    let member = YClient::connect(app, doc).await;
    let fragment = member.doc.get_or_insert_xml_fragment("default");
    member.edit(|_, txn| {
        let heading = fragment.push_back(txn, XmlElementPrelim::empty("heading"));
        heading.insert_attribute(txn, "level", yrs::Any::from(1));
        heading.push_back(txn, XmlTextPrelim::new("Notes"));
        let p = fragment.push_back(txn, XmlElementPrelim::empty("paragraph"));
        p.push_back(txn, XmlTextPrelim::new("Hello world"));
    });
    member
}

/// The member types `chunk` at the start of its paragraph's text.
fn type_into_paragraph(member: &YClient, chunk: &str) {
    let fragment = member.doc.get_or_insert_xml_fragment("default");
    member.edit(|_, txn| {
        let p = fragment.get(txn, 1).expect("the paragraph");
        let p = p.into_xml_element().expect("an element");
        let text = p
            .get(txn, 0)
            .expect("its text")
            .into_xml_text()
            .expect("a text");
        text.insert(txn, 0, chunk);
    });
}

/// The document as ProseMirror JSON, and the state vector it was read at.
async fn read(app: &TestApp, doc: &str) -> (Value, String) {
    let response = app
        .http()
        .get(app.url(&format!("/docs/{doc}?format=prosemirror")))
        .send()
        .await
        .expect("GET the rendering");
    assert_eq!(response.status().as_u16(), 200);
    let base = response
        .headers()
        .get("x-docroom-state-vector")
        .expect("the state vector it was read at")
        .to_str()
        .unwrap()
        .to_owned();
    (response.json().await.expect("JSON"), base)
}

async fn wait_for(app: &TestApp, doc: &str, want: &Value) {
    eventually(WITHIN, "the rendering", async || {
        let (now, _) = read(app, doc).await;
        ensure!(&now == want, "{now}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_agent_edit_made_on_what_it_read_keeps_what_a_member_typed_meanwhile() {
    let app = TestApp::spawn(TestOptions::new()).await;
    let doc = format!("agent-{}", random_suffix());
    let mut member = member_with_notes(&app, &doc).await;
    let heading = json!({"type": "heading", "attrs": {"level": 1},
                         "content": [{"type": "text", "text": "Notes"}]});
    wait_for(
        &app,
        &doc,
        &document(vec![heading.clone(), paragraph("Hello world")]),
    )
    .await;
    let (read_json, base) = read(&app, &doc).await;

    // While the agent thinks, the member types into the paragraph the agent will change.
    type_into_paragraph(&member, "Typing: ");
    wait_for(
        &app,
        &doc,
        &document(vec![heading.clone(), paragraph("Typing: Hello world")]),
    )
    .await;
    let mut edited = read_json.clone();
    edited["content"][1] = paragraph("Hello world, said the agent");
    edited["content"]
        .as_array_mut()
        .unwrap()
        .push(paragraph("A paragraph of its own"));
    let base = base
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let put = put_prosemirror(&app, &doc, &format!("?base={base}"), &edited.to_string()).await;

    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["stored"], "cache", "{}", put.text);
    let want = document(vec![
        heading,
        paragraph("Typing: Hello world, said the agent"),
        paragraph("A paragraph of its own"),
    ]);
    wait_for(&app, &doc, &want).await;
    // The member's editor converges on it too.
    member
        .until("the agent's edit", |m| {
            let fragment = m.doc.get_or_insert_xml_fragment("default");
            let txn = m.doc.transact();
            fragment.get_string(&txn).contains("said the agent")
        })
        .await;
    let fragment = member.doc.get_or_insert_xml_fragment("default");
    let txn = member.doc.transact();
    assert_eq!(
        fragment.get_string(&txn),
        "<heading level=\"1\">Notes</heading><paragraph>Typing: Hello world, said the agent</paragraph><paragraph>A paragraph of its own</paragraph>"
    );
}

#[tokio::test]
async fn a_prosemirror_write_changes_only_what_differs_and_a_repeat_changes_nothing() {
    let app = TestApp::spawn(TestOptions::new()).await;
    let doc = format!("written-{}", random_suffix());
    let body = document(vec![
        json!({"type": "heading", "attrs": {"level": 2},
               "content": [{"type": "text", "text": "Über 🦀"}]}),
        json!({"type": "paragraph", "content": [
            {"type": "text", "text": "bold", "marks": [{"type": "bold", "attrs": {}}]},
            {"type": "text", "text": " and a "},
            {"type": "text", "text": "link", "marks": [{"type": "link",
                "attrs": {"href": "https://example.com", "target": "_blank"}}]}
        ]}),
        json!({"type": "paragraph"}),
    ]);

    let created = put_prosemirror(&app, &doc, "", &body.to_string()).await;
    let again = put_prosemirror(&app, &doc, "", &body.to_string()).await;

    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.body["stored"], "cache", "{}", created.text);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["stored"], "duplicate", "{}", again.text);
    let (rendered, _) = read(&app, &doc).await;
    assert_eq!(rendered, body);
    // A member's text item is kept when the agent changes another node: its typing goes on in it.
    let mut member = YClient::connect(&app, &doc).await;
    member
        .until("the document", |m| {
            let fragment = m.doc.get_or_insert_xml_fragment("default");
            let txn = m.doc.transact();
            fragment.get_string(&txn).contains("link")
        })
        .await;
    let before = member.received.len();
    let mut changed = body.clone();
    changed["content"][2] = paragraph("filled in");
    let put = put_prosemirror(&app, &doc, "", &changed.to_string()).await;
    assert_eq!(put.status, 200, "{}", put.text);
    member
        .until("the filled paragraph", |m| {
            let fragment = m.doc.get_or_insert_xml_fragment("default");
            let txn = m.doc.transact();
            fragment.get_string(&txn).contains("filled in")
        })
        .await;
    let rewritten = member.received[before..].iter().any(|m| match m {
        Message::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u)) => {
            String::from_utf8_lossy(u).contains("Über")
        }
        _ => false,
    });
    assert!(!rewritten, "the heading was written again");

    // An edit that only deletes is a change too.
    let shorter = document(vec![changed["content"][0].clone()]);
    let put = put_prosemirror(&app, &doc, "", &shorter.to_string()).await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["stored"], "cache", "{}", put.text);
    let (rendered, _) = read(&app, &doc).await;
    assert_eq!(rendered, shorter);
}

#[tokio::test]
async fn bodies_that_are_not_prosemirror_documents_are_refused_and_json_documents_are_the_wrong_kind(
) {
    let app = TestApp::start().await;
    let doc = format!("refused-edit-{}", random_suffix());
    let kept = document(vec![paragraph("kept")]);
    assert_eq!(
        put_prosemirror(&app, &doc, "", &kept.to_string())
            .await
            .status,
        200
    );
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for (why, body) in [
        ("not JSON", "{".to_owned()),
        ("not a doc", json!({"type": "paragraph"}).to_string()),
        (
            "a text without text",
            document(vec![json!({"type": "paragraph",
            "content": [{"type": "text"}]})])
            .to_string(),
        ),
        ("nested without end", deep),
    ] {
        let refused = put_prosemirror(&app, &doc, "", &body).await;
        assert_eq!(refused.status, 400, "{why}: {}", refused.text);
    }
    let bad_base = put_prosemirror(&app, &doc, "?base=%2F%2F%2F%2F", &kept.to_string()).await;
    assert_eq!(bad_base.status, 400, "{}", bad_base.text);
    let (now, _) = read(&app, &doc).await;
    assert_eq!(now, kept);

    let json_doc = format!("json-{}", random_suffix());
    assert_eq!(app.put_doc(&json_doc, &json!({"a": 1})).await.status, 200);
    let wrong = put_prosemirror(&app, &json_doc, "", &kept.to_string()).await;
    assert_eq!(wrong.status, 409, "{}", wrong.text);
}
