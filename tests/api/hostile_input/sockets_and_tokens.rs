//! A socket that opens one document too many, and tokens and settings shaped to hurt: the bearer
//! scheme in another case, an empty secret, a 10 KB `sub`, a dashboard framed by another site.
//! Each is refused or bounded on its own, and the service goes on.

use std::time::Duration;

use docroom_actors::protocol::hocuspocus::{Auth, Frame};
use serde_json::json;

use super::assert_still_serves;
use crate::harness::app::ADMIN_TOKEN;
use crate::harness::child::run_to_exit;
use crate::harness::tokens;
use crate::harness::{eventually, random_suffix, TestApp, TestOptions, WsClient};
use crate::hocuspocus::{is_auth, HpClient};

const SECRET: &str = "sockets-and-tokens-secret";

/// A read-write token for `doc` with `sub`, valid for an hour.
fn token(doc: &str, sub: &str) -> String {
    tokens::token(SECRET, &[doc], "rw", Some(sub))
}

/// Takes `client`'s frames until its copy of `doc` reads `expected`.
async fn until_text(client: &mut HpClient, doc: &str, expected: &str) {
    while client.text(doc) != expected {
        client
            .until(
                &format!("{doc} to read {expected:?}"),
                |f| matches!(f, Frame::Sync { doc: d, .. } if d == doc),
            )
            .await;
    }
}

/// SPEC §5b: past `limits.hocuspocus_documents_per_socket` only the extra document is refused;
/// the socket and its open documents go on, and a document the provider closes frees its place.
#[tokio::test]
async fn one_document_too_many_on_a_hocuspocus_socket_is_refused_alone_and_the_others_sync_on() {
    let app = TestApp::spawn(
        TestOptions::new().env("DOCROOM__LIMITS__HOCUSPOCUS_DOCUMENTS_PER_SOCKET", 3),
    )
    .await;
    let docs: Vec<String> = (0..4)
        .map(|n| format!("hp-bound-{n}-{}", random_suffix()))
        .collect();
    let (open, extra) = (&docs[..3], &docs[3]);
    let mut client = HpClient::open(&app).await;
    for doc in open {
        assert_eq!(client.join(doc, "").await, "read-write");
    }

    // A fourth, sent the way a provider attaches one: Auth, then step 1 without waiting.
    client.auth(extra, "", None);
    client.step1(extra);

    let answer = client
        .until("the fourth's answer", |f| is_auth(f, extra))
        .await;
    match &answer {
        Frame::Auth {
            auth: Auth::PermissionDenied { reason },
            ..
        } => assert!(reason.contains("too many documents"), "{reason}"),
        other => panic!("the fourth document was not refused: {other:?}"),
    }
    let after = client.drain(Duration::from_millis(300)).await;
    assert!(
        after.iter().all(|f| f.doc() != Some(extra.as_str())),
        "more frames for the refused document: {after:?}"
    );

    // The socket and its three documents go on: updates cross both ways with another client.
    let mut other = HpClient::open(&app).await;
    for (n, doc) in open.iter().enumerate() {
        other.join(doc, "").await;
        let theirs = format!("from the other client {n}");
        other.type_text(doc, &theirs);
        until_text(&mut client, doc, &theirs).await;
        client.type_text(doc, ", answered");
        until_text(&mut other, doc, &format!("{theirs}, answered")).await;
    }

    // Closing one frees its place: the refused document opens now.
    client.send(&Frame::Close {
        doc: open[0].clone(),
        reason: None,
    });
    assert_eq!(client.join(extra, "").await, "read-write");
    let mut third = HpClient::open(&app).await; // `other` is at the bound itself
    third.join(extra, "").await;
    third.type_text(extra, "in its place");
    until_text(&mut client, extra, "in its place").await;
    assert_still_serves(&app, "one document too many on a hocuspocus socket").await;
}

/// RFC 7235: the auth scheme is case-insensitive, for client tokens and the admin token alike.
#[tokio::test]
async fn bearer_and_bearer_in_capitals_carry_client_and_admin_tokens() {
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await;
    let doc = format!("any-case-{}", random_suffix());
    let client_token = token(&doc, "tester");

    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let header = format!("{scheme} {client_token}");
        let put = app
            .http()
            .put(app.url(&format!("/docs/{doc}")))
            .header("authorization", &header)
            .header("content-type", "application/json")
            .body(json!({"scheme": scheme}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200, "PUT with the scheme {scheme:?}");
        let mut ws = WsClient::open(
            &app,
            &format!("/docs/{doc}/ws"),
            &[("Authorization", &header)],
        )
        .await
        .unwrap_or_else(|r| panic!("{scheme:?}: upgrade refused: {} {}", r.status, r.body));
        assert_eq!(ws.recv_json().await["content"], json!({"scheme": scheme}));

        let admin = app.admin_as(Some(&format!("{scheme} {ADMIN_TOKEN}")));
        let flusher = admin.get("flusher").await;
        assert_eq!(
            flusher.status, 200,
            "admin with {scheme:?}: {}",
            flusher.text
        );
    }
    // Only the case is free: another scheme, or none, is still refused.
    for refused in [format!("Basic {ADMIN_TOKEN}"), ADMIN_TOKEN.to_owned()] {
        let reply = app.admin_as(Some(&refused)).get("flusher").await;
        assert_eq!(reply.status, 401, "admin with {refused:?}");
    }
}

/// SPEC §3: a secret set but empty is a configuration error at start, not "no tokens".
#[test]
fn the_binary_refuses_to_start_with_an_empty_jwt_secret_naming_it() {
    let data_dir = std::env::temp_dir().join(format!("docroom-empty-secret-{}", random_suffix()));
    let data_dir_text = data_dir.display().to_string();
    // Unreachable stores: a binary that wrongly starts touches nothing shared.
    let output = run_to_exit(
        &[
            ("DOCROOM_JWT_SECRET", ""),
            ("DOCROOM_LISTEN", "127.0.0.1:0"),
            ("DOCROOM_REDIS_URL", "redis://127.0.0.1:1"),
            (
                "DOCROOM_DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/none",
            ),
            ("DOCROOM_DATA_DIR", &data_dir_text),
        ],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&data_dir);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(
        stderr.contains("DOCROOM_JWT_SECRET") && stderr.contains("empty"),
        "stderr names DOCROOM_JWT_SECRET: {stderr}"
    );
}

#[tokio::test]
async fn the_dashboard_may_not_be_framed_by_another_site() {
    let app = TestApp::start().await;

    let response = app.http().get(app.url("/admin/")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        let value = response.headers().get(name);
        value
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("x-frame-options"), "DENY");
    let policy = header("content-security-policy");
    assert!(
        policy
            .split(';')
            .any(|directive| directive.trim() == "frame-ancestors 'none'"),
        "content-security-policy: {policy:?}"
    );
}

/// SPEC §3: `sub` is logged, at most 256 bytes of it, whatever its length in the token.
#[tokio::test]
async fn a_10_kb_subject_connects_and_at_most_256_bytes_of_it_are_logged() {
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await;
    let doc = format!("long-sub-{}", random_suffix());
    // Three bytes a character: a cut inside one would not be UTF-8.
    let sub = "語".repeat(10 * 1024 / 3 + 1);
    let header = format!("Bearer {}", token(&doc, &sub));

    let mut client = WsClient::open(
        &app,
        &format!("/docs/{doc}/ws"),
        &[("Authorization", &header)],
    )
    .await
    .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.body));

    assert_eq!(client.recv_json().await["type"], "snapshot");
    let line = eventually(
        Duration::from_secs(10),
        "the connection's log line",
        async || {
            app.logs()
                .into_iter()
                .find(|line| line.contains("client connected") && line.contains(&doc))
                .ok_or_else(|| "not logged yet".to_owned())
        },
    )
    .await;
    let (_, from_sub) = line.split_once(" sub=").expect("the line has a sub field");
    let logged = from_sub.split_once(" write=").map_or(from_sub, |(s, _)| s);
    assert!(
        logged.len() <= 256 && logged.len() > 256 - "語".len(),
        "{} bytes of the subject logged",
        logged.len()
    );
    assert!(
        sub.starts_with(logged),
        "not the subject's start: {logged:?}"
    );
}
