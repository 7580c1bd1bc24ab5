//! `TestApp`: the built `docroom` binary as a child process, the way production runs it, so tests
//! can send it real signals.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

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

/// How a `TestApp` differs from the default one; builder style.
#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    env: Vec<(String, String)>,
    redis_url: Option<String>,
    redis_check_url: Option<String>,
    database_addr: Option<String>,
    no_admin_token: bool,
    data_dir: Option<PathBuf>,
    keep_data_dir: bool,
}

impl TestOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any environment variable for the service (`DOCROOM__SECTION__KEY`, ...); wins over defaults.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// A flusher that never runs by itself (only `POST /admin/flusher/flush` flushes), so a test
    /// can watch what waits for it.
    pub fn flusher_paused(self) -> Self {
        let hour = 3_600_000;
        self.env("DOCROOM__FLUSHER__BASE_PERIOD_MS", hour)
            .env("DOCROOM__FLUSHER__ERROR_PERIOD_MS", hour)
            .env("DOCROOM__FLUSHER__MAX_PERIOD_MS", hour)
    }

    /// The Redis the service uses; direct checks use it too unless `redis_check_url` is given.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Where the test's own Redis checks go when the service talks through a proxy.
    pub fn redis_check_url(mut self, url: impl Into<String>) -> Self {
        self.redis_check_url = Some(url.into());
        self
    }

    /// The service reaches PostgreSQL at `addr` (e.g. a `Proxy`); the test's own checks and the
    /// cleanup still go straight to the shared server.
    pub fn database_through(mut self, addr: SocketAddr) -> Self {
        self.database_addr = Some(addr.to_string());
        self
    }

    /// Leave `DOCROOM_ADMIN_TOKEN` unset (the admin API answers 503).
    pub fn no_admin_token(mut self) -> Self {
        self.no_admin_token = true;
        self
    }

    /// Use this data directory (the caller owns it; it is not deleted).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Do not delete the generated data directory on drop (to inspect a journal after a failure).
    pub fn keep_data_dir(mut self) -> Self {
        self.keep_data_dir = true;
        self
    }
}

/// One docroom process with its own port, Redis key prefix, database and data directory. Dropping
/// it kills the process, drops the database and deletes the prefix's keys.
pub struct TestApp {
    /// Where the current process listens (changes on restart).
    pub addr: SocketAddr,
    /// Redis key prefix, e.g. `t1f2e...:`.
    pub prefix: String,
    /// The PostgreSQL database of this test.
    pub db_name: String,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub(super) redis_check_url: String,
    pub(super) http: reqwest::Client,
    env: Vec<(String, String)>,
    delete_data_dir: bool,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    generation: u32,
}

impl TestApp {
    /// The default app: shared Redis and PostgreSQL, fast timers, admin token set.
    pub async fn start() -> TestApp {
        Self::spawn(TestOptions::new()).await
    }

    pub async fn spawn(opts: TestOptions) -> TestApp {
        let suffix = random_suffix();
        let prefix = format!("t{suffix}:");
        let db_name = format!("docroom_t_{suffix}");
        let (data_dir, delete_data_dir) = match opts.data_dir {
            Some(dir) => (dir, false),
            None => {
                let dir = std::env::temp_dir().join(format!("docroom-test-{suffix}"));
                (dir, !opts.keep_data_dir)
            }
        };
        std::fs::create_dir_all(&data_dir).expect("create the test's data dir");
        let redis_url = opts.redis_url.unwrap_or_else(|| SHARED_REDIS_URL.into());
        let db_addr = opts.database_addr.unwrap_or_else(|| SHARED_PG_ADDR.into());
        let admin_token = (!opts.no_admin_token).then(|| ADMIN_TOKEN.to_owned());

        let mut env: Vec<(String, String)> = vec![
            ("DOCROOM_LISTEN".into(), "127.0.0.1:0".into()),
            ("DOCROOM_REDIS_URL".into(), redis_url.clone()),
            (
                "DOCROOM_DATABASE_URL".into(),
                format!("postgres://postgres@{db_addr}/{db_name}"),
            ),
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
            redis_check_url: opts.redis_check_url.unwrap_or(redis_url),
            http,
            env,
            delete_data_dir,
            child: None,
            logs: Arc::default(),
            generation: 0,
        };
        app.launch().await;
        app
    }

    /// Starts the process again with the same prefix, database and data directory (on a new
    /// port); a process still running is first stopped with SIGTERM.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.sigterm().await;
        }
        self.launch().await;
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
        let pid = self.pid().expect("the service is not running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for the process to exit by itself; panics (after killing it) past `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("the service is not running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the service") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!("the service did not exit within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every line the service has logged so far (all runs), without ANSI colours.
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_docroom"));
        cmd.arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Only this test's settings: nothing leaks in from the developer's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DOCROOM") {
                cmd.env_remove(key);
            }
        }
        cmd.env("NO_COLOR", "1").env("RUST_BACKTRACE", "1");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("spawn the docroom binary");

        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .rsplit("::")
            .next()
            .unwrap_or("test")
            .to_owned();
        let label = format!("[docroom {test} #{}]", self.generation);
        let (addr_tx, mut addr_rx) = mpsc::unbounded_channel();
        forward(
            child.stderr.take().unwrap(),
            &label,
            &self.logs,
            Some(addr_tx),
        );
        forward(child.stdout.take().unwrap(), &label, &self.logs, None);
        self.child = Some(child);

        let addr = match tokio::time::timeout(Duration::from_secs(60), addr_rx.recv()).await {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!(
                "docroom exited before logging `listening addr=`: {:?}\n{}",
                self.child.as_mut().unwrap().try_wait(),
                self.logs().join("\n")
            ),
            Err(_) => panic!("docroom did not log `listening addr=` within 60 s"),
        };
        self.addr = addr;
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

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
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

/// Copies the child's output to the test's stderr (captured by libtest, shown on failure) and to
/// `logs`; sends the address of the first `listening addr=` line to `addr_tx`.
fn forward(
    stream: impl Read + Send + 'static,
    label: &str,
    logs: &Arc<Mutex<Vec<String>>>,
    mut addr_tx: Option<mpsc::UnboundedSender<SocketAddr>>,
) {
    let (label, logs) = (label.to_owned(), logs.clone());
    let capture = std::thread::Builder::new().name(format!("{label} output"));
    capture
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).unwrap_or(0) > 0 {
                let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end());
                raw.clear();
                eprintln!("{label} {line}");
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                logs.lock().unwrap().push(line);
            }
        })
        .expect("spawn the output thread");
}

/// The address in a `listening addr=IP:PORT` log line (text format; quotes tolerated).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let rest = &line[line.find("addr=")? + "addr=".len()..];
    let token = rest.split_whitespace().next()?;
    token.trim_matches(|c| c == '"' || c == ',').parse().ok()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_listening_line_is_parsed_with_or_without_colours() {
    let plain = "2026-01-01T00:00:00Z  INFO docroom::startup: listening addr=127.0.0.1:4242";
    assert_eq!(
        listening_addr(plain),
        Some("127.0.0.1:4242".parse().unwrap())
    );
    let coloured = "\u{1b}[32m INFO\u{1b}[0m listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:9 x=1";
    assert_eq!(
        listening_addr(&strip_ansi(coloured)),
        Some("127.0.0.1:9".parse().unwrap())
    );
    assert_eq!(listening_addr("connecting addr=127.0.0.1:1"), None);
}
