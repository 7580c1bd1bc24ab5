//! `TestOptions`: how one test's app differs from the default one.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How a `TestApp` differs from the default one; builder style.
#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    pub(super) env: Vec<(String, String)>,
    pub(super) redis_url: Option<String>,
    pub(super) redis_check_url: Option<String>,
    pub(super) database_addr: Option<String>,
    pub(super) no_admin_token: bool,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) keep_data_dir: bool,
    pub(super) process: bool,
    pub(super) args: Vec<String>,
    pub(super) working_dir: Option<PathBuf>,
    /// Another replica of an existing app's deployment (see `TestApp::replica_options`).
    pub(super) deployment: Option<Deployment>,
}

/// What the replicas of one deployment share: Redis, its key prefix, the database.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub(super) prefix: String,
    pub(super) db_name: String,
    pub(super) redis_url: String,
    pub(super) redis_check_url: String,
    pub(super) database_url: String,
}

impl TestOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Run the built binary as a child process instead of the app in this process: for stories
    /// where a signal, a kill, the exit status or a restart after a kill is the point.
    pub fn process(mut self) -> Self {
        self.process = true;
        self
    }

    /// A command-line argument for the child process, before `serve` (e.g. `--config DIR`).
    /// Process mode only.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The child process's working directory instead of the repository root. Process mode only.
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Any environment variable for the service (`DOCROOM__SECTION__KEY`, ...); wins over defaults.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// The cache supervisor and the log reader on the first HTTP worker's thread instead of a
    /// thread of their own (`server.storage_thread = "worker"`, what a replica with one worker
    /// gets by default).
    pub fn storage_on_worker(self) -> Self {
        self.env("DOCROOM__SERVER__STORAGE_THREAD", "worker")
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
