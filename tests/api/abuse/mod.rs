//! Clients that try to exhaust the server (issue 11, items 9, 10, 11, 13): a member that stops
//! reading, a read-only token flooding awareness, connections that vanish while joining, and
//! the limits on the server as a whole (rooms per replica, the size of a Yjs document).
//! Each story asserts what a client or the admin API can observe, never a timing.

use std::time::Duration;

use yrs::encoding::read::Cursor;
use yrs::sync::protocol::MessageReader;
use yrs::sync::Message;
use yrs::updates::decoder::DecoderV1;

use crate::harness::{Frame, TestApp, WsClient};

mod awareness;
mod phantoms;
mod server_limits;
mod stalled_reader;

const WITHIN: Duration = Duration::from_secs(20);

/// Resident memory of the service process, from /proc/<pid>/status.
fn rss_kib(app: &TestApp) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.pid().unwrap()))
        .expect("read the service's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc status")
}

async fn members(app: &TestApp, doc: &str) -> Option<u64> {
    app.admin()
        .room(doc)
        .await
        .map(|room| room["members"].as_u64().unwrap())
}

/// A gauge's value in `GET /metrics` (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn decode(frame: &[u8]) -> Vec<Message> {
    let mut decoder = DecoderV1::new(Cursor::new(frame));
    MessageReader::new(&mut decoder)
        .collect::<Result<_, _>>()
        .expect("the server's frames decode")
}

/// The close code the server sends `client`, skipping other frames.
async fn close_code(client: &mut WsClient) -> Option<u16> {
    loop {
        match client.recv_within(WITHIN).await {
            Some(Frame::Closed(code)) => return code,
            Some(Frame::Gone(why)) => panic!("no Close frame: {why}"),
            Some(_) => {}
            None => panic!("not closed within {WITHIN:?}"),
        }
    }
}
