use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use docroom::settings::Settings;
use docroom::startup::Application;
use docroom::{db, shutdown, telemetry};

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
}

fn main() -> anyhow::Result<()> {
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
                app.run_until_stopped(shutdown::signal()).await
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
                Ok(())
            }
        }
    })
}
