//! Database bootstrap: create the database if it is missing, then apply the migrations in
//! `migrations/` (embedded at build time).

use anyhow::Context as _;
use std::path::Path;

use docroom_actors::storage::{tls, PgStore};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Creates the database named in `url` when it does not exist, connecting to the server's
/// `postgres` database to do so, with the same TLS as the pool (`sslmode`, `ca_file`).
pub async fn ensure_database(url: &str, ca_file: Option<&Path>) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url.parse().context("invalid database url")?;
    let tls = tls::postgres_connector(config.get_ssl_mode(), ca_file)?;
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = config.clone();
    admin.dbname("postgres");
    if admin.get_connect_timeout().is_none() {
        admin.connect_timeout(std::time::Duration::from_secs(5));
    }
    let (client, connection) = admin
        .connect(tls)
        .await
        .context("connecting to postgres to check the database exists")?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "database created"),
            // Another instance created it between our check and our CREATE.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Applies pending migrations.
pub async fn migrate(store: &PgStore) -> anyhow::Result<()> {
    let mut client = store
        .pool()
        .get()
        .await
        .context("connecting to postgres to migrate")?;
    let report = embedded::migrations::runner()
        .run_async(&mut **client)
        .await
        .context("applying migrations")?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "migration applied");
    }
    Ok(())
}
