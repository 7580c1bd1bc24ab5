//! Settings: the built-in defaults (`config/base.toml`, compiled in) → `base.toml` and
//! `$DOCROOM_ENV.toml` of the config directory → environment, read into one typed tree. The
//! SPEC's fixed variables (`DOCROOM_LISTEN`, ...) map onto keys of the tree; every other key is
//! `DOCROOM__SECTION__KEY`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use docroom_actors::protocol::yjs::YjsLimits;
use docroom_actors::storage::SentinelSettings;
use figment::providers::{Data, Format, Serialized, Toml};
use figment::value::Value;
use figment::{Figment, Provider};
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
    pub replicas: ReplicaSettings,
    pub limits: LimitSettings,
    pub log: LogSettings,
    pub webhooks: WebhookSettings,
    pub history: HistorySettings,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerSettings {
    pub listen: String,
    pub workers: usize,
    pub storage_thread: StorageThread,
    pub admin_token: String,
    pub max_body_bytes: usize,
    pub shutdown_drain_deadline_ms: u64,
    pub replica_id: String,
}

/// Where the cache supervisor and the log reader run (`server.storage_thread`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageThread {
    /// On the HTTP worker when there is one, else on a thread of their own.
    Auto,
    Own,
    Worker,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ReplicaSettings {
    pub heartbeat_interval_ms: u64,
    pub heartbeat_ttl_ms: u64,
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
    pub save_linger_ms: u64,
    pub save_linger_alone_ms: u64,
    pub connection_timeout_ms: u64,
    pub health_check_interval_ms: u64,
    pub log_poll_ms: u64,
    pub claim_ms: u64,
    pub log_retention_ms: u64,
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
    pub max_rooms: usize,
    pub member_backlog_messages: usize,
    pub member_backlog_bytes: usize,
    pub max_awareness_clients_per_connection: usize,
    pub max_awareness_state_bytes: usize,
    pub max_yjs_state_bytes: usize,
    pub max_yjs_depth: usize,
    pub max_concurrent_renderings: usize,
    pub hocuspocus_held_bytes: usize,
    pub hocuspocus_held_messages: usize,
    pub hocuspocus_documents_per_socket: usize,
}

/// Room for the envelope around a whole Yjs state in one frame: on `/hocuspocus` the document
/// name (a length and at most 255 bytes), then the message type, the sync step and the state's
/// length (varints), on `/yjs` the last three alone.
const YJS_FRAME_ENVELOPE_BYTES: usize = 1024;

impl LimitSettings {
    /// The frame limit of `/yjs/{id}` and `/hocuspocus` (SPEC §5): a frame may carry a whole
    /// state (a sync step 2, a reconnecting client's offline edits), so it follows
    /// `max_yjs_state_bytes`. A longer frame would take the document past the limit anyway.
    pub fn yjs_frame_bytes(&self) -> usize {
        self.max_yjs_state_bytes
            .saturating_add(YJS_FRAME_ENVELOPE_BYTES)
    }

    /// What a room's (or a rendering's) Yjs document may hold and one connection may announce.
    pub fn yjs(&self) -> YjsLimits {
        YjsLimits {
            max_awareness_clients: self.max_awareness_clients_per_connection,
            max_awareness_state_bytes: self.max_awareness_state_bytes,
            max_state_bytes: self.max_yjs_state_bytes,
            max_depth: self.max_yjs_depth,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct JournalSettings {
    pub data_dir: PathBuf,
    pub lock_wait_ms: u64,
}

/// SPEC §9 webhooks; `url` empty: off.
#[derive(Clone, Debug, Deserialize)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    pub debounce_ms: u64,
    pub max_wait_ms: u64,
    pub retry_for_ms: u64,
    pub include_content: bool,
    pub timeout_ms: u64,
    pub poll_ms: u64,
}

impl WebhookSettings {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

/// SPEC §10 history; `retention_days` 0: off (no version is kept).
#[derive(Clone, Debug, Deserialize)]
pub struct HistorySettings {
    pub interval_ms: u64,
    pub retention_days: u64,
}

/// The longest `history.retention_days`: a hundred years, well inside PostgreSQL's timestamps.
pub const MAX_RETENTION_DAYS: u64 = 36_500;

impl HistorySettings {
    pub fn enabled(&self) -> bool {
        self.retention_days > 0
    }
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

/// Prefix of the variables that set any key: `DOCROOM__SECTION__KEY`.
const NESTED_PREFIX: &str = "DOCROOM__";

/// Every setting's default. Built into the binary so that `docroom serve` runs from any working
/// directory; files in the config directory only override it.
const BUILT_IN: &str = include_str!("../config/base.toml");

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("settings: {0}")]
    Invalid(String),
    #[error("settings: config file {} does not parse: {reason}", path.display())]
    Unparsable { path: PathBuf, reason: String },
    #[error("settings: cannot read config file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Settings {
    /// [`Settings::load_from`] with the process environment.
    pub fn load(config_dir: &Path) -> Result<Settings, SettingsError> {
        Self::load_from(Some(config_dir), std::env::vars())
    }

    /// Reads the layers, later ones winning: the built-in defaults, `base.toml` then
    /// `$DOCROOM_ENV.toml` from `config_dir` (each optional), then `vars`. The variables are an
    /// argument, not the process environment, so tests in one process can each load their own.
    pub fn load_from(
        config_dir: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("DOCROOM"))
            .collect();
        empty_jwt_secret(&vars)?;
        let mut figment = Figment::from(Toml::string(BUILT_IN));
        if let Some(dir) = config_dir {
            let env_file = vars
                .get("DOCROOM_ENV")
                .filter(|name| !name.is_empty())
                .map(|name| dir.join(format!("{name}.toml")));
            for path in std::iter::once(dir.join("base.toml")).chain(env_file) {
                if let Some(file) = config_file(&path)? {
                    figment = figment.merge(file);
                }
            }
        }
        for layer in variables(&vars) {
            figment = figment.merge(layer);
        }
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let fail = |m: &str| Err(SettingsError::Invalid(m.to_string()));
        if self.cache.ttl_secs == 0 {
            return fail("cache.ttl_secs must be at least 1");
        }
        if self.session.heartbeat_interval_ms == 0
            || self.flusher.base_period_ms == 0
            || self.cache.log_poll_ms == 0
        {
            return fail("timer settings must be above 0 ms");
        }
        let r = &self.replicas;
        if r.heartbeat_interval_ms == 0 || r.heartbeat_ttl_ms <= r.heartbeat_interval_ms {
            return fail("replicas.heartbeat_ttl_ms must be above replicas.heartbeat_interval_ms, which must be above 0");
        }
        if self.flusher.max_period_ms / 1000 >= self.cache.ttl_secs {
            tracing::warn!(
                "flusher.max_period_ms is not below cache.ttl_secs: the flusher refreshes ttls of waiting content only once per period"
            );
        }
        if let Err(why) = self.sentinels() {
            return fail(&why);
        }
        // The journal frames a stamp's replica id in one length byte: a longer id would make
        // every stamped fallback write fail.
        if self.server.replica_id.len() > 255 {
            return fail("DOCROOM_REPLICA_ID (server.replica_id) must be at most 255 bytes");
        }
        let depth = self.limits.max_yjs_depth;
        if depth == 0 || depth > docroom_actors::protocol::yjs::DEPTH_CEILING {
            return fail(&format!(
                "limits.max_yjs_depth must be between 1 and {}",
                docroom_actors::protocol::yjs::DEPTH_CEILING
            ));
        }
        let w = &self.webhooks;
        if w.enabled() && (w.debounce_ms == 0 || w.max_wait_ms < w.debounce_ms) {
            return fail("webhooks.debounce_ms must be above 0 and at most webhooks.max_wait_ms");
        }
        if w.enabled() && (w.timeout_ms == 0 || w.poll_ms == 0) {
            return fail("webhooks.timeout_ms and webhooks.poll_ms must be above 0");
        }
        let h = &self.history;
        if h.enabled() && h.interval_ms == 0 {
            return fail("history.interval_ms must be above 0");
        }
        if h.retention_days > MAX_RETENTION_DAYS {
            return fail(&format!(
                "history.retention_days must be at most {MAX_RETENTION_DAYS}"
            ));
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

/// The variables that set the client-token secret.
const JWT_SECRET_VARS: [&str; 2] = ["DOCROOM_JWT_SECRET", "DOCROOM__AUTH__JWT_SECRET"];

/// A secret variable set to the empty string is a mistake (an unfilled template, a missing
/// secret store entry), not a wish to run without client tokens: read as such, it would open
/// every document to anyone. Unset is how tokens are turned off.
fn empty_jwt_secret(vars: &BTreeMap<String, String>) -> Result<(), SettingsError> {
    match JWT_SECRET_VARS
        .iter()
        .find(|name| vars.get(**name).is_some_and(String::is_empty))
    {
        Some(name) => Err(SettingsError::Invalid(format!(
            "{name} is set but empty: set it to the client-token secret, or unset it to let clients in without tokens"
        ))),
        None => Ok(()),
    }
}

/// The TOML file at `path` as a layer; `None` when there is no such file. A file that does not
/// parse is an error naming it, not a layer silently skipped.
fn config_file(path: &Path) -> Result<Option<Data<Toml>>, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SettingsError::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
    };
    if let Err(e) = Toml::string(&text).data() {
        return Err(SettingsError::Unparsable {
            path: path.to_owned(),
            reason: e.to_string(),
        });
    }
    // The file (not the text read above) so that later errors name it as their source.
    Ok(Some(Toml::file(path)))
}

/// The variables as layers: `DOCROOM__SECTION__KEY=value` parsed the way figment parses the
/// environment (`200` is a number, `true` a bool), then the fixed variables, which win and are
/// taken as plain strings (a token of digits stays a string).
fn variables(vars: &BTreeMap<String, String>) -> Vec<Serialized<Value>> {
    let nested = vars.iter().filter_map(|(name, value)| {
        let path = name.strip_prefix(NESTED_PREFIX)?;
        let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return None;
        }
        let parsed = value.parse::<Value>().unwrap_or_else(|e| match e {});
        Some(Serialized::default(&keys.join("."), parsed))
    });
    let fixed = FIXED_VARS.iter().filter_map(|(var, key)| {
        let value = vars.get(*var)?;
        Some(Serialized::default(key, Value::from(value.clone())))
    });
    nested.chain(fixed).collect()
}

#[cfg(test)]
mod tests;
