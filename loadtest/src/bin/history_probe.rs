//! Times `sync` and `chatHistory` round trips on one socket, one request at a time, and
//! prints p50/p99 per kind. `loadtest/history-bench.sh` seeds a large conversation and
//! runs it; see docs/benchmarks.md.
//!
//!   history_probe <ws url> <cookie> <peer> <newest id> <requests>

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const REPLY_WAIT: Duration = Duration::from_secs(30);

async fn reply(stream: &mut Stream, kind: &str) -> Result<Value, String> {
    loop {
        let msg = tokio::time::timeout(REPLY_WAIT, stream.next())
            .await
            .map_err(|_| format!("no {kind} reply in time"))?
            .ok_or("socket closed")?
            .map_err(|e| format!("socket error: {e}"))?;
        if let Message::Text(text) = msg {
            let frame: Value =
                serde_json::from_str(text.as_str()).map_err(|e| format!("bad frame: {e}"))?;
            if frame["type"] == kind {
                return Ok(frame);
            }
            if frame["type"] == "error" {
                return Err(format!("error frame: {frame}"));
            }
        }
    }
}

/// One request, its round trip, and a check that the reply is the size asked for.
async fn timed(stream: &mut Stream, frame: Value, kind: &str, rows: usize) -> Result<f64, String> {
    let started = Instant::now();
    stream
        .send(Message::text(frame.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let answer = reply(stream, kind).await?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let got = answer["messages"].as_array().map_or(0, Vec::len);
    if got != rows {
        return Err(format!("{kind}: {got} messages, expected {rows}"));
    }
    Ok(elapsed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn report(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} |",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, cookie, peer, newest, requests] = args.as_slice() else {
        return Err("usage: history_probe <ws url> <cookie> <peer> <newest id> <requests>".into());
    };
    let newest: u64 = newest.parse().map_err(|e| format!("newest id: {e}"))?;
    let requests: u64 = requests.parse().map_err(|e| format!("requests: {e}"))?;
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    req.headers_mut().insert(
        "Cookie",
        HeaderValue::from_str(cookie).map_err(|e| format!("cookie: {e}"))?,
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    reply(&mut stream, "updateUsers").await?;

    let (mut recent, mut from_start, mut newest_page, mut pages) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..requests {
        recent.push(
            timed(
                &mut stream,
                json!({"type": "sync", "after": newest - 10, "limit": 100}),
                "sync",
                10,
            )
            .await?,
        );
        from_start.push(
            timed(
                &mut stream,
                json!({"type": "sync", "after": 0, "limit": 100}),
                "sync",
                100,
            )
            .await?,
        );
        newest_page.push(
            timed(
                &mut stream,
                json!({"type": "chatHistory", "peer": peer, "limit": 10}),
                "chatHistory",
                10,
            )
            .await?,
        );
        // Spread over the whole conversation, deterministic so runs compare.
        let before = 1000 + (i * 7919) % newest.saturating_sub(1000).max(1);
        pages.push(
            timed(
                &mut stream,
                json!({"type": "chatHistory", "peer": peer, "before": before, "limit": 10}),
                "chatHistory",
                10,
            )
            .await?,
        );
    }
    println!("| request | n | p50 ms | p99 ms | max ms |");
    println!("| --- | --- | --- | --- | --- |");
    report("sync after newest-10, limit 100", recent);
    report("sync after 0, limit 100", from_start);
    report("chatHistory newest page of 10", newest_page);
    report("chatHistory page of 10 before a random id", pages);
    Ok(())
}
