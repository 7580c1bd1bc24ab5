//! The per-socket document table, edge by edge.

use super::connection::{
    Action, Connection, ConnectionLimits, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG,
};
use super::frame::{Auth, Frame};
use super::outgoing::{self, Scope};

pub(super) fn auth(doc: &str, token: &str, version: Option<&str>) -> Vec<u8> {
    Frame::Auth {
        doc: doc.into(),
        auth: Auth::Token {
            token: token.into(),
            provider_version: version.map(str::to_owned),
        },
    }
    .encode()
}

pub(super) fn step1(doc: &str) -> Frame {
    Frame::Sync {
        doc: doc.into(),
        payload: vec![0, 1, 0],
    }
}

pub(super) fn stateless(doc: &str, payload: &str) -> Frame {
    Frame::Stateless {
        doc: doc.into(),
        payload: payload.into(),
    }
}

pub(super) fn close(doc: &str) -> Vec<u8> {
    Frame::Close {
        doc: doc.into(),
        reason: None,
    }
    .encode()
}

/// The ticket of the single `CheckToken` among `actions`.
pub(super) fn ticket(actions: &[Action], doc: &str, token: &str) -> u64 {
    let found: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            Action::CheckToken {
                doc: d,
                token: t,
                ticket,
            } if d == doc && t == token => Some(*ticket),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "one token check in {actions:?}");
    found[0]
}

fn closed_with(actions: &[Action]) -> Option<u16> {
    actions.iter().find_map(|a| match a {
        Action::CloseSocket { code, .. } => Some(*code),
        _ => None,
    })
}

/// A connection with `doc` authenticated read-write.
fn open(doc: &str) -> Connection {
    let mut connection = Connection::new(ConnectionLimits::default());
    let t = ticket(&connection.receive(&auth(doc, "t", None)), doc, "t");
    connection.token_checked(doc, t, Ok(Scope::ReadWrite));
    connection
}

#[test]
fn frames_after_auth_are_held_until_the_token_is_accepted_then_replayed_in_order() {
    let mut connection = Connection::new(ConnectionLimits::default());

    let t = ticket(&connection.receive(&auth("doc", "t", None)), "doc", "t");
    assert!(connection.receive(&step1("doc").encode()).is_empty());
    assert!(connection
        .receive(&stateless("doc", "a").encode())
        .is_empty());
    assert_eq!(connection.held().0, 2);
    let actions = connection.token_checked("doc", t, Ok(Scope::ReadWrite));

    assert_eq!(
        actions,
        vec![
            Action::Send(outgoing::authenticated("doc", Scope::ReadWrite)),
            Action::Join {
                doc: "doc".into(),
                scope: Scope::ReadWrite
            },
            Action::Deliver {
                doc: "doc".into(),
                frame: step1("doc")
            },
            Action::Deliver {
                doc: "doc".into(),
                frame: stateless("doc", "a")
            },
        ]
    );
    assert_eq!(connection.held(), (0, 0));
    assert_eq!(
        connection.receive(&stateless("doc", "b").encode()),
        vec![Action::Deliver {
            doc: "doc".into(),
            frame: stateless("doc", "b")
        }]
    );
}

#[test]
fn a_first_frame_that_is_not_auth_counts_as_auth_with_an_empty_token() {
    let mut connection = Connection::new(ConnectionLimits::default());

    let actions = connection.receive(&step1("doc").encode());

    let t = ticket(&actions, "doc", "");
    let replay = connection.token_checked("doc", t, Ok(Scope::ReadWrite));
    assert!(replay.contains(&Action::Deliver {
        doc: "doc".into(),
        frame: step1("doc")
    }));
}

#[test]
fn a_refused_token_denies_the_document_drops_its_frames_and_keeps_the_socket() {
    let mut connection = Connection::new(ConnectionLimits::default());
    let t = ticket(&connection.receive(&auth("doc", "bad", None)), "doc", "bad");
    connection.receive(&step1("doc").encode());

    let actions = connection.token_checked("doc", t, Err("token does not cover doc".into()));

    assert_eq!(
        actions,
        vec![Action::Send(outgoing::permission_denied(
            "doc",
            "token does not cover doc"
        ))]
    );
    assert_eq!(connection.held(), (0, 0));
    assert!(connection.receive(&step1("doc").encode()).is_empty());
    let retry = connection.receive(&auth("doc", "good", None));
    let t = ticket(&retry, "doc", "good");
    assert!(connection
        .token_checked("doc", t, Ok(Scope::ReadWrite))
        .contains(&Action::Join {
            doc: "doc".into(),
            scope: Scope::ReadWrite
        }));
}

#[test]
fn held_messages_beyond_the_bound_close_the_socket_with_1009() {
    let limits = ConnectionLimits {
        max_held_messages: 3,
        ..ConnectionLimits::default()
    };
    let mut connection = Connection::new(limits);
    connection.receive(&auth("doc", "t", None));
    for _ in 0..3 {
        assert!(connection.receive(&step1("doc").encode()).is_empty());
    }

    let actions = connection.receive(&step1("doc").encode());

    assert_eq!(closed_with(&actions), Some(CLOSE_TOO_BIG));
    assert!(connection.receive(&step1("doc").encode()).is_empty());
}

#[test]
fn held_bytes_beyond_the_bound_close_the_socket_with_1009() {
    let big = stateless("doc", &"x".repeat(100)).encode();
    let limits = ConnectionLimits {
        max_held_bytes: big.len() * 2,
        ..ConnectionLimits::default()
    };
    let mut connection = Connection::new(limits);
    connection.receive(&auth("doc", "t", None));
    assert!(connection.receive(&big).is_empty());
    assert!(connection.receive(&big).is_empty());

    let actions = connection.receive(&big);

    assert_eq!(closed_with(&actions), Some(CLOSE_TOO_BIG));
}

#[test]
fn the_held_bounds_count_every_document_of_the_socket() {
    let limits = ConnectionLimits {
        max_held_messages: 2,
        ..ConnectionLimits::default()
    };
    let mut connection = Connection::new(limits);

    connection.receive(&step1("a").encode());
    connection.receive(&step1("b").encode());
    let actions = connection.receive(&step1("c").encode());

    assert_eq!(closed_with(&actions), Some(CLOSE_TOO_BIG));
}

#[test]
fn an_unknown_type_ends_that_document_only() {
    let mut connection = open("doc");
    let t = ticket(&connection.receive(&auth("other", "t", None)), "other", "t");
    connection.token_checked("other", t, Ok(Scope::ReadWrite));

    let actions = connection.receive(&[&[3, b'd', b'o', b'c'][..], &[42]].concat());

    assert_eq!(
        actions,
        vec![
            Action::Leave { doc: "doc".into() },
            Action::Send(outgoing::close("doc", "unknown message type 42")),
        ]
    );
    assert_eq!(connection.scope("other"), Some(Scope::ReadWrite));
    assert_eq!(connection.scope("doc"), None);
}

#[test]
fn type_6_from_a_client_ends_that_document() {
    let mut connection = open("doc");

    let actions = connection.receive(&[&[3, b'd', b'o', b'c'][..], &[6, 1, b'x']].concat());

    assert_eq!(
        actions,
        vec![
            Action::Leave { doc: "doc".into() },
            Action::Send(outgoing::close("doc", "message type 6 is for servers only")),
        ]
    );
}

#[test]
fn a_frame_without_a_readable_name_closes_the_socket() {
    let mut connection = open("doc");

    let actions = connection.receive(&[200, 1, 2]);

    assert_eq!(actions[0], Action::Leave { doc: "doc".into() });
    assert_eq!(closed_with(&actions), Some(CLOSE_PROTOCOL_ERROR));
}

#[test]
fn auth_for_a_second_document_is_checked_on_its_own() {
    let mut connection = open("doc");

    let t = ticket(
        &connection.receive(&auth("second", "t", None)),
        "second",
        "t",
    );
    connection.receive(&step1("second").encode());
    let delivered = connection.receive(&step1("doc").encode());
    let denied = connection.token_checked("second", t, Err("not covered".into()));

    assert_eq!(
        delivered,
        vec![Action::Deliver {
            doc: "doc".into(),
            frame: step1("doc")
        }]
    );
    assert_eq!(
        denied,
        vec![Action::Send(outgoing::permission_denied(
            "second",
            "not covered"
        ))]
    );
    assert_eq!(connection.scope("doc"), Some(Scope::ReadWrite));
    assert_eq!(connection.document_count(), 2);
}

#[test]
fn close_from_the_provider_ends_one_document_only() {
    let mut connection = open("doc");
    let t = ticket(&connection.receive(&auth("other", "t", None)), "other", "t");
    connection.token_checked("other", t, Ok(Scope::ReadWrite));

    let actions = connection.receive(&close("doc"));

    assert_eq!(actions, vec![Action::Leave { doc: "doc".into() }]);
    assert_eq!(connection.document_count(), 1);
    assert!(matches!(
        connection.receive(&step1("other").encode())[..],
        [Action::Deliver { .. }]
    ));
    // The closed document starts over: a new frame asks for a new token check.
    ticket(&connection.receive(&step1("doc").encode()), "doc", "");
}

#[test]
fn a_read_only_scope_is_announced_as_readonly() {
    let mut connection = Connection::new(ConnectionLimits::default());
    let t = ticket(&connection.receive(&auth("doc", "ro", None)), "doc", "ro");

    let actions = connection.token_checked("doc", t, Ok(Scope::ReadOnly));

    assert!(actions.contains(&Action::Send(outgoing::authenticated(
        "doc",
        Scope::ReadOnly
    ))));
    assert_eq!(connection.scope("doc"), Some(Scope::ReadOnly));
    assert!(!Scope::ReadOnly.may_write());
}

#[test]
fn ping_and_pong_only_with_a_provider_that_sent_its_version() {
    let mut old = open("doc");
    assert!(!old.may_ping());
    assert!(old.receive(&outgoing::ping()).is_empty());

    let mut new = Connection::new(ConnectionLimits::default());
    new.receive(&auth("doc", "t", Some("4.8.0")));
    assert!(new.may_ping());
    assert_eq!(new.provider_version(), Some("4.8.0"));
    assert_eq!(
        new.receive(&outgoing::ping()),
        vec![Action::Send(outgoing::pong())]
    );
    assert!(new.receive(&outgoing::pong()).is_empty());
}

#[test]
fn a_token_check_answered_after_the_document_closed_changes_nothing() {
    let mut connection = Connection::new(ConnectionLimits::default());
    let stale = ticket(&connection.receive(&auth("doc", "a", None)), "doc", "a");
    connection.receive(&close("doc"));
    let fresh = ticket(&connection.receive(&auth("doc", "b", None)), "doc", "b");

    assert!(connection
        .token_checked("doc", stale, Ok(Scope::ReadWrite))
        .is_empty());
    assert_eq!(connection.scope("doc"), None);
    assert!(!connection
        .token_checked("doc", fresh, Ok(Scope::ReadOnly))
        .is_empty());
    assert_eq!(connection.scope("doc"), Some(Scope::ReadOnly));
}

#[test]
fn a_refreshed_token_that_is_refused_takes_the_member_out_of_the_room() {
    let mut connection = open("doc");

    let t = ticket(&connection.receive(&auth("doc", "new", None)), "doc", "new");
    assert!(connection.receive(&step1("doc").encode()).is_empty());
    let actions = connection.token_checked("doc", t, Err("expired".into()));

    assert_eq!(
        actions,
        vec![
            Action::Leave { doc: "doc".into() },
            Action::Send(outgoing::permission_denied("doc", "expired")),
        ]
    );
}

#[test]
fn a_refreshed_token_that_is_accepted_keeps_the_membership() {
    let mut connection = open("doc");

    let t = ticket(&connection.receive(&auth("doc", "new", None)), "doc", "new");
    let actions = connection.token_checked("doc", t, Ok(Scope::ReadOnly));

    assert_eq!(
        actions,
        vec![Action::Send(outgoing::authenticated(
            "doc",
            Scope::ReadOnly
        ))]
    );
}

#[test]
fn the_server_ending_a_document_sends_close_with_its_reason() {
    let mut connection = open("doc");

    let actions = connection.end_document("doc", "token expired");

    assert_eq!(
        actions,
        vec![
            Action::Leave { doc: "doc".into() },
            Action::Send(outgoing::close("doc", "token expired")),
        ]
    );
    assert_eq!(connection.document_count(), 0);
}

#[test]
fn sync_status_and_auth_replies_from_a_client_are_ignored() {
    let mut connection = open("doc");
    assert!(connection
        .receive(&outgoing::sync_status("doc", true))
        .is_empty());
    assert!(connection
        .receive(&outgoing::authenticated("doc", Scope::ReadWrite))
        .is_empty());
    assert_eq!(connection.scope("doc"), Some(Scope::ReadWrite));
}
