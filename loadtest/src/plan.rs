//! Pure helpers: who a load-test user is, who they talk to, which node they reach, and
//! the checks that keep the load generator pointed at this machine only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The only host the load test ever targets.
pub const LOCAL_HOST: &str = "127.0.0.1";
/// Every load-test user has this password; registration tolerates an existing account.
pub const PASSWORD: &str = "loadtest-password";

/// The three scenarios. Users are numbered per scenario, so chat users pair with chat users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    History,
    Http,
}

impl Kind {
    pub fn index(self) -> usize {
        match self {
            Kind::Chat => 0,
            Kind::History => 1,
            Kind::Http => 2,
        }
    }

    fn letter(self) -> char {
        match self {
            Kind::Chat => 'c',
            Kind::History => 'h',
            Kind::Http => 'u',
        }
    }
}

/// `lt_<run>_<c|h|u><n>`: unique per run, scenario and user number.
pub fn username(run: &str, kind: Kind, n: usize) -> String {
    format!("lt_{run}_{}{n}", kind.letter())
}

/// Users 2k and 2k+1 talk to each other.
pub fn partner(n: usize) -> usize {
    n ^ 1
}

/// The node user `n` talks to: partners land on different nodes when there are two.
pub fn pick_host(hosts: &[String], n: usize) -> Option<&str> {
    if hosts.is_empty() {
        return None;
    }
    hosts.get(n % hosts.len()).map(String::as_str)
}

/// The run tag from `LOADTEST_RUN`, else the start time in base 36 (six characters).
pub fn run_tag(from_env: Option<String>) -> Result<String, String> {
    if let Some(tag) = from_env {
        let ok =
            !tag.is_empty() && tag.len() <= 12 && tag.chars().all(|c| c.is_ascii_alphanumeric());
        return if ok {
            Ok(tag)
        } else {
            Err(format!(
                "LOADTEST_RUN must be 1 to 12 letters or digits, got {tag:?}"
            ))
        };
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(base36(secs))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Accepts `http://127.0.0.1[:port][/]` and nothing else: no other host, no TLS, no
/// userinfo tricks such as `http://127.0.0.1@elsewhere`.
pub fn check_local(url: &str) -> Result<(), String> {
    let refuse = || {
        Err(format!(
            "refusing to target {url:?}: only http://{LOCAL_HOST}[:port]"
        ))
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return refuse();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return refuse();
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host != LOCAL_HOST {
        return refuse();
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return refuse();
        }
    }
    Ok(())
}

/// `LOADTEST_HOSTS=http://127.0.0.1:9181,http://127.0.0.1:9182`, each checked local.
pub fn parse_hosts(list: &str) -> Result<Vec<String>, String> {
    let hosts: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_end_matches('/').to_owned())
        .collect();
    for h in &hosts {
        check_local(h)?;
    }
    if hosts.is_empty() {
        return Err("LOADTEST_HOSTS names no host".into());
    }
    Ok(hosts)
}

/// `LOADTEST_CHAT_WAIT_MS=<min>-<max>`: the `chat` scenario's wait between messages.
/// A floor of 60 ms keeps one socket under the server's 20 frames/s.
pub fn parse_wait(range: &str) -> Result<(u64, u64), String> {
    let bad = || format!("LOADTEST_CHAT_WAIT_MS is <min>-<max> ms, min >= 60: {range:?}");
    let (lo, hi) = range.split_once('-').ok_or_else(bad)?;
    let lo: u64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u64 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 60 || hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// `LOADTEST_CHAT_INTERVAL_MS=<n>`: each `chat` user sends one message every `n` ms on a
/// fixed schedule, so the offered rate is users × 1000 / n whatever the ack latency (as
/// long as an ack takes less than `n`). The same 60 ms floor as [`parse_wait`].
pub fn parse_interval(value: &str) -> Result<u64, String> {
    let bad = || format!("LOADTEST_CHAT_INTERVAL_MS is a number of ms >= 60: {value:?}");
    let n: u64 = value.trim().parse().map_err(|_| bad())?;
    if n < 60 {
        return Err(bad());
    }
    Ok(n)
}

/// Where user `n`'s fixed schedule starts within one interval, so users launched together
/// do not send together.
pub fn phase(n: usize, interval: Duration) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis((n as u64).wrapping_mul(0x9E37_79B9) % ms)
}

/// The slot after `previous` on a fixed schedule, as offsets from one origin, and how many
/// slots were skipped: a send less than one interval late goes at once and keeps the
/// schedule; one later than that drops the missed slots (no burst to catch up) and starts
/// the schedule again from `now`.
pub fn next_slot(previous: Duration, interval: Duration, now: Duration) -> (Duration, u64) {
    let slot = previous + interval;
    if now < slot + interval {
        return (slot, 0);
    }
    let late = now - slot;
    let missed = (late.as_nanos() / interval.as_nanos().max(1)) as u64;
    (now, missed)
}

/// `http://127.0.0.1:9181/` → `ws://127.0.0.1:9181/ws`.
pub fn ws_url(base: &str) -> String {
    format!(
        "{}/ws",
        base.trim_end_matches('/').replacen("http://", "ws://", 1)
    )
}

/// The `Cookie` header a browser would send back for these `Set-Cookie` values.
pub fn cookie_header<'a>(set_cookies: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let pairs: Vec<&str> = set_cookies
        .into_iter()
        .filter_map(|c| c.split(';').next())
        .map(str::trim)
        .filter(|c| c.contains('='))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

/// The `p`th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners_pair_up_and_land_on_different_nodes() {
        assert_eq!(partner(0), 1);
        assert_eq!(partner(1), 0);
        assert_eq!(partner(6), 7);
        assert_eq!(partner(partner(41)), 41);
        let hosts = vec!["http://127.0.0.1:1".to_owned(), "http://127.0.0.1:2".into()];
        for n in 0..10 {
            assert_ne!(pick_host(&hosts, n), pick_host(&hosts, partner(n)));
        }
        assert_eq!(pick_host(&[], 3), None);
    }

    #[test]
    fn usernames_are_valid_and_distinct_per_scenario() {
        let run = run_tag(None).expect("a tag from the clock");
        for kind in [Kind::Chat, Kind::History, Kind::Http] {
            let name = username(&run, kind, 99_999);
            assert!(chat_common::validate::username(&name).is_ok(), "{name}");
        }
        assert_ne!(
            username("r", Kind::Chat, 1),
            username("r", Kind::History, 1)
        );
        assert_eq!(username("abc", Kind::Chat, 4), "lt_abc_c4");
        assert!(run_tag(Some("bad tag".into())).is_err());
        assert_eq!(run_tag(Some("x1".into())), Ok("x1".into()));
    }

    #[test]
    fn only_plain_http_to_localhost_is_accepted() {
        for ok in [
            "http://127.0.0.1",
            "http://127.0.0.1:9181",
            "http://127.0.0.1:9181/",
        ] {
            assert_eq!(check_local(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:9181",
            "http://example.com",
            "http://127.0.0.1.example.com",
            "http://127.0.0.1@example.com",
            "http://127.0.0.1:notaport",
            "127.0.0.1:9181",
        ] {
            assert!(check_local(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_hosts("http://127.0.0.1:1/, http://127.0.0.1:2"),
            Ok(vec![
                "http://127.0.0.1:1".into(),
                "http://127.0.0.1:2".into()
            ])
        );
        assert!(parse_hosts("http://127.0.0.1:1,http://10.0.0.1:2").is_err());
        assert!(parse_hosts(" , ").is_err());
    }

    #[test]
    fn websocket_url_and_cookie_header_follow_the_login_response() {
        assert_eq!(ws_url("http://127.0.0.1:9181/"), "ws://127.0.0.1:9181/ws");
        assert_eq!(ws_url("http://127.0.0.1:9181"), "ws://127.0.0.1:9181/ws");
        assert_eq!(
            cookie_header(["id=abc; Path=/; HttpOnly; SameSite=Lax", "x=1"]),
            Some("id=abc; x=1".into())
        );
        assert_eq!(cookie_header([]), None);
    }

    #[test]
    fn chat_wait_ranges_stay_under_the_rate_limit() {
        assert_eq!(parse_wait("250-750"), Ok((250, 750)));
        assert_eq!(parse_wait("60 - 60"), Ok((60, 60)));
        for bad in ["10-20", "300-200", "300", "a-b"] {
            assert!(parse_wait(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fixed_schedule_keeps_its_pace_and_drops_what_it_cannot_send() {
        let ms = Duration::from_millis;
        assert_eq!(parse_interval("112"), Ok(112));
        for bad in ["59", "", "x", "-1"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        // On time or a little late: the next slot, the schedule kept.
        assert_eq!(next_slot(ms(1000), ms(100), ms(950)), (ms(1100), 0));
        assert_eq!(next_slot(ms(1000), ms(100), ms(1150)), (ms(1100), 0));
        // A whole interval late or more: send now, count the slots that passed.
        assert_eq!(next_slot(ms(1000), ms(100), ms(1200)), (ms(1200), 1));
        assert_eq!(next_slot(ms(1000), ms(100), ms(1390)), (ms(1390), 2));
        // Phases stay inside the interval and spread users launched together.
        let phases: std::collections::HashSet<_> = (0..10).map(|n| phase(n, ms(100))).collect();
        assert!(phases.iter().all(|p| *p < ms(100)));
        assert!(phases.len() > 5);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
