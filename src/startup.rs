//! Building and running the application. `main` and the tests call the same entry points:
//! [`Application::build`] then [`Application::run_until_stopped`] with a shutdown future (the
//! signals for `main`, a channel for the tests, which run the app in their own process).

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use docroom_actors::core::{Core, CoreSettings};
use docroom_actors::fallback::{Fallback, JournalError};
use docroom_actors::flusher::FlusherSettings;
use docroom_actors::ledger::Ledger;
use docroom_actors::room::RoomLimits;
use docroom_actors::storage::{tls, CacheSettings, MemoryPolicy, PgStore, RedisCache, RedisTarget};
use docroom_actors::supervisor::{Stores, SupervisorSettings};
use tracing::{info, warn};

use crate::heartbeat::Heartbeat;
use crate::history::{FlushVersions, History, HistoryWriter};
use crate::limits::RenderingTurns;
use crate::settings::{ServerSettings, Settings, Settings as S, StorageThread};
use crate::state::AppState;
use crate::webhooks::Webhooks;
use crate::{db, routes, shutdown};

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    state: AppState,
    store: PgStore,
    heartbeat: Heartbeat,
    /// Writes the rooms' versions; waited for at shutdown.
    history_writer: Option<actix::Addr<HistoryWriter>>,
    /// The actors; kept so the threads they run on live as long as the app.
    _core: Core,
}

impl Application {
    /// Opens the journal, connects the stores, starts the actors and binds the listener.
    /// PostgreSQL or Redis being down does not stop it: the flusher and the breaker cope.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        crate::telemetry::init_metrics(S::ms(settings.flusher.base_period_ms));
        let db = &settings.database;
        let db_ca = S::path(&db.ca_file);
        info!(
            redis = %tls::redact(&settings.cache.url),
            sentinels = %settings.cache.sentinels,
            postgres = %tls::redact(&db.url),
            "stores configured"
        );
        let store = PgStore::connect(&db.url, db_ca, db.pool_size, S::ms(db.statement_timeout_ms))?
            .with_stored_events(settings.webhooks.enabled());
        bootstrap_database(&db.url, db_ca, &store).await?;

        let fallback = open_journal(
            &settings.journal.data_dir,
            S::ms(settings.journal.lock_wait_ms),
        )
        .await
        .with_context(|| {
            format!(
                "opening the journal in {}",
                settings.journal.data_dir.display()
            )
        })?;
        let (c, b, f) = (&settings.cache, &settings.breaker, &settings.flusher);
        let replica: Arc<str> = replica_id(&settings.server.replica_id).into();
        let target = RedisTarget {
            url: c.url.clone(),
            ca_file: S::path(&c.ca_file).map(Into::into),
            sentinel: settings.sentinels().map_err(anyhow::Error::msg)?,
        };
        check_redis(
            &target,
            S::ms(c.connection_timeout_ms + c.response_timeout_ms),
        )
        .await?;
        let cache = RedisCache::new(CacheSettings {
            target,
            key_prefix: c.key_prefix.clone(),
            replica: replica.clone(),
            ttl_secs: c.ttl_secs,
            claim_ms: c.claim_ms,
            log_retention_ms: c.log_retention_ms,
            lock_ttl_secs: c.lock_ttl_secs,
            response_timeout: S::ms(c.response_timeout_ms),
            connection_timeout: S::ms(c.connection_timeout_ms),
            retry_base: S::ms(b.retry_base_ms),
            retry_max: S::ms(b.retry_max_ms),
            retry_jitter: S::ms(b.retry_jitter_ms),
            mark_changes: settings.webhooks.enabled(),
        });
        let webhooks = Webhooks::start(&settings, &store, &cache, &replica);
        let history = History::new(store.pool().clone(), settings.history.clone());
        let history_writer = history
            .enabled()
            .then(|| actix::Actor::start(HistoryWriter::new(history.clone())));
        let core = Core::start(
            Stores {
                cache: Arc::new(cache),
                store: Arc::new(store.clone()),
                fallback,
                ledger: Ledger::default(),
            },
            CoreSettings {
                supervisor: SupervisorSettings {
                    failure_threshold: b.failure_threshold,
                    open_for: S::ms(b.open_ms),
                    lock_poll: S::ms(c.lock_poll_ms),
                    lock_wait: S::ms(c.lock_wait_ms),
                    health_check: S::ms(c.health_check_interval_ms),
                    retry_base: S::ms(b.retry_base_ms),
                    retry_max: S::ms(b.retry_max_ms),
                    save_linger: S::ms(c.save_linger_ms),
                    save_linger_alone: S::ms(c.save_linger_alone_ms),
                },
                flusher: FlusherSettings {
                    base_period: S::ms(f.base_period_ms),
                    error_period: S::ms(f.error_period_ms),
                    max_period: S::ms(f.max_period_ms),
                    batch_size: f.batch_size,
                    parallel_batches: f.parallel_batches,
                },
                room_arbiters: settings.rooms.arbiters,
                storage_on_worker: match settings.server.storage_thread {
                    StorageThread::Own => false,
                    StorageThread::Worker => true,
                    StorageThread::Auto => workers(&settings.server) == 1,
                },
                yjs_save_interval: S::ms(settings.rooms.yjs_save_interval_ms),
                log_poll: S::ms(c.log_poll_ms),
                replica: replica.to_string(),
                limits: room_limits(&settings.limits),
                changes: webhooks.as_ref().map(|w| w.recorder.clone().recipient()),
                history: history_writer.clone().map(|w| w.recipient()),
                history_interval: S::ms(settings.history.interval_ms),
            },
        );

        let renderings = RenderingTurns::new(&settings.limits);
        let state = AppState {
            registry: core.registry.clone(),
            supervisor: core.supervisor.clone(),
            flusher: core.flusher.clone(),
            ledger: core.ledger.clone(),
            settings: Arc::new(settings),
            replica,
            shutting_down: Arc::new(AtomicBool::new(false)),
            connections: Default::default(),
            renderings,
            refusals: core.refusals.clone(),
            webhooks,
            history,
        };
        if state.webhooks.is_some() {
            crate::webhooks::delivery::spawn(state.clone(), store.clone())?;
        }
        let listener = TcpListener::bind(&state.settings.server.listen)
            .with_context(|| format!("binding {}", state.settings.server.listen))?;
        let addr = listener.local_addr()?;
        let server = http_server(listener, &state, core.storage_starter())?;
        let heartbeat = Heartbeat::start(&state);
        info!(replica = %state.replica, "listening addr={addr}");
        Ok(Application {
            addr,
            server,
            state,
            store,
            heartbeat,
            history_writer,
            _core: core,
        })
    }

    /// Where the listener is bound: with port 0 in the settings, the port the system picked.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the HTTP server directly, without the drain of [`Application::run_until_stopped`]:
    /// the in-process tests use it where a test of the binary would kill the process.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until `shutdown` resolves, then drains (see [`shutdown::drain`]) and stops.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = actix_web::rt::spawn(self.server);
        tokio::select! {
            () = shutdown => {}
            res = server => {
                res??;
                return Ok(());
            }
        }
        shutdown::drain(&self.state).await;
        if let Some(webhooks) = &self.state.webhooks {
            // The sessions' client.disconnected events and the rooms' last changes.
            webhooks.flush(Duration::from_secs(2)).await;
        }
        if let Some(writer) = &self.history_writer {
            // The versions the rooms proposed as they closed.
            let _ = tokio::time::timeout(Duration::from_secs(2), writer.send(FlushVersions)).await;
        }
        // Listed until drained: until then it still holds rooms and unsaved content.
        self.heartbeat.stop().await;
        // Sessions are closed and everything is drained; now the listener can go.
        handle.stop(true).await;
        self.store.close();
        info!("shutdown complete");
        Ok(())
    }
}

/// HTTP worker threads: `server.workers`, or one per core.
fn workers(s: &ServerSettings) -> usize {
    match s.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

/// The HTTP server; each worker, as it starts, offers its thread to the storage actors
/// (`start_storage`: only the first offer of a core with `storage_on_worker` is taken).
fn http_server(
    listener: TcpListener,
    state: &AppState,
    start_storage: impl Fn() + Send + Sync + Clone + 'static,
) -> anyhow::Result<actix_web::dev::Server> {
    let s = &state.settings.server;
    let workers = workers(s);
    let max_body = s.max_body_bytes;
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        start_storage();
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .configure(routes::configure)
    })
    .workers(workers)
    // Without it Nagle's algorithm holds small frames back up to 40 ms (seen in W2's tails).
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Creates the database and schema. If PostgreSQL is down, keeps retrying in the background:
/// editing goes on from Redis and the journal meanwhile, and the flusher catches up. A server
/// certificate that is not trusted is no outage but a configuration fault: docroom stops.
async fn bootstrap_database(
    url: &str,
    ca_file: Option<&Path>,
    store: &PgStore,
) -> anyhow::Result<()> {
    async fn attempt(url: &str, ca_file: Option<&Path>, store: &PgStore) -> anyhow::Result<()> {
        let steps = async {
            db::ensure_database(url, ca_file).await?;
            db::migrate(store).await
        };
        tokio::time::timeout(Duration::from_secs(15), steps)
            .await
            .context("postgres did not answer within 15 s")?
    }
    let Err(e) = attempt(url, ca_file, store).await else {
        return Ok(());
    };
    if e.chain().any(tls::is_certificate_error) {
        anyhow::bail!("postgres: the server's tls certificate is not trusted (database.ca_file or the system roots): {e:#}");
    }
    warn!(error = %format!("{e:#}"), "postgres not ready at start, retrying in the background");
    let (url, ca_file, store) = (url.to_string(), ca_file.map(Path::to_owned), store.clone());
    actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match attempt(&url, ca_file.as_deref(), &store).await {
                Ok(()) => {
                    info!("postgres ready, schema in place");
                    return;
                }
                Err(e) => warn!(error = %format!("{e:#}"), "postgres still not ready"),
            }
        }
    });
    Ok(())
}

/// Checks Redis once at start: a certificate it does not trust stops docroom (a configuration
/// fault), an unreachable Redis does not (the fallback serves). Warns loudly unless
/// `maxmemory-policy` is `noeviction`: every docroom key has a TTL, so a `volatile-*` or
/// `allkeys-*` policy evicts exactly the content PostgreSQL may still lack, while a full
/// `noeviction` Redis refuses writes, which the breaker turns into journaled fallback saves.
async fn check_redis(target: &RedisTarget, within: Duration) -> anyhow::Result<()> {
    match target.memory_policy(within).await {
        Ok(MemoryPolicy::NoEviction) => info!(policy = "noeviction", "redis memory policy"),
        Ok(MemoryPolicy::Evicting(policy)) => warn!(
            policy = %policy,
            "redis maxmemory-policy is not noeviction: a full redis will evict content postgres may not have yet; set maxmemory-policy noeviction"
        ),
        Ok(MemoryPolicy::Unknown) => warn!(
            "redis maxmemory-policy could not be read (config disabled): make sure it is noeviction"
        ),
        Err(e) if tls::is_certificate_error(&e) => anyhow::bail!(
            "redis: the server's tls certificate is not trusted (cache.ca_file or the system roots): {e}"
        ),
        Err(e) => warn!(error = %e, "redis not reachable for the start check"),
    }
    Ok(())
}

/// Opens the journal, waiting up to `wait` while another process holds it: a replica restarted
/// in place may start before its predecessor has let go. Past that, the directory belongs to
/// someone else (another replica, a replay) and starting would be wrong.
async fn open_journal(dir: &Path, wait: Duration) -> Result<Fallback, JournalError> {
    let deadline = std::time::Instant::now() + wait;
    let mut warned = false;
    loop {
        match Fallback::open(dir) {
            Err(JournalError::InUse { .. }) if std::time::Instant::now() < deadline => {
                if !std::mem::replace(&mut warned, true) {
                    warn!(dir = %dir.display(), "journal in use by another process, waiting");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

fn room_limits(l: &crate::settings::LimitSettings) -> RoomLimits {
    RoomLimits {
        max_rooms: l.max_rooms,
        member_backlog_messages: l.member_backlog_messages,
        member_backlog_bytes: l.member_backlog_bytes,
        yjs: l.yjs(),
    }
}

/// `DOCROOM_REPLICA_ID`, or host name and process id when it is not set (SPEC §2).
fn replica_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "docroom".into());
    format!("{host}-{}", std::process::id())
}
