//! A session's text frames, written straight to its socket.
//!
//! tungstenite copies every message into the connection's own out buffer
//! before writing it, and that buffer keeps the capacity of the largest
//! frame it ever held: per client and per tick, one copy of the shared
//! `metrics_update`, plus (to splice in the client's `seq`) one more
//! allocation and copy, and ~3.5 KB held by every idle connection. Here a
//! few bytes are built on the stack (the frame header, encoded by
//! tungstenite's [`FrameHeader`], then the session's own prefix, such as
//! `{"type":"metrics_update","seq":7,`) and the frame goes out with the
//! shared body: first as one plain `write` of a copy in a per-thread
//! scratch buffer (no allocation; a `writev` of the two parts saved that
//! copy but cost more kernel CPU, its VFS path against `sendto`'s), then,
//! for whatever the socket did not take, as vectored writes of the parts
//! (`docs/BENCHMARKS.md`, "the write path").
//!
//! tungstenite still writes the control frames it owns (pong, close) and
//! its handshake; whatever it holds is flushed before a frame goes out
//! here. The session never sends another frame (a close) after a frame
//! that started but did not finish, and ends at the peer's close, so
//! frames never interleave (`session::Session::send_frame`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Room for the longest header (10 bytes, server frames are unmasked) plus
/// the longest prefix a session adds: `{"type":"metrics_update","seq":` and
/// 20 digits and a comma (52 bytes), or a compressed update's shared start
/// (at most ~40 bytes: its fixed prefix compressed alone) and stored `seq`
/// (24 bytes).
const HEAD_CAP: usize = 96;

/// Frames up to this size go out in one plain write from a per-thread
/// scratch copy.
const SCRATCH_MAX: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A text frame's header and prefix, built on the stack.
pub(super) struct Head {
    buf: [u8; HEAD_CAP],
    len: usize,
    /// The frame's payload length (prefix and body).
    payload: usize,
}

impl Head {
    /// The header of an unmasked, final text frame whose payload is
    /// `prefix` then `body_len` more bytes; `prefix` must be short (it and
    /// the header fit in [`HEAD_CAP`]).
    pub(super) fn text(prefix: &[u8], body_len: usize) -> io::Result<Self> {
        Self::build(false, &[prefix], body_len)
    }

    /// [`Self::text`] for a `metrics_update` whose `seq` is `seq`: the
    /// prefix is `prefix` (the update's fixed start) then `"seq":N,`.
    pub(super) fn update(prefix: &str, seq: u64, body_len: usize) -> io::Result<Self> {
        let mut digits = itoa::Buffer::new();
        let seq = digits.format(seq).as_bytes();
        Self::build(
            false,
            &[prefix.as_bytes(), b"\"seq\":", seq, b","],
            body_len,
        )
    }

    /// A compressed text frame (RSV1 set, RFC 7692): its payload is the
    /// parts (the shared compressed start, the client's stored `seq`)
    /// then `body_len` more bytes.
    pub(super) fn deflated(parts: &[&[u8]], body_len: usize) -> io::Result<Self> {
        Self::build(true, parts, body_len)
    }

    fn build(rsv1: bool, parts: &[&[u8]], body_len: usize) -> io::Result<Self> {
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            rsv1,
            ..FrameHeader::default()
        };
        let prefix_len: usize = parts.iter().map(|p| p.len()).sum();
        let mut buf = [0u8; HEAD_CAP];
        let mut w = io::Cursor::new(&mut buf[..]);
        let payload = prefix_len + body_len;
        header
            .format(payload as u64, &mut w)
            .map_err(io::Error::other)?;
        for part in parts {
            io::Write::write_all(&mut w, part)?;
        }
        let len = w.position() as usize;
        Ok(Self { buf, len, payload })
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The payload length: what the stats count as bytes sent.
    pub(super) fn payload_len(&self) -> usize {
        self.payload
    }
}

/// Write `head` then `body` to `io` in full, as few writes as the socket
/// allows (one `writev` when it takes it all), then flush (TLS). `written`
/// counts the bytes out so far (an atomic only so the future stays `Send`): a caller that gives up on a write that
/// started must not send another frame after it.
pub(super) async fn frame<S>(
    io: &mut S,
    head: &[u8],
    body: &[u8],
    written: &AtomicUsize,
) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let (mut head, mut body) = (head, body);
    if head.len() + body.len() <= SCRATCH_MAX {
        // First try: one plain write of the frame copied into this
        // thread's scratch buffer (copied again on each poll; nothing is
        // borrowed across a wait).
        let n = std::future::poll_fn(|cx| {
            SCRATCH.with_borrow_mut(|buf| {
                buf.clear();
                buf.extend_from_slice(head);
                buf.extend_from_slice(body);
                Pin::new(&mut *io).poll_write(cx, buf)
            })
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written.fetch_add(n, Relaxed);
        if n < head.len() {
            head = &head[n..];
        } else {
            body = &body[n - head.len()..];
            head = &[];
        }
    }
    while !head.is_empty() || !body.is_empty() {
        let n = if head.is_empty() {
            io.write(body).await?
        } else {
            io.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written.fetch_add(n, Relaxed);
        if n < head.len() {
            head = &head[n..];
        } else {
            body = &body[n - head.len()..];
            head = &[];
        }
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket that takes at most `step` bytes per write, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                left -= k;
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The bytes tungstenite itself writes for a text message.
    fn tungstenite_frame(text: &str) -> Vec<u8> {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        let mut out = Vec::new();
        Frame::message(text.as_bytes().to_vec(), OpCode::Data(Data::Text), true)
            .format(&mut out)
            .unwrap();
        out
    }

    #[tokio::test]
    async fn a_frame_is_what_tungstenite_would_write_whatever_the_socket_takes_per_write() {
        let prefix = r#"{"type":"metrics_update","#;
        // 125 / 126 / 65,535 / 65,536: every length encoding and its edges.
        for body_len in [3usize, 90, 99, 100, 3_500, 65_506, 65_507, 70_000] {
            let body = format!("{}}}", "x".repeat(body_len - 1));
            let head = Head::update(prefix, u64::MAX, body.len()).unwrap();
            let whole = format!("{prefix}\"seq\":{},{body}", u64::MAX);
            for step in [1, 7, head.as_bytes().len(), 1 << 20] {
                let mut io = Trickle {
                    out: Vec::new(),
                    step,
                };
                let written = AtomicUsize::new(0);
                frame(&mut io, head.as_bytes(), body.as_bytes(), &written)
                    .await
                    .unwrap();
                assert_eq!(written.load(Relaxed), io.out.len());
                assert_eq!(
                    io.out,
                    tungstenite_frame(&whole),
                    "body {body_len} B, {step} B per write"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_plain_text_frame_has_no_prefix() {
        let text = r#"{"type":"pong"}"#;
        let head = Head::text(b"", text.len()).unwrap();
        let mut io = Trickle {
            out: Vec::new(),
            step: 1 << 20,
        };
        frame(
            &mut io,
            head.as_bytes(),
            text.as_bytes(),
            &AtomicUsize::new(0),
        )
        .await
        .unwrap();
        assert_eq!(io.out, tungstenite_frame(text));
    }
}
