//! Readers that stop reading: a raw TCP client that completes the
//! WebSocket handshake and then never reads, and a parser for what such a
//! client finally reads (whole text frames, then how the stream ends).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::DEADLINE;

/// A raw TCP client with a tiny receive buffer that completes the WebSocket
/// handshake and then never reads again.
pub async fn stuck_client(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut byte))
            .await
            .expect("handshake response")
            .unwrap();
        assert_eq!(n, 1, "closed during the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Read a timed-out raw client's bytes to the end: whole text frames,
/// then a 1013 close, the end inside the last frame, or (when the close
/// frame could not go out in time either) the end after a whole frame.
/// Returns the number of whole text frames.
pub async fn read_until_timed_out(mut raw: tokio::net::TcpStream) -> usize {
    let mut bytes = Vec::new();
    tokio::time::timeout(DEADLINE, raw.read_to_end(&mut bytes))
        .await
        .expect("the server drops the connection")
        .expect("read");
    let (texts, end) = ws_frames(&bytes);
    assert!(
        matches!(
            end,
            StreamEnd::Close(1013) | StreamEnd::Cut | StreamEnd::Clean
        ),
        "after {texts} text frames: {end:?}"
    );
    texts
}

#[derive(Debug)]
pub enum StreamEnd {
    /// A close frame with this code, last.
    Close(u16),
    /// The bytes stop inside a frame.
    Cut,
    /// The bytes stop at a frame boundary, without a close frame.
    Clean,
}

/// Parse a server's byte stream (unmasked frames): the number of complete
/// text frames and how it ends. Panics on anything but text frames then
/// one close, e.g. a header read from inside a frame's payload.
pub fn ws_frames(mut b: &[u8]) -> (usize, StreamEnd) {
    let mut texts = 0;
    loop {
        if b.is_empty() {
            return (texts, StreamEnd::Clean);
        }
        if b.len() < 2 {
            assert_eq!(b[0], 0x81, "a cut frame that is not text");
            return (texts, StreamEnd::Cut);
        }
        let (op, len7) = (b[0], b[1]);
        assert_eq!(len7 & 0x80, 0, "a masked server frame after {texts} texts");
        let (len, at) = match len7 {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()), 10),
            126 | 127 => {
                assert_eq!(op, 0x81, "a cut frame that is not text: {op:#x}");
                return (texts, StreamEnd::Cut);
            }
            n => (u64::from(n), 2),
        };
        let end = at + usize::try_from(len).unwrap();
        if b.len() < end {
            assert_eq!(op, 0x81, "a cut frame that is not text: {op:#x}");
            // What came of it is the start of a JSON text: UTF-8 (but for
            // a last character cut short), no control bytes, so no frame
            // header (a close frame: 0x88, its length, its code) inside.
            let got = &b[at..];
            if let Err(e) = std::str::from_utf8(got) {
                assert!(
                    e.error_len().is_none(),
                    "cut frame {texts}: not UTF-8 at {}",
                    e.valid_up_to()
                );
            }
            assert!(
                !got.iter().any(|&c| c < 0x20),
                "cut frame {texts}: a control byte at {:?}",
                got.iter().position(|&c| c < 0x20)
            );
            return (texts, StreamEnd::Cut);
        }
        let payload = &b[at..end];
        match op {
            0x81 => {
                serde_json::from_slice::<serde_json::Value>(payload)
                    .unwrap_or_else(|e| panic!("text frame {texts} is not JSON: {e}"));
                texts += 1;
            }
            0x88 => {
                assert_eq!(end, b.len(), "bytes after the close frame");
                return (
                    texts,
                    StreamEnd::Close(u16::from_be_bytes([payload[0], payload[1]])),
                );
            }
            other => panic!("frame {texts}: opcode byte {other:#x}"),
        }
        b = &b[end..];
    }
}
