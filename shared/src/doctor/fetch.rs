//! A minimal HTTP/1.1 client for the doctor and `chronik-server health`: one `GET` per connection,
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
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}User-Agent: chronik-server\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    (&mut sock).take(MAX_RESPONSE).read_to_end(&mut raw).await.map_err(|e| format!("reading from {addr}: {e}"))?;
    parse_response(&raw).map_err(|e| format!("{addr}: {e}"))
}

/// Status code and body of a complete HTTP/1.x response (`Content-Length`, chunked, or to EOF).
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    if raw.is_empty() {
        return Err("the server closed the connection without answering".to_string());
    }
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the response has no complete header")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP/1.x response: {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunked body".to_string());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain), Ok((200, "hello".into())));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((503, "abcde".into())));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
