//! Frames sent as the connection drains (issue 26, item 3).
//!
//! actix-web-actors encodes every frame a session writes into one buffer at its next poll,
//! copying the payload, and the HTTP layer copies that buffer into its write buffer, whatever
//! the socket can take: 150 joiners of a 20 MiB document would each hold the document in send
//! buffers, twice, at once. A frame in the [`Outbox`] is handed to the connection in slices of
//! its parts instead (`Bytes` clones of the shared answer, never copies), one slice each time
//! the connection asks for more: the HTTP layer polls a response body only while its write
//! buffer holds less than 32 KiB, so it asks as its socket drains. A joiner then holds a slice
//! and that buffer; the document itself is held once, by the room that shares it.
//!
//! Small frames with nothing queued ahead go to the context as before. A frame the session
//! writes while the outbox holds any waits behind them ([`Outbox::send`]), so the client gets
//! the session's frames in the order it wrote them. Control frames (Ping, Pong, Close) go to the
//! context and may overtake queued frames, but never cut into the frame being sent: what the
//! context has ready waits for its last byte ([`Drained`]). Once the session closes, the queued
//! frames not yet started are dropped.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix::prelude::*;
use actix_web::body::{BodySize, MessageBody};
use actix_web_actors::ws;
use bytes::{Bytes, BytesMut};

/// How much of a queued frame is handed to the connection at a time.
const SLICE: usize = 64 * 1024;

/// A session's queue of frames sent as its connection drains; the session and its response
/// body ([`Drained`]) share it, on the session's thread. Cloning is shallow.
#[derive(Clone, Default)]
pub struct Outbox(Rc<RefCell<Queue>>);

#[derive(Default)]
struct Queue {
    frames: VecDeque<Queued>,
    closed: bool,
}

struct Queued {
    /// What is left to hand over: the WebSocket header, then the payload's parts.
    parts: VecDeque<Bytes>,
    started: bool,
    /// Told once the last byte is handed to the connection.
    sent: Box<dyn FnOnce()>,
}

impl Outbox {
    /// Sends a binary frame whose payload is `parts`, in order; `sent` is told once it is
    /// handed to the connection (at once for a small frame with nothing ahead of it). After
    /// [`Outbox::close`], nothing is sent.
    pub fn send<A>(
        &self,
        ctx: &mut ws::WebsocketContext<A>,
        parts: Vec<Bytes>,
        sent: impl FnOnce() + 'static,
    ) where
        A: Actor<Context = ws::WebsocketContext<A>>,
    {
        if let Some(now) = self.queue(parts, sent) {
            ctx.binary(now);
        }
    }

    /// Queues a frame, or answers it whole to be written to the context at once (small, and
    /// nothing queued ahead of it).
    fn queue(&self, parts: Vec<Bytes>, sent: impl FnOnce() + 'static) -> Option<Bytes> {
        let mut queue = self.0.borrow_mut();
        if queue.closed {
            return None;
        }
        let len: usize = parts.iter().map(Bytes::len).sum();
        if queue.frames.is_empty() && len <= SLICE {
            drop(queue);
            sent();
            return Some(joined(parts, len));
        }
        let mut queued: VecDeque<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        queued.push_front(header(len));
        queue.frames.push_back(Queued {
            parts: queued,
            started: false,
            sent: Box::new(sent),
        });
        None
    }

    /// The session is closing: the frames not yet started are dropped, and nothing more is
    /// queued. A frame being sent goes on to its end, so the Close after it is well formed.
    pub fn close(&self) {
        let mut queue = self.0.borrow_mut();
        queue.closed = true;
        queue.frames.retain(|f| f.started);
    }

    /// A frame is partly handed over: nothing else may go to the connection before its end.
    fn sending(&self) -> bool {
        self.0.borrow().frames.front().is_some_and(|f| f.started)
    }

    /// The next slice of the frame being sent, or of the next one queued.
    fn next_slice(&self) -> Option<Bytes> {
        let mut queue = self.0.borrow_mut();
        let frame = queue.frames.front_mut()?;
        frame.started = true;
        let part = frame.parts.front_mut()?;
        let slice = match part.len() > SLICE {
            true => part.split_to(SLICE),
            false => frame.parts.pop_front().unwrap_or_default(),
        };
        if frame.parts.is_empty() {
            let done = queue.frames.pop_front();
            drop(queue);
            if let Some(done) = done {
                (done.sent)();
            }
        }
        Some(slice)
    }
}

/// A session's response body: the bytes of its WebSocket context, and the outbox's frames
/// between them. The session runs when the body is polled (the context is), so it runs as the
/// connection asks for bytes.
pub struct Drained<B> {
    context: B,
    outbox: Outbox,
    /// What the context produced while a frame was being sent, for after its last byte: its
    /// control frames (every data frame goes behind the frame, into the outbox).
    held: VecDeque<Bytes>,
    held_bytes: usize,
    /// The context ended (the session stopped); the body ends once what is started is out.
    ended: bool,
}

impl<B> Drained<B> {
    pub fn new(context: B, outbox: Outbox) -> Self {
        Drained {
            context,
            outbox,
            held: VecDeque::new(),
            held_bytes: 0,
            ended: false,
        }
    }
}

impl<B: MessageBody + Unpin> Drained<B> {
    /// Polls the context (runs the session) once; its bytes are held for after the frame
    /// being sent. Answers an error to end the body with.
    fn poll_context(&mut self, cx: &mut Context<'_>) -> Option<B::Error> {
        match Pin::new(&mut self.context).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.held_bytes += bytes.len();
                self.held.push_back(bytes);
            }
            Poll::Ready(Some(Err(e))) => return Some(e),
            Poll::Ready(None) => {
                self.ended = true;
                self.outbox.close();
            }
            Poll::Pending => {}
        }
        None
    }
}

impl<B: MessageBody + Unpin> MessageBody for Drained<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if this.outbox.sending() {
                // The session keeps reading its input and its mailbox, and its timers run,
                // while a large frame goes out; what it writes meanwhile is bounded.
                if this.held_bytes < SLICE && !this.ended {
                    if let Some(e) = this.poll_context(cx) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                if let Some(slice) = this.outbox.next_slice() {
                    return Poll::Ready(Some(Ok(slice)));
                }
            }
            if let Some(bytes) = this.held.pop_front() {
                this.held_bytes -= bytes.len();
                return Poll::Ready(Some(Ok(bytes)));
            }
            if !this.ended {
                if let Some(e) = this.poll_context(cx) {
                    return Poll::Ready(Some(Err(e)));
                }
                if !this.held.is_empty() {
                    continue;
                }
            }
            if let Some(slice) = this.outbox.next_slice() {
                return Poll::Ready(Some(Ok(slice)));
            }
            return match this.ended {
                true => Poll::Ready(None),
                // The context registered the waker: the session wakes the body when it has
                // something to write, and only it queues frames.
                false => Poll::Pending,
            };
        }
    }
}

/// One buffer of `parts` (a copy only if there are several; small frames only).
fn joined(mut parts: Vec<Bytes>, len: usize) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut buf = BytesMut::with_capacity(len);
    for part in &parts {
        buf.extend_from_slice(part);
    }
    buf.freeze()
}

/// The header of an unmasked, final binary WebSocket frame of `len` bytes (RFC 6455, 5.2), as
/// a server sends it.
fn header(len: usize) -> Bytes {
    const FIN_BINARY: u8 = 0x82;
    let mut head = vec![FIN_BINARY];
    match len {
        0..=125 => head.push(len as u8),
        126..=0xFFFF => {
            head.push(126);
            head.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            head.push(127);
            head.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    Bytes::from(head)
}

#[cfg(test)]
mod tests;
