//! `chronik-server health --url http://host:8080/health [--timeout 2s]`: the probe container
//! healthchecks and scripts use where there is no curl (the compose image has only the binary).
//!
//! One plain HTTP/1.1 `GET` (`chronik_shared::doctor::fetch`, the doctor's client): `Ok(body)`
//! on `200`, otherwise an error naming the URL and what went wrong (refused, timed out, the
//! status and the node's `reasons`).

use std::time::Duration;

/// An `http://host[:port][/path]` URL, split for dialing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As written in the URL (IPv6 literals keep their brackets), for the `Host` header.
    pub host: String,
    pub port: u16,
    /// Starts with `/`; `/` when the URL has no path.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let bad = |why: &str| format!("--url {url:?}: {why}; expected e.g. http://node1:8080/health");
        let rest = url.trim().strip_prefix("http://").ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("the host is missing"));
        }
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '[' in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after the IPv6 host")),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port must be in 1..=65535"))?,
        };
        Ok(HttpUrl { host, port, path: path.to_string() })
    }

    /// `host:port` as `TcpStream::connect` takes it.
    pub fn dial_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `--timeout`: `2s`, `500ms`, `1m`, or a bare number of seconds.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("--timeout {s:?}: expected a duration such as 2s, 500ms or 1m");
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!("--timeout {s:?}: must be more than 0 and at most 1h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// GETs `url` within `timeout`: the body on `200`, else why not.
pub async fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let target = HttpUrl::parse(url)?;
    match chronik_shared::doctor::fetch::get(&target.dial_addr(), &target.path, None, timeout).await {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => Err(format!("{url}: HTTP {status}{}", describe_body(&body))),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

/// `": reasons"` from a `/health` JSON body, else the body itself (shortened).
fn describe_body(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(reasons) = v.get("reasons").and_then(|r| r.as_array())
        && !reasons.is_empty()
    {
        let reasons: Vec<&str> = reasons.iter().filter_map(|r| r.as_str()).collect();
        return format!(
            " ({}): {}",
            v.get("status").and_then(|s| s.as_str()).unwrap_or("unhealthy"),
            reasons.join("; ")
        );
    }
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let short: String = body.chars().take(300).collect();
    format!(": {short}{}", if short.len() < body.len() { "..." } else { "" })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            HttpUrl::parse("http://node1:8080/health").unwrap(),
            HttpUrl { host: "node1".into(), port: 8080, path: "/health".into() }
        );
        assert_eq!(
            HttpUrl::parse("http://node1").unwrap(),
            HttpUrl { host: "node1".into(), port: 80, path: "/".into() }
        );
        assert_eq!(HttpUrl::parse("http://[::1]:8080/h?x=1").unwrap().host, "[::1]");
        assert_eq!(HttpUrl::parse("http://[::1]:8080/h").unwrap().dial_addr(), "[::1]:8080");
        for bad in
            ["https://node1/health", "node1:8080", "http://", "http://node1:0/", "http://node1:x/", "http://[::1/"]
        {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_timeout("1m").unwrap(), Duration::from_secs(60));
        for bad in ["", "0s", "2h", "abc", "-1s"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unhealthy_bodies_show_their_reasons() {
        let body = r#"{"status":"unhealthy","reasons":["control_plane_leader: no leader"]}"#;
        assert_eq!(describe_body(body), " (unhealthy): control_plane_leader: no leader");
    }

    #[tokio::test]
    async fn probes_a_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                let body = r#"{"status":"x","reasons":["r"]}"#;
                let resp = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let url = format!("http://{addr}/health");
        assert!(probe(&url, Duration::from_secs(2)).await.unwrap().contains("reasons"));
        let err = probe(&url, Duration::from_secs(2)).await.unwrap_err();
        assert!(err.contains("HTTP 503") && err.contains(": r"), "{err}");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let err = probe(&format!("http://{closed}/health"), Duration::from_secs(2)).await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = probe(&format!("http://{}/health", silent.local_addr().unwrap()), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("no answer from"), "{err}");
    }
}
