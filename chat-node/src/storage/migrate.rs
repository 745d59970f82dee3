//! Creating the database and running migrations. Several nodes may start at once, so the
//! migration run holds a MySQL named lock.

use std::collections::HashSet;

use diesel::migration::MigrationSource;
use diesel::mysql::Mysql;
use diesel::sql_types::{Integer, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncMysqlConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::StoreError;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");
const LOCK_NAME: &str = "chat_node_migrations";
const LOCK_WAIT_SECS: i32 = 120;

/// Splits `mysql://user@host:port/db?opts` into the server URL and the database name.
pub fn split_database_url(url: &str) -> Result<(String, String), StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .ok_or_else(|| StoreError::Url("expected mysql://…".into()))?
        + 3;
    let slash = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .ok_or_else(|| StoreError::Url("no database name in the URL".into()))?;
    let name = &base[slash + 1..];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Url(
            "the database name uses letters, digits and '_' only".into(),
        ));
    }
    let mut server = base[..slash].to_owned();
    if let Some(q) = query {
        server.push_str("/?");
        server.push_str(q);
    }
    Ok((server, name.to_owned()))
}

pub async fn ensure_database(url: &str) -> Result<(), StoreError> {
    let (server, name) = split_database_url(url)?;
    let mut conn = AsyncMysqlConnection::establish(&server)
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    // The name was checked to be [A-Za-z0-9_]+, so quoting it is safe.
    diesel::sql_query(format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct LockResult {
    #[diesel(sql_type = Nullable<Integer>)]
    got: Option<i32>,
}

/// Runs pending migrations under a named lock; returns how many ran.
pub async fn run_migrations(url: &str) -> Result<usize, StoreError> {
    let mut conn = AsyncMysqlConnection::establish(url)
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    let lock: LockResult = diesel::sql_query(format!(
        "SELECT GET_LOCK('{LOCK_NAME}', {LOCK_WAIT_SECS}) AS got"
    ))
    .get_result(&mut conn)
    .await?;
    if lock.got != Some(1) {
        return Err(StoreError::Migration(
            "another node held the migration lock too long".into(),
        ));
    }
    // The harness blocks its thread; the lock lives on this same connection, so it is
    // handed over and taken back.
    let (conn, ran) = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let ran = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| StoreError::Migration(e.to_string()));
        (harness.into_inner(), ran)
    })
    .await
    .map_err(|e| StoreError::Migration(e.to_string()))?;
    let mut conn = conn;
    diesel::sql_query(format!("DO RELEASE_LOCK('{LOCK_NAME}')"))
        .execute(&mut conn)
        .await?;
    ran
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = Text)]
    version: String,
}

/// For a node that does not migrate (a migration job owns the schema): fails, naming what
/// is missing, unless every migration this binary embeds has been applied. It only reads
/// `__diesel_schema_migrations`, so a user with DML rights alone can run it; it creates
/// nothing, not even the database. Returns 0, the migrations it ran.
pub async fn check_migrated(url: &str) -> Result<usize, StoreError> {
    let mut conn = AsyncMysqlConnection::establish(url)
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    let not_migrated = |why: String| {
        StoreError::Migration(format!(
            "{why}; CHAT_MIGRATE_ON_START is false: run `chat-node migrate` (the migration job) first"
        ))
    };
    let applied: Vec<Applied> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load(&mut conn)
        .await
        .map_err(|e| not_migrated(format!("the schema was never migrated ({e})")))?;
    let applied: HashSet<String> = applied.into_iter().map(|a| a.version).collect();
    let embedded = MigrationSource::<Mysql>::migrations(&MIGRATIONS)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    let pending: Vec<String> = embedded
        .iter()
        .filter(|m| !applied.contains(&m.name().version().to_string()))
        .map(|m| m.name().to_string())
        .collect();
    if pending.is_empty() {
        Ok(0)
    } else {
        Err(not_migrated(format!(
            "{} migration(s) not applied: {}",
            pending.len(),
            pending.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_split_into_server_and_name() {
        let (server, name) = split_database_url("mysql://root@127.0.0.1:3306/chat").unwrap();
        assert_eq!(server, "mysql://root@127.0.0.1:3306");
        assert_eq!(name, "chat");
        let (server, name) =
            split_database_url("mysql://u:p@db/chat_test_1?ssl-mode=disabled").unwrap();
        assert_eq!(server, "mysql://u:p@db/?ssl-mode=disabled");
        assert_eq!(name, "chat_test_1");
        assert!(split_database_url("mysql://root@host").is_err());
        assert!(split_database_url("mysql://root@host/bad`name").is_err());
    }
}
