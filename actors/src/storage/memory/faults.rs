//! The faults a test injects into an in-memory store: fail, hold, or slow every call.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// What a test can do to a store. Cloning is shallow: the test keeps one clone, the store the
/// other.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<FaultsInner>,
}

struct FaultsInner {
    failing: AtomicBool,
    /// `true` while calls are held; a call waits until it turns `false`.
    paused: watch::Sender<bool>,
    delay: Mutex<Duration>,
    /// Calls that have started (held ones included), so a test can wait for one to arrive.
    calls: AtomicUsize,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            inner: Arc::new(FaultsInner {
                failing: AtomicBool::new(false),
                paused: watch::channel(false).0,
                delay: Mutex::new(Duration::ZERO),
                calls: AtomicUsize::new(0),
            }),
        }
    }
}

impl Faults {
    /// Every call fails from now on (`true`) or works again (`false`).
    pub fn fail(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// Every call from now on waits until [`resume`](Faults::resume).
    pub fn pause(&self) {
        self.inner.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.inner.paused.send_replace(false);
    }

    /// Every call takes at least this long.
    pub fn slow(&self, delay: Duration) {
        *self.inner.delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls have started.
    pub async fn until_calls(&self, n: usize) {
        while self.calls() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Where every call begins: counted, held while paused, slowed, then failed if failing.
    pub(super) async fn enter(&self) -> Result<(), String> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let mut paused = self.inner.paused.subscribe();
        let _ = paused.wait_for(|held| !held).await;
        let delay = *self.inner.delay.lock().unwrap_or_else(|p| p.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.inner.failing.load(Ordering::SeqCst) {
            true => Err("injected failure".into()),
            false => Ok(()),
        }
    }
}
