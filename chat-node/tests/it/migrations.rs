//! `chat-node migrate`, and every migration run up, down and up again, so `down.sql` is
//! known to work.

use std::process::Command;

use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncMysqlConnection};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};

use crate::harness::random;

struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.0))
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_database_and_migrations_go_down_and_up_again() {
    let db = Database(format!("chat_test_mig_{}", random(8)));
    let url = format!("mysql://root@127.0.0.1:3306/{}", db.0);
    // The second run finds nothing pending and succeeds too.
    for _ in 0..2 {
        let status = Command::new(env!("CARGO_BIN_EXE_chat-node"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .status()
            .unwrap();
        assert!(status.success());
    }

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
    let conn = AsyncMysqlConnection::establish(&url).await.unwrap();
    let mut harness = AsyncMigrationHarness::new(conn);
    let reverted = harness
        .revert_all_migrations(FileBasedMigrations::from_path(dir).unwrap())
        .unwrap()
        .len();
    assert!(reverted > 0);
    assert!(harness.applied_migrations().unwrap().is_empty());
    let ran = harness
        .run_pending_migrations(FileBasedMigrations::from_path(dir).unwrap())
        .unwrap()
        .len();
    assert_eq!(ran, reverted);
}
