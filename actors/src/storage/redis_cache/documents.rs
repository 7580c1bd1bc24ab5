//! A flush's and a room's reads of a document: the CLAIM script then one pipeline of plain
//! reads (see `redis_scripts::CLAIM` for why the content is not read inside the script), and
//! the decoding of LOAD's answer.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};

use super::{CacheError, CacheResult, RedisCache};
use crate::doc::{combine, DocId, Version};
use crate::log::{Incarnation, LogMark, LogPos};
use crate::storage::pending::FlushRead;
use crate::storage::redis_scripts::{
    decode, BATCH, CLAIM, COMPACT_MAX_ENTRIES, COMPACT_MIN_BYTES, IN_FLIGHT,
};
use crate::storage::Cached;

impl RedisCache {
    /// Runs CLAIM over `docs`, then reads what it says each claimed document needs (its log
    /// from a position, its `temp`) in one pipeline of plain commands; on the flush's own
    /// connection (see [`RedisCache::side_connection`]).
    pub(super) async fn claim_read(
        &self,
        docs: &[DocId],
        fresh: Option<Duration>,
    ) -> CacheResult<Vec<ClaimRead>> {
        let res = self.claim_read_on(docs, fresh).await;
        if res.is_err() {
            self.bulk.set(None);
        }
        res
    }

    async fn claim_read_on(
        &self,
        docs: &[DocId],
        fresh: Option<Duration>,
    ) -> CacheResult<Vec<ClaimRead>> {
        let fresh_ms = fresh.map_or(0, |f| f.as_millis().max(1) as u64);
        let conn = self.side_connection(&self.bulk).await?;
        let calls = docs
            .chunks(BATCH)
            .map(|batch| self.claim_batch(conn.clone(), batch, fresh_ms));
        in_flight(calls.collect()).await
    }

    /// CLAIM and the reads it calls for, for one batch of documents.
    async fn claim_batch(
        &self,
        mut conn: redis::aio::MultiplexedConnection,
        batch: &[DocId],
        fresh_ms: u64,
    ) -> CacheResult<Vec<ClaimRead>> {
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(self.key_modified())
            .key(self.key_incarnation())
            .arg(&*self.settings.replica)
            .arg(self.settings.claim_ms)
            .arg(self.settings.ttl_secs)
            .arg(COMPACT_MIN_BYTES)
            .arg(COMPACT_MAX_ENTRIES)
            .arg(fresh_ms)
            .arg(&self.settings.key_prefix);
        for doc in batch {
            invocation.arg(doc.as_str());
        }
        let mut raw: Vec<redis::Value> = self.bounded(invocation.invoke_async(&mut conn)).await??;
        let incarnation = raw
            .pop()
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .and_then(|t| t.parse().ok())
            .map(Incarnation)
            .ok_or_else(|| unexpected("no incarnation"))?;
        let claims = batch
            .iter()
            .zip(raw)
            .map(|(doc, value)| Claim::parse(value).map(|c| (doc, c)))
            .collect::<CacheResult<Vec<_>>>()?;
        let mut pipe = redis::pipe();
        let claimed = claims.iter().filter_map(|(doc, c)| match c {
            Answer::Claimed(claim) => Some((doc, claim)),
            _ => None,
        });
        for (doc, claim) in claimed {
            if claim.want_temp {
                self.ask_temp(&mut pipe, doc);
            }
            pipe.cmd("XRANGE")
                .arg(self.key(doc, "log"))
                .arg(format!("({}", claim.from))
                .arg("+");
        }
        let any = claims.iter().any(|(_, c)| matches!(c, Answer::Claimed(_)));
        let answers: Vec<redis::Value> = match any {
            true => self.bounded(pipe.query_async(&mut conn)).await??,
            false => Vec::new(),
        };
        let mut answers = answers.into_iter();
        let mut next = || answers.next().ok_or_else(|| unexpected("short pipeline"));
        let mut reads = Vec::with_capacity(claims.len());
        for (doc, answer) in claims {
            let claim = match answer {
                Answer::Busy => {
                    reads.push((ClaimRead::Busy, None));
                    continue;
                }
                Answer::Fresh(position) => {
                    let mark = LogMark {
                        incarnation,
                        position,
                    };
                    reads.push((ClaimRead::Fresh(mark), None));
                    continue;
                }
                Answer::Claimed(claim) => claim,
            };
            let temp = match claim.want_temp {
                true => temp_of(doc, next()?)?,
                false => None,
            };
            let read = FlushRead {
                temp,
                pos: claim.pos,
                persisted: claim.persisted,
                incarnation,
                entries: super::streams::entries(doc, next()?)?,
                dirty: claim.dirty,
                compact: claim.compact,
                log_len: claim.log_len,
                has_temp: claim.has_temp,
            };
            let due = claim.compaction_due(&read);
            reads.push((ClaimRead::Found(read), due.then_some((doc, claim))));
        }
        self.read_compactions(&mut conn, &mut reads).await?;
        Ok(reads.into_iter().map(|(read, _)| read).collect())
    }

    /// Completes the reads of the documents whose log after the compacted content turned out
    /// to hold enough bytes (those PostgreSQL recorded, counted in `tail`, and those just read
    /// after them): their compacted content and the log between it and `persisted`, in one
    /// more pipeline. Nothing in between changes them: the claim is this flush's.
    async fn read_compactions(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        reads: &mut [(ClaimRead, Option<(&DocId, Claim)>)],
    ) -> CacheResult<()> {
        let mut pipe = redis::pipe();
        for (_, due) in reads.iter() {
            let Some((doc, claim)) = due else { continue };
            self.ask_temp(&mut pipe, doc);
            if claim.pos < claim.persisted {
                pipe.cmd("XRANGE")
                    .arg(self.key(doc, "log"))
                    .arg(format!("({}", claim.pos))
                    .arg(claim.persisted.to_string());
            }
        }
        if reads.iter().all(|(_, due)| due.is_none()) {
            return Ok(());
        }
        let answers: Vec<redis::Value> = self.bounded(pipe.query_async(conn)).await??;
        let mut answers = answers.into_iter();
        let mut next = || answers.next().ok_or_else(|| unexpected("short pipeline"));
        for (read, due) in reads.iter_mut() {
            let (ClaimRead::Found(read), Some((doc, claim))) = (read, due) else {
                continue;
            };
            let temp = temp_of(doc, next()?)?;
            let mut before = match claim.pos < claim.persisted {
                true => super::streams::entries(doc, next()?)?,
                false => Vec::new(), // the entries read already start after `pos`
            };
            before.append(&mut read.entries);
            read.entries = before;
            read.temp = temp;
            read.compact = true;
        }
        Ok(())
    }
}

impl RedisCache {
    /// Asks `pipe` for `doc`'s compacted content with its stamp (see [`temp_of`]).
    fn ask_temp(&self, pipe: &mut redis::Pipeline, doc: &DocId) {
        pipe.cmd("MGET")
            .arg(self.key(doc, "temp"))
            .arg(self.key(doc, "stamp"));
    }
}

/// The compacted content [`RedisCache::ask_temp`] asked for, if there is any.
fn temp_of(doc: &DocId, answer: redis::Value) -> CacheResult<Option<Version>> {
    let (temp, stamp): (Option<Vec<u8>>, Option<String>) = redis::from_redis_value(answer)?;
    Ok(temp.map(|raw| decode(doc.clone(), raw, stamp)))
}

/// Runs `calls` (each one script call of a batch, and what follows it) [`IN_FLIGHT`] at a time,
/// their answers in order.
pub(super) async fn in_flight<T, F>(calls: Vec<F>) -> CacheResult<Vec<T>>
where
    F: std::future::Future<Output = CacheResult<Vec<T>>>,
{
    let answers: Vec<Vec<T>> = futures_util::stream::iter(calls)
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(answers.into_iter().flatten().collect())
}

fn unexpected(why: &str) -> CacheError {
    CacheError::Unreachable(format!("unexpected answer from redis: {why}"))
}

/// One document as CLAIM answers it (see `redis_scripts::CLAIM`).
struct Claim {
    want_temp: bool,
    pos: LogPos,
    persisted: LogPos,
    from: LogPos,
    dirty: bool,
    compact: bool,
    log_len: usize,
    has_temp: bool,
    /// Yjs: bytes after the compacted content that PostgreSQL recorded (`tail`).
    waiting: u64,
    /// Yjs: bytes of the compacted content.
    size: u64,
}

impl Claim {
    /// Whether a Yjs read that CLAIM did not already make a compaction's holds, with the bytes
    /// PostgreSQL recorded since the last compaction, as many bytes as the compacted content
    /// (64 KiB at least): CLAIM cannot count the bytes of entries nobody recorded yet.
    fn compaction_due(&self, read: &FlushRead) -> bool {
        if self.compact || self.want_temp {
            return false; // a compaction already, or JSON
        }
        let read_bytes: u64 = read
            .entries
            .iter()
            .map(|e| e.version.content.len() as u64)
            .sum();
        self.waiting + read_bytes >= (COMPACT_MIN_BYTES as u64).max(self.size)
    }
}

/// What CLAIM answered for one document.
enum Answer {
    /// Another replica holds the document's claim.
    Busy,
    /// PostgreSQL took the document's log up to here moments ago.
    Fresh(LogPos),
    Claimed(Claim),
}

/// What a flush's claim and read found for one document.
pub(super) enum ClaimRead {
    Busy,
    Fresh(LogMark),
    Found(FlushRead),
}

impl Claim {
    fn parse(value: redis::Value) -> CacheResult<Answer> {
        let redis::Value::Array(mut items) = value else {
            return Err(unexpected("not an array"));
        };
        match items.len() {
            1 => return Ok(Answer::Busy),
            2 => {
                let persisted: String = redis::from_redis_value(items.swap_remove(1))?;
                let persisted = LogPos::parse(&persisted).ok_or_else(|| unexpected("a bad id"))?;
                return Ok(Answer::Fresh(persisted));
            }
            _ => {}
        }
        let [temp, pos, persisted, from, dirty, compact, len, has_temp, waiting, size]: [redis::Value;
            10] = items.try_into().map_err(|_| unexpected("wrong length"))?;
        let flag = |v: redis::Value| redis::from_redis_value::<i64>(v).map(|n| n == 1);
        let position = |v: redis::Value| {
            redis::from_redis_value::<String>(v).map(|t| LogPos::parse(&t).unwrap_or_default())
        };
        Ok(Answer::Claimed(Claim {
            want_temp: flag(temp)?,
            pos: position(pos)?,
            persisted: position(persisted)?,
            from: position(from)?,
            dirty: flag(dirty)?,
            compact: flag(compact)?,
            log_len: redis::from_redis_value(len)?,
            has_temp: flag(has_temp)?,
            waiting: redis::from_redis_value(waiting)?,
            size: redis::from_redis_value(size)?,
        }))
    }
}

/// A room's read as LOAD answers it: the compacted content and the log after it, combined
/// (see [`Cached`]); `None` if neither exists.
pub(super) fn parse_loaded(doc: &DocId, value: redis::Value) -> CacheResult<Option<Cached>> {
    let [temp, stamp, pos, tail, dirty]: [redis::Value; 5] =
        redis::from_redis_value(value).map_err(|_| unexpected("wrong length"))?;
    let temp: Option<Vec<u8>> = redis::from_redis_value(temp)?;
    let stamp: Option<String> = redis::from_redis_value(stamp)?;
    let pos: String = redis::from_redis_value(pos)?;
    let dirty: i64 = redis::from_redis_value(dirty)?;
    let temp = temp.map(|raw| decode(doc.clone(), raw, stamp));
    let tail = super::streams::entries(doc, tail)?;
    let whole = temp.is_some();
    let position = tail
        .last()
        .map_or(LogPos::parse(&pos).unwrap_or_default(), |e| e.pos);
    let tail_len = tail.len();
    let parts = temp.into_iter().chain(tail.into_iter().map(|e| e.version));
    let combined = combine(parts).map_err(|e| CacheError::Unreachable(e.to_string()))?;
    Ok(combined.map(|version| Cached {
        version,
        position,
        whole,
        dirty: dirty == 1,
        tail: tail_len,
    }))
}
