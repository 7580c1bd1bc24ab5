//! `Traffic`: editors typing into many documents at once, the background load of the
//! fault-injection stories.
//!
//! Each document has exactly one writer (its own WebSocket connection), which sends full-content
//! updates carrying a per-document sequence number that only ever grows, across reconnects and
//! restarts. The writer remembers the highest sequence number the server acknowledged, so the
//! end of every story is one exact check: PostgreSQL holds, for every document, a sequence number
//! at least that high. Unanswered updates and `error` replies promise nothing and are only
//! counted.
//!
//! Writers tolerate the faults they are there to witness: a connection that closes or drops is
//! counted and reopened once the service takes connections again (`detach` before killing the
//! service, `follow` after restarting it, so nobody connects to a port another test now owns).
//! Every snapshot received on (re)connection is checked too: it must not be older than the last
//! acknowledged content.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::writer::{Writer, ANSWER_WITHIN};
use super::{content_hash, ensure, eventually, TestApp};

mod writer;

/// How much traffic, on which documents.
#[derive(Clone, Debug)]
pub struct TrafficPlan {
    label: String,
    clients: usize,
    docs_per_client: usize,
    pace: Duration,
}

impl TrafficPlan {
    /// 4 clients × 3 documents each, named `{label}-c{client}-{n}`, an update per document
    /// every 40 ms plus its round trip.
    pub fn new(label: &str) -> TrafficPlan {
        TrafficPlan {
            label: label.to_owned(),
            clients: 4,
            docs_per_client: 3,
            pace: Duration::from_millis(40),
        }
    }

    pub fn clients(mut self, clients: usize) -> Self {
        self.clients = clients;
        self
    }

    pub fn docs_per_client(mut self, docs: usize) -> Self {
        self.docs_per_client = docs;
        self
    }

    /// The pause between an answer and the next update of the same document.
    pub fn pace(mut self, pace: Duration) -> Self {
        self.pace = pace;
        self
    }
}

/// What the writers are told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Run,
    /// Send nothing, keep the connections open (and answer Pings), like idle editors.
    Park,
    Stop,
}

/// Counts over the whole run; `tally()` returns a copy to compare before and after a fault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub cache: u64,
    pub fallback: u64,
    pub duplicate: u64,
    /// `error` replies to updates.
    pub errors: u64,
    /// Updates whose connection ended, or that got no answer within 10 s.
    pub unanswered: u64,
    pub connects: u64,
    pub failed_connects: u64,
    /// How connections ended, other than by the writer's own close: `close 1001`, `dropped`, ...
    pub endings: BTreeMap<String, u64>,
}

impl Tally {
    pub fn acks(&self) -> u64 {
        self.cache + self.fallback + self.duplicate
    }

    /// Acks with this `stored` value.
    pub fn stored(&self, stored: &str) -> u64 {
        match stored {
            "cache" => self.cache,
            "fallback" => self.fallback,
            "duplicate" => self.duplicate,
            other => panic!("no such stored value {other:?}"),
        }
    }

    /// Connections that ended any way but the writer's own close.
    pub fn ended(&self) -> u64 {
        self.endings.values().sum()
    }
}

/// Per document, the highest acknowledged sequence number at one moment (see `Traffic::marks`).
#[derive(Clone, Debug, Default)]
pub struct Marks(BTreeMap<String, u64>);

#[derive(Clone, Debug, Default)]
struct DocLedger {
    /// Highest sequence number sent (never reused, even when unanswered).
    sent: u64,
    /// Highest sequence number acknowledged, and how.
    acked: Option<(u64, String)>,
}

#[derive(Default)]
struct Ledger {
    docs: BTreeMap<String, DocLedger>,
    tally: Tally,
    /// Broken promises seen on the wire: wrong ack hashes, stale snapshots.
    violations: Vec<String>,
    /// The last few error replies and connection failures, for failure messages.
    recent: VecDeque<String>,
}

impl Ledger {
    fn note(&mut self, what: String) {
        if self.recent.len() == 8 {
            self.recent.pop_front();
        }
        self.recent.push_back(what);
    }
}

/// Background writers; see the module doc. Dropping it aborts them.
pub struct Traffic {
    docs: Vec<String>,
    mode: watch::Sender<Mode>,
    target: watch::Sender<Option<SocketAddr>>,
    ledger: Arc<Mutex<Ledger>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Starts every writer against `app`; returns at once (see `await_every_doc_acked`).
    pub fn start(app: &TestApp, plan: TrafficPlan) -> Traffic {
        let (mode, _) = watch::channel(Mode::Run);
        let (target, _) = watch::channel(Some(app.addr));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut docs = Vec::new();
        let mut tasks = Vec::new();
        for client in 0..plan.clients {
            for n in 0..plan.docs_per_client {
                let doc = format!("{}-c{client}-{n}", plan.label);
                ledger
                    .lock()
                    .unwrap()
                    .docs
                    .insert(doc.clone(), DocLedger::default());
                let writer = Writer {
                    doc: doc.clone(),
                    client,
                    pace: plan.pace,
                    mode: mode.subscribe(),
                    target: target.subscribe(),
                    ledger: ledger.clone(),
                };
                tasks.push(tokio::spawn(writer.run()));
                docs.push(doc);
            }
        }
        Traffic {
            docs,
            mode,
            target,
            ledger,
            tasks,
        }
    }

    pub fn docs(&self) -> &[String] {
        &self.docs
    }

    pub fn tally(&self) -> Tally {
        self.ledger.lock().unwrap().tally.clone()
    }

    /// The highest acknowledged sequence number of `doc`.
    pub fn last_acked(&self, doc: &str) -> Option<u64> {
        self.ledger.lock().unwrap().docs[doc]
            .acked
            .as_ref()
            .map(|(seq, _)| *seq)
    }

    /// A one-line account for failure messages.
    pub fn summary(&self) -> String {
        let ledger = self.ledger.lock().unwrap();
        format!(
            "{:?}; violations {:?}; recent {:?}",
            ledger.tally, ledger.violations, ledger.recent
        )
    }

    /// Stop sending; keep the connections open.
    /// The opening most fault stories share: "steady" writers that keep going, and "parked"
    /// writers (2 clients × 2 documents) whose every document is acknowledged once and then left
    /// alone, so their content sits wherever the fault strikes.
    pub async fn steady_and_parked(app: &TestApp, within: Duration) -> (Traffic, Traffic) {
        let steady = Traffic::start(app, TrafficPlan::new("steady"));
        let parked = Traffic::start(
            app,
            TrafficPlan::new("parked").clients(2).docs_per_client(2),
        );
        steady.await_every_doc_acked(within).await;
        parked.await_every_doc_acked(within).await;
        parked.park();
        (steady, parked)
    }

    pub fn park(&self) {
        self.mode.send_replace(Mode::Park);
    }

    pub fn resume(&self) {
        self.mode.send_replace(Mode::Run);
    }

    /// Open no new connection until `follow`: call it before the service is killed or stopped,
    /// so no writer reaches another test's service that gets the old port. Open connections stay.
    pub fn detach(&self) {
        self.target.send_replace(None);
    }

    /// (Re)connect to `app` from now on, e.g. after `TestApp::restart`.
    pub fn follow(&self, app: &TestApp) {
        self.target.send_replace(Some(app.addr));
    }

    /// Every document's highest acknowledged sequence number (0: none yet), to wait for
    /// progress from.
    pub fn marks(&self) -> Marks {
        let ledger = self.ledger.lock().unwrap();
        let marks = ledger
            .docs
            .iter()
            .map(|(doc, d)| (doc.clone(), d.acked.as_ref().map_or(0, |(seq, _)| *seq)));
        Marks(marks.collect())
    }

    /// Waits until every document has at least one acknowledged update.
    pub async fn await_every_doc_acked(&self, within: Duration) {
        self.await_progress(&Marks::default(), within).await;
    }

    /// Waits until every document has an update acknowledged after `since` was taken.
    pub async fn await_progress(&self, since: &Marks, within: Duration) {
        eventually(within, "a new ack on every document", async || {
            let now = self.marks();
            let waiting: Vec<&String> = now
                .0
                .iter()
                .filter(|(doc, seq)| **seq <= since.0.get(*doc).copied().unwrap_or(0))
                .map(|(doc, _)| doc)
                .collect();
            ensure!(
                waiting.is_empty(),
                "no new ack on {waiting:?}; {}",
                self.summary()
            );
            Ok(())
        })
        .await;
    }

    /// Waits until `more` acks with this `stored` value have arrived since `since` was taken.
    pub async fn await_acks(&self, stored: &str, more: u64, since: &Tally, within: Duration) {
        let want = since.stored(stored) + more;
        let what = format!("{more} more acks stored as {stored:?}");
        eventually(within, &what, async || {
            let now = self.tally();
            ensure!(now.stored(stored) >= want, "tally {now:?}");
            Ok(())
        })
        .await;
    }

    /// Stops every writer (each finishes the update it is waiting on, then closes with 1000)
    /// and waits for them. The ledger is final afterwards.
    pub async fn stop(&mut self) {
        self.mode.send_replace(Mode::Stop);
        for task in self.tasks.drain(..) {
            let joined = tokio::time::timeout(ANSWER_WITHIN * 2, task).await;
            assert!(
                matches!(joined, Ok(Ok(()))),
                "a traffic writer did not stop: {joined:?}"
            );
        }
    }

    /// Asserts the wire-level promises held (every ack carried the content's hash, no snapshot
    /// was older than an acknowledged update) and that traffic was stopped.
    pub fn assert_no_violations(&self) {
        assert!(self.tasks.is_empty(), "stop the traffic before verifying");
        let ledger = self.ledger.lock().unwrap();
        assert!(
            ledger.violations.is_empty(),
            "broken promises on the wire: {:#?}\n{:?}",
            ledger.violations,
            ledger.tally
        );
    }

    /// Waits (at most 30 s) until PostgreSQL holds, for every document, the last acknowledged
    /// content or a later one. Reads PostgreSQL directly, so `app` may have exited.
    pub async fn verify_in_postgres(&self, app: &TestApp) {
        self.assert_no_violations();
        eventually(
            Duration::from_secs(30),
            "every acknowledged update in PostgreSQL",
            async || self.check_postgres(app).await,
        )
        .await;
    }

    /// Like `verify_in_postgres`, asking the running service to flush before every look.
    pub async fn flush_and_verify(&self, app: &TestApp) {
        self.assert_no_violations();
        eventually(
            Duration::from_secs(30),
            "every acknowledged update flushed to PostgreSQL",
            async || {
                let report = app.admin().flush_now().await;
                ensure!(report["failed"] == 0, "flush report {report}");
                self.check_postgres(app).await
            },
        )
        .await;
    }

    async fn check_postgres(&self, app: &TestApp) -> Result<(), String> {
        let rows = app
            .pg()
            .await
            .query(
                "SELECT doc_id, content, content_hash FROM documents WHERE doc_id = ANY($1)",
                &[&self.docs],
            )
            .await
            .map_err(|e| format!("read documents: {e}"))?;
        let mut in_pg = BTreeMap::new();
        for row in rows {
            let (doc, content, hash): (String, Option<Value>, String) =
                (row.get(0), row.get(1), row.get(2));
            let content = content.unwrap_or(Value::Null);
            if hash != content_hash(&content) {
                return Err(format!("{doc}: hash {hash} does not match {content}"));
            }
            in_pg.insert(doc, content["seq"].as_u64());
        }
        let (behind, tally) = {
            let ledger = self.ledger.lock().unwrap();
            let behind: Vec<String> = ledger
                .docs
                .iter()
                .filter_map(|(doc, d)| {
                    let (acked, stored) = d.acked.as_ref()?;
                    let held = in_pg.get(doc).copied().flatten();
                    (held < Some(*acked)).then(|| {
                        format!("{doc}: acked #{acked} ({stored}), PostgreSQL has {held:?}")
                    })
                })
                .collect();
            (behind, ledger.tally.clone())
        };
        if behind.is_empty() {
            eprintln!("verified {} documents: {tally:?}", self.docs.len());
            return Ok(());
        }
        // Not too many connections to the shared server while waiting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Err(format!(
            "{} of {} documents behind: {behind:?}; {}",
            behind.len(),
            self.docs.len(),
            self.summary()
        ))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
