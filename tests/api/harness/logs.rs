//! The log lines and panics of each in-process app, kept apart although every app shares this
//! process's one `tracing` subscriber and one panic hook.
//!
//! Every thread of an app (its main thread, the HTTP workers, the arbiters of the rooms and the
//! storage actors) belongs to the app's own actix `System`, so the `System` id of the thread an
//! event or a panic happens on says which app it came from. Lines are also printed through
//! libtest's capture (app threads inherit the test's), so a failing test shows its app's log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Once, PoisonError};

use actix_web::rt::System;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Where one app's lines go; shared by every run of one `TestApp`.
pub type Sink = Arc<Mutex<Vec<String>>>;

/// System id → the sink of the app that System runs.
static SINKS: Mutex<BTreeMap<usize, Sink>> = Mutex::new(BTreeMap::new());

/// Installs the subscriber and the panic hook, once per test binary. The filter is
/// `DOCROOM_TEST_LOG` (default `info`), as for the child processes.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("DOCROOM_TEST_LOG").unwrap_or_else(|_| "info".into());
        let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
        let printed = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_test_writer();
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(printed)
            .with(Capture)
            .try_init();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let name = thread.name().unwrap_or("<unnamed>");
            record(format!("thread '{name}' panicked at {location}: {payload}"));
            previous(info);
        }));
    });
}

/// From now on, lines of threads of `system` go to `sink`.
pub fn register(system: usize, sink: Sink) {
    let mut sinks = SINKS.lock().unwrap_or_else(PoisonError::into_inner);
    sinks.insert(system, sink);
}

pub fn unregister(system: usize) {
    let mut sinks = SINKS.lock().unwrap_or_else(PoisonError::into_inner);
    sinks.remove(&system);
}

/// Appends `line` to the sink of the current thread's System, if it is an app's.
fn record(line: String) {
    let Some(system) = System::try_current().map(|s| s.id()) else {
        return;
    };
    // Held only for a map lookup, insert or removal, none of which logs or panics: the hook
    // cannot find it held by its own thread.
    let sink = SINKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&system)
        .cloned();
    if let Some(sink) = sink {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}

/// Formats each event as `LEVEL target: message key=value ...` into its app's sink.
struct Capture;

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut line);
        record(line.0);
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}
