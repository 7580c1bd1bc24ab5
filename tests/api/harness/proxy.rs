//! A TCP proxy that can be cut, stalled or slowed, to make PostgreSQL (or Redis) unreachable or
//! distant for one test without touching the shared server.
//!
//! It runs on its own thread and runtime, so it keeps forwarding while the test's runtime is busy
//! or blocked, and a fault is exactly what the test asked for.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::app::SHARED_PG_ADDR;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    /// New connections are accepted and closed at once (like a stopped server).
    Refuse,
    /// Nothing is forwarded; new connections are held open, silent (like a network partition).
    Stall,
}

/// Every `cut` starts a new epoch; a connection from an older epoch is dropped.
#[derive(Clone, Copy, Debug)]
struct State {
    mode: Mode,
    epoch: u64,
    /// Added before each chunk is forwarded, each way.
    delay: Duration,
}

pub struct Proxy {
    /// Point the service here instead of at the upstream.
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy in front of the shared PostgreSQL.
    pub fn to_postgres() -> Proxy {
        Proxy::start(SHARED_PG_ADDR.parse().unwrap())
    }

    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, watcher) = watch::channel(State {
            mode: Mode::Open,
            epoch: 0,
            delay: Duration::ZERO,
        });
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("proxy {addr} -> {upstream}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(accept_loop(listener, upstream, watcher, stop));
            })
            .expect("spawn the proxy thread");
        Proxy {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Drops every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Refuse;
            s.epoch += 1;
        });
    }

    /// Freezes open connections and holds new ones silent until `restore` (or `cut`).
    pub fn stall(&self) {
        self.state.send_modify(|s| s.mode = Mode::Stall);
    }

    /// Every chunk waits this long before it is forwarded, each way: a distant server.
    pub fn delay(&self, delay: Duration) {
        self.state.send_modify(|s| s.delay = delay);
    }

    /// Forwards again; stalled connections resume, cut ones stay gone.
    pub fn restore(&self) {
        self.state.send_modify(|s| s.mode = Mode::Open);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("proxy listener");
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(serve(client, upstream, state.clone()));
                }
            }
        }
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let epoch = state.borrow().epoch;
    if !wait_open(&mut state, epoch).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either side ending ends both: enough for PostgreSQL's and Redis' request/response protocols.
    tokio::select! {
        _ = pump(client_read, server_write, state.clone(), epoch) => {}
        _ = pump(server_read, client_write, state, epoch) => {}
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    epoch: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = dropped(&mut state, epoch) => return,
        };
        let delay = state.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if !wait_open(&mut state, epoch).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits out a stall; false when the connection must go (cut since it began, or refusing).
async fn wait_open(state: &mut watch::Receiver<State>, epoch: u64) -> bool {
    loop {
        let now = *state.borrow_and_update();
        if now.epoch != epoch || now.mode == Mode::Refuse {
            return false;
        }
        if now.mode == Mode::Open {
            return true;
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

/// Resolves once the connection must go.
async fn dropped(state: &mut watch::Receiver<State>, epoch: u64) {
    loop {
        let now = *state.borrow_and_update();
        if now.epoch != epoch || now.mode == Mode::Refuse || state.changed().await.is_err() {
            return;
        }
    }
}
