//! Settings: `config/base.toml` → `config/$DOCROOM_ENV.toml` → environment, read into one typed
//! tree. The SPEC's fixed variables (`DOCROOM_LISTEN`, ...) map onto keys of the tree; every other
//! key is `DOCROOM__SECTION__KEY`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use docroom_actors::storage::SentinelSettings;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub session: SessionSettings,
    pub rooms: RoomSettings,
    pub cache: CacheSection,
    pub breaker: BreakerSection,
    pub database: DatabaseSettings,
    pub flusher: FlusherSection,
    pub journal: JournalSettings,
    pub limits: LimitSettings,
    pub log: LogSettings,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerSettings {
    pub listen: String,
    pub workers: usize,
    pub admin_token: String,
    pub max_body_bytes: usize,
    pub shutdown_drain_deadline_ms: u64,
    pub replica_id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: String,
    pub allowed_origins: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SessionSettings {
    pub heartbeat_interval_ms: u64,
    pub client_timeout_ms: u64,
    pub max_frame_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RoomSettings {
    pub arbiters: usize,
    pub yjs_save_interval_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CacheSection {
    pub url: String,
    pub key_prefix: String,
    pub ttl_secs: u64,
    pub lock_ttl_secs: u64,
    pub lock_poll_ms: u64,
    pub lock_wait_ms: u64,
    pub response_timeout_ms: u64,
    pub connection_timeout_ms: u64,
    pub health_check_interval_ms: u64,
    /// PEM file of the CA to trust for `rediss://`; empty = the system roots.
    pub ca_file: String,
    /// Comma-separated `host:port` of the sentinels; empty = the URL names the primary.
    pub sentinels: String,
    pub sentinel_master: String,
    pub sentinel_password: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct BreakerSection {
    pub failure_threshold: u32,
    pub open_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub retry_jitter_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
    pub statement_timeout_ms: u64,
    /// PEM file of the CA to trust for `sslmode=require`; empty = the system roots.
    pub ca_file: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FlusherSection {
    pub base_period_ms: u64,
    pub error_period_ms: u64,
    pub max_period_ms: u64,
    pub batch_size: usize,
    pub parallel_batches: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LimitSettings {
    pub max_connections: usize,
    pub max_connections_per_doc: usize,
    pub messages_per_sec: f64,
    pub message_burst: f64,
    pub max_rate_violations: u32,
    pub max_document_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct JournalSettings {
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LogSettings {
    pub filter: String,
    pub format: String,
}

/// The SPEC §2 variables and the keys they set.
const FIXED_VARS: &[(&str, &str)] = &[
    ("DOCROOM_LISTEN", "server.listen"),
    ("DOCROOM_REDIS_URL", "cache.url"),
    ("DOCROOM_DATABASE_URL", "database.url"),
    ("DOCROOM_ADMIN_TOKEN", "server.admin_token"),
    ("DOCROOM_JWT_SECRET", "auth.jwt_secret"),
    ("DOCROOM_ALLOWED_ORIGINS", "auth.allowed_origins"),
    ("DOCROOM_DATA_DIR", "journal.data_dir"),
    ("DOCROOM_LOG", "log.filter"),
    ("DOCROOM_LOG_FORMAT", "log.format"),
    ("DOCROOM_REPLICA_ID", "server.replica_id"),
];

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// Reads the layers from `config_dir` (usually `./config`).
    pub fn load(config_dir: &Path) -> Result<Settings, SettingsError> {
        let env_name = std::env::var("DOCROOM_ENV").ok();
        let mut figment = Figment::new().merge(Toml::file(config_dir.join("base.toml")));
        if let Some(name) = env_name.filter(|n| !n.is_empty()) {
            figment = figment.merge(Toml::file(config_dir.join(format!("{name}.toml"))));
        }
        // Fixed variables are taken as plain strings (a token of digits stays a string).
        let mut fixed = serde_json::Map::new();
        for (var, key) in FIXED_VARS {
            if let Ok(value) = std::env::var(var) {
                let (section, name) = key.split_once('.').expect("keys are section.name");
                let section = fixed
                    .entry(section)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(section) = section {
                    section.insert(name.to_string(), serde_json::Value::String(value));
                }
            }
        }
        figment = figment
            .merge(Env::prefixed("DOCROOM__").split("__"))
            .merge(Serialized::defaults(serde_json::Value::Object(fixed)));
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let fail = |m: &str| Err(SettingsError::Invalid(m.to_string()));
        if self.cache.ttl_secs == 0 {
            return fail("cache.ttl_secs must be at least 1");
        }
        if self.session.heartbeat_interval_ms == 0 || self.flusher.base_period_ms == 0 {
            return fail("timer settings must be above 0 ms");
        }
        if self.flusher.max_period_ms / 1000 >= self.cache.ttl_secs {
            tracing::warn!(
                "flusher.max_period_ms is not below cache.ttl_secs: the flusher refreshes ttls of waiting content only once per period"
            );
        }
        if let Err(why) = self.sentinels() {
            return fail(&why);
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return fail("log.format must be \"text\" or \"json\"");
        }
        Ok(())
    }

    /// A `*.ca_file` setting: `None` when empty.
    pub fn path(setting: &str) -> Option<&Path> {
        (!setting.is_empty()).then(|| Path::new(setting))
    }

    pub fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// The Sentinel settings, `None` when `cache.sentinels` is empty.
    pub fn sentinels(&self) -> Result<Option<SentinelSettings>, String> {
        let c = &self.cache;
        SentinelSettings::parse(&c.sentinels, &c.sentinel_master, &c.sentinel_password)
    }
}
