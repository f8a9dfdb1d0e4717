//! Kafka's framing: every request and response is a 4-byte big-endian size, then that many
//! bytes. Reading allocates as bytes arrive (never the declared size up front), so a client
//! that announces a large frame and then trickles costs only what it actually sent.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Growth step of a frame buffer while its bytes arrive.
const READ_CHUNK: usize = 256 * 1024;

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The peer closed the connection between two frames.
    #[error("connection closed")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed after {got} of {want} bytes of a frame")]
    Truncated { got: usize, want: usize },
    /// The declared size is zero, negative or above the limit.
    #[error("{}", bad_size_reason(*.size, *.raw, *.max))]
    BadSize { size: i32, raw: [u8; 4], max: usize },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The size prefix of the next frame: `Ok(size)` once it is known to be acceptable.
pub(crate) async fn read_size<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<usize, FrameError> {
    let mut raw = [0u8; 4];
    let mut got = 0;
    while got < raw.len() {
        let n = r.read(&mut raw[got..]).await?;
        if n == 0 {
            return Err(if got == 0 { FrameError::Closed } else { FrameError::Truncated { got, want: 4 } });
        }
        got += n;
    }
    let size = i32::from_be_bytes(raw);
    match usize::try_from(size) {
        Ok(s) if s > 0 && s <= max => Ok(s),
        _ => Err(FrameError::BadSize { size, raw, max }),
    }
}

/// The `size` bytes of a frame body whose size prefix was already read.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(r: &mut R, size: usize) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
    while buf.len() < size {
        let want = size - buf.len();
        if buf.capacity() == buf.len() {
            buf.reserve(want.min(buf.len().max(READ_CHUNK)));
        }
        let room = (buf.capacity() - buf.len()).min(want);
        let n = (&mut *r).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(FrameError::Truncated { got: buf.len() + 4, want: size + 4 });
        }
    }
    Ok(buf.freeze())
}

/// What to tell the operator about an unacceptable size prefix, with a guess at what the peer
/// actually speaks.
fn bad_size_reason(size: i32, raw: [u8; 4], max: usize) -> String {
    const HTTP: [&[u8; 4]; 9] = [b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"PRI "];
    let what = if size <= 0 {
        format!("a frame size of {size} bytes is not valid")
    } else {
        format!("a frame of {size} bytes exceeds kafka.max_request_size ({max} bytes)")
    };
    if HTTP.contains(&&raw) {
        format!("{what}: this looks like HTTP on the Kafka port; HTTP is served on listeners.http")
    } else if raw[0] == 0x16 && raw[1] == 0x03 {
        format!("{what}: this looks like a TLS handshake; this Kafka listener is plaintext")
    } else if size <= 0 {
        format!("{what}; the client does not speak the Kafka protocol")
    } else {
        format!("{what}; raise kafka.max_request_size if clients really send requests this large")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_reports_bad_input() {
        let mut ok: &[u8] = &[0, 0, 0, 3, 1, 2, 3];
        let size = read_size(&mut ok, 10).await.expect("size");
        assert_eq!(read_body(&mut ok, size).await.expect("body").as_ref(), &[1, 2, 3]);
        assert!(matches!(read_size(&mut ok, 10).await, Err(FrameError::Closed)));

        let mut http: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        let err = read_size(&mut http, 100 << 20).await.expect_err("HTTP is not Kafka");
        assert!(err.to_string().contains("1195725856"), "{err}");
        assert!(err.to_string().contains("looks like HTTP"), "{err}");

        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_size(&mut neg, 10).await, Err(FrameError::BadSize { size: -1, .. })));
        let mut zero: &[u8] = &[0, 0, 0, 0];
        assert!(matches!(read_size(&mut zero, 10).await, Err(FrameError::BadSize { size: 0, .. })));

        let mut short: &[u8] = &[0, 0];
        assert!(matches!(read_size(&mut short, 10).await, Err(FrameError::Truncated { got: 2, want: 4 })));
        let mut cut: &[u8] = &[1, 2];
        assert!(matches!(read_body(&mut cut, 5).await, Err(FrameError::Truncated { got: 6, want: 9 })));
    }

    #[tokio::test]
    async fn large_frames_arrive_whole() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let mut r: &[u8] = &data;
        let body = read_body(&mut r, data.len()).await.expect("body");
        assert_eq!(body.as_ref(), &data[..]);
    }
}
