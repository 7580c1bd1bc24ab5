//! The reader's listening connection: made (and made again after a failure, with backoff),
//! what it hears handed on, and its subscriptions kept to the followed documents.

use std::collections::HashSet;

use actix::prelude::*;

use super::{record_lag, Apply, Ears, Listening, LogReader};
use crate::doc::DocId;
use crate::log::{Heard, Notice};
use crate::metrics as m;
use crate::storage::{CacheError, Listener};

impl LogReader {
    /// Makes a listening connection; a failure waits out the backoff and tries again.
    pub(super) fn listen(&mut self, ctx: &mut Context<Self>) {
        let cache = self.cache.clone();
        let fut = async move { cache.listen().await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(listener) => act.listening_on(listener, ctx),
            Err(e) => {
                act.failed("listening to the document channels", &e);
                ctx.run_later(act.backoff(), |act, ctx| act.listen(ctx));
            }
        }));
    }

    fn listening_on(&mut self, listener: Listener, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let heard = ctx.spawn(
            fut::wrap_stream::<_, Self>(listener.heard)
                .map(move |heard, act, ctx| act.heard(generation, heard, ctx))
                .finish()
                .map(move |(), act, ctx| {
                    let closed = CacheError::Unreachable("the listening connection closed".into());
                    act.lost(generation, &closed, ctx);
                }),
        );
        self.listening = Listening::Up(Ears {
            channels: listener.channels,
            heard,
            subscribed: HashSet::default(),
            busy: false,
        });
        if self.impaired && self.follows.is_empty() {
            self.recovered();
        }
        self.sync(ctx);
    }

    /// Gives up the listening connection `generation` (if it is still the current one) and
    /// makes another after the backoff.
    pub(super) fn lost(&mut self, generation: u64, error: &CacheError, ctx: &mut Context<Self>) {
        if generation != self.generation {
            return;
        }
        let Listening::Up(ears) = std::mem::replace(&mut self.listening, Listening::Down) else {
            return;
        };
        ctx.cancel_future(ears.heard);
        self.failed("listening to the document channels", error);
        ctx.run_later(self.backoff(), |act, ctx| act.listen(ctx));
    }

    fn heard(&mut self, generation: u64, heard: Heard, ctx: &mut Context<Self>) {
        if generation != self.generation {
            return;
        }
        let Some(f) = self.follows.get_mut(&heard.doc) else {
            return; // unfollowed while its unsubscription was in flight
        };
        match heard.notice {
            Notice::Entry { prev, entry } if entry.pos > f.position => {
                if prev == Some(f.position) {
                    // It follows on what the room has: no read needed.
                    f.position = entry.pos;
                    if entry.replica != self.replica {
                        record_lag(std::iter::once(entry.pos));
                        metrics::counter!(m::LOG_ENTRIES_RECEIVED).increment(1);
                        f.room.do_send(Apply {
                            entries: vec![entry],
                            events: Vec::new(),
                        });
                    }
                } else if entry.replica != self.replica {
                    // Something before it is missing here: the log has it.
                    self.moved.insert(heard.doc);
                    self.read(ctx);
                }
            }
            Notice::Entry { .. } => {}
            Notice::Saved { prev, pos } => {
                // This replica's room has the entry: it only moves the position, as its notice
                // on the channel would.
                if pos > f.position && prev == Some(f.position) {
                    f.position = pos;
                } else if pos > f.position && prev.is_none() {
                    // Redis knew no entry before it (a new document's first save): where the
                    // room stands against the log is learnt from a read now, not at the next
                    // poll, which a flush's trim may beat (the room would then reload).
                    self.moved.insert(heard.doc);
                    self.read(ctx);
                }
            }
            Notice::Appended { replica, pos } => {
                if replica != self.replica && pos > f.position {
                    self.moved.insert(heard.doc);
                    self.read(ctx);
                }
            }
            Notice::Event(event) => {
                if event.replica != self.replica {
                    f.room.do_send(Apply {
                        entries: Vec::new(),
                        events: vec![event],
                    });
                }
            }
        }
    }

    /// Brings the connection's subscriptions to the followed documents: unsubscribes first,
    /// then subscribes, one command at a time.
    pub(super) fn sync(&mut self, ctx: &mut Context<Self>) {
        let Listening::Up(ears) = &mut self.listening else {
            return;
        };
        if ears.busy {
            return;
        }
        let gone: Vec<DocId> = ears
            .subscribed
            .iter()
            .filter(|doc| !self.follows.contains_key(*doc))
            .cloned()
            .collect();
        let (subscribe, docs) = if gone.is_empty() {
            let new: Vec<DocId> = self
                .follows
                .keys()
                .filter(|doc| !ears.subscribed.contains(*doc))
                .cloned()
                .collect();
            (true, new)
        } else {
            (false, gone)
        };
        if docs.is_empty() {
            return;
        }
        ears.busy = true;
        let (channels, generation) = (ears.channels.clone(), self.generation);
        let fut = async move {
            let res = match subscribe {
                true => channels.subscribe(&docs).await,
                false => channels.unsubscribe(&docs).await,
            };
            (res, docs)
        };
        ctx.spawn(fut.into_actor(self).map(move |(res, docs), act, ctx| {
            if generation != act.generation {
                return;
            }
            if let Err(e) = res {
                act.lost(generation, &e, ctx);
                return;
            }
            let Listening::Up(ears) = &mut act.listening else {
                return;
            };
            ears.busy = false;
            if subscribe {
                let followed = docs.iter().filter(|doc| act.follows.contains_key(*doc));
                act.moved.extend(followed.cloned());
                ears.subscribed.extend(docs);
                act.read(ctx);
            } else {
                for doc in &docs {
                    ears.subscribed.remove(doc);
                }
            }
            act.sync(ctx);
        }));
    }
}
