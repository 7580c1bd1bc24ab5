//! `FrameGate`: every WebSocket frame a client sends is measured by its header, before the
//! codec buffers it.
//!
//! actix-http's codec compares a frame's length with `frame_size` only once the whole frame has
//! arrived, and buffers it until then: a client declaring a 10 GiB frame would be buffered for
//! as long as it kept sending, and one retrying a state over the limit would be read whole on
//! every attempt. The gate sits between the socket and the codec, reads each frame's header (2
//! to 14 bytes) as it passes, and ends the input at the first header that declares more than the
//! limit: the codec still decodes every frame before it, then the session finds the input ended
//! with the gate's [`Verdict`] and closes with 1009, as for a frame the codec refused itself.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// The longest frame header (RFC 6455 §5.2): two bytes, a 64-bit length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Wraps a connection's input: frames up to `max` bytes pass, the first longer one ends it.
pub struct FrameGate<S> {
    input: S,
    lengths: Lengths,
    verdict: Verdict,
    ended: bool,
}

/// What the gate found, for the session: shared between the two (both live on the connection's
/// worker thread), set once.
#[derive(Clone, Debug, Default)]
pub struct Verdict(Rc<Cell<Option<u64>>>);

impl Verdict {
    /// The declared length of the frame the gate refused, if it refused one.
    pub fn refused(&self) -> Option<u64> {
        self.0.get()
    }
}

impl<S> FrameGate<S> {
    pub fn new(input: S, max: usize) -> (Self, Verdict) {
        let verdict = Verdict::default();
        let gate = FrameGate {
            input,
            lengths: Lengths::new(max as u64),
            verdict: verdict.clone(),
            ended: false,
        };
        (gate, verdict)
    }
}

impl<S> Stream for FrameGate<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let chunk = match Pin::new(&mut self.input).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => chunk,
            other => return other,
        };
        match self.lengths.pass(&chunk) {
            Pass::All => Poll::Ready(Some(Ok(chunk))),
            Pass::Before { at, declared } => {
                self.ended = true;
                self.verdict.0.set(Some(declared));
                // Not the refused header itself: the codec would reserve room for its frame.
                match at {
                    0 => Poll::Ready(None),
                    at => Poll::Ready(Some(Ok(chunk.slice(..at)))),
                }
            }
        }
    }
}

/// Where the gate stands in the client's byte stream: inside a header, or inside a payload.
#[derive(Debug)]
struct Lengths {
    max: u64,
    header: [u8; MAX_HEADER],
    /// Bytes of the current header read so far; 0 inside a payload or between frames.
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
}

/// What of a chunk may reach the codec.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    All,
    /// The bytes before `at` only: a header starting there (or, at 0, in an earlier chunk)
    /// declares a frame of `declared` bytes, over the limit.
    Before {
        at: usize,
        declared: u64,
    },
}

impl Lengths {
    fn new(max: u64) -> Self {
        Lengths {
            max,
            header: [0; MAX_HEADER],
            have: 0,
            left: 0,
        }
    }

    fn pass(&mut self, chunk: &[u8]) -> Pass {
        let mut at = 0;
        // Where the header being read began in this chunk (0: in an earlier one).
        let mut header_at = 0;
        while at < chunk.len() {
            if self.left > 0 {
                let skip = self.left.min((chunk.len() - at) as u64);
                self.left -= skip;
                at += skip as usize;
                continue;
            }
            if self.have == 0 {
                header_at = at;
            }
            self.header[self.have] = chunk[at];
            self.have += 1;
            at += 1;
            let Some(declared) = payload_length(&self.header[..self.have]) else {
                continue;
            };
            self.have = 0;
            if declared > self.max {
                return Pass::Before {
                    at: header_at,
                    declared,
                };
            }
            self.left = declared;
        }
        Pass::All
    }
}

/// The payload length a complete header declares; `None` while more of the header is to come.
fn payload_length(header: &[u8]) -> Option<u64> {
    let second = *header.get(1)?;
    let (extended, short) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let masked = if second & 0x80 != 0 { 4 } else { 0 };
    if header.len() < 2 + extended + masked {
        return None;
    }
    Some(short.unwrap_or_else(|| {
        header[2..2 + extended]
            .iter()
            .fold(0u64, |n, b| (n << 8) | u64::from(*b))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header declaring `len` payload bytes.
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x82];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = header(len as u64);
        f.resize(f.len() + len, 7);
        f
    }

    #[test]
    fn frames_within_the_limit_pass_whatever_the_chunks_cut_through() {
        let stream: Vec<u8> =
            [frame(0), frame(5), frame(300), frame(70_000), frame(1_000)].concat();
        for cut in [1, 3, 13, 14, 1_000, stream.len()] {
            let mut lengths = Lengths::new(70_000);
            for chunk in stream.chunks(cut) {
                assert_eq!(lengths.pass(chunk), Pass::All, "chunks of {cut}");
            }
            assert_eq!((lengths.have, lengths.left), (0, 0), "chunks of {cut}");
        }
    }

    #[test]
    fn a_header_declaring_more_than_the_limit_stops_the_input_where_it_starts() {
        let small = frame(10);
        let stream = [small.clone(), header(10 << 30)].concat();
        let mut lengths = Lengths::new(1 << 20);
        assert_eq!(
            lengths.pass(&stream),
            Pass::Before {
                at: small.len(),
                declared: 10 << 30
            }
        );

        // The same header cut in two: the first part has gone through already.
        let mut lengths = Lengths::new(1 << 20);
        let (first, second) = stream.split_at(small.len() + 3);
        assert_eq!(lengths.pass(first), Pass::All);
        assert_eq!(
            lengths.pass(second),
            Pass::Before {
                at: 0,
                declared: 10 << 30
            }
        );
    }

    #[test]
    fn a_frame_of_exactly_the_limit_passes_and_one_byte_more_does_not() {
        let mut lengths = Lengths::new(200);
        assert_eq!(lengths.pass(&frame(200)), Pass::All);
        assert_eq!(
            lengths.pass(&header(201)),
            Pass::Before {
                at: 0,
                declared: 201
            }
        );
    }
}
