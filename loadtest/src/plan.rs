//! Pure helpers: who a load-test user is, who they talk to, which node they reach, and
//! the checks that keep the load generator pointed at this machine only.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The only host the load test ever targets.
pub const LOCAL_HOST: &str = "127.0.0.1";
/// Every load-test user has this password; registration tolerates an existing account.
pub const PASSWORD: &str = "loadtest-password";
/// The password of the users `loadtest/seed.sh` writes into the database.
pub const SEEDED_PASSWORD: &str = "password123";

/// How many scenarios there are.
pub const KINDS: usize = 6;

/// The scenarios. Users are numbered per scenario, so chat users pair with chat users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    History,
    Http,
    Connections,
    Login,
    Rooms,
}

impl Kind {
    pub const ALL: [Kind; KINDS] = [
        Kind::Chat,
        Kind::History,
        Kind::Http,
        Kind::Connections,
        Kind::Login,
        Kind::Rooms,
    ];

    pub fn index(self) -> usize {
        match self {
            Kind::Chat => 0,
            Kind::History => 1,
            Kind::Http => 2,
            Kind::Connections => 3,
            Kind::Login => 4,
            Kind::Rooms => 5,
        }
    }

    /// The scenario's name, which `--scenarios` selects.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::History => "history",
            Kind::Http => "http",
            Kind::Connections => "connections",
            Kind::Login => "login",
            Kind::Rooms => "rooms",
        }
    }

    /// Whether it runs when `--scenarios` is not given: the three of the original mix,
    /// so a plain run (and `bench.sh`) keeps its weights.
    pub fn by_default(self) -> bool {
        matches!(self, Kind::Chat | Kind::History | Kind::Http)
    }

    fn letter(self) -> char {
        match self {
            Kind::Chat => 'c',
            Kind::History => 'h',
            Kind::Http => 'u',
            Kind::Connections => 's',
            Kind::Login => 'l',
            Kind::Rooms => 'r',
        }
    }
}

/// Which scenarios a run has: the default mix without `--scenarios`, else those its
/// patterns name (exactly, or with `*` wildcards, as goose matches them).
pub fn selected(patterns: Option<&[String]>) -> [bool; KINDS] {
    Kind::ALL.map(|kind| match patterns {
        None => kind.by_default(),
        Some(list) => list.iter().any(|p| wildcard(p.trim(), kind.name())),
    })
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// `lt_<run>_<c|h|u|s|l><n>`: unique per run, scenario and user number.
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

/// The `type` of a server frame, found by its key rather than by parsing the frame. The
/// nodes write it first, except in `presence` frames, which Redis's cjson writes in any
/// order. No other key is `type`, and no string value holds an unescaped quote.
pub fn frame_type(text: &str) -> Option<&str> {
    let at = text.find(r#""type":""#)?;
    text[at + 8..].split('"').next()
}

/// The `p`th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// User number `k` of this process is user `offset + k` of the whole run: a second
/// generator process with `LOADTEST_USER_OFFSET=<users of the first>` takes the users
/// after the first one's, so no two processes log in the same user.
pub fn user_number(offset: usize, k: usize) -> usize {
    offset + k
}

/// `LOADTEST_USER_OFFSET`: a whole number, 0 by default.
pub fn parse_offset(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("LOADTEST_USER_OFFSET is a whole number: {value:?}"))
}

/// The seeded user of user number `n`: `seed.sh` numbers its users from 1
/// (`seq_1_to_N`), so user 0 is `<prefix>1`.
pub fn seeded_name(prefix: &str, n: usize) -> String {
    format!("{prefix}{}", n + 1)
}

/// `LOADTEST_SEEDED=<prefix>`: 2 to 24 characters of `A-Z a-z 0-9 _ . -`, so that every
/// seeded name (prefix and up to 8 digits) is a valid username; the same rule as seed.sh.
pub fn parse_seeded_prefix(value: &str) -> Result<String, String> {
    let ok = (2..=24).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "LOADTEST_SEEDED is 2 to 24 characters of A-Z a-z 0-9 _ . -: {value:?}"
        ))
    }
}

/// The loopback source address of user `n`'s socket, 127.0.0.2 to 127.0.0.(1 + sources):
/// each source address has its own ephemeral ports, so tens of thousands of sockets to
/// one node never run out of them. 127.0.0.1 is left to the HTTP requests.
pub fn source_addr(n: usize, sources: u8) -> Ipv4Addr {
    let sources = usize::from(sources.clamp(1, MAX_SOURCES));
    let last = 2 + n % sources;
    Ipv4Addr::new(127, 0, 0, u8::try_from(last).unwrap_or(2))
}

/// At most 127.0.0.2 to 127.0.0.251.
pub const MAX_SOURCES: u8 = 250;

/// `LOADTEST_SOURCES`: how many source addresses, 1 to [`MAX_SOURCES`].
pub fn parse_sources(value: &str) -> Result<u8, String> {
    let bad = || format!("LOADTEST_SOURCES is 1 to {MAX_SOURCES}: {value:?}");
    let n: u8 = value.trim().parse().map_err(|_| bad())?;
    if n == 0 || n > MAX_SOURCES {
        return Err(bad());
    }
    Ok(n)
}

/// The address of a node checked by [`check_local`]: `http://127.0.0.1:9181` →
/// 127.0.0.1:9181 (port 80 when none is given).
pub fn node_addr(base: &str) -> Result<SocketAddrV4, String> {
    check_local(base)?;
    let rest = base.strip_prefix("http://").unwrap_or(base);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port = match authority.split_once(':') {
        Some((_, p)) => p.parse().map_err(|_| format!("bad port in {base:?}"))?,
        None => 80,
    };
    Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// `Retry-After` in delta-seconds; an HTTP date or anything else is `None`.
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_secs)
}

/// How long to wait before attempt `attempt + 1` (attempts count from 0). `jitter` is in
/// `0..1`. The backoff is 250 ms doubling to 8 s; without `Retry-After` it is taken times
/// 0.5 to 1.5. A server's `Retry-After` is a floor: the larger of it and the backoff, plus
/// up to half of that again, so the users it turned away do not all come back together
/// and the ones turned away again and again come back less often.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let exponential = Duration::from_millis(250 << attempt.min(5));
    match retry_after {
        Some(floor) => {
            let base = floor.max(exponential);
            base + base.mul_f64(jitter / 2.0)
        }
        None => exponential.mul_f64(0.5 + jitter),
    }
}

/// A number in `0..1` from the user, the attempt and a clock reading (no RNG needed):
/// different users and attempts land apart.
pub fn jitter(n: usize, attempt: u32, nanos: u32) -> f64 {
    let mut x = (n as u64) ^ (u64::from(attempt) << 40) ^ (u64::from(nanos) << 8);
    // splitmix64's finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `LOADTEST_NODE_PIDS=pid1,pid2`: one process id per node, in `LOADTEST_HOSTS` order.
pub fn parse_pids(list: &str, hosts: usize) -> Result<Vec<u32>, String> {
    let pids = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>()
                .map_err(|_| format!("LOADTEST_NODE_PIDS: not a process id: {p:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pids.is_empty() || pids.len() != hosts.max(1) {
        return Err(format!(
            "LOADTEST_NODE_PIDS names {} processes for {} nodes (one per LOADTEST_HOSTS entry, \
             in its order)",
            pids.len(),
            hosts.max(1)
        ));
    }
    Ok(pids)
}

/// `<min>-<max>` or `<n>` milliseconds (`LOADTEST_LOGIN_PAUSE_MS`).
pub fn parse_pause(value: &str) -> Result<(u64, u64), String> {
    let bad = || format!("LOADTEST_LOGIN_PAUSE_MS is <ms> or <min>-<max>: {value:?}");
    let (lo, hi) = value.split_once('-').unwrap_or((value, value));
    let lo: u64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u64 = hi.trim().parse().map_err(|_| bad())?;
    if hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
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

    #[test]
    fn scenarios_are_selected_by_name_and_the_default_mix_is_unchanged() {
        assert_eq!(selected(None), [true, true, true, false, false, false]);
        let only = |list: &[&str]| {
            let v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            selected(Some(&v))
        };
        assert_eq!(
            only(&["connections"]),
            [false, false, false, true, false, false]
        );
        assert_eq!(
            only(&["chat", "login"]),
            [true, false, false, false, true, false]
        );
        assert_eq!(only(&["*"]), [true; KINDS]);
        assert_eq!(only(&["h*"]), [false, true, true, false, false, false]);
        assert_eq!(only(&["*o*n*"]), [false, false, false, true, true, false]);
        assert_eq!(only(&["conn"]), [false; KINDS]);
        assert_eq!(only(&["conn*s"]), [false, false, false, true, false, false]);
        assert_eq!(only(&["rooms"]), [false, false, false, false, false, true]);
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            ["chat", "history", "http", "connections", "login", "rooms"]
        );
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }

    #[test]
    fn a_second_process_takes_the_users_after_the_first() {
        // Process one: 9000 users from 0; process two: offset 9000.
        let first: Vec<usize> = (0..9000).map(|k| user_number(0, k)).collect();
        let second: Vec<usize> = (0..11_000).map(|k| user_number(9000, k)).collect();
        assert_eq!(first.last(), Some(&8999));
        assert_eq!(second.first(), Some(&9000));
        assert_eq!(second.last(), Some(&19_999));
        let names: std::collections::HashSet<String> = first
            .iter()
            .chain(&second)
            .map(|&n| seeded_name("ls", n))
            .collect();
        assert_eq!(names.len(), 20_000, "no user twice");
        assert!(names.contains("ls1") && names.contains("ls20000"));
        assert!(!names.contains("ls0") && !names.contains("ls20001"));
        assert_eq!(parse_offset(" 9000 "), Ok(9000));
        assert!(parse_offset("-1").is_err());
        assert_eq!(parse_seeded_prefix("ls_"), Ok("ls_".into()));
        for bad in ["", "s", "a b", "x/", &"y".repeat(25)] {
            assert!(parse_seeded_prefix(bad).is_err(), "{bad:?}");
        }
        let longest = seeded_name(&"p".repeat(24), 99_999_998);
        assert!(
            chat_common::validate::username(&longest).is_ok(),
            "{longest}"
        );
    }

    #[test]
    fn sockets_spread_over_loopback_source_addresses() {
        assert_eq!(source_addr(0, 4), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(3, 4), Ipv4Addr::new(127, 0, 0, 5));
        assert_eq!(source_addr(4, 4), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(7, 1), Ipv4Addr::new(127, 0, 0, 2));
        // Out-of-range counts are clamped, never 127.0.0.1 or past .251.
        assert_eq!(source_addr(5, 0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(249, 255), Ipv4Addr::new(127, 0, 0, 251));
        // 20,000 users over 8 sources: 2,500 each, far under one address's ports.
        let mut per = std::collections::HashMap::new();
        for n in 0..20_000 {
            *per.entry(source_addr(n, 8)).or_insert(0) += 1;
        }
        assert_eq!(per.len(), 8);
        assert!(per.values().all(|&c| c == 2_500));
        assert_eq!(parse_sources("8"), Ok(8));
        for bad in ["0", "251", "x", ""] {
            assert!(parse_sources(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_addresses_and_pids_pair_with_the_hosts() {
        assert_eq!(
            node_addr("http://127.0.0.1:9281"),
            Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9281))
        );
        assert_eq!(
            node_addr("http://127.0.0.1"),
            Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80))
        );
        assert!(node_addr("http://10.0.0.1:1").is_err());
        assert_eq!(parse_pids("12, 34", 2), Ok(vec![12, 34]));
        assert_eq!(parse_pids("12", 0), Ok(vec![12]));
        assert!(parse_pids("12", 2).is_err());
        assert!(parse_pids("12,x", 2).is_err());
        assert!(parse_pids("", 1).is_err());
    }

    #[test]
    fn refused_upgrades_back_off_with_jitter_and_honour_retry_after() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(0, None, 0.0), ms(125));
        assert_eq!(backoff(0, None, 1.0), ms(375));
        assert_eq!(backoff(2, None, 0.5), ms(1000));
        assert_eq!(backoff(30, None, 0.5), ms(8000), "capped");
        let two = Some(Duration::from_secs(2));
        assert_eq!(backoff(0, two, 0.0), ms(2000), "never before Retry-After");
        assert_eq!(backoff(0, two, 1.0), ms(3000));
        assert_eq!(
            backoff(4, two, 0.0),
            ms(4000),
            "the backoff once it passes it"
        );
        assert_eq!(backoff(7, two, 1.0), ms(12_000));
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let values: Vec<f64> = (0..1000).map(|n| jitter(n, 1, 12_345)).collect();
        assert!(values.iter().all(|j| (0.0..1.0).contains(j)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
        assert_ne!(jitter(1, 0, 7), jitter(1, 1, 7));
    }

    #[test]
    fn login_pauses_are_a_value_or_a_range() {
        assert_eq!(parse_pause("1000"), Ok((1000, 1000)));
        assert_eq!(parse_pause("0-500"), Ok((0, 500)));
        for bad in ["500-100", "x", ""] {
            assert!(parse_pause(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_frame_type_is_found_by_its_key() {
        assert_eq!(
            frame_type(r#"{"type":"updateUsers","users":[]}"#),
            Some("updateUsers")
        );
        assert_eq!(
            frame_type(r#"{"type":"presence","username":"a"}"#),
            Some("presence")
        );
        assert_eq!(
            frame_type(r#"{"online":true,"username":"a","type":"presence"}"#),
            Some("presence")
        );
        assert_eq!(frame_type(r#"{"type":"#), None, "cut short");
        assert_eq!(frame_type("not json"), None);
    }
}
