//! Saves, gathered: every save that comes in the same turn of the thread shares one SAVE call
//! (`redis_scripts::SAVE`), each document's as the single save it would be on its own. One
//! script call per tick instead of one per save is most of what a save costs Redis (a call's
//! parsing, its reply, the script's start: at six saves a call, a save costs Redis half the
//! instructions it does alone). The waiting that makes saves share a tick is the supervisor's
//! (its save inbox lingers, `supervisor/inbox.rs`): what it drains at once arrives here in one
//! turn.
//!
//! The notice of an append goes on the document's channel only if another replica follows the
//! document (`doc:{id}:followers`, kept by the listening connection, `channels.rs`); this
//! replica's reader hears of its own appends from the answer instead ([`Notice::Saved`]), so a
//! single replica pays for no fan-out at all. Each call also says whether a replica other than
//! this one follows any document (`following`); while a recent call found none, events are not
//! published either (`channels.rs`): nobody would hear them.

use foldhash::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{CacheError, CacheResult, RedisCache};
use crate::doc::{DocId, Stamp, Version};
use crate::log::notice::{Heard, Notice, CARRY_MAX_BYTES};
use crate::log::LogPos;
use crate::storage::redis_scripts::SAVE;
use crate::storage::{Saved, Written};

/// Saves per SAVE call at most: a script blocks Redis while it runs, and a call of a few
/// hundred small appends stays well under a millisecond.
const MAX_PER_CALL: usize = 128;

/// How long a SAVE call's finding that no other replica follows any document stands: events
/// are not published meanwhile. Under load calls come every few milliseconds, each reading
/// `following` anew; past this an event is published whatever the last call found, so a
/// replica that starts following misses no event for longer than this, or than the next call.
const ALONE_FOR: Duration = Duration::from_millis(500);

struct Queued {
    version: Version,
    restore: bool,
    answer: oneshot::Sender<CacheResult<Saved>>,
}

#[derive(Default)]
struct Gathering {
    saves: Vec<Queued>,
    /// A task will send what gathers once this turn is over.
    open: bool,
}

/// The saves gathering for the next call, and where this replica's reader hears of its own
/// appends. Shared by the clones of one [`RedisCache`].
#[derive(Default)]
pub(super) struct Saves {
    gathering: Mutex<Gathering>,
    /// The current listening connection's own-notice queue (see [`RedisCache::own_notices`]).
    own: Mutex<Option<mpsc::UnboundedSender<Heard>>>,
    /// When this replica's saves last renewed each document's keys' TTL.
    renewed: Mutex<Renewed>,
    /// When the last answered SAVE call found no other replica following any document; `None`
    /// if it found one (or no call has answered yet).
    alone_at: Mutex<Option<Instant>>,
}

/// When this replica's saves last renewed each document's keys' TTL, so a save renews them only
/// once a tenth of the TTL has passed: the keys then live at least nine tenths of the TTL after
/// any save. Redis decides where this replica cannot know: a save that finds no `head` (new
/// keys, or keys Redis lost) renews them all whatever this says.
#[derive(Default)]
struct Renewed {
    at: HashMap<DocId, Instant>,
    /// When `at` was last cleared of documents renewed long ago.
    pruned: Option<Instant>,
}

impl Renewed {
    /// Whether a save of `doc` at `now` renews its keys (it is counted as renewed if so).
    fn due(&mut self, doc: &DocId, now: Instant, every: Duration) -> bool {
        if self.pruned.is_none_or(|t| now.duration_since(t) >= every) {
            self.at.retain(|_, t| now.duration_since(*t) < every);
            self.pruned = Some(now);
        }
        match self.at.get(doc) {
            Some(t) if now.duration_since(*t) < every => false,
            _ => {
                self.at.insert(doc.clone(), now);
                true
            }
        }
    }

    /// A call that would have renewed `doc`'s keys failed.
    fn failed(&mut self, doc: &DocId) {
        self.at.remove(doc);
    }
}

impl Saves {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gathering> {
        self.gathering.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn renewed(&self) -> std::sync::MutexGuard<'_, Renewed> {
        self.renewed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where this replica's own appends are reported from now on: the listening connection
    /// just made (an earlier one's queue is dropped with it).
    pub(super) fn listen(&self) -> mpsc::UnboundedReceiver<Heard> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.own.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// Whether the last SAVE call, within [`ALONE_FOR`], found no other replica following any
    /// document: an event published now would reach nobody, and no other replica waits to hear
    /// of an append.
    pub(super) fn alone(&self) -> bool {
        let at = *self.alone_at.lock().unwrap_or_else(|p| p.into_inner());
        at.is_some_and(|t| t.elapsed() < ALONE_FOR)
    }

    fn found_others(&self, others: bool, at: Instant) {
        *self.alone_at.lock().unwrap_or_else(|p| p.into_inner()) = (!others).then_some(at);
    }

    fn report(&self, heard: Heard) {
        if let Some(tx) = self.own.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(heard);
        }
    }
}

impl RedisCache {
    /// SAVE: an append, or a restore (see [`crate::storage::DocumentLog::restore`]), in the
    /// next call.
    pub(super) async fn append(&self, v: &Version, restore: bool) -> CacheResult<Saved> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            version: v.clone(),
            restore,
            answer,
        };
        let start = {
            let mut g = self.saves.lock();
            g.saves.push(queued);
            !std::mem::replace(&mut g.open, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.send_gathered().await });
        }
        answered
            .await
            .unwrap_or_else(|_| Err(CacheError::Unreachable("the save was dropped".into())))
    }

    /// Once the saves made in this turn of the thread are in, sends them all, in calls of at
    /// most [`MAX_PER_CALL`] saves, side by side.
    async fn send_gathered(self) {
        tokio::task::yield_now().await;
        let saves = {
            let mut g = self.saves.lock();
            g.open = false;
            std::mem::take(&mut g.saves)
        };
        let mut calls = Vec::new();
        let mut saves = saves.into_iter().peekable();
        while saves.peek().is_some() {
            let call: Vec<Queued> = saves.by_ref().take(MAX_PER_CALL).collect();
            calls.push(self.send(call));
        }
        futures_util::future::join_all(calls).await;
    }

    /// One SAVE call; answers each save, and tells this replica's reader of each append.
    async fn send(&self, call: Vec<Queued>) {
        let sent = Instant::now();
        match self.save_call(&call).await {
            Ok((answers, others)) => {
                self.saves.found_others(others, sent);
                for (q, (code, id, prev)) in call.into_iter().zip(answers) {
                    let position = LogPos::parse(&id);
                    let written = match code {
                        1 => Written::Stored,
                        2 => Written::Duplicate,
                        _ => Written::Superseded,
                    };
                    if let (Written::Stored, Some(pos), false) = (written, position, q.restore) {
                        self.saves.report(Heard {
                            doc: q.version.doc.clone(),
                            notice: Notice::Saved {
                                prev: LogPos::parse(&prev),
                                pos,
                            },
                        });
                    }
                    let _ = q.answer.send(Ok(Saved { written, position }));
                }
            }
            Err(e) => {
                {
                    let mut renewed = self.saves.renewed();
                    for q in &call {
                        renewed.failed(&q.version.doc);
                    }
                }
                for q in call {
                    let _ = q.answer.send(Err(shared(&e)));
                }
            }
        }
    }

    /// The answer to each save, and whether another replica followed any document.
    async fn save_call(&self, call: &[Queued]) -> CacheResult<(Vec<(i64, String, String)>, bool)> {
        let mut conn = self.connection().await?;
        let mut invocation = SAVE.prepare_invoke();
        invocation
            .key(self.key_modified())
            .key(self.key_changed())
            .key(self.key_following());
        invocation
            .arg(self.settings.ttl_secs)
            .arg(&*self.settings.replica)
            .arg(CARRY_MAX_BYTES)
            .arg(u8::from(self.settings.mark_changes))
            .arg(&self.settings.key_prefix);
        let renews: Vec<bool> = {
            let (now, every) = (
                Instant::now(),
                Duration::from_secs(self.settings.ttl_secs) / 10,
            );
            let mut renewed = self.saves.renewed();
            call.iter()
                .map(|q| renewed.due(&q.version.doc, now, every))
                .collect()
        };
        for (q, renew) in call.iter().zip(renews) {
            let v = &q.version;
            invocation
                .arg(&v.content[..])
                .arg(&v.hash)
                .arg(v.stamp.as_ref().map(Stamp::encode).unwrap_or_default())
                .arg(v.doc.as_str())
                .arg(v.kind.as_str())
                .arg(u8::from(q.restore) | u8::from(renew) << 1);
        }
        let mut flat: Vec<redis::Value> = self.call(invocation.invoke_async(&mut conn)).await?;
        let others: i64 = match flat.pop() {
            Some(v) => redis::from_redis_value(v)?,
            None => 0,
        };
        let mut answers = Vec::with_capacity(call.len());
        let mut flat = flat.into_iter();
        while let (Some(code), Some(id), Some(prev)) = (flat.next(), flat.next(), flat.next()) {
            answers.push((
                redis::from_redis_value(code)?,
                redis::from_redis_value(id)?,
                redis::from_redis_value(prev)?,
            ));
        }
        if answers.len() != call.len() {
            return Err(CacheError::Unreachable(format!(
                "unexpected answer from redis: {} answers to {} saves",
                answers.len(),
                call.len()
            )));
        }
        Ok((answers, others == 1))
    }
}

/// The error of a call, for each save it carried.
fn shared(e: &CacheError) -> CacheError {
    match e {
        CacheError::Timeout(d) => CacheError::Timeout(*d),
        CacheError::Backoff(d) => CacheError::Backoff(*d),
        other => CacheError::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_renewed_once_a_tenth_of_the_ttl_passed_and_again_after_a_failure() {
        let every = Duration::from_secs(12);
        let (a, b) = (DocId::parse("a").unwrap(), DocId::parse("b").unwrap());
        let t0 = Instant::now();
        let mut renewed = Renewed::default();
        assert!(renewed.due(&a, t0, every), "never renewed");
        assert!(!renewed.due(&a, t0 + Duration::from_secs(11), every));
        assert!(renewed.due(&b, t0 + Duration::from_secs(11), every));
        assert!(
            renewed.due(&a, t0 + every, every),
            "a tenth of the TTL passed"
        );
        assert!(!renewed.due(&a, t0 + Duration::from_secs(13), every));
        renewed.failed(&a);
        assert!(
            renewed.due(&a, t0 + Duration::from_secs(14), every),
            "its call failed"
        );
        // Documents renewed long ago are forgotten, not kept for good.
        assert!(!renewed.due(&a, t0 + Duration::from_secs(15), every));
        renewed.due(&a, t0 + Duration::from_secs(40), every);
        assert_eq!(renewed.at.len(), 1, "b was renewed 29 s ago");
    }
}
