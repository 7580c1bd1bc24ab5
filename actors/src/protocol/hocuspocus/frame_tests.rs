//! The codec against frames written byte for byte as the JS provider and server write them
//! (lib0 `writeVarString` / `writeVarUint`, `@hocuspocus/common` `auth.ts`, y-protocols).

use super::frame::{decode, document_of, Auth, Frame, FrameError};
use super::outgoing::{self, Scope};
use crate::protocol::yjs::YjsDoc;

/// `writeVarString(encoder, "doc")`.
const DOC: [u8; 4] = [3, b'd', b'o', b'c'];

fn frame(tail: &[u8]) -> Vec<u8> {
    [&DOC[..], tail].concat()
}

fn doc() -> String {
    "doc".to_owned()
}

fn assert_round_trip(bytes: &[u8], expected: Frame) {
    let decoded = decode(bytes).expect("fixture decodes");
    assert_eq!(decoded, expected);
    assert_eq!(
        decoded.encode(),
        bytes,
        "re-encoding gives the provider's bytes"
    );
}

#[test]
fn a_3x_auth_frame_for_doc_with_token_t_round_trips() {
    // AuthenticationMessage: name, Auth (2), Token (0), varString("t").
    let bytes = frame(&[2, 0, 1, b't']);
    assert_round_trip(
        &bytes,
        Frame::Auth {
            doc: doc(),
            auth: Auth::Token {
                token: "t".into(),
                provider_version: None,
            },
        },
    );
}

#[test]
fn a_4x_auth_frame_carries_the_provider_version() {
    let bytes = frame(&[2, 0, 1, b't', 5, b'4', b'.', b'8', b'.', b'0']);
    assert_round_trip(
        &bytes,
        Frame::Auth {
            doc: doc(),
            auth: Auth::Token {
                token: "t".into(),
                provider_version: Some("4.8.0".into()),
            },
        },
    );
}

#[test]
fn an_empty_token_is_a_token() {
    let bytes = frame(&[2, 0, 0]);
    assert_round_trip(
        &bytes,
        Frame::Auth {
            doc: doc(),
            auth: Auth::Token {
                token: String::new(),
                provider_version: None,
            },
        },
    );
}

#[test]
fn a_sync_step1_of_an_empty_document_round_trips_and_feeds_the_yjs_layer() {
    // Sync (0), then writeSyncStep1: step 1 (0), varUint8Array(empty state vector [0]).
    let bytes = frame(&[0, 0, 1, 0]);
    let decoded = decode(&bytes).unwrap();
    assert_round_trip(
        &bytes,
        Frame::Sync {
            doc: doc(),
            payload: vec![0, 1, 0],
        },
    );

    let message = decoded.to_yjs_message().unwrap();
    let handled = YjsDoc::new().handle(&message, true).unwrap();

    assert_eq!(handled.syncs.len(), 1, "a step 1 is answered with a step 2");
    let step2 = crate::protocol::yjs::step2::message(&handled.syncs[0].update);
    let reply = outgoing::from_yjs_message("doc", &step2).unwrap();
    assert!(matches!(
        decode(&reply).unwrap(),
        Frame::Sync { doc, payload } if doc == "doc" && payload[0] == 1
    ));
}

#[test]
fn a_shared_sync_step_2_behind_its_head_is_the_frame_of_its_message() {
    for len in [0, 200, 70_000] {
        let update = vec![3u8; len];
        let message = crate::protocol::yjs::step2::message(&update);
        let mut sent = outgoing::sync_step2_head("dir/doc", len);
        sent.extend_from_slice(&update);
        assert_eq!(
            sent,
            outgoing::from_yjs_message("dir/doc", &message).unwrap()
        );
    }
}

#[test]
fn an_awareness_frame_round_trips_with_its_length_prefix() {
    // One client (7), clock 1, state "{}", length-prefixed (6 bytes).
    let update = [1, 7, 1, 2, b'{', b'}'];
    let bytes = frame(&[&[1, 6][..], &update].concat());
    assert_round_trip(
        &bytes,
        Frame::Awareness {
            doc: doc(),
            update: update.to_vec(),
        },
    );
    let message = decode(&bytes).unwrap().to_yjs_message().unwrap();
    assert_eq!(message, [&[1, 6][..], &update].concat());
    assert_eq!(
        outgoing::from_yjs_message("doc", &message).unwrap(),
        bytes,
        "y-protocols awareness becomes the same Hocuspocus frame"
    );
}

#[test]
fn query_awareness_stateless_and_a_providers_close_round_trip() {
    assert_round_trip(&frame(&[3]), Frame::QueryAwareness { doc: doc() });
    assert_round_trip(
        &frame(&[5, 2, b'h', b'i']),
        Frame::Stateless {
            doc: doc(),
            payload: "hi".into(),
        },
    );
    assert_round_trip(
        &frame(&[7]),
        Frame::Close {
            doc: doc(),
            reason: None,
        },
    );
}

#[test]
fn server_frames_are_encoded_as_the_provider_reads_them() {
    let scope = b"read-write";
    assert_eq!(
        outgoing::authenticated("doc", Scope::ReadWrite),
        frame(&[&[2, 2, scope.len() as u8][..], scope].concat())
    );
    assert_eq!(
        outgoing::authenticated("doc", Scope::ReadOnly),
        frame(&[&[2, 2, 8][..], b"readonly"].concat())
    );
    assert_eq!(
        outgoing::permission_denied("doc", "no"),
        frame(&[2, 1, 2, b'n', b'o'])
    );
    assert_eq!(outgoing::sync_status("doc", true), frame(&[8, 1]));
    assert_eq!(outgoing::sync_status("doc", false), frame(&[8, 0]));
    assert_eq!(
        outgoing::close("doc", "gone"),
        frame(&[7, 4, b'g', b'o', b'n', b'e'])
    );
    assert_eq!(outgoing::stateless("doc", "x"), frame(&[5, 1, b'x']));
    assert_eq!(outgoing::ping(), [9]);
    assert_eq!(outgoing::pong(), [10]);
    assert_eq!(decode(&[9]).unwrap(), Frame::Ping);
    assert_eq!(decode(&[10]).unwrap(), Frame::Pong);
}

#[test]
fn a_declared_length_beyond_the_frame_is_an_error() {
    // A name claiming 200 bytes, and one claiming 2^32 - 1 bytes, with one byte behind them.
    for bytes in [vec![200, 1, b'a'], vec![0xff, 0xff, 0xff, 0xff, 0x0f, b'a']] {
        assert!(matches!(
            decode(&bytes),
            Err(FrameError::Malformed {
                field: "document name",
                ..
            })
        ));
    }
    assert!(matches!(
        decode(&frame(&[1, 50, 1])),
        Err(FrameError::Malformed {
            field: "awareness update",
            ..
        })
    ));
    assert!(matches!(
        decode(&frame(&[2, 0, 9, b't'])),
        Err(FrameError::Malformed { field: "token", .. })
    ));
}

#[test]
fn malformed_frames_are_typed_errors() {
    assert_eq!(decode(&[]), Err(FrameError::Empty));
    assert_eq!(decode(&frame(&[6, 0])), Err(FrameError::ServerOnly(6)));
    assert_eq!(
        decode(&frame(&[4, 0, 1, 0])),
        Err(FrameError::ServerOnly(4))
    );
    assert_eq!(decode(&frame(&[42])), Err(FrameError::UnknownType(42)));
    assert_eq!(decode(&frame(&[2, 7])), Err(FrameError::UnknownAuthType(7)));
    assert_eq!(decode(&frame(&[8, 2])), Err(FrameError::BadSyncStatus(2)));
    assert_eq!(decode(&frame(&[9])), Err(FrameError::NamedKeepalive(9)));
    assert!(matches!(
        decode(&frame(&[0])),
        Err(FrameError::Malformed {
            field: "sync message",
            ..
        })
    ));
    assert!(matches!(
        decode(&[1, 0xff, 0]),
        Err(FrameError::Malformed {
            field: "document name",
            ..
        })
    ));
    assert!(matches!(
        decode(&DOC),
        Err(FrameError::Malformed {
            field: "message type",
            ..
        })
    ));
}

#[test]
fn the_document_of_a_bad_frame_is_known_when_its_name_reads() {
    assert_eq!(document_of(&frame(&[42])), Some(doc()));
    assert_eq!(document_of(&[200, 1]), None);
    assert_eq!(document_of(&[9]), None);
}

#[test]
fn a_name_with_slash_space_and_non_ascii_round_trips() {
    let name = "org/ドキュメント 1";
    let mut bytes = vec![name.len() as u8];
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(3);
    assert_round_trip(
        &bytes,
        Frame::QueryAwareness {
            doc: name.to_owned(),
        },
    );
}

#[test]
fn a_frame_not_from_the_yjs_layer_is_refused_by_from_yjs_message() {
    assert_eq!(
        outgoing::from_yjs_message("doc", &[2, 0]),
        Err(FrameError::UnknownType(2))
    );
    assert!(outgoing::from_yjs_message("doc", &[]).is_err());
}
