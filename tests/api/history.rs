//! SPEC §10 against the running service: versions cut while a document is edited and when its
//! last member leaves, listed newest first and readable in every rendering from any replica,
//! kept through a SIGKILL; a restore while two members stay connected and keep typing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::tokens::token;
use crate::harness::yclient::YClient;
use crate::harness::{ensure, eventually, random_suffix, TestApp, TestOptions};

const WITHIN: Duration = Duration::from_secs(30);
const JWT: &str = "history-tests-jwt";

/// Versions at most every 300 ms of editing.
fn with_history(opts: TestOptions) -> TestOptions {
    opts.env("DOCROOM__HISTORY__INTERVAL_MS", 300)
}

async fn versions(app: &TestApp, doc: &str) -> Vec<Value> {
    let reply = app.get(&format!("/docs/{doc}/versions")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body.as_array().expect("an array").clone()
}

/// The root text "text" of `doc` at `version`.
async fn text_at(app: &TestApp, doc: &str, version: i64) -> String {
    let reply = app.get(&format!("/docs/{doc}/versions/{version}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["content"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until the document reads `text` (the update reached the room).
async fn stored(app: &TestApp, doc: &str, text: &str) {
    eventually(
        WITHIN,
        &format!("the document reading {text:?}"),
        async || {
            let now = app.get_doc(doc).await;
            ensure!(now.body["content"]["text"] == text, "{}", now.text);
            Ok(())
        },
    )
    .await;
}

/// Waits for a version whose text is `text`; answers its number.
async fn version_with(app: &TestApp, doc: &str, text: &str) -> i64 {
    eventually(WITHIN, &format!("a version reading {text:?}"), async || {
        for v in versions(app, doc).await {
            let n = v["version"].as_i64().unwrap();
            if text_at(app, doc, n).await == text {
                return Ok(n);
            }
        }
        Err("not yet".to_owned())
    })
    .await
}

#[tokio::test]
async fn leaving_cuts_a_version_and_every_version_reads_as_it_was() {
    // The default interval (60 s) cuts nothing here: each version comes from a leave.
    let app = TestApp::spawn(TestOptions::new()).await;
    let doc = format!("versioned-{}", random_suffix());
    let first = YClient::connect(&app, &doc).await;
    first.type_text("one");
    stored(&app, &doc, "one").await;
    drop(first);
    let v1 = version_with(&app, &doc, "one").await;
    let second = YClient::connect(&app, &doc).await;
    second.type_text(" two");
    stored(&app, &doc, "one two").await;
    drop(second);
    let v2 = version_with(&app, &doc, "one two").await;

    assert!(v2 > v1);
    let listed = versions(&app, &doc).await;
    assert_eq!(listed[0]["version"], v2, "newest first: {listed:?}");
    assert_eq!(listed[0]["users"], json!(["anonymous"]));
    assert!(listed[0]["at"].as_str().unwrap().contains('T'));
    assert!(listed[0]["bytes"].as_i64().unwrap() > 0);
    assert_eq!(listed[0]["hash"].as_str().unwrap().len(), 64);
    let page = app
        .get(&format!("/docs/{doc}/versions?limit=1&before={v2}"))
        .await;
    assert_eq!(page.body[0]["version"], v1, "{}", page.text);
    let update = app
        .get(&format!("/docs/{doc}/versions/{v1}?format=update"))
        .await;
    assert_eq!(update.status, 200);
    assert_eq!(
        app.get(&format!("/docs/{doc}/versions/999")).await.status,
        404
    );
    assert_eq!(
        app.get(&format!("/docs/{doc}/versions/x")).await.status,
        400
    );
}

#[tokio::test]
async fn versions_cut_on_one_replica_are_read_on_another_and_outlive_a_sigkill() {
    let mut a = TestApp::spawn(with_history(TestOptions::new().process())).await;
    let b = TestApp::spawn(with_history(a.replica_options())).await;
    let doc = format!("replicated-{}", random_suffix());
    let member = YClient::connect(&a, &doc).await;
    member.type_text("written on a");
    let v = version_with(&b, &doc, "written on a").await;

    a.sigkill().await;
    drop(member);
    a.restart().await;

    assert_eq!(text_at(&a, &doc, v).await, "written on a");
    assert_eq!(text_at(&b, &doc, v).await, "written on a");
}

#[tokio::test]
async fn a_restore_reaches_two_members_who_stay_connected_and_keep_typing() {
    let app = TestApp::spawn(with_history(
        TestOptions::new().env("DOCROOM_JWT_SECRET", JWT),
    ))
    .await;
    let doc = format!("restored-{}", random_suffix());
    let open = |who: &'static str| {
        let t = token(JWT, &[&doc], "rw", Some(who));
        let path = format!("/yjs/{doc}?token={t}");
        let app = &app;
        async move { YClient::connect_path(app, &path).await }
    };
    let mut ann = open("ann").await;
    let mut bob = open("bob").await;
    ann.type_text("alpha");
    bob.until("alpha", |b| b.text() == "alpha").await;
    let reader = token(JWT, &["*"], "ro", None);
    let get = |path: String| {
        let app = &app;
        let reader = reader.clone();
        async move {
            let reply = app
                .http()
                .get(app.url(&path))
                .bearer_auth(reader)
                .send()
                .await
                .expect("GET");
            reply.json::<Value>().await.unwrap_or_default()
        }
    };
    let v1 = eventually(WITHIN, "a version of alpha", async || {
        let listed = get(format!("/docs/{doc}/versions")).await;
        for v in listed.as_array().cloned().unwrap_or_default() {
            let n = v["version"].as_i64().unwrap();
            let at = get(format!("/docs/{doc}/versions/{n}")).await;
            if at["content"]["text"] == "alpha" {
                ensure!(v["users"] == json!(["ann"]), "{v}");
                return Ok(n);
            }
        }
        Err("not yet".into())
    })
    .await;
    bob.type_text(" beta");
    ann.until("beta", |a| a.text() == "alpha beta").await;

    let restored = app
        .http()
        .post(app.url(&format!("/docs/{doc}/restore")))
        .bearer_auth(token(JWT, &["*"], "rw", Some("agent")))
        .json(&json!({"version": v1}))
        .send()
        .await
        .expect("POST the restore");
    assert_eq!(restored.status(), 200, "{}", restored.text().await.unwrap());

    ann.until("the restore", |a| a.text() == "alpha").await;
    bob.until("the restore", |b| b.text() == "alpha").await;
    ann.type_text(" gamma");
    bob.until("typing after the restore", |b| b.text() == "alpha gamma")
        .await;
    let listed = get(format!("/docs/{doc}/versions")).await;
    let by_agent = listed
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["users"] == json!(["agent"]));
    assert!(
        by_agent,
        "the restore is a version of the agent's: {listed}"
    );
}

#[tokio::test]
async fn a_drain_keeps_the_version_its_rooms_proposed_as_they_closed() {
    // The default interval (60 s): the version can only come from the room closing.
    let mut app = TestApp::spawn(TestOptions::new().process()).await;
    let doc = format!("drained-{}", random_suffix());
    let member = YClient::connect(&app, &doc).await;
    member.type_text("before the drain");
    stored(&app, &doc, "before the drain").await;

    app.sigterm().await;
    drop(member);
    app.restart().await;

    version_with(&app, &doc, "before the drain").await;
}
