//! Logins first, then sockets (`LOADTEST_LOGINS_FIRST`): every `connections` user of the
//! run logs in, waits at the gate, and once all have their cookie the sockets open at a
//! set pace. The opening then measures what a reconnect storm costs a node (upgrades
//! with sessions that already exist), not bcrypt, which the `login` scenario measures.
//!
//! Several generator processes share one gate through a directory: each writes a file
//! there once its own users are in, and all open when every process has.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How often a process looks for the other processes' files.
const POLL: Duration = Duration::from_millis(20);

/// The other generator processes of the run and where they meet.
#[derive(Debug, Clone)]
pub struct Peers {
    pub dir: PathBuf,
    /// Processes in all, this one included.
    pub processes: usize,
    /// This process's own file name in `dir`.
    pub me: String,
}

pub struct Gate {
    /// This process's users.
    users: usize,
    /// Sockets opened per second by this process once the gate opens; 0 is all at once.
    dial_rate: u32,
    peers: Option<Peers>,
    arrived: AtomicUsize,
    opened: watch::Sender<Option<Instant>>,
}

static GATE: OnceLock<Gate> = OnceLock::new();

impl Gate {
    pub fn new(users: usize, dial_rate: u32, peers: Option<Peers>) -> Self {
        Self {
            users,
            dial_rate,
            peers,
            arrived: AtomicUsize::new(0),
            opened: watch::Sender::new(None),
        }
    }

    /// Makes `gate` the run's gate; without one, users open their socket as they log in.
    pub fn install(gate: Gate) -> Result<(), String> {
        GATE.set(gate)
            .map_err(|_| "gate installed twice".to_owned())
    }

    pub fn installed() -> Option<&'static Gate> {
        GATE.get()
    }

    /// A user is in (logged in, or given up: the gate does not wait for it forever).
    /// Returns when the socket of this process's `k`-th user may open.
    pub async fn pass(&self, k: usize) {
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.users {
            let opened = self.meet().await;
            println!(
                "dial_start: users {} unix_ms {}",
                self.users,
                crate::window::now_ms()
            );
            self.opened.send_replace(Some(opened));
        }
        let mut rx = self.opened.subscribe();
        let opened = match rx.wait_for(Option::is_some).await {
            Ok(at) => at.unwrap_or_else(Instant::now),
            Err(_) => Instant::now(),
        };
        tokio::time::sleep_until(opened + self.slot(k)).await;
    }

    /// When the `k`-th user's socket opens, after the gate. Users go in a scrambled
    /// order, as the clients of a drained node come back: the first users of the
    /// directory, whose presence every socket follows, come online over the whole
    /// opening rather than all at its start, when few sockets would hear of it.
    pub fn slot(&self, k: usize) -> Duration {
        if self.dial_rate == 0 {
            return Duration::ZERO;
        }
        let place = scramble(k, self.users);
        Duration::from_secs_f64(place as f64 / f64::from(self.dial_rate))
    }

    /// Waits for the other processes' users, then says when this one's open.
    async fn meet(&self) -> Instant {
        let Some(peers) = &self.peers else {
            return Instant::now();
        };
        if let Err(e) = std::fs::write(peers.dir.join(&peers.me), b"") {
            eprintln!("gate: cannot write {}: {e}", peers.dir.display());
            return Instant::now();
        }
        loop {
            let ready = std::fs::read_dir(&peers.dir)
                .map(|entries| entries.filter_map(Result::ok).count())
                .unwrap_or(0);
            if ready >= peers.processes {
                return Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A fixed permutation of `0..n`: `k` times a prime that does not divide `n`.
fn scramble(k: usize, n: usize) -> usize {
    if n == 0 {
        return k;
    }
    let step = [7_919, 7_907, 7_901]
        .into_iter()
        .find(|p| !n.is_multiple_of(*p))
        .unwrap_or(1);
    (k % n) * step % n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_order_is_a_permutation_and_not_the_identity() {
        for n in [1, 2, 3, 1_000, 7_919, 20_000] {
            let mut places: Vec<usize> = (0..n).map(|k| scramble(k, n)).collect();
            let identity = places.iter().enumerate().all(|(k, p)| k == *p);
            assert!(!identity || n < 3, "n {n}: scrambled");
            places.sort_unstable();
            assert!(places.iter().enumerate().all(|(k, p)| k == *p), "n {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_passes_until_every_user_is_in_then_they_go_at_the_pace() {
        let gate = Arc::new(Gate::new(3, 10, None));
        let started = Instant::now();
        let early: Vec<_> = (0..2)
            .map(|k| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    gate.pass(k).await;
                    started.elapsed()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            early.iter().all(|h| !h.is_finished()),
            "two of three are in"
        );
        gate.pass(2).await;
        let last = started.elapsed();
        let mut at = Vec::new();
        for h in early {
            at.push(h.await.unwrap());
        }
        // Of 3 users, 0 goes first, then 2, then 1 (scrambled), a tenth of a second apart.
        assert_eq!(at[0], Duration::from_secs(5), "user 0 at once");
        assert_eq!(last, Duration::from_millis(5_100), "user 2");
        assert_eq!(at[1], Duration::from_millis(5_200), "user 1");
    }

    #[tokio::test]
    async fn processes_meet_in_a_directory() {
        let dir = std::env::temp_dir().join(format!("loadtest-gate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let peers = |me: &str| Peers {
            dir: dir.clone(),
            processes: 2,
            me: me.into(),
        };
        let first = Arc::new(Gate::new(1, 0, Some(peers("a"))));
        let waiting = {
            let first = first.clone();
            tokio::spawn(async move { first.pass(0).await })
        };
        tokio::time::sleep(POLL * 5).await;
        assert!(!waiting.is_finished(), "the other process is not in yet");
        Gate::new(1, 0, Some(peers("b"))).pass(0).await;
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the first process opens once the second is in")
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
