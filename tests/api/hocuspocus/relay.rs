//! Between the connections of one document: awareness (echoed to its sender too, and removed
//! when a document closes), stateless messages, and what keeps a lone provider's socket alive.

use std::time::Duration;

use docroom_actors::protocol::hocuspocus::Frame;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::ClientID;

use super::HpClient;
use crate::harness::{random_suffix, TestApp};

fn awareness(client: u64, clock: u32, state: &str) -> Frame {
    let update = AwarenessUpdate {
        clients: [(
            ClientID::new(client),
            AwarenessUpdateEntry {
                clock,
                json: state.into(),
            },
        )]
        .into(),
    };
    Frame::Awareness {
        doc: String::new(),
        update: update.encode_v1(),
    }
}

fn awareness_for(doc: &str, client: u64, clock: u32, state: &str) -> Frame {
    let Frame::Awareness { update, .. } = awareness(client, clock, state) else {
        unreachable!()
    };
    Frame::Awareness {
        doc: doc.into(),
        update,
    }
}

fn states(frame: &Frame) -> Vec<(u64, String)> {
    let Frame::Awareness { update, .. } = frame else {
        return Vec::new();
    };
    let update = AwarenessUpdate::decode_v1(update).expect("awareness decodes");
    update
        .clients
        .into_iter()
        .map(|(id, e)| (id.get(), e.json.to_string()))
        .collect()
}

#[tokio::test]
async fn awareness_is_relayed_echoed_to_its_sender_and_removed_when_the_document_closes() {
    let app = TestApp::start().await;
    let doc = format!("hp-aw-{}", random_suffix());
    let (mut a, mut b) = (HpClient::open(&app).await, HpClient::open(&app).await);
    a.join(&doc, "").await;
    b.join(&doc, "").await;

    a.send(&awareness_for(&doc, 77, 1, r#"{"user":"a"}"#));

    let echoed = a
        .until("the echo", |f| matches!(f, Frame::Awareness { .. }))
        .await;
    assert_eq!(states(&echoed), vec![(77, r#"{"user":"a"}"#.to_owned())]);
    let relayed = b.until("the relay", |f| !states(f).is_empty()).await;
    assert_eq!(states(&relayed), vec![(77, r#"{"user":"a"}"#.to_owned())]);

    a.send(&Frame::Close {
        doc: doc.clone(),
        reason: None,
    });
    let removed = b.until("the removal", |f| !states(f).is_empty()).await;
    assert_eq!(states(&removed), vec![(77, "null".to_owned())]);
}

#[tokio::test]
async fn query_awareness_answers_the_states_the_room_holds() {
    let app = TestApp::start().await;
    let doc = format!("hp-query-{}", random_suffix());
    let (mut a, mut b) = (HpClient::open(&app).await, HpClient::open(&app).await);
    a.join(&doc, "").await;
    a.send(&awareness_for(&doc, 5, 1, r#"{"n":5}"#));
    a.until("the echo", |f| matches!(f, Frame::Awareness { .. }))
        .await;
    b.join(&doc, "").await;

    b.send(&Frame::QueryAwareness { doc: doc.clone() });

    let answer = b
        .until("the answer", |f| states(f).iter().any(|(id, _)| *id == 5))
        .await;
    assert!(states(&answer).contains(&(5, r#"{"n":5}"#.to_owned())));
}

#[tokio::test]
async fn stateless_messages_reach_the_other_connections_of_the_document_only() {
    let app = TestApp::start().await;
    let (doc, elsewhere) = (
        format!("hp-sl-{}", random_suffix()),
        format!("hp-sl2-{}", random_suffix()),
    );
    let (mut a, mut b, mut c) = (
        HpClient::open(&app).await,
        HpClient::open(&app).await,
        HpClient::open(&app).await,
    );
    a.join(&doc, "").await;
    b.join(&doc, "").await;
    c.join(&elsewhere, "").await;

    a.send(&Frame::Stateless {
        doc: doc.clone(),
        payload: "hello".into(),
    });

    let got = b
        .until("stateless", |f| matches!(f, Frame::Stateless { .. }))
        .await;
    assert_eq!(
        got,
        Frame::Stateless {
            doc: doc.clone(),
            payload: "hello".into()
        }
    );
    let a_saw = a.drain(Duration::from_millis(300)).await;
    let c_saw = c.drain(Duration::from_millis(300)).await;
    assert!(!a_saw
        .iter()
        .chain(&c_saw)
        .any(|f| matches!(f, Frame::Stateless { .. })));
}

/// The test app's heartbeat is 100 ms: two seconds are many heartbeats.
#[tokio::test]
async fn only_a_provider_that_announced_a_version_gets_ping_and_its_pong_is_taken() {
    let app = TestApp::start().await;
    let (mut old, mut new) = (HpClient::open(&app).await, HpClient::open(&app).await);
    old.join(&format!("hp-old-{}", random_suffix()), "").await;
    let doc = format!("hp-new-{}", random_suffix());
    new.auth(&doc, "", Some("4.8.0"));
    new.step1(&doc);

    let pinged = new.until("ping", |f| *f == Frame::Ping).await;
    new.send(&Frame::Pong);
    let old_saw = old.drain(Duration::from_secs(2)).await;

    assert_eq!(pinged, Frame::Ping);
    assert!(
        !old_saw
            .iter()
            .any(|f| matches!(f, Frame::Ping | Frame::Pong)),
        "{old_saw:?}"
    );
    new.join(&format!("hp-new2-{}", random_suffix()), "").await;
}

/// Stateless messages reach the document's connections on the other replicas too (SPEC §5b,
/// §8), through the document's channel.
#[tokio::test]
async fn stateless_messages_reach_connections_on_another_replica() {
    let app = TestApp::start().await;
    let other = app.replica().await;
    let doc = format!("hp-replicas-{}", random_suffix());
    let mut here = HpClient::open(&app).await;
    let mut there = HpClient::open(&other).await;
    here.join(&doc, "").await;
    there.join(&doc, "").await;
    // The other replica hears events once its room's channel subscription is in effect: a moment.
    tokio::time::sleep(Duration::from_millis(600)).await;

    here.send(&Frame::Stateless {
        doc: doc.clone(),
        payload: "across".into(),
    });

    let got = there
        .until("stateless from the other replica", |f| {
            matches!(f, Frame::Stateless { .. })
        })
        .await;
    assert_eq!(
        got,
        Frame::Stateless {
            doc,
            payload: "across".into()
        }
    );
}
