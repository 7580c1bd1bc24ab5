//! `TestApp`: one test's docroom, with its own port, Redis key prefix, database and data
//! directory. By default the app runs inside the test process ([`InProcessApp`]); with
//! [`TestOptions::process`] it is the built binary as a child process, so that a test can send it
//! real signals, kill it and read its exit status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::child;
use super::in_process::InProcessApp;
use super::logs::Sink;
use super::options::{Deployment, TestOptions};
use super::{eventually, random_suffix, storage};

/// The bearer token every `TestApp` configures unless told not to.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The machine's shared Redis: tests only ever touch their own prefix in it.
pub const SHARED_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The machine's shared PostgreSQL: tests only ever touch their own database in it.
pub const SHARED_PG_ADDR: &str = "127.0.0.1:5432";

/// Timers small enough that every story runs in seconds; a test's own `env` wins over these.
const FAST_TIMERS: &[(&str, &str)] = &[
    ("DOCROOM__FLUSHER__BASE_PERIOD_MS", "200"),
    ("DOCROOM__FLUSHER__ERROR_PERIOD_MS", "600"),
    ("DOCROOM__FLUSHER__MAX_PERIOD_MS", "1200"),
    ("DOCROOM__SESSION__HEARTBEAT_INTERVAL_MS", "100"),
    ("DOCROOM__SESSION__CLIENT_TIMEOUT_MS", "1000"),
    ("DOCROOM__BREAKER__OPEN_MS", "500"),
    ("DOCROOM__SERVER__SHUTDOWN_DRAIN_DEADLINE_MS", "10000"),
];

/// How the app runs; `None` while it is stopped (between a kill or a stop and a restart).
enum Run {
    InProcess(Option<InProcessApp>),
    Process(Option<Child>),
}

/// One docroom with its own port, Redis key prefix, database and data directory. Dropping it stops
/// the app at once (kills the process), drops the database and deletes the prefix's keys.
pub struct TestApp {
    /// Where the current run listens (changes on restart).
    pub addr: SocketAddr,
    /// Redis key prefix, e.g. `t1f2e...:`.
    pub prefix: String,
    /// The PostgreSQL database of this test.
    pub db_name: String,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub(super) redis_check_url: String,
    redis_url: String,
    database_url: String,
    /// False for a further replica of another app's deployment: that app cleans up.
    owns_storage: bool,
    pub(super) http: reqwest::Client,
    env: Vec<(String, String)>,
    /// Process mode only: arguments before `serve`, and the working directory.
    args: Vec<String>,
    working_dir: PathBuf,
    delete_data_dir: bool,
    run: Run,
    /// Every line the app logged, all runs (in process: its tracing events and panics).
    logs: Sink,
    generation: u32,
}

impl TestApp {
    /// The default app: in process, shared Redis and PostgreSQL, fast timers, admin token set.
    pub async fn start() -> TestApp {
        Self::spawn(TestOptions::new()).await
    }

    pub async fn spawn(opts: TestOptions) -> TestApp {
        assert!(
            opts.process || (opts.args.is_empty() && opts.working_dir.is_none()),
            "arguments and a working directory are for a child process: add .process()"
        );
        let suffix = random_suffix();
        let (prefix, db_name) = match &opts.deployment {
            Some(d) => (d.prefix.clone(), d.db_name.clone()),
            None => (format!("t{suffix}:"), format!("docroom_t_{suffix}")),
        };
        let (data_dir, delete_data_dir) = match opts.data_dir {
            Some(dir) => (dir, false),
            None => {
                let dir = std::env::temp_dir().join(format!("docroom-test-{suffix}"));
                (dir, !opts.keep_data_dir)
            }
        };
        std::fs::create_dir_all(&data_dir).expect("create the test's data dir");
        let redis_url = match &opts.deployment {
            // A replica may reach the deployment's Redis its own way (through a proxy).
            Some(d) => opts
                .redis_url
                .clone()
                .unwrap_or_else(|| d.redis_url.clone()),
            None => opts.redis_url.unwrap_or_else(|| SHARED_REDIS_URL.into()),
        };
        let db_addr = opts.database_addr.unwrap_or_else(|| SHARED_PG_ADDR.into());
        let database_url = match &opts.deployment {
            Some(d) => d.database_url.clone(),
            None => format!("postgres://postgres@{db_addr}/{db_name}"),
        };
        let admin_token = (!opts.no_admin_token).then(|| ADMIN_TOKEN.to_owned());

        let mut env: Vec<(String, String)> = vec![
            // In process: port 0, the bound address is read back. A child gets a chosen port.
            ("DOCROOM_LISTEN".into(), "127.0.0.1:0".into()),
            ("DOCROOM_REDIS_URL".into(), redis_url.clone()),
            ("DOCROOM_DATABASE_URL".into(), database_url.clone()),
            // Replicas of one deployment in one test process share a process id: name each.
            ("DOCROOM_REPLICA_ID".into(), format!("r{suffix}")),
            ("DOCROOM_DATA_DIR".into(), data_dir.display().to_string()),
            ("DOCROOM__CACHE__KEY_PREFIX".into(), prefix.clone()),
            (
                "DOCROOM_LOG".into(),
                std::env::var("DOCROOM_TEST_LOG").unwrap_or_else(|_| "info".into()),
            ),
        ];
        env.extend(
            FAST_TIMERS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        if let Some(token) = &admin_token {
            env.push(("DOCROOM_ADMIN_TOKEN".into(), token.clone()));
        }
        env.extend(opts.env);

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the http client");
        let mut app = TestApp {
            addr: "0.0.0.0:0".parse().unwrap(),
            prefix,
            db_name,
            data_dir,
            admin_token,
            redis_check_url: match &opts.deployment {
                Some(d) => d.redis_check_url.clone(),
                None => opts.redis_check_url.unwrap_or(redis_url.clone()),
            },
            redis_url,
            database_url,
            owns_storage: opts.deployment.is_none(),
            http,
            env,
            args: opts.args,
            working_dir: opts
                .working_dir
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
            delete_data_dir,
            run: if opts.process {
                Run::Process(None)
            } else {
                Run::InProcess(None)
            },
            logs: Arc::default(),
            generation: 0,
        };
        app.launch().await;
        app
    }

    /// Options for another replica of this app's deployment: same Redis, key prefix and
    /// database, its own port, data directory and replica id.
    pub fn replica_options(&self) -> TestOptions {
        TestOptions {
            deployment: Some(Deployment {
                prefix: self.prefix.clone(),
                db_name: self.db_name.clone(),
                redis_url: self.redis_url.clone(),
                redis_check_url: self.redis_check_url.clone(),
                database_url: self.database_url.clone(),
            }),
            ..TestOptions::new()
        }
    }

    /// Another replica of this app's deployment, in process.
    pub async fn replica(&self) -> TestApp {
        TestApp::spawn(self.replica_options()).await
    }

    /// Starts the app again with the same settings, prefix, database and data directory (on a new
    /// port); a run still going is first stopped the way SIGTERM stops it (drained).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Stops the app with a drain, as SIGTERM does; a stopped app stays stopped.
    pub async fn stop(&mut self) {
        match &mut self.run {
            Run::InProcess(app) => {
                if let Some(app) = app.take() {
                    if let Err(e) = app.stop().await {
                        panic!("the app stopped with an error: {e}");
                    }
                }
            }
            Run::Process(child) => {
                if child.is_some() {
                    self.sigterm().await;
                }
            }
        }
    }

    /// Stops the app at once, without a drain: SIGKILL for a child process, the in-process kill
    /// (the server and every actor stopped, nothing saved) otherwise. A killed app stays stopped
    /// until [`restart`](TestApp::restart).
    pub async fn kill(&mut self) {
        match &mut self.run {
            Run::InProcess(app) => drop(app.take()),
            Run::Process(child) => {
                if child.is_some() {
                    self.sigkill().await;
                }
            }
        }
    }

    /// Sends SIGTERM and waits (at most 60 s) for the process to exit.
    pub async fn sigterm(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(60)).await
    }

    /// Kills the process with SIGKILL and reaps it.
    pub async fn sigkill(&mut self) -> ExitStatus {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(10)).await
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let Run::Process(child) = &self.run else {
            process_only("signal")
        };
        let pid = child.as_ref().expect("the service is not running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.run {
            Run::Process(child) => child.as_ref().map(Child::id),
            Run::InProcess(_) => process_only("pid"),
        }
    }

    /// Waits for the process to exit by itself; panics (after killing it) past `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let Run::Process(slot) = &mut self.run else {
            process_only("wait_exit")
        };
        let child = slot.as_mut().expect("the service is not running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the service") {
                *slot = None;
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                *slot = None;
                panic!("the service did not exit within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every line the app has logged so far (all runs), without ANSI colours. In process: its
    /// `tracing` events (`LEVEL target: message key=value`) and its threads' panics.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle` and returns it.
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        eventually(
            within,
            &format!("a log line containing {needle:?}"),
            async || {
                self.logs()
                    .into_iter()
                    .find(|line| line.contains(needle))
                    .ok_or_else(|| "not logged yet".to_owned())
            },
        )
        .await
    }

    async fn launch(&mut self) {
        self.generation += 1;
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .rsplit("::")
            .next()
            .unwrap_or("test")
            .to_owned();
        let label = format!("docroom {test} #{}", self.generation);
        self.addr = match &mut self.run {
            Run::InProcess(slot) => {
                let app = InProcessApp::start(self.env.clone(), self.logs.clone(), &label).await;
                let addr = app.addr;
                *slot = Some(app);
                addr
            }
            Run::Process(slot) => {
                let spec = child::ChildSpec {
                    vars: &self.env,
                    args: &self.args,
                    working_dir: &self.working_dir,
                };
                let (process, addr) = child::launch(&spec, &self.logs, &label).await;
                *slot = Some(process);
                addr
            }
        };
        let url = self.url("/healthz");
        eventually(
            Duration::from_secs(30),
            "/healthz to answer 200",
            async || match self.http.get(&url).send().await {
                Ok(reply) if reply.status() == 200 => Ok(()),
                Ok(reply) => Err(format!("status {}", reply.status())),
                Err(e) => Err(e.to_string()),
            },
        )
        .await;
    }
}

/// What an in-process app answers to a question only a child process has an answer to.
fn process_only(what: &str) -> ! {
    panic!(
        "TestApp::{what} needs the app in a child process: spawn it with \
         TestOptions::new().process()"
    )
}

impl Drop for TestApp {
    fn drop(&mut self) {
        match &mut self.run {
            // Its own drop stops it at once, no drain: the in-process kill.
            Run::InProcess(app) => drop(app.take()),
            Run::Process(child) => {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if std::env::var_os("DOCROOM_TEST_KEEP").is_some() {
            eprintln!(
                "keeping database {} and redis prefix {} (DOCROOM_TEST_KEEP)",
                self.db_name, self.prefix
            );
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on; clean up from a thread
        // with its own runtime, each step bounded so a paused private Redis cannot hang the test.
        if !self.owns_storage {
            if self.delete_data_dir {
                let _ = std::fs::remove_dir_all(&self.data_dir);
            }
            return;
        }
        let (db, redis, prefix) = (
            self.db_name.clone(),
            self.redis_check_url.clone(),
            self.prefix.clone(),
        );
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let bound = Duration::from_secs(10);
                if let Ok(Err(e)) = tokio::time::timeout(bound, storage::drop_database(&db)).await {
                    eprintln!("cleanup: could not drop database {db}: {e}");
                }
                let _ = tokio::time::timeout(bound, storage::delete_keys(&redis, &prefix)).await;
            });
        });
        let _ = cleanup.join();
        if self.delete_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
