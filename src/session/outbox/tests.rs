//! The outbox against a scripted context: large frames leave in slices of the shared buffer,
//! what the context writes meanwhile waits for the frame's end, and a closed session starts
//! nothing new.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::*;

/// What a session's context yields, one poll at a time: bytes, its end (`None`), or nothing yet
/// (an empty script).
#[derive(Clone, Default)]
struct Script(Rc<RefCell<VecDeque<Option<Bytes>>>>, Rc<Cell<usize>>);

impl Script {
    fn write(&self, bytes: &'static [u8]) {
        self.0
            .borrow_mut()
            .push_back(Some(Bytes::from_static(bytes)));
    }

    fn end(&self) {
        self.0.borrow_mut().push_back(None);
    }

    /// How often the body polled the context: each time, the session ran.
    fn polls(&self) -> usize {
        self.1.get()
    }
}

impl MessageBody for Script {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.1.set(self.1.get() + 1);
        match self.0.borrow_mut().pop_front() {
            Some(Some(bytes)) => Poll::Ready(Some(Ok(bytes))),
            Some(None) => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// Everything the body hands the connection until it waits or ends, chunk by chunk.
async fn drain(body: &mut Drained<Script>) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    loop {
        let next = poll_fn(|cx| match Pin::new(&mut *body).poll_next(cx) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(next) => Poll::Ready(Some(next)),
        })
        .await;
        match next {
            Some(Some(Ok(chunk))) => chunks.push(chunk),
            Some(None) | None => return chunks,
        }
    }
}

fn shared_update(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>())
}

/// Whether `slice` lies inside `buffer`'s memory (a view of it, not a copy).
fn inside(slice: &Bytes, buffer: &Bytes) -> bool {
    let (start, end) = (
        buffer.as_ptr() as usize,
        buffer.as_ptr() as usize + buffer.len(),
    );
    let at = slice.as_ptr() as usize;
    at >= start && at + slice.len() <= end
}

#[test]
fn headers_are_what_a_websocket_client_parses_for_every_length_class() {
    for len in [0, 1, 125, 126, 65_535, 65_536, 20 << 20] {
        let head = header(len);
        let (parsed, length) = FrameHeader::parse(&mut Cursor::new(&head[..]))
            .unwrap()
            .expect("a whole header");
        assert!(parsed.is_final && parsed.mask.is_none(), "{len}");
        assert_eq!(parsed.opcode, OpCode::Data(Data::Binary));
        assert_eq!(length, len as u64);
        let expected_size = match len {
            0..=125 => 2,
            126..=65_535 => 4,
            _ => 10,
        };
        assert_eq!(head.len(), expected_size, "{len}");
    }
}

#[actix::test]
async fn a_large_frame_leaves_in_slices_of_the_shared_buffer_and_then_tells_its_sender() {
    let outbox = Outbox::default();
    let mut body = Drained::new(Script::default(), outbox.clone());
    let update = shared_update(5 * SLICE + 7);
    let sent = Rc::new(Cell::new(false));
    let told = sent.clone();

    let head = Bytes::from_static(b"\x00\x01\x06");
    let now = outbox.queue(vec![head, update.clone()], move || told.set(true));
    assert!(now.is_none(), "too large to be written at once");
    assert!(!sent.get());

    let chunks = drain(&mut body).await;
    assert!(sent.get(), "told once its last byte is out");
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    assert_eq!(&bytes[..2], &[0x82, 127], "one binary frame, 64-bit length");
    assert_eq!(&bytes[10..13], b"\x00\x01\x06");
    assert!(bytes[13..] == update[..], "the update, whole and in order");
    let of_update = &chunks[2..];
    assert_eq!(of_update.len(), 6, "slices of at most {SLICE} bytes");
    for slice in of_update {
        assert!(slice.len() <= SLICE);
        assert!(
            inside(slice, &update),
            "a view of the shared update, not a copy"
        );
    }
}

#[actix::test]
async fn the_session_runs_while_a_large_frame_goes_out_and_what_it_writes_follows_it() {
    let script = Script::default();
    let outbox = Outbox::default();
    let mut body = Drained::new(script.clone(), outbox.clone());
    assert!(outbox
        .queue(vec![shared_update(8 * SLICE)], || {})
        .is_none());
    // Queued behind it, though small: frames keep the order the session wrote them in.
    assert!(outbox
        .queue(vec![Bytes::from_static(b"after")], || {})
        .is_none());
    assert_eq!(drain_one(&mut body).await.len(), 10, "the frame's header");

    // The session writes a Ping to its context while the frame is on its way.
    script.write(b"\x89\x00");
    let polls = script.polls();
    let chunks = drain(&mut body).await;

    assert!(
        script.polls() - polls >= 8,
        "the session ran at every slice, its Ping waiting meanwhile"
    );
    let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
    assert_eq!(sizes[..8], [SLICE; 8], "the frame, whole: {sizes:?}");
    assert_eq!(&chunks[8][..], b"\x89\x00", "then the Ping");
    assert_eq!(&chunks[9][..], b"\x82\x05", "then the frame queued behind");
    assert_eq!(&chunks[10][..], b"after");
    assert_eq!(chunks.len(), 11);
}

#[actix::test]
async fn a_closing_session_finishes_the_frame_on_its_way_and_starts_no_other() {
    let script = Script::default();
    let outbox = Outbox::default();
    let mut body = Drained::new(script.clone(), outbox.clone());
    let queued_sent = Rc::new(Cell::new(false));
    let told = queued_sent.clone();
    assert!(outbox
        .queue(vec![shared_update(2 * SLICE)], || {})
        .is_none());
    assert!(outbox
        .queue(vec![shared_update(2 * SLICE)], move || told.set(true))
        .is_none());
    let first = drain_one(&mut body).await;
    assert_eq!(first.len(), 10, "the first frame's header");

    // The session closes: its Close goes to the context, then it stops.
    outbox.close();
    script.write(b"\x88\x02\x03\xe8");
    script.end();
    let rest = drain(&mut body).await;

    let sizes: Vec<usize> = rest.iter().map(Bytes::len).collect();
    assert_eq!(
        sizes,
        [SLICE, SLICE, 4],
        "the first frame's payload, then the Close"
    );
    assert!(!queued_sent.get(), "the second frame never started");
    assert!(outbox
        .queue(vec![Bytes::from_static(b"late")], || {})
        .is_none());
    assert!(drain(&mut body).await.is_empty(), "the body has ended");
}

async fn drain_one(body: &mut Drained<Script>) -> Bytes {
    poll_fn(|cx| Pin::new(&mut *body).poll_next(cx))
        .await
        .expect("a chunk")
        .unwrap()
}
