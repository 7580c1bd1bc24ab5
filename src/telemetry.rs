//! Logging: `tracing` to stderr, as text or one JSON object per line; metrics: the Prometheus
//! recorder behind `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use docroom_actors::metrics as m;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
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

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once), creates every series with its value
/// at start (the flusher period at `flusher_base_period`) and keeps its histograms trimmed.
pub fn init_metrics(flusher_base_period: Duration) {
    let handle = PROMETHEUS.get_or_init(|| match builder().and_then(|b| b.install_recorder()) {
        Ok(handle) => {
            m::describe();
            m::register(flusher_base_period);
            crate::webhooks::register_metrics();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    });
    if let Some(handle) = handle.clone() {
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
    }
}

/// Every histogram with its own buckets; the latency buckets for any histogram added later
/// without them, so none is ever exported as a summary.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new().set_buckets(m::LATENCY_BUCKETS)?;
    for (name, buckets) in m::HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
    }
    builder = builder.set_buckets_for_metric(
        Matcher::Full(crate::webhooks::DELIVERY_SECONDS.to_owned()),
        crate::webhooks::DELIVERY_BUCKETS,
    )?;
    Ok(builder)
}

pub fn render_metrics() -> String {
    PROMETHEUS
        .get()
        .and_then(|h| h.as_ref())
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}
