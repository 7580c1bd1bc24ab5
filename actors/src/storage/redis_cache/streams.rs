//! The document logs in Redis as the log reader reads them: `doc:{id}:log` of many documents
//! read from their positions with one non-blocking `XREAD` (on a connection of its own), and the
//! decoding of their entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use super::{CacheError, CacheResult, RedisCache};
use crate::doc::{DocId, Kind, Stamp, Version};
use crate::log::{LogEntry, LogPos, LogRead, READ_COUNT};

/// A lazily made connection of its own (see [`RedisCache::side_connection`]).
#[derive(Clone, Default)]
pub(super) struct Side(Arc<Mutex<Option<MultiplexedConnection>>>);

impl Side {
    fn get(&self) -> Option<MultiplexedConnection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set(&self, conn: Option<MultiplexedConnection>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }
}

impl RedisCache {
    /// A connection of its own for large answers (the log reader's reads, a flush's claims and
    /// reads): the supervisor's saves must not queue behind one, and a multiplexed connection
    /// decodes its answers on the thread that made it, which is the thread that first asks here
    /// (the reader's, the flush's), not the supervisor's. Dropped after a failure.
    pub(super) async fn side_connection(&self, side: &Side) -> CacheResult<MultiplexedConnection> {
        if let Some(conn) = side.get() {
            return Ok(conn);
        }
        let s = &self.settings;
        let client = self.bounded(s.target.client()).await??;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(s.connection_timeout))
            .set_response_timeout(Some(s.response_timeout));
        let conn = self
            .bounded(client.get_multiplexed_async_connection_with_config(&config))
            .await??;
        side.set(Some(conn.clone()));
        Ok(conn)
    }

    /// One `XREAD` over the logs of `from`, pipelined with a read of their trim watermarks
    /// (`doc:{id}:trimmed`, see `redis_scripts::COMMIT`): a position before the watermark's
    /// predecessor may have missed trimmed entries.
    pub(super) async fn read_streams(
        &self,
        from: &[(DocId, LogPos)],
    ) -> CacheResult<Vec<(DocId, LogRead)>> {
        if from.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.side_connection(&self.reader).await?;
        let mut pipe = redis::pipe();
        let xread = pipe
            .cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("STREAMS");
        let mut by_key = HashMap::with_capacity(from.len());
        for (doc, _) in from {
            let key = self.key(doc, "log");
            xread.arg(&key);
            by_key.insert(key, doc.clone());
        }
        for (_, pos) in from {
            xread.arg(pos.to_string());
        }
        let mget = pipe.cmd("MGET");
        for (doc, _) in from {
            mget.arg(self.key(doc, "trimmed"));
        }
        let answer = self
            .bounded(pipe.query_async::<(redis::Value, Vec<Option<String>>)>(&mut conn))
            .await;
        let (value, trimmed) = match answer.and_then(|r| r.map_err(CacheError::from)) {
            Ok(answer) => answer,
            Err(e) => {
                self.reader.set(None);
                return Err(e);
            }
        };
        let mut out: HashMap<DocId, LogRead> = HashMap::new();
        for ((doc, pos), watermark) in from.iter().zip(trimmed) {
            let watermark = watermark.as_deref().and_then(LogPos::parse);
            if watermark.is_some_and(|w| pos.next() < w) {
                out.entry(doc.clone()).or_default().behind = true;
            }
        }
        if !matches!(value, redis::Value::Nil) {
            let streams: Vec<(String, redis::Value)> = redis::from_redis_value(value)?;
            for (key, raw) in streams {
                if let Some(doc) = by_key.get(&key) {
                    out.entry(doc.clone()).or_default().entries = entries(doc, raw)?;
                }
            }
        }
        Ok(out.into_iter().collect())
    }
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
