//! The codecs against frames built the way each server builds them.

use super::*;

#[test]
fn yjs_update_frames_carry_the_marker_back_out() {
    let mut sender = Codec::new(Protocol::Yjs, "d".into(), 7, 0);
    let m = Marker {
        conn: 3,
        seq: 9,
        sent_us: 123_456,
    };
    let frame = sender.update(9, &m);
    let mut receiver = Codec::new(Protocol::Yjs, "d".into(), 8, 0);
    let mut out = Incoming::default();
    receiver.on_frame(&frame, &mut out);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.markers, vec![m]);
}

/// A Hocuspocus frame for `doc`: the name, the type, then `body`.
fn hocus_frame(doc: &str, kind: u32, body: impl FnOnce(&mut EncoderV1)) -> Message {
    let mut e = EncoderV1::new();
    e.write_string(doc);
    e.write_var(kind);
    body(&mut e);
    Message::binary(e.to_vec())
}

#[test]
fn the_hocuspocus_handshake_answers_step1_with_a_sync_step2_and_skips_its_status() {
    let mut c = Codec::new(Protocol::Hocuspocus, "d".into(), 7, 0);
    let mut out = Incoming::default();
    c.on_frame(
        &hocus_frame("d", MSG_AUTH, |e| {
            e.write_var(AUTH_OK);
            e.write_string("read-write");
        }),
        &mut out,
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    let step1 = out.replies[0].clone().into_data();
    assert_eq!(&step1[..4], &[1, b'd', MSG_SYNC as u8, SYNC_STEP1 as u8]);

    // docroom sends its own step 1 and step 2 after Authenticated.
    let sv = StateVector::default().encode_v1();
    c.on_frame(
        &hocus_frame("d", MSG_SYNC, |e| {
            e.write_var(SYNC_STEP1);
            e.write_buf(&sv);
        }),
        &mut out,
    );
    let reply = out.replies[0].clone().into_data();
    assert_eq!(
        &reply[..4],
        &[1, b'd', MSG_SYNC as u8, SYNC_STEP2 as u8],
        "a provider's answer"
    );
    c.on_frame(
        &hocus_frame("d", MSG_SYNC, |e| {
            e.write_var(SYNC_STEP2);
            e.write_buf([0, 0]);
        }),
        &mut out,
    );
    assert!(out.ready);

    let status = hocus_frame("d", MSG_SYNC_STATUS, |e| e.write_var(1u32));
    c.on_frame(&status, &mut out);
    assert!(
        out.acks.is_empty(),
        "the status of our step 2 is not an update's ack"
    );
    c.on_frame(&status, &mut out);
    assert_eq!(out.acks, vec![None]);
}

#[test]
fn a_closed_document_is_an_error_and_pings_get_a_bare_pong() {
    let mut c = Codec::new(Protocol::Hocuspocus, "d".into(), 7, 0);
    let mut out = Incoming::default();
    c.on_frame(
        &hocus_frame("d", MSG_CLOSE, |e| e.write_string("token expired")),
        &mut out,
    );
    assert_eq!(
        out.error.as_deref(),
        Some("document closed by the server: token expired")
    );
    c.on_frame(&Message::binary(PING_FRAME.to_vec()), &mut out);
    assert!(out.error.is_none());
    assert_eq!(out.replies, vec![Message::binary(PONG_FRAME.to_vec())]);
}

#[test]
fn seed_updates_insert_plain_text_and_carry_no_marker() {
    let mut seeder = Codec::new(Protocol::Yjs, "d".into(), 7, 0);
    let frame = seeder.seed_update(1024).expect("yjs codec seeds");
    let y = seeder.yjs.as_ref().unwrap();
    assert_eq!(y.text.len(&y.doc.transact()), 1024);
    let mut receiver = Codec::new(Protocol::Yjs, "d".into(), 8, 0);
    let mut out = Incoming::default();
    receiver.on_frame(&frame, &mut out);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(out.markers.is_empty());
    assert!(Codec::new(Protocol::Json, "d".into(), 9, 0)
        .seed_update(1)
        .is_none());
}

#[test]
fn hocuspocus_frames_are_prefixed_with_the_document_name() {
    let mut c = Codec::new(Protocol::Hocuspocus, "doc-1".into(), 7, 0);
    let auth = c.open().remove(0).into_data();
    assert_eq!(&auth[..6], b"\x05doc-1");
    assert_eq!(auth[6], MSG_AUTH as u8);
}
