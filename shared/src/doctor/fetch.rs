//! A minimal HTTP/1.1 client for the doctor (and the health probe): one `GET` per connection,
//! `Connection: close`, the body read to the end, chunked bodies decoded. The nodes it talks
//! to are Chronik's own axum servers, so this is all it needs to understand.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes of one answer read (a `/metrics` page of a node with many partitions).
const MAX_RESPONSE: u64 = 64 << 20;

/// `GET http://{addr}{path}`: the status and body, or why there is none.
pub async fn get(addr: &str, path: &str, token: Option<&str>, timeout: Duration) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, get_inner(addr, path, token))
        .await
        .unwrap_or_else(|_| Err(format!("no answer from {addr} within {} ms", timeout.as_millis())))
}

async fn get_inner(addr: &str, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let mut sock = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: */*\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    (&mut sock).take(MAX_RESPONSE).read_to_end(&mut raw).await.map_err(|e| format!("reading from {addr}: {e}"))?;
    parse_response(&raw).ok_or_else(|| format!("{addr} answered something that is not HTTP/1.1"))
}

/// Status and body of a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status: u16 = head.lines().next()?.split(' ').nth(1)?.parse().ok()?;
    let body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain), Some((200, "hello".into())));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((503, "abcde".into())));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
