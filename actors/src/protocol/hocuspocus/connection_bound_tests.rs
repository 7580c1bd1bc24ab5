//! The per-socket document bound: one document too many is refused alone, the socket and its
//! other documents go on.

use super::connection::{Action, Connection, ConnectionLimits, TOO_MANY_DOCUMENTS};
use super::connection_tests::{auth, close, stateless, step1, ticket};
use super::outgoing::{self, Scope};

/// A connection bounded to two documents, with `a` authenticated and `b` awaiting its check.
fn full() -> (Connection, u64) {
    let limits = ConnectionLimits {
        max_documents: 2,
        ..ConnectionLimits::default()
    };
    let mut connection = Connection::new(limits);
    let t = ticket(&connection.receive(&auth("a", "t", None)), "a", "t");
    connection.token_checked("a", t, Ok(Scope::ReadWrite));
    let t = ticket(&connection.receive(&auth("b", "t", None)), "b", "t");
    (connection, t)
}

fn too_many(doc: &str) -> Vec<Action> {
    vec![Action::Send(outgoing::permission_denied(
        doc,
        TOO_MANY_DOCUMENTS,
    ))]
}

#[test]
fn a_document_beyond_the_bound_is_denied_alone_and_the_others_go_on() {
    let (mut connection, b) = full();

    let actions = connection.receive(&auth("c", "t", None));

    assert_eq!(actions, too_many("c"));
    assert_eq!(connection.document_count(), 2);
    assert_eq!(
        connection.receive(&step1("a").encode()),
        vec![Action::Deliver {
            doc: "a".into(),
            frame: step1("a")
        }]
    );
    assert!(connection
        .token_checked("b", b, Ok(Scope::ReadWrite))
        .contains(&Action::Join {
            doc: "b".into(),
            scope: Scope::ReadWrite
        }));
}

#[test]
fn frames_after_a_refusal_for_the_bound_are_dropped_without_another_answer() {
    let (mut connection, _) = full();
    connection.receive(&auth("c", "t", None));

    assert!(connection.receive(&step1("c").encode()).is_empty());
    assert!(connection.receive(&stateless("c", "x").encode()).is_empty());

    assert_eq!(connection.held(), (0, 0));
    assert_eq!(connection.receive(&auth("c", "t", None)), too_many("c"));
}

#[test]
fn a_first_frame_that_is_not_auth_beyond_the_bound_is_denied_and_not_held() {
    let (mut connection, _) = full();

    let actions = connection.receive(&step1("c").encode());

    assert_eq!(actions, too_many("c"));
    assert_eq!(connection.held(), (0, 0));
    assert!(connection.receive(&step1("c").encode()).is_empty());
}

#[test]
fn a_document_closed_by_the_provider_frees_its_place_for_a_refused_one() {
    let (mut connection, _) = full();
    connection.receive(&auth("c", "t", None));

    assert_eq!(
        connection.receive(&close("a")),
        vec![Action::Leave { doc: "a".into() }]
    );
    let t = ticket(&connection.receive(&auth("c", "t", None)), "c", "t");

    assert!(connection
        .token_checked("c", t, Ok(Scope::ReadWrite))
        .contains(&Action::Join {
            doc: "c".into(),
            scope: Scope::ReadWrite
        }));
    assert_eq!(connection.document_count(), 2);
    assert_eq!(connection.receive(&auth("d", "t", None)), too_many("d"));
}

#[test]
fn the_names_refused_for_the_bound_are_remembered_only_so_many() {
    let (mut connection, _) = full();
    for n in 0..100 {
        connection.receive(&auth(&format!("extra-{n}"), "t", None));
    }

    // The latest are remembered: their frames draw no answer ...
    assert!(connection.receive(&step1("extra-99").encode()).is_empty());
    // ... the oldest are forgotten: a frame of theirs is a first frame again, and denied again.
    assert_eq!(
        connection.receive(&step1("extra-0").encode()),
        too_many("extra-0")
    );
}
