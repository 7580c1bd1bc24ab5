//! The service SIGKILLed under live traffic, then started again on the same data directory, key
//! prefix and database: every acknowledged update is recovered (from Redis' `modifiedDocs` and
//! the journal) and reaches PostgreSQL, and nobody reconnecting sees older content than was
//! acknowledged.

use std::time::Duration;

use crate::harness::traffic::Traffic;
use crate::harness::{ensure, eventually, TestApp, TestOptions};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_sigkill_under_traffic_loses_no_acknowledged_update() {
    // The flusher never runs by itself: at the kill, acknowledged content is in Redis only.
    let mut app = TestApp::spawn(TestOptions::new().process().flusher_paused()).await;
    let (mut steady, mut parked) = Traffic::steady_and_parked(&app, WITHIN).await;
    steady.await_progress(&steady.marks(), WITHIN).await;

    steady.detach();
    parked.detach();
    app.sigkill().await;
    // Nothing is written after the kill, so nothing can paper over a loss.
    steady.park();
    app.restart().await;

    // Reconnecting writers check their snapshots against what was acknowledged.
    let connects = [steady.tally().connects, parked.tally().connects];
    steady.follow(&app);
    parked.follow(&app);
    for (traffic, before) in [(&steady, connects[0]), (&parked, connects[1])] {
        let want = before + traffic.docs().len() as u64;
        eventually(WITHIN, "every writer reconnected", async || {
            let now = traffic.tally().connects;
            ensure!(now >= want, "{}", traffic.summary());
            Ok(())
        })
        .await;
    }
    steady.stop().await;
    parked.stop().await;
    steady.flush_and_verify(&app).await;
    parked.flush_and_verify(&app).await;
}
