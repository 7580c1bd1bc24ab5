use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use docroom::import_hocuspocus::{self, ImportArgs};
use docroom::settings::Settings;
use docroom::startup::Application;
use docroom::{db, replay_journal, shutdown, telemetry};

/// docroom: a collaborative-document backend for Tiptap/Yjs editors.
///
/// Settings come from the built-in defaults (config/base.toml of the source tree), then base.toml
/// and $DOCROOM_ENV.toml of the config directory, then the environment (DOCROOM_LISTEN, DOCROOM_REDIS_URL, DOCROOM_DATABASE_URL, DOCROOM_ADMIN_TOKEN,
/// DOCROOM_JWT_SECRET, DOCROOM_ALLOWED_ORIGINS, DOCROOM_DATA_DIR, DOCROOM_LOG,
/// DOCROOM_LOG_FORMAT, and DOCROOM__SECTION__KEY for any other setting).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Directory whose base.toml and $DOCROOM_ENV.toml override the built-in defaults
    /// [default: ./config, when it exists].
    #[arg(
        long = "config",
        visible_alias = "config-dir",
        env = "DOCROOM_CONFIG_DIR"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Create the database if needed, apply schema migrations and exit.
    Migrate,
    /// Import a Hocuspocus database table (name, data: a Yjs state) into docroom's database.
    ///
    /// Reads the table of Hocuspocus's Database extension: a column `name` (text, the document
    /// name) and a column `data` (bytea, the document's Yjs state). Each row becomes a Yjs
    /// document of the same id in docroom's database (the one DOCROOM_DATABASE_URL names; its
    /// schema is created if needed). A document docroom already holds as Yjs is merged with the
    /// row, nothing of either side lost, so a re-run is harmless; one it holds as JSON is left
    /// as it is. A row with a NULL or invalid name, NULL data, or data that is not a Yjs update
    /// is reported and skipped, and so is a document whose state would exceed
    /// limits.max_yjs_state_bytes: nothing of it is written.
    ///
    /// Progress, and one line per skipped row, go to stdout, then a summary. Exit status: 0 when
    /// every row was imported, merged or already held; 3 when the run finished but skipped rows;
    /// 1 when an error stopped it (the rows handled before it are stored).
    ///
    /// Run it before clients move to docroom: a document open in a docroom room meanwhile keeps
    /// the content it has until the room next loads it.
    ImportHocuspocus(ImportArgs),
    /// Persist the journal of a replica retired for good to PostgreSQL (DOCROOM_DATABASE_URL),
    /// under the version rules, and record that in the journal: a second run does nothing.
    /// Refused while a running process holds that journal.
    ///
    /// Exit codes: 0 persisted (or nothing to persist), 1 failed (PostgreSQL unreachable, a
    /// document refused: the journal keeps it), 2 DIR is not a directory or holds no journal,
    /// 3 the journal is in use by a running docroom.
    ReplayJournal {
        /// The retired replica's DOCROOM_DATA_DIR.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // A directory named on the command line must exist; the default one is optional.
    if let Some(dir) = cli.config.as_deref().filter(|dir| !dir.is_dir()) {
        anyhow::bail!("config directory {} does not exist", dir.display());
    }
    let config_dir = cli.config.unwrap_or_else(|| PathBuf::from("config"));
    let settings = Settings::load_from(Some(&config_dir), std::env::vars())
        .with_context(|| format!("loading settings from {}", config_dir.display()))?;
    telemetry::init(&settings.log);
    actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = Application::build(settings).await?;
                app.run_until_stopped(shutdown::signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Migrate => {
                let d = &settings.database;
                let ca_file = Settings::path(&d.ca_file);
                let store = docroom_actors::storage::PgStore::connect(
                    &d.url,
                    ca_file,
                    1,
                    Settings::ms(d.statement_timeout_ms),
                )?;
                db::ensure_database(&d.url, ca_file).await?;
                db::migrate(&store).await?;
                tracing::info!("migrations applied");
                Ok(ExitCode::SUCCESS)
            }
            Command::ReplayJournal { data_dir } => {
                match replay_journal::run(&settings, &data_dir).await {
                    Ok(_) => Ok(ExitCode::SUCCESS),
                    Err(e) => {
                        eprintln!("replay-journal: error: {e}");
                        Ok(ExitCode::from(e.exit_code()))
                    }
                }
            }
            Command::ImportHocuspocus(args) => import_hocuspocus::run(args, &settings).await,
        }
    })
}
