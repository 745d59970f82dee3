//! Cross-site WebSocket hijacking guard. Browsers always send `Origin` on a WebSocket
//! handshake; a page may connect when it comes from an allowed origin or from the host it
//! connects to (same origin, which is what a load balancer in front of the nodes gives).
//! Non-browser clients send no `Origin` and are not at risk, so they pass.

pub fn allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn browsers_from_foreign_origins_are_refused() {
        let list = vec!["http://localhost:8080".to_owned()];
        assert!(allowed(
            Some("http://localhost:8080"),
            Some("127.0.0.1:8081"),
            &list
        ));
        assert!(allowed(
            Some("http://chat.example"),
            Some("chat.example"),
            &list
        ));
        assert!(allowed(
            Some("https://chat.example"),
            Some("chat.example"),
            &list
        ));
        assert!(allowed(None, Some("chat.example"), &list));
        assert!(!allowed(
            Some("http://evil.example"),
            Some("chat.example"),
            &list
        ));
        assert!(!allowed(Some("null"), Some("chat.example"), &list));
        assert!(!allowed(Some("http://evil.example"), None, &list));
    }
}
