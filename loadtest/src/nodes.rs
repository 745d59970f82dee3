//! What the `connections` scenario reads of the nodes themselves when they run on this
//! machine: resident memory from `/proc/<pid>/status` and the open-socket gauge
//! `chat_ws_connections` from each node's `/metrics` (on the node's internal listener,
//! `LOADTEST_NODE_METRICS`, where it has one).
//!
//! With `LOADTEST_NODE_PIDS` the VmRSS of every node is read when the generator starts;
//! once the nodes' gauges add up to `LOADTEST_EXPECT_SOCKETS` (all sockets of every
//! generator process open) and a settling pause has passed, it is read again, and the
//! growth divided by the sockets that node holds is printed as one `rss:` line per node
//! at the end of the run.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan;
use crate::totals::lock;

/// How often the gauges are polled until every socket is open.
const POLL: Duration = Duration::from_millis(500);
/// A `/metrics` request that takes longer than this counts as failed; polling goes on.
const METRICS_WAIT: Duration = Duration::from_secs(5);

/// `VmRSS:    123456 kB` → 123456 (KiB).
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The value of an unlabelled sample `name <value>` in Prometheus text.
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Growth per socket in KiB, `None` without sockets.
pub fn per_socket_kib(before_kib: u64, after_kib: u64, sockets: i64) -> Option<f64> {
    (sockets > 0).then(|| (after_kib as f64 - before_kib as f64) / sockets as f64)
}

pub fn read_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    vm_rss_kib(&status).ok_or_else(|| format!("/proc/{pid}/status has no VmRSS"))
}

/// `GET /metrics` over a plain HTTP/1.0 connection to a local node.
pub async fn fetch_metrics(host: &str) -> Result<String, String> {
    let addr = plan::node_addr(host)?;
    let get = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let raw = tokio::time::timeout(METRICS_WAIT, get)
        .await
        .map_err(|_| format!("{host}/metrics: no answer in time"))?
        .map_err(|e| format!("{host}/metrics: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{host}/metrics: no HTTP header"))?;
    if !head.lines().next().is_some_and(|l| l.contains(" 200")) {
        return Err(format!(
            "{host}/metrics: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

/// Open WebSockets of one node by its own gauge.
pub async fn node_sockets(host: &str) -> Result<i64, String> {
    let text = fetch_metrics(host).await?;
    gauge(&text, "chat_ws_connections")
        .map(|v| v as i64)
        .ok_or_else(|| format!("{host}/metrics has no chat_ws_connections"))
}

struct Node {
    host: String,
    metrics: String,
    pid: u32,
    before_kib: u64,
}

struct Measured {
    host: String,
    pid: u32,
    before_kib: u64,
    after_kib: u64,
    sockets: i64,
}

struct Probe {
    nodes: Vec<Node>,
    expect: usize,
    started: Instant,
    /// The last total the gauges gave, and the last failure to read one, for the report
    /// when not all sockets opened.
    last_total: Mutex<Option<i64>>,
    last_error: Mutex<Option<String>>,
    measured: OnceLock<Result<(Vec<Measured>, Duration), String>>,
}

static PROBE: OnceLock<Probe> = OnceLock::new();

/// Reads every node's VmRSS now and starts the task that reads it again once the nodes
/// hold `expect` sockets in all, `ready` says this process's sockets are all past their
/// `updateUsers` (a node counts a socket from its upgrade on), and `settle` has passed.
pub fn start(
    hosts: &[String],
    metrics: &[String],
    pids: &[u32],
    expect: usize,
    settle: Duration,
    ready: fn() -> bool,
) -> Result<(), String> {
    let nodes = hosts
        .iter()
        .zip(metrics)
        .zip(pids)
        .map(|((host, metrics), &pid)| {
            Ok(Node {
                host: host.clone(),
                metrics: metrics.clone(),
                pid,
                before_kib: read_rss_kib(pid)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    PROBE
        .set(Probe {
            nodes,
            expect,
            started: Instant::now(),
            last_total: Mutex::new(None),
            last_error: Mutex::new(None),
            measured: OnceLock::new(),
        })
        .map_err(|_| "RSS probe started twice".to_owned())?;
    tokio::spawn(async move {
        let Some(probe) = PROBE.get() else { return };
        loop {
            tokio::time::sleep(POLL).await;
            let mut total = 0;
            let mut complete = true;
            for node in &probe.nodes {
                match node_sockets(&node.metrics).await {
                    Ok(n) => total += n,
                    Err(e) => {
                        complete = false;
                        *lock(&probe.last_error) = Some(e);
                    }
                }
            }
            if complete {
                *lock(&probe.last_total) = Some(total);
            }
            if complete && total >= probe.expect as i64 && ready() {
                break;
            }
        }
        let all_open = probe.started.elapsed();
        tokio::time::sleep(settle).await;
        let mut measured = Vec::new();
        for node in &probe.nodes {
            let after = read_rss_kib(node.pid);
            let sockets = node_sockets(&node.metrics).await;
            match (after, sockets) {
                (Ok(after_kib), Ok(sockets)) => measured.push(Measured {
                    host: node.host.clone(),
                    pid: node.pid,
                    before_kib: node.before_kib,
                    after_kib,
                    sockets,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = probe.measured.set(Err(e));
                    return;
                }
            }
        }
        let _ = probe.measured.set(Ok((measured, all_open)));
    });
    Ok(())
}

/// The `rss:` lines, or one saying why there are none; empty without a probe.
pub fn report() -> Vec<String> {
    let Some(probe) = PROBE.get() else {
        return Vec::new();
    };
    match probe.measured.get() {
        Some(Ok((measured, all_open))) => measured
            .iter()
            .map(|m| {
                let per = per_socket_kib(m.before_kib, m.after_kib, m.sockets)
                    .map_or_else(|| "-".into(), |v| format!("{v:.1}"));
                format!(
                    "rss: host {} pid {} sockets {} before_kib {} after_kib {} \
                     per_socket_kib {per} all_open_after_s {:.1}",
                    m.host,
                    m.pid,
                    m.sockets,
                    m.before_kib,
                    m.after_kib,
                    all_open.as_secs_f64()
                )
            })
            .collect(),
        Some(Err(e)) => vec![format!("rss: not measured: {e}")],
        None => vec![format!(
            "rss: not measured: the nodes never held the {} sockets expected, or this \
             process's sockets never all opened (nodes' last total {}; last /metrics error: {})",
            probe.expect,
            lock(&probe.last_total).map_or_else(|| "none".into(), |t| t.to_string()),
            lock(&probe.last_error)
                .clone()
                .unwrap_or_else(|| "none".into())
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_gauges_are_read_from_their_text() {
        let status = "Name:\tchat-node\nVmPeak:\t  99 kB\nVmRSS:\t   51234 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(vm_rss_kib(status), Some(51_234));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
        let metrics = "# HELP chat_ws_connections Open WebSocket connections\n\
                       # TYPE chat_ws_connections gauge\n\
                       chat_ws_connections_total 9\n\
                       chat_ws_connections 1000\n";
        assert_eq!(gauge(metrics, "chat_ws_connections"), Some(1000.0));
        assert_eq!(gauge(metrics, "chat_missing"), None);
        assert_eq!(per_socket_kib(20_000, 70_000, 1000), Some(50.0));
        assert_eq!(per_socket_kib(20_000, 19_000, 100), Some(-10.0));
        assert_eq!(per_socket_kib(1, 2, 0), None);
    }
}
