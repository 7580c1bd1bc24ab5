//! The document channels: a save's notice of its append, and events, as a listening
//! connection hears them.

use std::time::Duration;

use docroom_actors::doc::{DocId, Version};
use docroom_actors::log::notice::CARRY_MAX_BYTES;
use docroom_actors::log::{EventKind, Heard, LogEntry, Notice};
use docroom_actors::storage::{DocumentLog, Listener};
use futures_util::StreamExt;

use super::Prefix;
use crate::harness::yclient::typed;

/// What a listener hears next, within a few seconds.
async fn next(listener: &mut Listener) -> Heard {
    tokio::time::timeout(Duration::from_secs(5), listener.heard.next())
        .await
        .expect("nothing heard within 5 s")
        .expect("the listening connection closed")
}

/// A save's notice carries its entry and the one appended before it (so a reader at that
/// position needs no read), or only the entry's id when the entry is too large to carry; events
/// arrive byte for byte.
#[tokio::test]
async fn a_save_announces_its_append_and_events_reach_listeners_byte_for_byte() {
    let p = Prefix::new();
    let (a, b) = (p.cache("a"), p.cache("b"));
    let (one, other) = (typed("y", 1, "1"), DocId::parse("other:doc *").unwrap());
    let two = typed("y", 2, "2");
    let large = typed("y", 3, &"x".repeat(CARRY_MAX_BYTES));
    let mut listener = b.listen().await.unwrap();
    listener
        .channels
        .subscribe(&[one.doc.clone(), other.clone()])
        .await
        .unwrap();

    let mut saved = Vec::new();
    for v in [&one, &two, &large] {
        saved.push(a.save(v).await.unwrap().position.unwrap());
    }
    let payload = b"\0binary:with:colons\xff";
    a.publish(&other, EventKind::Awareness, payload)
        .await
        .unwrap();

    let carried = |prev, pos, version: &Version| Heard {
        doc: one.doc.clone(),
        notice: Notice::Entry {
            prev,
            entry: LogEntry {
                pos,
                replica: "a".into(),
                version: version.clone(),
            },
        },
    };
    assert_eq!(next(&mut listener).await, carried(None, saved[0], &one));
    assert_eq!(
        next(&mut listener).await,
        carried(Some(saved[0]), saved[1], &two)
    );
    assert_eq!(
        next(&mut listener).await,
        Heard {
            doc: one.doc.clone(),
            notice: Notice::Appended {
                replica: "a".into(),
                pos: saved[2]
            }
        }
    );
    let Heard {
        doc,
        notice: Notice::Event(event),
    } = next(&mut listener).await
    else {
        panic!("expected an event")
    };
    assert_eq!(doc, other);
    assert_eq!(
        (event.replica.as_ref(), event.kind),
        ("a", EventKind::Awareness)
    );
    assert_eq!(&event.payload[..], payload);

    // Unsubscribed, a channel is heard no more; the order of one connection's messages holds.
    listener
        .channels
        .unsubscribe(std::slice::from_ref(&one.doc))
        .await
        .unwrap();
    listener.channels.ping().await.unwrap();
    a.publish(&one.doc, EventKind::Stateless, b"unheard")
        .await
        .unwrap();
    a.publish(&other, EventKind::Stateless, b"heard")
        .await
        .unwrap();
    let Notice::Event(event) = next(&mut listener).await.notice else {
        panic!("expected an event")
    };
    assert_eq!(&event.payload[..], b"heard");
}

/// A replica hears of its own appends from their saves' answers, in order and with the entry
/// before each (`Notice::Saved`), and nothing goes on the channel for them while no other
/// replica follows the document: a lone replica pays for no fan-out. Once another follows, the
/// notices go out again.
#[tokio::test]
async fn own_appends_are_heard_from_the_answer_and_published_only_to_other_followers() {
    let p = Prefix::new();
    let (a, b) = (p.cache("a"), p.cache("b"));
    let (one, two) = (typed("lone", 1, "1"), typed("lone", 2, "2"));
    let mut own = a.listen().await.unwrap();
    own.channels
        .subscribe(std::slice::from_ref(&one.doc))
        .await
        .unwrap();
    let first = a.save(&one).await.unwrap().position.unwrap();
    let second = a.save(&two).await.unwrap().position.unwrap();
    let saved = |prev, pos| Heard {
        doc: one.doc.clone(),
        notice: Notice::Saved { prev, pos },
    };
    assert_eq!(next(&mut own).await, saved(None, first));
    assert_eq!(next(&mut own).await, saved(Some(first), second));
    let published = tokio::time::timeout(Duration::from_millis(300), own.heard.next()).await;
    assert!(
        published.is_err(),
        "a lone follower heard {published:?} from its own channel"
    );

    let mut other = b.listen().await.unwrap();
    other
        .channels
        .subscribe(std::slice::from_ref(&one.doc))
        .await
        .unwrap();
    let third = typed("lone", 3, "3");
    let pos = a.save(&third).await.unwrap().position.unwrap();
    let Notice::Entry { prev, entry } = next(&mut other).await.notice else {
        panic!("expected the entry's notice")
    };
    assert_eq!((prev, entry.pos), (Some(second), pos));
}

/// A replica publishes no event while its last save call found no other replica following any
/// document (nobody would hear it); once another follows, the next call finds it, and events go
/// out again. The replica's own listener hears what goes on the channel.
#[tokio::test]
async fn events_are_published_only_while_another_replica_follows() {
    let p = Prefix::new();
    let (a, b) = (p.cache("a"), p.cache("b"));
    let doc = typed("alone", 1, "1");
    let mut own = a.listen().await.unwrap();
    own.channels
        .subscribe(std::slice::from_ref(&doc.doc))
        .await
        .unwrap();
    a.save(&doc).await.unwrap();
    let _ = next(&mut own).await; // the save's own notice, from its answer
    a.publish(&doc.doc, EventKind::Awareness, b"unheard")
        .await
        .unwrap();
    let published = tokio::time::timeout(Duration::from_millis(200), own.heard.next()).await;
    assert!(published.is_err(), "a lone replica published {published:?}");
    // Half a second after the last call, an event goes out whatever that call found.
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.publish(&doc.doc, EventKind::Awareness, b"late")
        .await
        .unwrap();
    let Notice::Event(event) = next(&mut own).await.notice else {
        panic!("expected the event")
    };
    assert_eq!(&event.payload[..], b"late");

    let mut other = b.listen().await.unwrap();
    other
        .channels
        .subscribe(std::slice::from_ref(&doc.doc))
        .await
        .unwrap();
    a.save(&typed("alone", 2, "2")).await.unwrap();
    let _ = next(&mut own).await;
    let _ = next(&mut other).await; // the entry's notice
    a.publish(&doc.doc, EventKind::Awareness, b"heard")
        .await
        .unwrap();
    let Notice::Event(event) = next(&mut other).await.notice else {
        panic!("expected the event")
    };
    assert_eq!(&event.payload[..], b"heard");
}
