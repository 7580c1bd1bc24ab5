//! Per-connection and per-process limits: a token bucket for message rates, connection counts
//! (overall and per document) checked before a WebSocket upgrade, and turns for renderings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use docroom_actors::doc::DocId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::settings::LimitSettings;

/// A token bucket: `rate` tokens per second, at most `burst` saved up. Time is passed in.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate: rate_per_sec,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Open connections, overall and per document. Cloning is shallow.
#[derive(Clone, Default)]
pub struct ConnectionCounts {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_doc: HashMap<DocId, usize>,
}

/// Holds one connection's place; dropping it (when the session ends) gives the place back.
/// A `/hocuspocus` socket holds one place overall, and one per document it joins.
pub struct ConnectionSlot {
    counts: ConnectionCounts,
    /// Counted against this document's limit.
    doc: Option<DocId>,
    /// Counted against the overall limit.
    total: bool,
}

impl ConnectionCounts {
    /// Open connections, all documents together.
    pub fn total(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Reserves a place for a connection to `doc`, or answers 503 if a limit is reached.
    pub fn reserve(&self, doc: &DocId, limits: &LimitSettings) -> Result<ConnectionSlot, ApiError> {
        self.take(Some(doc), true, limits)
    }

    /// A place under the overall limit only: a `/hocuspocus` socket, before any document.
    pub fn reserve_socket(&self, limits: &LimitSettings) -> Result<ConnectionSlot, ApiError> {
        self.take(None, true, limits)
    }

    /// A place under `doc`'s limit only: one document of a `/hocuspocus` socket.
    pub fn reserve_member(
        &self,
        doc: &DocId,
        limits: &LimitSettings,
    ) -> Result<ConnectionSlot, ApiError> {
        self.take(Some(doc), false, limits)
    }

    fn take(
        &self,
        doc: Option<&DocId>,
        total: bool,
        limits: &LimitSettings,
    ) -> Result<ConnectionSlot, ApiError> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if total && c.total >= limits.max_connections {
            return Err(ApiError::Unavailable(format!(
                "connection limit reached ({} connections)",
                limits.max_connections
            )));
        }
        if let Some(doc) = doc {
            let on_doc = c.per_doc.get(doc).copied().unwrap_or(0);
            if on_doc >= limits.max_connections_per_doc {
                return Err(ApiError::Unavailable(format!(
                    "document {doc} has reached its connection limit ({})",
                    limits.max_connections_per_doc
                )));
            }
            c.per_doc.insert(doc.clone(), on_doc + 1);
        }
        if total {
            c.total += 1;
        }
        Ok(ConnectionSlot {
            counts: self.clone(),
            doc: doc.cloned(),
            total,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.counts.inner.lock().unwrap_or_else(|p| p.into_inner());
        if self.total {
            c.total = c.total.saturating_sub(1);
        }
        let Some(doc) = &self.doc else { return };
        if let Some(n) = c.per_doc.get_mut(doc) {
            *n -= 1;
            if *n == 0 {
                c.per_doc.remove(doc);
            }
        }
    }
}

/// Turns for renderings of Yjs documents (`GET /docs/{id}`): each runs on actix's blocking pool,
/// at most `limits.max_concurrent_renderings` at once, so renderings never take every core from
/// the HTTP workers; more wait for a turn without holding a worker. Cloning is shallow.
#[derive(Clone)]
pub struct RenderingTurns {
    turns: Arc<Semaphore>,
}

impl RenderingTurns {
    pub fn new(limits: &LimitSettings) -> Self {
        let at_once = match limits.max_concurrent_renderings {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        };
        RenderingTurns {
            turns: Arc::new(Semaphore::new(at_once)),
        }
    }

    /// Waits for a turn. The turn is the rendering's to hold until it ends, not the request's:
    /// a client that gives up waiting for the answer does not free it while the rendering runs.
    pub async fn wait(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        // The semaphore is never closed.
        self.turns
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Unavailable(format!("no rendering turn: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        assert!(b.take(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn slots_count_per_document_and_overall_and_free_on_drop() {
        let limits = LimitSettings {
            max_connections: 3,
            max_connections_per_doc: 2,
            messages_per_sec: 1.0,
            message_burst: 1.0,
            max_rate_violations: 1,
            max_document_bytes: 1,
            max_rooms: 1,
            member_backlog_messages: 1,
            member_backlog_bytes: 1,
            max_awareness_clients_per_connection: 1,
            max_awareness_state_bytes: 1,
            max_yjs_state_bytes: 1,
            max_yjs_depth: 1,
            max_concurrent_renderings: 1,
            hocuspocus_held_bytes: 1,
            hocuspocus_held_messages: 1,
            hocuspocus_documents_per_socket: 1,
        };
        let counts = ConnectionCounts::default();
        let (a, b) = (DocId::parse("a").unwrap(), DocId::parse("b").unwrap());
        let a1 = counts.reserve(&a, &limits).unwrap();
        let _a2 = counts.reserve(&a, &limits).unwrap();
        assert!(counts.reserve(&a, &limits).is_err(), "per document");
        let _b1 = counts.reserve(&b, &limits).unwrap();
        assert!(counts.reserve(&b, &limits).is_err(), "overall");
        drop(a1);
        assert!(counts.reserve(&b, &limits).is_ok());
    }

    #[test]
    fn a_socket_counts_once_overall_and_each_of_its_documents_once_per_document() {
        let limits = LimitSettings {
            max_connections: 1,
            max_connections_per_doc: 1,
            ..test_limits()
        };
        let counts = ConnectionCounts::default();
        let a = DocId::parse("a").unwrap();
        let socket = counts.reserve_socket(&limits).unwrap();
        let member = counts.reserve_member(&a, &limits).unwrap();
        assert!(counts.reserve_socket(&limits).is_err(), "overall");
        assert!(counts.reserve_member(&a, &limits).is_err(), "per document");
        drop(member);
        assert!(counts.reserve_member(&a, &limits).is_ok());
        drop(socket);
        assert!(counts.reserve_socket(&limits).is_ok());
    }

    #[tokio::test]
    async fn renderings_beyond_the_setting_wait_for_a_turn() {
        let turns = RenderingTurns::new(&LimitSettings {
            max_concurrent_renderings: 2,
            ..test_limits()
        });
        let first = turns.wait().await.unwrap();
        let _second = turns.wait().await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), turns.wait()).await;
        assert!(third.is_err(), "a third rendering ran at once");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), turns.wait()).await;
        assert!(matches!(third, Ok(Ok(_))), "the freed turn was not given");
    }

    fn test_limits() -> LimitSettings {
        crate::settings::Settings::load_from(None, Vec::new())
            .expect("built-in settings")
            .limits
    }
}
