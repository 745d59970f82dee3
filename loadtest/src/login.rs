//! Registration and login over HTTP, shared by the `connections` scenario, and the
//! `login` scenario: bcrypt at the node's cost under a rising login rate.
//!
//! A `login` user registers and logs in once, then logs in again and again with a pause
//! between (`LOADTEST_LOGIN_PAUSE_MS`, default 1000). Each answer is sorted: 200, 503 with
//! `Retry-After` (the node's bounded bcrypt pool turning work away, which a client waits
//! out before trying again, as this one does), 503 without it, 429, other statuses and
//! transport errors. The report gives the latency of successful logins, the rate the
//! cluster sustained (overall, the best 10 s, and the 10 s before the first 503) and a
//! table per 10 s, so the knee of a ramp (`--increase-rate`) can be read off it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use chat_common::protocol::Credentials;
use goose::prelude::*;

use crate::plan::{self, Kind};
use crate::totals::lock;
use crate::{fail, NEXT_USER, SETTINGS};

/// Width of the report's table rows.
const BUCKET_MS: u64 = 10_000;
/// Registrations and logins answered 503 (the bcrypt pool is full) are tried this many
/// times, the waits growing to 8 s and more: a user keeps trying, as a person would.
pub const MAX_ATTEMPTS: u32 = 30;
/// Attempts of the `connections` scenario's one login: in a connect storm on a starved
/// machine the bcrypt queue answers 503 for minutes, and a user who gives up is a socket
/// the run never measures. With the 8 s backoff cap this is about 15 minutes.
pub const LOGIN_ATTEMPTS: u32 = 120;

/// How one login went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// 503 with `Retry-After`: the node turned it away before hashing.
    Busy,
    /// 503 without `Retry-After`.
    Unavailable,
    TooMany,
    Status(u16),
    Transport,
}

/// One login of the `login` scenario: when it ended (ms since the run's first login),
/// how long it took, how it went.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_ms: u64,
    pub took_us: u64,
    pub outcome: Outcome,
}

#[derive(Default)]
pub struct Totals {
    /// Logins and registrations answered 503 and tried again (both scenarios).
    pub retried_503: AtomicU64,
    /// Logins that got no answer (connection refused, reset, timed out) or a 5xx other
    /// than 503, and were tried again (`connections` only).
    pub retried_transport: AtomicU64,
    pub registered: AtomicU64,
    pub samples: Mutex<Vec<Sample>>,
}

pub static TOTALS: LazyLock<Totals> = LazyLock::new(Totals::default);
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// What the node answered to a register or login request.
struct Answer {
    status: Result<u16, String>,
    retry_after: Option<Duration>,
    cookie: Option<String>,
    took: Duration,
}

async fn post(
    user: &mut GooseUser,
    path: &str,
    name: &str,
    password: &str,
    ok_statuses: &[u16],
) -> Result<Answer, Box<TransactionError>> {
    let creds = Credentials {
        username: name.to_owned(),
        password: password.to_owned(),
    };
    let started = Instant::now();
    let mut goose = user.post_json(path, &creds).await?;
    let took = started.elapsed();
    let answer = match &goose.response {
        Ok(response) => {
            let headers = response.headers();
            Answer {
                status: Ok(response.status().as_u16()),
                retry_after: headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(plan::retry_after),
                cookie: plan::cookie_header(
                    headers
                        .get_all("set-cookie")
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                ),
                took,
            }
        }
        Err(e) => Answer {
            status: Err(e.to_string()),
            retry_after: None,
            cookie: None,
            took,
        },
    };
    if let Ok(status) = answer.status {
        if ok_statuses.contains(&status) && !(200..300).contains(&status) {
            user.set_success(&mut goose.request)?;
        }
    }
    Ok(answer)
}

fn classify(answer: &Answer) -> Outcome {
    match answer.status {
        Ok(200) => Outcome::Ok,
        Ok(503) if answer.retry_after.is_some() => Outcome::Busy,
        Ok(503) => Outcome::Unavailable,
        Ok(429) => Outcome::TooMany,
        Ok(s) => Outcome::Status(s),
        Err(_) => Outcome::Transport,
    }
}

fn record(answer: &Answer, outcome: Outcome) {
    lock(&TOTALS.samples).push(Sample {
        at_ms: ORIGIN.elapsed().as_millis() as u64,
        took_us: answer.took.as_micros() as u64,
        outcome,
    });
}

fn describe(answer: &Answer) -> String {
    match &answer.status {
        Ok(s) => format!("status {s}"),
        Err(e) => e.clone(),
    }
}

async fn wait_out(n: usize, attempt: u32, retry_after: Option<Duration>) {
    let nanos = ORIGIN.elapsed().subsec_nanos();
    let jitter = plan::jitter(n, attempt, nanos);
    tokio::time::sleep(plan::backoff(attempt, retry_after, jitter)).await;
}

/// Registers `name`; an existing account (409) is fine, a 503 is waited out and tried
/// again.
pub async fn register(
    user: &mut GooseUser,
    name: &str,
    password: &str,
    n: usize,
) -> Result<(), Box<TransactionError>> {
    for attempt in 0..MAX_ATTEMPTS {
        let answer = post(user, "/api/register", name, password, &[201, 409]).await?;
        match answer.status {
            Ok(201) => {
                TOTALS.registered.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Ok(409) => return Ok(()),
            Ok(503) => {
                TOTALS.retried_503.fetch_add(1, Ordering::Relaxed);
                wait_out(n, attempt, answer.retry_after).await;
            }
            _ => return Err(fail(format!("register {name}: {}", describe(&answer)))),
        }
    }
    Err(fail(format!("register {name}: 503 {MAX_ATTEMPTS} times")))
}

/// Logs in, waiting out 503s; returns the `Cookie` header of the session.
pub async fn log_in(
    user: &mut GooseUser,
    name: &str,
    password: &str,
    n: usize,
) -> Result<String, Box<TransactionError>> {
    for attempt in 0..LOGIN_ATTEMPTS {
        let answer = post(user, "/api/login", name, password, &[200]).await?;
        match answer.status {
            Ok(200) => {
                return answer
                    .cookie
                    .ok_or_else(|| fail(format!("login {name}: no session cookie")))
            }
            Ok(503) => {
                TOTALS.retried_503.fetch_add(1, Ordering::Relaxed);
                wait_out(n, attempt, answer.retry_after).await;
            }
            // No answer at all (a connection refused or reset while the node's accept
            // queue overflows in a connect storm), or a 5xx (a dependency timed out on a
            // starved machine): a browser would try again too.
            Err(_) | Ok(500..=599) => {
                TOTALS.retried_transport.fetch_add(1, Ordering::Relaxed);
                wait_out(n, attempt, None).await;
            }
            _ => return Err(fail(format!("login {name}: {}", describe(&answer)))),
        }
    }
    Err(fail(format!(
        "login {name}: no 200 in {LOGIN_ATTEMPTS} attempts"
    )))
}

/// Who a `login` user is.
#[derive(Clone)]
struct LoginUser {
    n: usize,
    name: String,
    password: &'static str,
}

/// One login of the `login` scenario, recorded; a 503 with `Retry-After` is waited out
/// before the transaction ends, as a client would.
async fn timed_login(user: &mut GooseUser, who: &LoginUser, attempt: u32) -> TransactionResult {
    let answer = post(user, "/api/login", &who.name, who.password, &[200]).await?;
    let outcome = classify(&answer);
    record(&answer, outcome);
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Busy => {
            wait_out(who.n, attempt, answer.retry_after).await;
            Err(fail(format!("login {}: 503, Retry-After", who.name)))
        }
        _ => Err(fail(format!("login {}: {}", who.name, describe(&answer)))),
    }
}

pub async fn start(user: &mut GooseUser) -> TransactionResult {
    let settings = SETTINGS.get().ok_or_else(|| fail("settings not set"))?;
    LazyLock::force(&ORIGIN);
    let k = NEXT_USER[Kind::Login.index()].fetch_add(1, Ordering::Relaxed);
    let n = plan::user_number(settings.offset, k);
    if let Some(host) = plan::pick_host(&settings.hosts, n) {
        user.set_base_url(host)?;
    }
    plan::check_local(user.base_url.as_str()).map_err(fail)?;
    let who = match &settings.seeded {
        Some(prefix) => LoginUser {
            n,
            name: plan::seeded_name(prefix, n),
            password: plan::SEEDED_PASSWORD,
        },
        None => {
            let name = plan::username(&settings.run, Kind::Login, n);
            register(user, &name, plan::PASSWORD, n).await?;
            LoginUser {
                n,
                name,
                password: plan::PASSWORD,
            }
        }
    };
    user.set_session_data(who.clone());
    timed_login(user, &who, 0).await
}

pub async fn again(user: &mut GooseUser) -> TransactionResult {
    let who = user
        .get_session_data_mut::<LoginUser>()
        .ok_or_else(|| fail("no login user: on_start did not finish"))?
        .clone();
    timed_login(user, &who, 0).await
}

/// One row of the per-10 s table.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub from_s: u64,
    pub ok: u64,
    pub busy: u64,
    pub other: u64,
    pub ok_p50_us: Option<u64>,
    pub ok_p99_us: Option<u64>,
}

/// Samples grouped by when they ended, `width_ms` apart, from the first sample's bucket.
pub fn buckets(samples: &[Sample], width_ms: u64) -> Vec<Bucket> {
    let width_ms = width_ms.max(1);
    let mut rows: BTreeMap<u64, (Bucket, Vec<u64>)> = BTreeMap::new();
    for s in samples {
        let key = s.at_ms / width_ms;
        let (row, lat) = rows.entry(key).or_insert_with(|| {
            (
                Bucket {
                    from_s: key * width_ms / 1000,
                    ok: 0,
                    busy: 0,
                    other: 0,
                    ok_p50_us: None,
                    ok_p99_us: None,
                },
                Vec::new(),
            )
        });
        match s.outcome {
            Outcome::Ok => {
                row.ok += 1;
                lat.push(s.took_us);
            }
            Outcome::Busy => row.busy += 1,
            _ => row.other += 1,
        }
    }
    rows.into_values()
        .map(|(mut row, mut lat)| {
            lat.sort_unstable();
            row.ok_p50_us = plan::percentile(&lat, 50.0);
            row.ok_p99_us = plan::percentile(&lat, 99.0);
            row
        })
        .collect()
}

/// Successful logins per second in the `window_ms` before the first 503 with
/// `Retry-After` (`None` without one), and in the best full window of the run.
pub fn rates(samples: &[Sample], window_ms: u64) -> (Option<f64>, f64) {
    let window_ms = window_ms.max(1);
    let per_s = |n: usize| n as f64 * 1000.0 / window_ms as f64;
    let mut ok: Vec<u64> = samples
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .map(|s| s.at_ms)
        .collect();
    ok.sort_unstable();
    let first_busy = samples
        .iter()
        .filter(|s| s.outcome == Outcome::Busy)
        .map(|s| s.at_ms)
        .min();
    let before = first_busy.map(|t| {
        let from = t.saturating_sub(window_ms);
        per_s(ok.iter().filter(|&&a| a >= from && a < t).count())
    });
    // Best window: sliding over the sorted times, each window starting at a success.
    let mut best = 0;
    let mut j = 0;
    for i in 0..ok.len() {
        while j < ok.len() && ok[j] < ok[i] + window_ms {
            j += 1;
        }
        best = best.max(j - i);
    }
    (before, per_s(best))
}

fn ms(us: Option<u64>) -> String {
    us.map_or_else(|| "-".into(), |us| format!("{:.1}", us as f64 / 1000.0))
}

/// The `login:` summary line, then the per-10 s table.
pub fn report() -> Vec<String> {
    let samples = lock(&TOTALS.samples).clone();
    let count = |f: &dyn Fn(Outcome) -> bool| samples.iter().filter(|s| f(s.outcome)).count();
    let ok = count(&|o| o == Outcome::Ok);
    let mut lat: Vec<u64> = samples
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .map(|s| s.took_us)
        .collect();
    lat.sort_unstable();
    let span_s = match (
        samples.iter().map(|s| s.at_ms).min(),
        samples.iter().map(|s| s.at_ms).max(),
    ) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1000.0,
        _ => 0.0,
    };
    let (before_busy, best) = rates(&samples, BUCKET_MS);
    let first_busy = samples
        .iter()
        .filter(|s| s.outcome == Outcome::Busy)
        .map(|s| s.at_ms)
        .min();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for s in &samples {
        if let Outcome::Status(c) = s.outcome {
            *statuses.entry(c).or_default() += 1;
        }
    }
    let mut lines = vec![format!(
        "login: ok {ok} ok_per_s {} best_10s_ok_per_s {best:.1} busy_503_retry_after {} \
         unavailable_503 {} too_many_429 {} other_status {} transport_errors {} \
         p50_ms {} p95_ms {} p99_ms {} max_ms {} first_busy_s {} ok_per_s_10s_before_busy {} \
         registered {} retried_503 {}",
        if span_s > 0.0 {
            format!("{:.1}", ok as f64 / span_s)
        } else {
            "-".into()
        },
        count(&|o| o == Outcome::Busy),
        count(&|o| o == Outcome::Unavailable),
        count(&|o| o == Outcome::TooMany),
        count(&|o| matches!(o, Outcome::Status(_))),
        count(&|o| o == Outcome::Transport),
        ms(plan::percentile(&lat, 50.0)),
        ms(plan::percentile(&lat, 95.0)),
        ms(plan::percentile(&lat, 99.0)),
        ms(plan::percentile(&lat, 100.0)),
        first_busy.map_or_else(|| "-".into(), |t| format!("{:.1}", t as f64 / 1000.0)),
        before_busy.map_or_else(|| "-".into(), |r| format!("{r:.1}")),
        TOTALS.registered.load(Ordering::Relaxed),
        TOTALS.retried_503.load(Ordering::Relaxed),
    )];
    for (code, n) in statuses {
        lines.push(format!("login status {code}: {n}"));
    }
    lines.push("per 10 s of the run (the last row may cover less than 10 s):".into());
    lines.push(
        "| from s | ok/s | 503+Retry-After /s | other fails /s | ok p50 ms | ok p99 ms |".into(),
    );
    lines.push("| --- | --- | --- | --- | --- | --- |".into());
    let secs = BUCKET_MS as f64 / 1000.0;
    for b in buckets(&samples, BUCKET_MS) {
        lines.push(format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} |",
            b.from_s,
            b.ok as f64 / secs,
            b.busy as f64 / secs,
            b.other as f64 / secs,
            ms(b.ok_p50_us),
            ms(b.ok_p99_us)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, took_us: u64, outcome: Outcome) -> Sample {
        Sample {
            at_ms,
            took_us,
            outcome,
        }
    }

    #[test]
    fn answers_are_sorted_by_status_and_retry_after() {
        let answer = |status: Result<u16, String>, retry: Option<u64>| Answer {
            status,
            retry_after: retry.map(Duration::from_secs),
            cookie: None,
            took: Duration::ZERO,
        };
        assert_eq!(classify(&answer(Ok(200), None)), Outcome::Ok);
        assert_eq!(classify(&answer(Ok(503), Some(1))), Outcome::Busy);
        assert_eq!(classify(&answer(Ok(503), None)), Outcome::Unavailable);
        assert_eq!(classify(&answer(Ok(429), None)), Outcome::TooMany);
        assert_eq!(classify(&answer(Ok(401), None)), Outcome::Status(401));
        assert_eq!(
            classify(&answer(Err("reset".into()), None)),
            Outcome::Transport
        );
    }

    #[test]
    fn the_table_and_the_rates_follow_the_samples() {
        let mut v = Vec::new();
        // 0-10 s: 20 ok logins; 10-20 s: 50 ok and 5 busy from 15 s on.
        for i in 0..20 {
            v.push(s(i * 500, 100_000 + i, Outcome::Ok));
        }
        for i in 0..50 {
            v.push(s(10_000 + i * 200, 300_000, Outcome::Ok));
        }
        for i in 0..5 {
            v.push(s(15_000 + i, 1_000, Outcome::Busy));
        }
        v.push(s(19_999, 5, Outcome::Status(500)));
        let rows = buckets(&v, 10_000);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].from_s, rows[0].ok, rows[0].busy), (0, 20, 0));
        assert_eq!(rows[0].ok_p50_us, Some(100_009));
        assert_eq!(
            (rows[1].from_s, rows[1].ok, rows[1].busy, rows[1].other),
            (10, 50, 5, 1)
        );
        assert_eq!(rows[1].ok_p99_us, Some(300_000));
        let (before, best) = rates(&v, 10_000);
        // 5-15 s before the first busy at 15 s: 10 of the first + 25 of the second.
        assert_eq!(before, Some(3.5));
        assert_eq!(best, 5.0);
        let (none, _) = rates(&v[..20], 10_000);
        assert_eq!(none, None);
        assert_eq!(rates(&[], 10_000), (None, 0.0));
    }
}
