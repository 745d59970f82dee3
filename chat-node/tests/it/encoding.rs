//! Request bodies are taken as sent: a `Content-Encoding` other than `identity` is refused
//! with 415 before a byte is inflated, so a 15 KB body bomb costs the node nothing.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{random, Cluster, PASSWORD};

/// What a zstd RLE block may regenerate at most (the format's block size limit).
const RLE_BLOCK: usize = 128 * 1024;

/// A valid zstd frame that inflates to `size` zero bytes, in about `size / 32768` bytes:
/// one RLE block (3-byte header and the byte to repeat) per 128 KiB.
fn zstd_zeros(size: usize) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header: no content size, no checksum, no dictionary; a 128 KiB window.
    frame.extend([0x00, 7 << 3]);
    let blocks = size.div_ceil(RLE_BLOCK);
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = (RLE_BLOCK as u32) << 3 | 1 << 1 | last;
        frame.extend(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

/// `size` zero bytes through `gzip -9`: about a thousandth of that.
fn gzip_zeros(size: usize) -> Vec<u8> {
    let mut gzip = Command::new("gzip")
        .arg("-9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = gzip.stdin.take().expect("gzip stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&vec![0; size]));
    let out = gzip.wait_with_output().expect("gzip output");
    writer.join().expect("writer").expect("gzip input");
    assert!(out.status.success());
    out.stdout
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

async fn post_encoded(c: &Cluster, path: &str, encoding: &str, body: Vec<u8>) -> (u16, Value) {
    let r = c
        .http
        .post(format!("{}{path}", c.url(0)))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", encoding)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn encoded_bodies_to_login_and_register_get_415_and_are_never_inflated() {
    let c = Cluster::start(1).await;
    let bomb = zstd_zeros(500 * 1024 * 1024);
    assert!(bomb.len() < 20 * 1024, "the bomb is small: {}", bomb.len());
    let gzip_bomb = gzip_zeros(16 * 1024 * 1024);
    let before = peak_rss_kib(c.nodes[0].pid());

    for path in ["/api/login", "/api/register"] {
        for (encoding, body) in [("zstd", &bomb), ("gzip", &gzip_bomb), ("br", &bomb)] {
            let (status, body) = post_encoded(&c, path, encoding, body.clone()).await;
            assert_eq!(status, 415, "{path} with {encoding}: {body}");
            assert_eq!(body["error"]["code"], "unsupported_encoding", "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
    }
    let peak = peak_rss_kib(c.nodes[0].pid());
    assert!(
        peak < 100 * 1024,
        "peak RSS went from {before} KiB to {peak} KiB"
    );

    // `identity` is the body as sent.
    let name = format!("ivy_{}", random(4));
    let creds = format!(r#"{{"username":"{name}","password":"{PASSWORD}"}}"#);
    let (status, _) = post_encoded(&c, "/api/register", "identity", creds.into()).await;
    assert_eq!(status, 201);
}
