//! A private MariaDB server for tests that stop and start MySQL: its own data directory
//! in a temporary folder, its own port, its own process. The shared server on 3306 is
//! never touched. The process is killed, and the folder removed, when the value drops,
//! also when the test panics (the folder is then kept, for its error log).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::harness::{free_port, random};

/// How long a (re)started server may take to accept a query.
const START_WAIT: Duration = Duration::from_secs(30);

pub struct MariaDb {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl MariaDb {
    /// Creates a data directory with `mariadb-install-db` (root, no password, reachable
    /// over TCP from 127.0.0.1), starts the server on a free port and waits until it
    /// answers.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("chat-mariadb-{}", random(10)));
        std::fs::create_dir_all(&dir).expect("mariadb temp dir");
        let mut db = Self {
            dir,
            port: free_port(),
            child: None,
        };
        let data = db.data_dir();
        let tmp = db.tmp_dir();
        std::fs::create_dir_all(&tmp).expect("mariadb tmpdir");
        let log = std::fs::File::create(db.dir.join("install.log")).expect("install log");
        let status = tokio::task::spawn_blocking(move || {
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg("--user=root")
                .arg(format!("--datadir={}", data.display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                // Passed on to the bootstrap server; the default, /tmp, is shared with
                // other installs running at the same time.
                .arg(format!("--tmpdir={}", tmp.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("log handle")))
                .stderr(Stdio::from(log))
                .status()
        })
        .await
        .expect("install task")
        .expect("mariadb-install-db runs");
        assert!(
            status.success(),
            "mariadb-install-db failed; see {}",
            db.dir.join("install.log").display()
        );
        db.restart().await;
        db
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// `mysql://root@127.0.0.1:<port>`, for [`crate::harness::Cluster::start_on`].
    pub fn base_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same data directory and port, and waits until it
    /// answers `SELECT 1`.
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "the private mariadbd is already running"
        );
        let log = self.dir.join("mariadbd.log");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--tmpdir={}", self.tmp_dir().display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=32M")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let url = format!("{}/mysql", self.base_url());
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(mut conn) = mysql_async::Conn::from_url(&url).await {
                let one: Option<i64> = conn.query_first("SELECT 1").await.ok().flatten();
                let _ = conn.disconnect().await;
                if one == Some(1) {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("mariadbd exited with {status}; see {}", log.display());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not answer within {START_WAIT:?}; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's pid while it runs, to pause it (SIGSTOP) like a hung database.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, by the pid of the child this value started: no shutdown, no flush
    /// beyond what InnoDB already made durable.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("private mariadb kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
