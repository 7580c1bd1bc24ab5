//! The Hocuspocus side: a table in the layout of Hocuspocus's Database extension (`name` text,
//! `data` bytea holding a Yjs state as a v1 update), read in batches through a cursor so a big
//! table never sits in memory whole.

use anyhow::Context as _;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Portal, Statement, Transaction};

use docroom_actors::storage::tls;

/// A table name as given on the command line: `table` or `schema.table`, each part used as a
/// quoted identifier (so case and any character but NUL are kept as written, and nothing in it
/// can be read as SQL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

/// PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; a longer one would silently name
/// another table.
const MAX_IDENTIFIER_BYTES: usize = 63;

impl TableName {
    pub fn parse(raw: &str) -> Result<TableName, String> {
        let parts: Vec<&str> = raw.split('.').collect();
        let (schema, table) = match parts[..] {
            [table] => (None, table),
            [schema, table] => (Some(schema), table),
            _ => return Err(format!("table {raw:?}: use NAME or SCHEMA.NAME")),
        };
        for part in schema.iter().chain([&table]) {
            if part.is_empty() || part.len() > MAX_IDENTIFIER_BYTES {
                return Err(format!(
                    "table {raw:?}: each part must be 1 to {MAX_IDENTIFIER_BYTES} bytes"
                ));
            }
            if part.chars().any(char::is_control) {
                return Err(format!("table {raw:?}: control characters are not allowed"));
            }
        }
        Ok(TableName {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The name as SQL: each part a quoted identifier.
    pub fn quoted(&self) -> String {
        let quote = |part: &str| format!("\"{}\"", part.replace('"', "\"\""));
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.table)),
            None => quote(&self.table),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// One row as read: either column may be NULL.
pub struct SourceRow {
    pub name: Option<String>,
    pub data: Option<Vec<u8>>,
}

/// Connects to the Hocuspocus database (TLS as the URL's `sslmode` says).
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let config: tokio_postgres::Config = url.parse().context("invalid --database-url")?;
    let tls = tls::postgres_connector(config.get_ssl_mode(), None)?;
    let (client, connection) = config
        .connect(tls)
        .await
        .context("connecting to the hocuspocus database")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "hocuspocus database connection ended");
        }
    });
    Ok(client)
}

/// The table's rows, `batch_rows` at a time, from one snapshot (a read-only repeatable-read
/// transaction), so rows written while the import runs do not make it skip or repeat any.
pub struct Rows<'a> {
    tx: Transaction<'a>,
    portal: Portal,
    batch_rows: i32,
    done: bool,
}

impl<'a> Rows<'a> {
    pub async fn open(
        client: &'a mut Client,
        table: &TableName,
        batch_rows: i32,
    ) -> anyhow::Result<Rows<'a>> {
        let tx = client
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .context("starting a read transaction on the hocuspocus database")?;
        let sql = format!("SELECT name::text, data FROM {table}");
        let statement = tx
            .prepare(&sql)
            .await
            .with_context(|| format!("reading table {table} (columns name and data)"))?;
        check_columns(&statement, table)?;
        let portal = tx.bind(&statement, &[]).await.context("opening a cursor")?;
        Ok(Rows {
            tx,
            portal,
            batch_rows: batch_rows.max(1),
            done: false,
        })
    }

    /// The next batch; empty once every row was read.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<SourceRow>> {
        if self.done {
            return Ok(Vec::new());
        }
        let rows = self
            .tx
            .query_portal(&self.portal, self.batch_rows)
            .await
            .context("reading rows from the hocuspocus database")?;
        self.done = rows.len() < self.batch_rows as usize;
        rows.iter()
            .map(|row| {
                Ok(SourceRow {
                    name: row.try_get(0)?,
                    data: row.try_get(1)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .context("decoding a row")
    }
}

fn check_columns(statement: &Statement, table: &TableName) -> anyhow::Result<()> {
    let data = &statement.columns()[1];
    if data.type_() != &Type::BYTEA {
        anyhow::bail!(
            "column data of {table} is {}, not bytea (a Yjs state, as Hocuspocus's Database extension stores it)",
            data.type_()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_become_quoted_identifiers() {
        let quoted = |raw: &str| TableName::parse(raw).map(|t| t.quoted());
        assert_eq!(quoted("documents"), Ok("\"documents\"".into()));
        assert_eq!(quoted("hp.Docs"), Ok("\"hp\".\"Docs\"".into()));
        assert_eq!(
            quoted("x\"; DROP TABLE documents; --"),
            Ok("\"x\"\"; DROP TABLE documents; --\"".into())
        );
    }

    #[test]
    fn empty_overlong_dotted_and_control_character_names_are_refused() {
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a.b.c",
            "a\0b",
            "a\nb",
            &"x".repeat(64),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TableName::parse(&"x".repeat(63)).is_ok());
    }
}
