//! Opening documents on a `/hocuspocus` socket: Auth and the frames held meanwhile, refused
//! documents, and frames that mean nothing.

use std::time::Duration;

use docroom_actors::protocol::hocuspocus::{Auth, Frame};
use serde_json::json;

use super::{is_auth, is_close, token, HpClient, SECRET};
use crate::harness::{random_suffix, Proxy, TestApp, TestOptions};

#[tokio::test]
async fn a_document_is_authenticated_then_synced_and_a_second_one_shares_the_socket() {
    let app = TestApp::start().await;
    let (a, b) = (
        format!("hp-a-{}", random_suffix()),
        format!("hp-b-{}", random_suffix()),
    );
    let mut client = HpClient::open(&app).await;

    assert_eq!(client.join(&a, "").await, "read-write");
    assert_eq!(client.join(&b, "").await, "read-write");
    client.type_text(&b, "only in b");

    let mut other = HpClient::open(&app).await;
    other.join(&b, "").await;
    other.join(&a, "").await;
    assert_eq!(other.text(&b), "only in b");
    assert_eq!(other.text(&a), "", "a's room is not b's");
}

#[tokio::test]
async fn a_first_frame_that_is_not_auth_counts_as_auth_with_an_empty_token() {
    let app = TestApp::start().await;
    let doc = format!("hp-noauth-{}", random_suffix());
    let mut client = HpClient::open(&app).await;

    client.step1(&doc); // a 2.x provider without a token sends no Auth

    let frame = client.until("authenticated", |f| is_auth(f, &doc)).await;
    assert!(matches!(
        frame,
        Frame::Auth {
            auth: Auth::Authenticated { .. },
            ..
        }
    ));
    client
        .until("sync step 2", |f| super::is_step2(f, &doc))
        .await;
}

/// A fresh document's room loads from PostgreSQL; with PostgreSQL stalled, its token check and
/// join stay under way, so every frame sent meanwhile is held.
#[tokio::test]
async fn frames_held_before_auth_beyond_the_bounds_close_the_socket_with_1009() {
    let proxy = Proxy::to_postgres();
    let app = TestApp::spawn(
        TestOptions::new()
            .database_through(proxy.addr)
            .env("DOCROOM__LIMITS__HOCUSPOCUS_HELD_MESSAGES", 3)
            .env("DOCROOM__LIMITS__HOCUSPOCUS_HELD_BYTES", 2000),
    )
    .await;
    proxy.stall();

    let mut within = HpClient::open(&app).await;
    let doc = format!("hp-held-ok-{}", random_suffix());
    within.auth(&doc, "", None);
    for _ in 0..3 {
        within.send(&Frame::QueryAwareness { doc: doc.clone() });
    }
    let mut many = HpClient::open(&app).await;
    let doc = format!("hp-held-{}", random_suffix());
    many.auth(&doc, "", None);
    for _ in 0..4 {
        many.send(&Frame::QueryAwareness { doc: doc.clone() });
    }
    let mut big = HpClient::open(&app).await;
    let doc = format!("hp-held-big-{}", random_suffix());
    big.auth(&doc, "", None);
    big.send(&Frame::Stateless {
        doc: doc.clone(),
        payload: "x".repeat(4000),
    });

    assert_eq!(many.closed().await, Some(1009), "too many messages");
    assert_eq!(big.closed().await, Some(1009), "too many bytes");
    proxy.restore();
    within
        .until("authenticated", |f| matches!(f, Frame::Auth { .. }))
        .await;
}

#[tokio::test]
async fn bad_frames_end_their_document_only_and_an_unreadable_name_ends_the_socket() {
    let app = TestApp::start().await;
    let (good, bad) = (
        format!("hp-good-{}", random_suffix()),
        format!("hp-bad-{}", random_suffix()),
    );
    let mut client = HpClient::open(&app).await;
    client.join(&good, "").await;
    client.join(&bad, "").await;

    for kind in [6u8, 42] {
        let mut frame = Frame::QueryAwareness { doc: bad.clone() }.encode();
        *frame.last_mut().unwrap() = kind; // QueryAwareness is the name then its type alone
        client.ws.send_binary(frame);
        let close = client
            .until("close of the bad document", |f| is_close(f, &bad))
            .await;
        let Frame::Close {
            reason: Some(reason),
            ..
        } = close
        else {
            panic!("a close without a reason: {close:?}")
        };
        assert!(reason.contains(&kind.to_string()), "{reason}");
        client.join(&bad, "").await; // the document may be opened again
    }

    // The socket and its other document went on.
    let mut other = HpClient::open(&app).await;
    other.join(&good, "").await;
    other.type_text(&good, "still here");
    client
        .until(
            "the update",
            |f| matches!(f, Frame::Sync { doc, .. } if *doc == good),
        )
        .await;
    assert_eq!(client.text(&good), "still here");

    client.ws.send_binary(vec![0xff]); // a name length past the end of the frame
    assert_eq!(client.closed().await, Some(1002));
}

#[tokio::test]
async fn a_document_name_that_is_not_a_valid_id_is_denied_and_the_socket_stays() {
    let app = TestApp::start().await;
    let mut client = HpClient::open(&app).await;
    let long = "x".repeat(256);

    for name in ["", "..", "a\nb", long.as_str()] {
        client.auth(name, "", None);
        let frame = client.until("the answer", |f| is_auth(f, name)).await;
        assert!(
            matches!(&frame, Frame::Auth { auth: Auth::PermissionDenied { reason }, .. } if reason.contains("invalid document id")),
            "{name:?}: {frame:?}"
        );
    }
    client
        .join(&format!("hp-valid-{}", random_suffix()), "")
        .await;
}

#[tokio::test]
async fn a_token_that_does_not_cover_a_second_document_denies_it_and_the_first_stays() {
    let app = TestApp::spawn(TestOptions::new().env("DOCROOM_JWT_SECRET", SECRET)).await;
    let (mine, theirs) = (
        format!("hp-mine-{}", random_suffix()),
        format!("hp-theirs-{}", random_suffix()),
    );
    let t = token(&[&mine], "rw");
    let mut client = HpClient::open(&app).await;
    assert_eq!(client.join(&mine, &t).await, "read-write");

    client.auth(&theirs, &t, None);
    let frame = client.until("the answer", |f| is_auth(f, &theirs)).await;
    assert!(
        matches!(&frame, Frame::Auth { auth: Auth::PermissionDenied { reason }, .. } if reason.contains("does not grant")),
        "{frame:?}"
    );
    client.auth(&format!("hp-x-{}", random_suffix()), "not-a-jwt", None);
    let denied = client
        .until("the denial", |f| {
            matches!(
                f,
                Frame::Auth {
                    auth: Auth::PermissionDenied { .. },
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(denied, Frame::Auth { auth: Auth::PermissionDenied { reason }, .. } if reason.contains("token"))
    );

    let mut other = HpClient::open(&app).await;
    other.join(&mine, &t).await;
    other.type_text(&mine, "reaches the first socket");
    client
        .until(
            "the update",
            |f| matches!(f, Frame::Sync { doc, .. } if *doc == mine),
        )
        .await;
    assert_eq!(client.text(&mine), "reaches the first socket");
}

#[tokio::test]
async fn a_json_document_is_denied_naming_its_kind() {
    let app = TestApp::start().await;
    let doc = format!("hp-json-{}", random_suffix());
    assert_eq!(app.put_doc(&doc, &json!({"a": 1})).await.status, 200);
    let mut client = HpClient::open(&app).await;

    client.auth(&doc, "", None);

    let frame = client.until("the answer", |f| is_auth(f, &doc)).await;
    assert!(
        matches!(&frame, Frame::Auth { auth: Auth::PermissionDenied { reason }, .. } if reason.contains("json document")),
        "{frame:?}"
    );
    assert!(client
        .drain(Duration::from_millis(300))
        .await
        .iter()
        .all(|f| !matches!(f, Frame::Sync { .. })));
}
