//! `docroom import-hocuspocus`: moves the documents of a Hocuspocus database (the Database
//! extension's layout: `name` text, `data` bytea holding a Yjs state) into docroom's
//! `documents` table as Yjs documents.
//!
//! Each row is checked first (a valid id, a state that decodes); then, in one transaction under
//! the same advisory lock the flusher takes ([`PgStore::merge_yjs_with`]), docroom's row is read
//! and the state stored: new documents are imported, Yjs documents docroom already holds are
//! merged (SPEC §6: never replaced), JSON ones are left alone. A row is written whole or not at
//! all, and a re-run finds every state already held and writes nothing.
//!
//! - [`source`]: the table name and the cursor over the Hocuspocus table.
//! - [`outcome`]: what happens to one row, without IO, and the run's [`Summary`].

mod outcome;
mod source;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use docroom_actors::storage::PgStore;

use crate::db;
use crate::settings::Settings;
pub use outcome::Summary;
use source::{Rows, TableName};

/// Exit status of a run that finished but left rows out.
pub const EXIT_SKIPPED: u8 = 3;

/// The flags of `docroom import-hocuspocus`; the command's help is on `Command::ImportHocuspocus`
/// in `main.rs`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// PostgreSQL URL of the Hocuspocus database (postgres://USER:PASSWORD@HOST:PORT/DB).
    #[arg(long, value_name = "URL")]
    pub database_url: String,
    /// The table to read: NAME or SCHEMA.NAME (each part a case-sensitive identifier).
    #[arg(long, value_name = "NAME", default_value = "documents")]
    pub table: String,
    /// Rows fetched from the Hocuspocus database at a time.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub batch_rows: u32,
    /// Print a progress line after every N rows.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub progress_every: u64,
}

/// Runs the import; answers the exit status (see the command's help).
pub async fn run(args: ImportArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let table = TableName::parse(&args.table).map_err(anyhow::Error::msg)?;
    let d = &settings.database;
    let ca_file = Settings::path(&d.ca_file);
    db::ensure_database(&d.url, ca_file).await?;
    let store = PgStore::connect(&d.url, ca_file, 1, Settings::ms(d.statement_timeout_ms))?;
    db::migrate(&store).await?;
    let limit = settings.limits.max_yjs_state_bytes;

    let mut source = source::connect(&args.database_url).await?;
    let batch_rows = i32::try_from(args.batch_rows.max(1)).unwrap_or(i32::MAX);
    let mut rows = Rows::open(&mut source, &table, batch_rows).await?;
    say(format_args!("reading table {table}"));

    let mut summary = Summary::default();
    let every = args.progress_every.max(1);
    loop {
        let batch = rows.next_batch().await?;
        if batch.is_empty() {
            break;
        }
        for row in batch {
            let label = row.name.as_deref().map(clip);
            let result = match outcome::check_row(row) {
                Err(skip) => Err(skip),
                Ok(incoming) => store
                    .merge_yjs_with(&incoming.doc, |held| outcome::merge(held, &incoming, limit))
                    .await
                    .with_context(|| format!("storing document {:?}", incoming.doc.as_str()))?,
            };
            if let Err(skip) = &result {
                let name = label.map_or("NULL".into(), |l| format!("{l:?}"));
                say(format_args!("skipped {name}: {skip}"));
            }
            summary.record(&result);
            if summary.rows % every == 0 {
                say(format_args!("progress: {summary}"));
            }
        }
    }
    say(format_args!("done: {summary}"));
    store.close();
    Ok(if summary.skipped_total() > 0 {
        ExitCode::from(EXIT_SKIPPED)
    } else {
        ExitCode::SUCCESS
    })
}

/// One report line on stdout (logs go to stderr).
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "import-hocuspocus: {line}");
    let _ = out.flush();
}

/// A name as shown in a report: at most 80 characters (a bad name can be anything).
fn clip(name: &str) -> String {
    match name.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    }
}
