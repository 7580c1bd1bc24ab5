//! The document channels in Redis (pub/sub, `doc:{id}:events` behind the key prefix): events
//! published for the other replicas (`PUBLISH` on the shared connection; not at all while the
//! last save call found no other replica following any document, see `saves.rs`), and the log
//! reader's listening connection, a pub/sub connection of its own. The SAVE script publishes its notice on the same
//! channel, to the replicas that follow the document (`doc:{id}:followers`, which the listening
//! connection keeps: registered once a subscription is in effect, renewed at every poll, removed
//! with it); [`crate::log::notice`] is the framing of both.
//!
//! Pub/sub keeps nothing: a listener hears only what is published while it is connected and
//! subscribed. That is all events need (they are lossy by design). A log notice carries its
//! entry, but a reader takes it from the notice only when it follows on what the reader has
//! (the notice names the entry before it): anything else, the reader reads from the log.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{stream, StreamExt};
use redis::aio::PubSubSink;

use super::{CacheError, CacheResult, RedisCache};
use crate::doc::DocId;
use crate::log::notice::{self, Heard};
use crate::log::EventKind;
use crate::storage::redis_scripts::FOLLOW;
use crate::storage::{Channels, Listener};

/// A replica's registration as a follower of a document lapses after this unless renewed (its
/// reader renews every `log_poll_ms`, 5 s by default): a replica that died costs the others'
/// saves a notice nobody hears, for at most this long.
const FOLLOW_LEASE_MS: u64 = 60_000;
/// Documents per FOLLOW call.
const FOLLOW_BATCH: usize = 256;

impl RedisCache {
    /// The channel of `doc`: its events and its log notices.
    pub(super) fn channel(&self, doc: &DocId) -> String {
        self.key(doc, "events")
    }

    /// The document whose channel `name` is; `None` for any other channel.
    fn channel_doc(&self, name: &str) -> Option<DocId> {
        let id = name
            .strip_prefix(self.settings.key_prefix.as_str())?
            .strip_prefix("doc:")?
            .strip_suffix(":events")?;
        DocId::parse(id).ok()
    }

    pub(super) async fn publish_event(
        &self,
        doc: &DocId,
        kind: EventKind,
        payload: &[u8],
    ) -> CacheResult<()> {
        if self.saves.alone() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        let frame = notice::encode_event(&self.settings.replica, kind, payload);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.channel(doc)).arg(frame);
        self.call(publish.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    /// Who follows `doc`: the replicas listening on its channel, each until its lease runs out.
    pub(super) fn key_followers(&self, doc: &DocId) -> String {
        self.key(doc, "followers")
    }

    /// The replicas that follow any document, each until its lease runs out.
    pub(super) fn key_following(&self) -> String {
        format!("{}following", self.settings.key_prefix)
    }

    /// Registers (or renews) this replica as a follower of `docs`, so saves of other replicas
    /// publish their notices (see `saves`).
    async fn follow(&self, docs: &[DocId]) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        for chunk in docs.chunks(FOLLOW_BATCH) {
            let mut invocation = FOLLOW.prepare_invoke();
            for doc in chunk {
                invocation.key(self.key_followers(doc));
            }
            invocation.key(self.key_following());
            invocation.arg(&*self.settings.replica).arg(FOLLOW_LEASE_MS);
            self.call(invocation.invoke_async::<i64>(&mut conn)).await?;
        }
        Ok(())
    }

    async fn unfollow(&self, docs: &[DocId]) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        for doc in docs {
            pipe.cmd("ZREM")
                .arg(self.key_followers(doc))
                .arg(&*self.settings.replica)
                .ignore();
        }
        self.call(pipe.query_async::<()>(&mut conn)).await
    }

    /// A listening connection: what its channels carry, with this replica's own appends
    /// (which Redis does not send back, see `saves`) told in between. It ends when the
    /// connection is lost.
    pub(super) async fn listener(&self) -> CacheResult<Listener> {
        let client = self.bounded(self.settings.target.client()).await??;
        let pubsub = self.bounded(client.get_async_pubsub()).await??;
        let (sink, stream) = pubsub.split();
        let this = self.clone();
        let from_redis = stream
            .filter_map(move |msg| {
                let heard = this.channel_doc(msg.get_channel_name()).and_then(|doc| {
                    let notice = notice::decode(&doc, msg.get_payload_bytes())?;
                    Some(Heard { doc, notice })
                });
                std::future::ready(heard.map(Some))
            })
            .chain(stream::once(std::future::ready(None)));
        let mut own = self.saves.listen();
        let own = stream::poll_fn(move |cx| own.poll_recv(cx)).map(Some);
        let heard = stream::select(from_redis, own)
            .take_while(|h| std::future::ready(h.is_some()))
            .filter_map(std::future::ready);
        Ok(Listener {
            channels: Arc::new(RedisChannels {
                sink,
                cache: self.clone(),
            }),
            heard: heard.boxed(),
        })
    }
}

/// The subscribing half of a listening connection. Its commands are queued in the order they
/// are awaited, and each waits for all of Redis's confirmations.
struct RedisChannels {
    sink: PubSubSink,
    cache: RedisCache,
}

impl RedisChannels {
    fn names(&self, docs: &[DocId]) -> Vec<String> {
        docs.iter().map(|doc| self.cache.channel(doc)).collect()
    }
}

#[async_trait]
impl Channels for RedisChannels {
    async fn subscribe(&self, docs: &[DocId]) -> CacheResult<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut sink = self.sink.clone();
        self.cache
            .bounded(sink.subscribe(self.names(docs)))
            .await??;
        // Heard from now on, and published from the registration on: an append before it is in
        // the log, which the reader reads once this returns.
        self.cache.follow(docs).await
    }

    async fn unsubscribe(&self, docs: &[DocId]) -> CacheResult<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut sink = self.sink.clone();
        self.cache
            .bounded(sink.unsubscribe(self.names(docs)))
            .await??;
        self.cache.unfollow(docs).await
    }

    async fn ping(&self) -> CacheResult<()> {
        let mut sink = self.sink.clone();
        self.cache
            .bounded(sink.ping::<redis::Value>())
            .await?
            .map_err(CacheError::from)?;
        Ok(())
    }

    async fn renew(&self, following: &[DocId]) -> CacheResult<()> {
        self.cache.follow(following).await
    }
}
