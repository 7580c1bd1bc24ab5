//! The document streams in Redis as the log reader and the event publisher use them:
//! `doc:{id}:log` read from a position with one blocking `XREAD` over many documents (on a
//! connection of its own), `doc:{id}:events` appended to (capped, short-lived), and the decoding
//! of their entries.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use super::{CacheError, CacheResult, RedisCache};
use crate::doc::{DocId, Kind, Stamp, Version};
use crate::log::{Event, EventKind, Found, LogEntry, LogPos, Stream};

/// Entries one `XREAD` answers at most per document.
const READ_COUNT: usize = 500;
/// Events a document's events stream keeps (about; `MAXLEN ~`), and how long it lives after
/// the last one: enough for every replica's reader to see them, nothing more.
const EVENTS_KEPT: usize = 200;
const EVENTS_TTL_SECS: i64 = 60;

impl RedisCache {
    /// The blocking reader's own connection (a blocking `XREAD` would hold up every command
    /// queued behind it on the shared one), made on first use and dropped after a failure.
    async fn reader_connection(&self, block: Duration) -> CacheResult<MultiplexedConnection> {
        if let Some(conn) = self
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(conn);
        }
        let s = &self.settings;
        let client = self.bounded(s.target.client()).await??;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(s.connection_timeout))
            .set_response_timeout(Some(block + s.response_timeout));
        let conn = self
            .bounded(client.get_multiplexed_async_connection_with_config(&config))
            .await??;
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    pub(super) async fn read_streams(
        &self,
        from: &[(DocId, Stream, LogPos)],
        block: Duration,
    ) -> CacheResult<Vec<(DocId, Found)>> {
        if from.is_empty() {
            tokio::time::sleep(block).await;
            return Ok(Vec::new());
        }
        let mut conn = self.reader_connection(block).await?;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS");
        let mut by_key = HashMap::with_capacity(from.len());
        for (doc, stream, _) in from {
            let key = self.key(doc, stream_suffix(*stream));
            cmd.arg(&key);
            by_key.insert(key, (doc.clone(), *stream));
        }
        for (_, _, pos) in from {
            cmd.arg(pos.to_string());
        }
        let limit = block + self.settings.response_timeout + self.settings.connection_timeout;
        let answer = tokio::time::timeout(limit, cmd.query_async::<redis::Value>(&mut conn)).await;
        let value = match answer {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => {
                self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(e.into());
            }
            Err(_) => {
                self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(CacheError::Timeout(limit));
            }
        };
        if matches!(value, redis::Value::Nil) {
            return Ok(Vec::new());
        }
        let streams: Vec<(String, redis::Value)> = redis::from_redis_value(value)?;
        let mut out = Vec::with_capacity(streams.len());
        for (key, raw) in streams {
            let Some((doc, stream)) = by_key.get(&key) else {
                continue;
            };
            let found = match stream {
                Stream::Log => Found::Log(entries(doc, raw)?),
                Stream::Events => Found::Events(events(raw)?),
            };
            out.push((doc.clone(), found));
        }
        Ok(out)
    }

    pub(super) async fn append_event(
        &self,
        doc: &DocId,
        kind: EventKind,
        payload: &[u8],
    ) -> CacheResult<()> {
        let mut conn = self.connection().await?;
        let key = self.key(doc, stream_suffix(Stream::Events));
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_KEPT)
            .arg("*")
            .arg("r")
            .arg(&*self.settings.replica)
            .arg("k")
            .arg(kind.as_str())
            .arg("d")
            .arg(payload)
            .ignore()
            .expire(&key, EVENTS_TTL_SECS)
            .ignore();
        self.bounded(pipe.query_async::<()>(&mut conn)).await??;
        Ok(())
    }
}

/// The key suffix of a document's stream.
fn stream_suffix(stream: Stream) -> &'static str {
    match stream {
        Stream::Log => "log",
        Stream::Events => "events",
    }
}

/// Decodes events-stream entries; entries that are not docroom's are skipped.
fn events(value: redis::Value) -> CacheResult<Vec<Event>> {
    let raw: Vec<(String, HashMap<String, redis::Value>)> = redis::from_redis_value(value)?;
    Ok(raw
        .into_iter()
        .filter_map(|(id, mut fields)| {
            let mut text =
                |k: &str| -> Option<String> { redis::from_redis_value(fields.remove(k)?).ok() };
            let (replica, kind) = (text("r")?, text("k")?);
            let payload: Vec<u8> = redis::from_redis_value(fields.remove("d")?).ok()?;
            Some(Event {
                pos: LogPos::parse(&id)?,
                replica: replica.into(),
                kind: EventKind::parse(&kind)?,
                payload: Bytes::from(payload),
            })
        })
        .collect())
}

/// Decodes `XRANGE`/`XREAD` entries (`[[id, [field, value, ...]], ...]`) of `doc`'s log;
/// entries that are not docroom's are skipped.
pub(super) fn entries(doc: &DocId, value: redis::Value) -> CacheResult<Vec<LogEntry>> {
    let raw: Vec<(String, HashMap<String, redis::Value>)> = redis::from_redis_value(value)?;
    Ok(raw
        .into_iter()
        .filter_map(|(id, mut fields)| {
            let pos = LogPos::parse(&id)?;
            let mut text =
                |k: &str| -> Option<String> { redis::from_redis_value(fields.remove(k)?).ok() };
            let (replica, kind, hash, stamp) = (text("r")?, text("k")?, text("h")?, text("s"));
            let content: Vec<u8> = redis::from_redis_value(fields.remove("d")?).ok()?;
            let version = Version {
                doc: doc.clone(),
                kind: Kind::parse(&kind)?,
                hash,
                content: Bytes::from(content),
                stamp: stamp.as_deref().and_then(Stamp::decode),
            };
            Some(LogEntry {
                pos,
                replica: replica.into(),
                version,
            })
        })
        .collect())
}
