//! A private Redis server for tests that stop and start Redis: its own port, its own
//! process, no persistence (`--save '' --appendonly no`), so a restart comes back empty,
//! as a Redis without persistence does. The shared server on 6379 is never touched. The
//! process is killed, by the pid this value started, when the value drops, also when the
//! test panics.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, random};

/// How long a (re)started server may take to answer `PING`.
const START_WAIT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("chat-redis-{}", random(10)));
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        let mut server = Self {
            dir,
            port: free_port(),
            child: None,
        };
        server.restart().await;
        server
    }

    /// `redis://127.0.0.1:<port>`, for [`crate::harness::Cluster::start_on_servers`].
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers `PING`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the private redis is already running");
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        loop {
            if self.ping().await {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("redis-server exited with {status}; see {}", log.display());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within {START_WAIT:?}; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            return false;
        };
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        pong.is_ok()
    }

    /// SIGKILL, by the pid of the child this value started: every connection drops and,
    /// without persistence, every key is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("private redis kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
