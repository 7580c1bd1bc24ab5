//! Logging: `tracing` to stderr, as text or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::settings::LogSettings;

pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|e| {
        eprintln!("invalid log filter {:?} ({e}), using info", log.filter);
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
