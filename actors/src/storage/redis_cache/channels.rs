//! The document channels in Redis (pub/sub, `doc:{id}:events` behind the key prefix): events
//! published for the other replicas (`PUBLISH` on the shared connection, about a microsecond of
//! Redis's time against a stream append's and a read's), and the log reader's listening
//! connection, a pub/sub connection of its own. The SAVE script publishes its notice on the same
//! channel; [`crate::log::notice`] is the framing of both.
//!
//! Pub/sub keeps nothing: a listener hears only what is published while it is connected and
//! subscribed. That is all events need (they are lossy by design). A log notice carries its
//! entry, but a reader takes it from the notice only when it follows on what the reader has
//! (the notice names the entry before it): anything else, the reader reads from the log.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::PubSubSink;

use super::{CacheError, CacheResult, RedisCache};
use crate::doc::DocId;
use crate::log::notice::{self, Heard};
use crate::log::EventKind;
use crate::storage::{Channels, Listener};

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
        let mut conn = self.connection().await?;
        let frame = notice::encode_event(&self.settings.replica, kind, payload);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.channel(doc)).arg(frame);
        self.call(publish.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    pub(super) async fn listener(&self) -> CacheResult<Listener> {
        let client = self.bounded(self.settings.target.client()).await??;
        let pubsub = self.bounded(client.get_async_pubsub()).await??;
        let (sink, stream) = pubsub.split();
        let this = self.clone();
        let heard = stream.filter_map(move |msg| {
            let heard = this.channel_doc(msg.get_channel_name()).and_then(|doc| {
                let notice = notice::decode(&doc, msg.get_payload_bytes())?;
                Some(Heard { doc, notice })
            });
            std::future::ready(heard)
        });
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
        Ok(())
    }

    async fn unsubscribe(&self, docs: &[DocId]) -> CacheResult<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut sink = self.sink.clone();
        self.cache
            .bounded(sink.unsubscribe(self.names(docs)))
            .await??;
        Ok(())
    }

    async fn ping(&self) -> CacheResult<()> {
        let mut sink = self.sink.clone();
        self.cache
            .bounded(sink.ping::<redis::Value>())
            .await?
            .map_err(CacheError::from)?;
        Ok(())
    }
}
