//! The app inside the test process: `docroom::startup::Application` on a thread of its own with
//! its own actix `System`, the way `main` runs it, on a port-0 listener whose address it hands
//! back. Starting one takes milliseconds instead of a process launch.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::rt::System;
use docroom::settings::Settings;
use docroom::startup::Application;
use tokio::sync::oneshot;

use super::logs::{self, Sink};

/// One run of the app. Dropping it stops the app at once, without a drain, the way a test's
/// child process is killed; [`InProcessApp::stop`] drains first, like SIGTERM.
pub struct InProcessApp {
    pub addr: SocketAddr,
    drain: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl InProcessApp {
    /// Builds the app from `vars` (the same variables a child process would get) and returns
    /// once it listens; panics with the startup error or the app's log otherwise.
    pub async fn start(vars: Vec<(String, String)>, sink: Sink, label: &str) -> InProcessApp {
        logs::install();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (drain, drain_rx) = oneshot::channel::<()>();
        let (kill, kill_rx) = oneshot::channel::<()>();
        let log_sink = sink.clone();
        let thread = std::thread::Builder::new()
            .name(label.to_owned())
            .spawn(move || run(vars, log_sink, ready_tx, drain_rx, kill_rx))
            .expect("spawn the app's thread");
        let mut app = InProcessApp {
            addr: "0.0.0.0:0".parse().unwrap(),
            drain: Some(drain),
            kill: Some(kill),
            thread: Some(thread),
        };
        let log = || sink.lock().unwrap().join("\n");
        app.addr = match tokio::time::timeout(Duration::from_secs(60), ready_rx).await {
            Ok(Ok(Ok(addr))) => addr,
            Ok(Ok(Err(e))) => panic!("docroom did not start in process: {e}\n{}", log()),
            Ok(Err(_)) => panic!("docroom's thread ended before it listened\n{}", log()),
            Err(_) => panic!("docroom did not listen within 60 s\n{}", log()),
        };
        app
    }

    /// Drains (sessions closed with 1001, everything to PostgreSQL or the journal) and stops, as
    /// `main` does on SIGTERM; returns what `run_until_stopped` returned.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
        let thread = self.thread.take().expect("the app's thread is joined once");
        // Polled, not joined: the test's runtime must keep serving its clients meanwhile.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the app did not stop within 60 s of its shutdown"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        thread
            .join()
            .unwrap_or_else(|_| Err("the app's thread panicked".into()))
    }
}

impl Drop for InProcessApp {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The kill path stops the server without waiting for connections: this is short.
            let _ = thread.join();
        }
    }
}

/// The app's thread: build, report the address, serve until drained or killed, then stop the
/// System so every arbiter (HTTP workers, rooms, storage actors) ends with it.
fn run(
    vars: Vec<(String, String)>,
    sink: Sink,
    ready: oneshot::Sender<Result<SocketAddr, String>>,
    drain: oneshot::Receiver<()>,
    kill: oneshot::Receiver<()>,
) -> Result<(), String> {
    let runner = System::new();
    let system = System::current().id();
    logs::register(system, sink);
    let result = runner.block_on(async move {
        let built = match Settings::load_from(None, vars) {
            Ok(settings) => Application::build(settings)
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        };
        let app = match built {
            Ok(app) => app,
            Err(e) => {
                let _ = ready.send(Err(e.clone()));
                return Err(e);
            }
        };
        let _ = ready.send(Ok(app.addr()));
        let server = app.server_handle();
        // A dropped `drain` sender is not a shutdown request; a dropped `kill` sender is a kill.
        let drained = async {
            if drain.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            res = app.run_until_stopped(drained) => res.map_err(|e| format!("{e:#}")),
            _ = kill => {
                server.stop(false).await;
                Ok(())
            }
        }
    });
    System::current().stop();
    let _ = runner.run();
    logs::unregister(system);
    result
}
