//! Building and running the application. `main` and the tests call the same entry points:
//! [`Application::build`] then [`Application::run_until_stopped`] with a shutdown future.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use docroom_actors::fallback::Fallback;
use docroom_actors::flusher::{Flusher, FlusherSettings, SetRooms};
use docroom_actors::registry::RoomRegistry;
use docroom_actors::storage::{CacheSettings, PgStore, RedisCache};
use docroom_actors::supervisor::{CacheSupervisor, SetListener, SupervisorSettings};
use tracing::{info, warn};

use crate::settings::{Settings, Settings as S};
use crate::state::AppState;
use crate::{db, routes, shutdown};

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    state: AppState,
    store: PgStore,
    /// Threads the storage actors and the rooms run on; kept so they live as long as the app.
    _arbiters: Vec<Arbiter>,
}

impl Application {
    /// Opens the journal, connects the stores, starts the actors and binds the listener.
    /// PostgreSQL or Redis being down does not stop it: the flusher and the breaker cope.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        crate::telemetry::init_metrics(S::ms(settings.flusher.base_period_ms));
        let db = &settings.database;
        let store = PgStore::connect(&db.url, db.pool_size, S::ms(db.statement_timeout_ms))?;
        bootstrap_database(&db.url, &store).await;

        let fallback = Fallback::open(&settings.journal.data_dir).with_context(|| {
            format!(
                "opening the journal in {}",
                settings.journal.data_dir.display()
            )
        })?;
        let c = &settings.cache;
        let b = &settings.breaker;
        let cache = RedisCache::new(CacheSettings {
            url: c.url.clone(),
            key_prefix: c.key_prefix.clone(),
            ttl_secs: c.ttl_secs,
            lock_ttl_secs: c.lock_ttl_secs,
            response_timeout: S::ms(c.response_timeout_ms),
            connection_timeout: S::ms(c.connection_timeout_ms),
            retry_base: S::ms(b.retry_base_ms),
            retry_max: S::ms(b.retry_max_ms),
            retry_jitter: S::ms(b.retry_jitter_ms),
        });
        let storage_arbiter = Arbiter::new();
        let sup_settings = SupervisorSettings {
            failure_threshold: b.failure_threshold,
            open_for: S::ms(b.open_ms),
            lock_poll: S::ms(c.lock_poll_ms),
            lock_wait: S::ms(c.lock_wait_ms),
            retry_base: S::ms(b.retry_base_ms),
            retry_max: S::ms(b.retry_max_ms),
        };
        let (sup_store, sup_fallback) = (store.clone(), fallback.clone());
        let supervisor = CacheSupervisor::start_in_arbiter(&storage_arbiter.handle(), move |_| {
            CacheSupervisor::new(cache, sup_store, sup_fallback, sup_settings)
        });
        let f = &settings.flusher;
        let flusher_settings = FlusherSettings {
            base_period: S::ms(f.base_period_ms),
            error_period: S::ms(f.error_period_ms),
            max_period: S::ms(f.max_period_ms),
            batch_size: f.batch_size,
            parallel_batches: f.parallel_batches,
        };
        let (fl_store, fl_sup) = (store.clone(), supervisor.clone());
        let flusher = Flusher::start_in_arbiter(&storage_arbiter.handle(), move |_| {
            Flusher::new(fl_store, fl_sup, flusher_settings)
        });

        // 0: rooms live on the HTTP worker that opened them (see the registry's module doc).
        let room_arbiters: Vec<Arbiter> = (0..settings.rooms.arbiters)
            .map(|_| Arbiter::new())
            .collect();
        let handles = room_arbiters.iter().map(Arbiter::handle).collect();
        let registry = RoomRegistry::new(
            handles,
            supervisor.clone(),
            flusher.clone(),
            S::ms(settings.rooms.yjs_save_interval_ms),
        )
        .start();
        supervisor.do_send(SetListener {
            listener: registry.clone().recipient(),
        });
        flusher.do_send(SetRooms {
            persisted: registry.clone().recipient(),
            dirty: registry.clone().recipient(),
        });

        let state = AppState {
            registry,
            supervisor,
            flusher,
            settings: Arc::new(settings),
            shutting_down: Arc::new(AtomicBool::new(false)),
            connections: Default::default(),
        };
        let listener = TcpListener::bind(&state.settings.server.listen)
            .with_context(|| format!("binding {}", state.settings.server.listen))?;
        let addr = listener.local_addr()?;
        let server = http_server(listener, &state)?;
        info!("listening addr={addr}");
        let mut arbiters = room_arbiters;
        arbiters.push(storage_arbiter);
        Ok(Application {
            addr,
            server,
            state,
            store,
            _arbiters: arbiters,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
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
        // Sessions are closed and everything is drained; now the listener can go.
        handle.stop(true).await;
        self.store.close();
        info!("shutdown complete");
        Ok(())
    }
}

fn http_server(listener: TcpListener, state: &AppState) -> anyhow::Result<actix_web::dev::Server> {
    let s = &state.settings.server;
    let workers = match s.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let max_body = s.max_body_bytes;
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
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
/// editing goes on from Redis and the journal meanwhile, and the flusher catches up.
async fn bootstrap_database(url: &str, store: &PgStore) {
    async fn attempt(url: &str, store: &PgStore) -> anyhow::Result<()> {
        let steps = async {
            db::ensure_database(url).await?;
            db::migrate(store).await
        };
        tokio::time::timeout(Duration::from_secs(15), steps)
            .await
            .context("postgres did not answer within 15 s")?
    }
    let Err(e) = attempt(url, store).await else {
        return;
    };
    warn!(error = %format!("{e:#}"), "postgres not ready at start, retrying in the background");
    let (url, store) = (url.to_string(), store.clone());
    actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match attempt(&url, &store).await {
                Ok(()) => {
                    info!("postgres ready, schema in place");
                    return;
                }
                Err(e) => warn!(error = %format!("{e:#}"), "postgres still not ready"),
            }
        }
    });
}
