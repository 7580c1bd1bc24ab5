//! The document logs in Redis as the log reader reads them: `doc:{id}:log` of many documents
//! read from their positions with one non-blocking `XREAD` (on a connection of its own), and the
//! decoding of their entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

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
/// entries that are not docroom's are skipped. Walks the answer as Redis sent it, moving the
/// content out: a flush reads thousands of entries, and a map per entry cost more than the
/// rest of the flush's decoding.
pub(super) fn entries(doc: &DocId, value: Value) -> CacheResult<Vec<LogEntry>> {
    let items = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(CacheError::Unreachable(format!(
                "unexpected answer from redis: a log read gave {other:?}"
            )))
        }
    };
    Ok(items
        .into_iter()
        .filter_map(|item| entry(doc, item))
        .collect())
}

/// One `[id, [field, value, ...]]`; `None` unless it has docroom's fields.
fn entry(doc: &DocId, item: Value) -> Option<LogEntry> {
    let Value::Array(pair) = item else {
        return None;
    };
    let [id, fields]: [Value; 2] = pair.try_into().ok()?;
    let pos = LogPos::parse(std::str::from_utf8(bytes_of(&id)?).ok()?)?;
    let fields: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            let mut flat = flat.into_iter();
            std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    let (mut replica, mut kind, mut hash, mut stamp, mut content) = (None, None, None, None, None);
    for (name, value) in fields {
        let slot = match bytes_of(&name)? {
            b"r" => &mut replica,
            b"k" => &mut kind,
            b"h" => &mut hash,
            b"s" => &mut stamp,
            b"d" => &mut content,
            _ => continue,
        };
        *slot = match value {
            Value::BulkString(bytes) => Some(bytes),
            Value::SimpleString(text) => Some(text.into_bytes()),
            _ => None,
        };
    }
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).ok();
    let version = Version {
        doc: doc.clone(),
        kind: Kind::parse(&text(kind?)?)?,
        hash: text(hash?)?,
        content: Bytes::from(content?),
        stamp: stamp.and_then(text).as_deref().and_then(Stamp::decode),
    };
    Some(LogEntry {
        pos,
        replica: std::str::from_utf8(&replica?).ok()?.into(),
        version,
    })
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    /// `[id, [field, value, ...]]` as RESP2 gives it.
    fn flat(id: &str, fields: &[(&str, &str)]) -> Value {
        let fields = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id), Value::Array(fields)])
    }

    #[test]
    fn log_entries_decode_with_their_fields_in_any_order_and_foreign_entries_are_skipped() {
        let doc = DocId::parse("d").unwrap();
        let stamp = "0000018b00000000.00000001.a";
        let answer = Value::Array(vec![
            flat(
                "5-0",
                &[
                    ("k", "json"),
                    ("r", "a"),
                    ("h", "h1"),
                    ("s", stamp),
                    ("d", "{}"),
                ],
            ),
            flat(
                "5-1",
                &[("r", "b"), ("k", "yjs"), ("h", ""), ("d", "\u{1}")],
            ),
            // Not docroom's: a field missing, an unknown kind, a malformed id.
            flat("5-2", &[("r", "b"), ("k", "yjs"), ("d", "x")]),
            flat("5-3", &[("r", "b"), ("k", "xml"), ("h", ""), ("d", "x")]),
            flat("nope", &[("r", "b"), ("k", "yjs"), ("h", ""), ("d", "x")]),
            bulk("not an entry"),
            // RESP3 answers fields as a map.
            Value::Array(vec![
                bulk("6-0"),
                Value::Map(vec![
                    (bulk("r"), bulk("c")),
                    (bulk("k"), bulk("yjs")),
                    (bulk("h"), bulk("")),
                    (bulk("d"), bulk("\u{2}")),
                    (bulk("extra"), bulk("ignored")),
                ]),
            ]),
        ]);
        let got = entries(&doc, answer).unwrap();
        let summary: Vec<(String, &str, Kind, &[u8])> = got
            .iter()
            .map(|e| {
                let v = &e.version;
                (e.pos.to_string(), &*e.replica, v.kind, &v.content[..])
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("5-0".to_string(), "a", Kind::Json, &b"{}"[..]),
                ("5-1".to_string(), "b", Kind::Yjs, &b"\x01"[..]),
                ("6-0".to_string(), "c", Kind::Yjs, &b"\x02"[..]),
            ]
        );
        assert_eq!(got[0].version.hash, "h1");
        assert_eq!(
            got[0].version.stamp.as_ref().map(Stamp::encode).as_deref(),
            Some(stamp)
        );
        assert_eq!(got[1].version.stamp, None);
    }

    #[test]
    fn an_empty_log_read_is_no_entries_and_a_wrong_answer_is_an_error() {
        let doc = DocId::parse("d").unwrap();
        assert_eq!(entries(&doc, Value::Nil).unwrap(), Vec::new());
        assert_eq!(entries(&doc, Value::Array(Vec::new())).unwrap(), Vec::new());
        assert!(entries(&doc, Value::Int(3)).is_err());
    }
}
