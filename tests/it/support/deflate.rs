//! A WebSocket client written on a bare socket for the permessage-deflate
//! tests: it offers what a test asks, inflates compressed messages with a
//! reference inflater that keeps its window across messages as RFC 7692
//! has it (browsers and Python `websockets` do the same), or resets it
//! (`server_no_context_takeover`), or uses a smaller window, and can send
//! its own messages compressed, fragmented or malformed.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::DEADLINE;

/// What a sync flush ends with; RFC 7692 strips it from each message.
const TAIL: [u8; 4] = [0, 0, 0xFF, 0xFF];

/// One message from the server.
#[derive(Debug)]
pub enum Got {
    /// A text message: its text, whether it came compressed (RSV1), and
    /// its size on the wire (header and payload).
    Text {
        text: String,
        compressed: bool,
        wire: usize,
    },
    /// A close frame's code (1005 when it had none).
    Close(u16),
    /// The socket ended without a close frame.
    Ended,
}

pub struct DeflateClient {
    stream: TcpStream,
    buf: Vec<u8>,
    inflater: Decompress,
    /// The server's answer in `Sec-WebSocket-Extensions`, if any.
    pub extensions: Option<String>,
    /// Reset the inflater before each message (server_no_context_takeover).
    pub reset: bool,
    window_bits: u8,
}

impl DeflateClient {
    /// Upgrade on `addr` with `offer` as the `Sec-WebSocket-Extensions`
    /// header (none when `None`), as an ext client when `ext`. The
    /// inflater's window is `window_bits`; it resets per message when the
    /// server answers `server_no_context_takeover`.
    pub async fn connect(
        addr: std::net::SocketAddr,
        offer: Option<&str>,
        ext: bool,
        window_bits: u8,
    ) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut req = String::from(
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        if let Some(offer) = offer {
            req.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        if ext {
            req.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                skillmon::protocol::SUBPROTOCOL
            ));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
                .await
                .expect("response within the deadline")
                .expect("read");
            assert!(n > 0, "closed before the response head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        let reset = extensions
            .as_deref()
            .is_some_and(|e| e.contains("server_no_context_takeover"));
        buf.drain(..end);
        Self {
            stream,
            buf,
            inflater: Decompress::new_with_window_bits(false, window_bits),
            extensions,
            reset,
            window_bits,
        }
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            self.buf.reserve(16384);
            let read = tokio::time::timeout(DEADLINE, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a frame within the deadline");
            if matches!(read, Ok(0) | Err(_)) {
                return false;
            }
        }
        true
    }

    /// The next data message or close (pings and pongs skipped).
    pub async fn next(&mut self) -> Got {
        loop {
            if !self.fill(2).await {
                return Got::Ended;
            }
            let (b0, b1) = (self.buf[0], self.buf[1]);
            assert_eq!(b1 & 0x80, 0, "a server frame is never masked");
            let (len, off) = match b1 & 0x7F {
                126 => {
                    if !self.fill(4).await {
                        return Got::Ended;
                    }
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 => {
                    if !self.fill(10).await {
                        return Got::Ended;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                n => (n as usize, 2),
            };
            if !self.fill(off + len).await {
                return Got::Ended;
            }
            let payload: Vec<u8> = self.buf[off..off + len].to_vec();
            self.buf.drain(..off + len);
            assert_ne!(b0 & 0x80, 0, "the server sends whole messages");
            assert_eq!(b0 & 0x30, 0, "RSV2 and RSV3 are never set");
            let rsv1 = b0 & 0x40 != 0;
            match b0 & 0x0F {
                0x1 => {
                    let text = if rsv1 {
                        self.inflate(&payload)
                    } else {
                        String::from_utf8(payload).expect("UTF-8")
                    };
                    return Got::Text {
                        text,
                        compressed: rsv1,
                        wire: off + len,
                    };
                }
                0x8 => {
                    assert!(!rsv1, "RSV1 on a control frame");
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    return Got::Close(code);
                }
                0x9 | 0xA => assert!(!rsv1, "RSV1 on a control frame"),
                op => panic!("unexpected opcode {op}"),
            }
        }
    }

    /// The next text message (panics on anything else).
    pub async fn text(&mut self) -> (String, bool, usize) {
        match self.next().await {
            Got::Text {
                text,
                compressed,
                wire,
            } => (text, compressed, wire),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next text message of JSON `type` `ty`, skipping others.
    pub async fn of_type(&mut self, ty: &str) -> (serde_json::Value, bool, usize) {
        loop {
            let (text, compressed, wire) = self.text().await;
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
            if v["type"] == ty {
                return (v, compressed, wire);
            }
        }
    }

    /// The close code the server ends with (skipping data).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Got::Text { .. } => {}
                Got::Close(code) => return Some(code),
                Got::Ended => return None,
            }
        }
    }

    fn inflate(&mut self, payload: &[u8]) -> String {
        if self.reset {
            self.inflater = Decompress::new_with_window_bits(false, self.window_bits);
        }
        let input = [payload, &TAIL].concat();
        let mut out = Vec::with_capacity(1 << 16);
        let mut rest = &input[..];
        // Through a small buffer, as a browser's inflater may: zlib then
        // checks every distance against its window (copying from its own
        // output, a large buffer would hide a reach too far back).
        let mut chunk = [0u8; 64];
        loop {
            let (bi, bo) = (self.inflater.total_in(), self.inflater.total_out());
            self.inflater
                .decompress(rest, &mut chunk, FlushDecompress::Sync)
                .unwrap_or_else(|e| panic!("the reference inflater refused a message: {e}"));
            let (used, made) = (
                (self.inflater.total_in() - bi) as usize,
                (self.inflater.total_out() - bo) as usize,
            );
            out.extend_from_slice(&chunk[..made]);
            rest = &rest[used..];
            if (rest.is_empty() && made < chunk.len()) || (used == 0 && made == 0) {
                break;
            }
        }
        String::from_utf8(out).expect("inflated UTF-8")
    }

    /// Send one frame, masked, with the given first byte's bits.
    pub async fn send_frame(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let mut frame = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 0x7e);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 0x7f);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x37, 0xFA, 0x21, 0x3D];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.stream.write_all(&frame).await.expect("send");
    }

    /// Send `text` as one text message, compressed (as Python `websockets`
    /// and browsers do) when `compressed`.
    pub async fn send_text(&mut self, text: &str, compressed: bool) {
        if compressed {
            let payload = deflate(text.as_bytes());
            self.send_frame(true, true, 0x1, &payload).await;
        } else {
            self.send_frame(true, false, 0x1, text.as_bytes()).await;
        }
    }
}

/// Raw DEFLATE of `data` on its own, as one RFC 7692 message payload.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut rest = data;
    loop {
        let before = c.total_in();
        out.reserve(data.len() / 2 + 1024);
        c.compress_vec(rest, &mut out, FlushCompress::Sync)
            .expect("compress");
        rest = &rest[(c.total_in() - before) as usize..];
        if rest.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}
