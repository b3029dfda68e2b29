//! Read side of RFC 7692 permessage-deflate, as an IO adapter under tungstenite.
//!
//! tungstenite has no permessage-deflate support: it rejects every frame with RSV1 set.
//! [`Inflating`] sits between the socket and tungstenite, collects the fragments of each
//! compressed message, inflates them and hands tungstenite one plain frame per message;
//! everything else passes through byte-exact. The server asks clients for
//! `client_no_context_takeover`, so it keeps no inflater per connection between messages.
//! Limit breaches and protocol violations are turned into frames tungstenite itself rejects
//! (`Capacity` → 1009, `NonZeroReservedBits` → 1002), after which the stream reports EOF.

use std::io;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Longest RFC 6455 frame header.
const MAX_HEADER: usize = 14;
/// Size of the stack buffer the socket is read through.
const READ_CHUNK: usize = 4096;

/// Whose side of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// We read masked frames from a client and must emit masked frames to tungstenite.
    Server,
    /// We read unmasked frames from a server and emit unmasked frames.
    Client,
}

/// `AsyncRead` + `AsyncWrite` wrapper that inflates permessage-deflate messages on read.
///
/// Disabled (after [`Inflating::new`]) it is a pure passthrough that costs 24 bytes and
/// counts nothing: [`Inflating::bytes`] returns `(0, 0)` until [`Inflating::enable`].
/// Lean ([`Inflating::enable_lean`], the server's) it holds its state only while a message
/// is in flight: an idle connection costs no heap for it.
pub(crate) struct Inflating<S> {
    inner: S,
    state: Option<Box<State>>,
    /// What to build `state` with when bytes arrive (lean only).
    lean: Option<Lean>,
}

/// The settings of a lean adapter: no context takeover, so nothing needs to outlive a
/// message.
#[derive(Debug, Clone, Copy)]
struct Lean {
    role: Role,
    max: usize,
}

enum Phase {
    /// Expecting (the rest of) a frame header.
    Header,
    /// Streaming the payload of a frame that passes through unchanged.
    Pass { left: u64 },
    /// Collecting the payload of a fragment of a compressed message.
    Body {
        left: u64,
        key: Option<[u8; 4]>,
        off: usize,
        fin: bool,
    },
    /// A header did not parse: hand everything to tungstenite unchanged.
    Raw,
    /// A failure frame was emitted; nothing more follows it.
    Done,
}

struct State {
    role: Role,
    takeover: bool,
    max: usize,
    phase: Phase,
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// Opcode and compressed bytes of the message in progress.
    msg: Option<(OpCode, Vec<u8>)>,
    /// Inflater kept across messages (only with context takeover).
    inflater: Option<Decompress>,
    /// Transformed bytes not yet handed out: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
    eof: bool,
    read: u64,
    out: u64,
    /// Also receives every byte read (a client's traffic figures).
    counter: Option<Arc<AtomicU64>>,
}

impl<S> Inflating<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            state: None,
            lean: None,
        }
    }

    /// [`Inflating::enable`] without context takeover, keeping the state only while a
    /// message is in flight (it is dropped whenever the adapter is idle).
    pub(crate) fn enable_lean(&mut self, role: Role, max_message: usize) {
        self.state = None;
        self.lean = Some(Lean {
            role,
            max: max_message,
        });
    }

    /// Turn inflating on after the handshake agreed permessage-deflate.
    /// `context_takeover`: the PEER keeps its compression context across messages (so we
    /// keep one inflater across messages); false: a fresh inflater per message.
    /// `max_message`: the most bytes one inflated message may have; also bounds the
    /// compressed bytes accumulated.
    pub(crate) fn enable(&mut self, role: Role, context_takeover: bool, max_message: usize) {
        self.lean = None;
        self.state = Some(State::boxed(role, context_takeover, max_message));
    }

    /// Also add every byte read from the socket (those read so far
    /// included) to `counter`, which another task may read. Only after
    /// [`Inflating::enable`].
    pub(crate) fn count_into(&mut self, counter: Arc<AtomicU64>) {
        if let Some(st) = self.state.as_deref_mut() {
            counter.fetch_add(st.read, Ordering::Relaxed);
            st.counter = Some(counter);
        }
    }

    /// Bytes already read from the socket (a client's read of the upgrade
    /// response may take the server's first frames with it): transformed
    /// as if just read, ahead of the socket. Only after [`Inflating::enable`];
    /// a disabled stream hands such bytes to tungstenite directly.
    pub(crate) fn preload(&mut self, bytes: &[u8]) {
        if let Some(st) = self.state.as_deref_mut()
            && !bytes.is_empty()
        {
            st.read += bytes.len() as u64;
            st.feed(bytes);
        }
    }

    /// (bytes read from the socket, bytes handed to tungstenite) so far; `(0, 0)` while
    /// disabled.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        self.state.as_ref().map_or((0, 0), |s| (s.read, s.out))
    }
}

impl State {
    fn boxed(role: Role, takeover: bool, max: usize) -> Box<Self> {
        Box::new(State {
            role,
            takeover,
            max,
            phase: Phase::Header,
            head: [0; MAX_HEADER],
            head_len: 0,
            msg: None,
            inflater: None,
            pending: Vec::new(),
            pos: 0,
            eof: false,
            read: 0,
            out: 0,
            counter: None,
        })
    }

    /// Header of a frame we emit: FIN, masked with key 0 (payload unchanged) for a server.
    fn header(&self, opcode: OpCode, rsv2: bool) -> FrameHeader {
        let mask = (self.role == Role::Server).then_some([0; 4]);
        let (is_final, rsv1, rsv3) = (true, false, false);
        FrameHeader {
            is_final,
            rsv1,
            rsv2,
            rsv3,
            opcode,
            mask,
        }
    }

    fn emit_header(&mut self, opcode: OpCode, rsv2: bool, len: u64) {
        let hdr = self.header(opcode, rsv2);
        hdr.format(len, &mut self.pending).expect("Vec write");
    }

    /// Make tungstenite fail with `Capacity` (frame longer than its `max_frame_size`).
    fn bomb(&mut self) {
        self.emit_header(
            OpCode::Data(Data::Text),
            false,
            (self.max as u64).saturating_add(1),
        );
        self.stop();
    }

    /// Make tungstenite fail with `NonZeroReservedBits`.
    fn fail(&mut self) {
        self.emit_header(OpCode::Data(Data::Binary), true, 0);
        self.stop();
    }

    fn stop(&mut self) {
        self.phase = Phase::Done;
        self.msg = None;
        self.inflater = None;
    }

    fn idle(&self) -> bool {
        matches!(self.phase, Phase::Header) && self.head_len == 0 && self.msg.is_none()
    }

    /// Transform raw socket bytes into `pending`.
    fn feed(&mut self, mut input: &[u8]) {
        loop {
            match &mut self.phase {
                Phase::Done => return,
                Phase::Raw => {
                    self.pending.extend_from_slice(input);
                    return;
                }
                Phase::Pass { left: 0 } => self.phase = Phase::Header,
                Phase::Pass { left } => {
                    if input.is_empty() {
                        return;
                    }
                    let n = (*left).min(input.len() as u64) as usize;
                    *left -= n as u64;
                    self.pending.extend_from_slice(&input[..n]);
                    input = &input[n..];
                }
                Phase::Body { left: 0, fin, .. } => {
                    if *fin {
                        self.finish();
                    } else {
                        self.phase = Phase::Header;
                    }
                }
                Phase::Body { left, key, off, .. } => {
                    if input.is_empty() {
                        return;
                    }
                    let n = (*left).min(input.len() as u64) as usize;
                    *left -= n as u64;
                    let max = self.max;
                    let data = &mut self.msg.as_mut().expect("message in progress").1;
                    if data.len().saturating_add(n) > max {
                        // Never reached past the header check; a backstop.
                        return self.bomb();
                    }
                    let start = data.len();
                    data.extend_from_slice(&input[..n]);
                    if let Some(key) = key {
                        for (i, b) in data[start..].iter_mut().enumerate() {
                            *b ^= key[(*off + i) & 3];
                        }
                        *off += n;
                    }
                    input = &input[n..];
                }
                Phase::Header => {
                    if input.is_empty() {
                        return;
                    }
                    let take = (MAX_HEADER - self.head_len).min(input.len());
                    let avail = self.head_len + take;
                    self.head[self.head_len..avail].copy_from_slice(&input[..take]);
                    let mut cur = Cursor::new(&self.head[..avail]);
                    match FrameHeader::parse(&mut cur) {
                        Ok(None) => {
                            self.head_len = avail;
                            input = &input[take..];
                        }
                        Ok(Some((hdr, len))) => {
                            let used = cur.position() as usize;
                            input = &input[used - self.head_len..];
                            self.head_len = 0;
                            self.on_header(&hdr, len, used);
                        }
                        Err(_) => {
                            // Invalid opcode: let tungstenite report it.
                            self.pending.extend_from_slice(&self.head[..self.head_len]);
                            self.head_len = 0;
                            self.phase = Phase::Raw;
                        }
                    }
                }
            }
        }
    }

    /// Dispatch on a parsed header whose raw bytes are `self.head[..raw_len]`.
    fn on_header(&mut self, hdr: &FrameHeader, len: u64, raw_len: usize) {
        let plain = !hdr.rsv1 && !hdr.rsv2 && !hdr.rsv3;
        let well_masked = hdr.mask.is_some() == (self.role == Role::Server);
        let absorb = match hdr.opcode {
            OpCode::Data(Data::Text | Data::Binary) if self.msg.is_some() => return self.fail(),
            OpCode::Data(Data::Text | Data::Binary) => {
                hdr.rsv1 && !hdr.rsv2 && !hdr.rsv3 && well_masked
            }
            OpCode::Data(Data::Continue) => self.msg.is_some() && plain && well_masked,
            _ => false,
        };
        if !absorb {
            self.pending.extend_from_slice(&self.head[..raw_len]);
            self.phase = Phase::Pass { left: len };
            return;
        }
        if len >> 63 != 0 {
            // RFC 6455 5.2: the most significant bit of a 64-bit length is 0.
            return self.fail();
        }
        let have = self.msg.as_ref().map_or(0, |m| m.1.len()) as u64;
        // No sum that could wrap: what is left under the limit, compared.
        if len > (self.max as u64).saturating_sub(have) {
            return self.bomb();
        }
        if self.msg.is_none() {
            self.msg = Some((hdr.opcode, Vec::new()));
        }
        self.phase = Phase::Body {
            left: len,
            key: hdr.mask,
            off: 0,
            fin: hdr.is_final,
        };
    }

    /// The compressed message is complete: inflate it and emit one plain frame.
    fn finish(&mut self) {
        self.phase = Phase::Header;
        let (opcode, mut data) = self.msg.take().expect("message in progress");
        data.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let result = if self.takeover {
            let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
            inflate(inflater, &data, self.max)
        } else {
            inflate(&mut Decompress::new(false), &data, self.max)
        };
        drop(data);
        let mut out = match result {
            Ok(out) => out,
            Err(Failure::TooBig) => return self.bomb(),
            Err(Failure::Corrupt) => return self.fail(),
        };
        let len = (out.len() - MAX_HEADER) as u64;
        let hdr = self.header(opcode, false);
        let start = MAX_HEADER - hdr.len(len);
        hdr.format(len, &mut &mut out[start..MAX_HEADER])
            .expect("header fits");
        if self.pos == self.pending.len() {
            self.pending = out;
            self.pos = start;
        } else {
            self.pending.extend_from_slice(&out[start..]);
        }
    }
}

enum Failure {
    TooBig,
    Corrupt,
}

/// Inflate `data` (ending in 00 00 ff ff) into a Vec that starts with `MAX_HEADER` bytes of
/// room for the frame header; never allocates more than `MAX_HEADER + max + 1` bytes.
fn inflate(inflater: &mut Decompress, mut input: &[u8], max: usize) -> Result<Vec<u8>, Failure> {
    let cap = max.saturating_add(MAX_HEADER + 1);
    let mut out = Vec::with_capacity((input.len() * 4).max(READ_CHUNK).min(cap));
    out.resize(MAX_HEADER, 0);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= cap {
                return Err(Failure::TooBig);
            }
            out.reserve_exact(out.len().min(cap - out.len()));
        }
        let (in0, out0) = (inflater.total_in(), out.len());
        let status = inflater
            .decompress_vec(input, &mut out, FlushDecompress::Sync)
            .map_err(|_| Failure::Corrupt)?;
        let used = (inflater.total_in() - in0) as usize;
        input = &input[used..];
        if status == Status::StreamEnd {
            // A final deflate block: the peer's context ends with this message.
            inflater.reset(false);
            break;
        }
        let progressed = used > 0 || out.len() > out0;
        if out.len() < out.capacity() && (input.is_empty() || !progressed) {
            break;
        }
    }
    if out.len() >= cap {
        return Err(Failure::TooBig);
    }
    Ok(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.is_none() && this.lean.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(st) = this.state.as_deref_mut() {
                if st.pos < st.pending.len() {
                    let n = buf.remaining().min(st.pending.len() - st.pos);
                    buf.put_slice(&st.pending[st.pos..st.pos + n]);
                    st.pos += n;
                    st.out += n as u64;
                    if st.pos == st.pending.len() {
                        st.pos = 0;
                        if st.idle() {
                            st.pending = Vec::new();
                        } else {
                            st.pending.clear();
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                if st.eof || matches!(st.phase, Phase::Done) {
                    st.pending = Vec::new();
                    return Poll::Ready(Ok(()));
                }
                if this.lean.is_some() && st.idle() {
                    // Nothing in flight: an idle connection holds no state.
                    this.state = None;
                }
            }
            // Not zeroed: the reader fills it and `filled()` is all we read.
            let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let lean = this.lean;
            let st = this.state.get_or_insert_with(|| {
                // Only reached lean: `enable` builds the state at once.
                let l = lean.unwrap_or(Lean {
                    role: Role::Server,
                    max: 0,
                });
                State::boxed(l.role, false, l.max)
            });
            if rb.filled().is_empty() {
                st.eof = true;
            } else {
                st.read += rb.filled().len() as u64;
                if let Some(c) = &st.counter {
                    c.fetch_add(rb.filled().len() as u64, Ordering::Relaxed);
                }
                st.feed(rb.filled());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflating<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: std::os::fd::AsRawFd> std::os::fd::AsRawFd for Inflating<S> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::{FrameHeader, Inflating, OpCode, Role};
    use flate2::{Compress, Compression, FlushCompress};
    use futures_util::StreamExt;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
    use tokio_tungstenite::tungstenite::protocol::{Message, Role as WsRole, WebSocketConfig};

    const TEXT: u8 = 1;
    const BIN: u8 = 2;
    const CONT: u8 = 0;
    const CLOSE: u8 = 8;
    const PING: u8 = 9;

    /// Compress one message like a real peer: sync flush, trailing 00 00 ff ff stripped.
    fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = c.total_in();
            c.compress_vec(input, &mut out, FlushCompress::Sync)
                .unwrap();
            input = &input[(c.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    fn compressor() -> Compress {
        Compress::new(Compression::default(), false)
    }

    /// A raw frame; `rsv` is RSV1..3 as bits 4..1; `key` masks the payload.
    fn frame(fin: bool, rsv: u8, op: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let (rsv1, rsv2, rsv3) = (rsv & 4 != 0, rsv & 2 != 0, rsv & 1 != 0);
        let (is_final, opcode, mask) = (fin, OpCode::from(op), key);
        let hdr = FrameHeader {
            is_final,
            rsv1,
            rsv2,
            rsv3,
            opcode,
            mask,
        };
        let mut v = Vec::new();
        hdr.format(payload.len() as u64, &mut v).unwrap();
        let start = v.len();
        v.extend_from_slice(payload);
        for (i, b) in v[start..].iter_mut().enumerate() {
            *b ^= key.map_or(0, |k| k[i % 4]);
        }
        v
    }

    fn key(rng: &mut fastrand::Rng) -> [u8; 4] {
        [rng.u8(..), rng.u8(..), rng.u8(..), rng.u8(..)]
    }

    /// What `Inflating` emits for an inflated message.
    fn plain(role: Role, op: u8, payload: &[u8]) -> Vec<u8> {
        let key = (role == Role::Server).then_some([0; 4]);
        frame(true, 0, op, payload, key)
    }

    /// Reader handing out `data` in random chunks of 1..=64 bytes, sometimes Pending.
    struct Chunky {
        data: Vec<u8>,
        pos: usize,
        rng: fastrand::Rng,
    }

    impl AsyncRead for Chunky {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.rng.u8(..4) == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = this
                .rng
                .usize(1..=64)
                .min(buf.remaining())
                .min(this.data.len() - this.pos);
            buf.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Run `input` through an enabled `Inflating` in random chunks (reads of random sizes too).
    async fn run(input: &[u8], role: Role, takeover: bool, seed: u64) -> (Vec<u8>, u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let chunky = Chunky {
            data: input.to_vec(),
            pos: 0,
            rng: rng.clone(),
        };
        let mut inf = Inflating::new(chunky);
        inf.enable(role, takeover, 1 << 16);
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = inf.read(&mut buf[..rng.usize(1..=64)]).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(inf.bytes().1, out.len() as u64);
        assert!(inf.state.as_ref().unwrap().pending.capacity() == 0);
        (out, inf.bytes().0)
    }

    #[tokio::test]
    async fn random_chunks_server() {
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (mut input, mut want) = (Vec::new(), Vec::new());
            let f = frame(true, 0, TEXT, b"hello", Some(key(&mut rng)));
            input.extend_from_slice(&f);
            want.extend_from_slice(&f);
            let text = b"compressed hello hello hello hello";
            let z = deflate(&mut compressor(), text);
            input.extend(frame(true, 4, TEXT, &z, Some(key(&mut rng))));
            want.extend(plain(Role::Server, TEXT, text));
            let big: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
            let f = frame(true, 0, BIN, &big, Some(key(&mut rng)));
            input.extend_from_slice(&f);
            want.extend_from_slice(&f);
            let z = deflate(&mut compressor(), &big);
            let (a, b) = (z.len() / 3, 2 * z.len() / 3);
            let ping = frame(true, 0, PING, b"p", Some(key(&mut rng)));
            input.extend(frame(false, 4, BIN, &z[..a], Some(key(&mut rng))));
            input.extend(frame(false, 0, CONT, &z[a..b], Some(key(&mut rng))));
            input.extend_from_slice(&ping);
            input.extend(frame(true, 0, CONT, &z[b..], Some(key(&mut rng))));
            want.extend_from_slice(&ping);
            want.extend(plain(Role::Server, BIN, &big));
            let z = deflate(&mut compressor(), b"");
            input.extend(frame(true, 4, TEXT, &z, Some(key(&mut rng))));
            want.extend(plain(Role::Server, TEXT, b""));
            let f = frame(true, 0, CLOSE, &[3, 232], Some(key(&mut rng)));
            input.extend_from_slice(&f);
            want.extend_from_slice(&f);
            let got = run(&input, Role::Server, false, seed).await;
            assert_eq!(got, (want.clone(), input.len() as u64));
        }
    }

    #[tokio::test]
    async fn client_context_takeover() {
        let mut c = compressor();
        let (mut input, mut want) = (Vec::new(), Vec::new());
        let mut wire = 0;
        for i in 0..50 {
            let msg = format!("message {i}: cpu=0.{i} mem=1{i} the same words as before, again");
            let z = deflate(&mut c, msg.as_bytes());
            wire += z.len();
            input.extend(frame(true, 4, TEXT, &z, None));
            want.extend(plain(Role::Client, TEXT, msg.as_bytes()));
        }
        // Later messages really refer back to earlier ones.
        let alone = deflate(
            &mut compressor(),
            b"message 49: cpu=0.49 mem=149 the same words as before, again",
        );
        assert!(wire < 50 * alone.len() / 2, "{wire} vs {}", alone.len());
        for seed in 0..50 {
            let got = run(&input, Role::Client, true, seed).await;
            assert_eq!(got, (want.clone(), input.len() as u64));
        }
        // Without takeover the back references cannot be resolved.
        let (out, _) = run(&input, Role::Client, false, 0).await;
        assert_ne!(out, want);
    }

    #[tokio::test]
    async fn server_no_context_takeover() {
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut input, mut want) = (Vec::new(), Vec::new());
        for i in 0..20 {
            let msg = format!("fresh {i} ").repeat(i + 1);
            let z = deflate(&mut compressor(), msg.as_bytes());
            input.extend(frame(true, 4, BIN, &z, Some(key(&mut rng))));
            want.extend(plain(Role::Server, BIN, msg.as_bytes()));
        }
        for seed in 0..50 {
            let got = run(&input, Role::Server, false, seed).await;
            assert_eq!(got, (want.clone(), input.len() as u64));
        }
    }

    /// Lean (the server's): each compressed message inflates, split across reads or not,
    /// and between messages the adapter holds no state at all.
    #[tokio::test]
    async fn lean_holds_no_state_between_messages() {
        use futures_util::FutureExt as _;
        let mut rng = fastrand::Rng::with_seed(9);
        let (mut peer, ours) = tokio::io::duplex(1 << 16);
        let mut inf = Inflating::new(ours);
        inf.enable_lean(Role::Server, 1 << 16);
        assert!(inf.state.is_none());
        for i in 0..5 {
            let msg = format!("lean message {i} ").repeat(40);
            let raw = frame(
                true,
                4,
                TEXT,
                &deflate(&mut compressor(), msg.as_bytes()),
                Some(key(&mut rng)),
            );
            // Half now: the state holds the partial message.
            let (a, b) = raw.split_at(raw.len() / 2);
            peer.write_all(a).await.unwrap();
            let mut one = [0u8; 1];
            assert!(
                inf.read(&mut one).now_or_never().is_none(),
                "nothing to hand out yet"
            );
            assert!(inf.state.is_some(), "a message in flight keeps its state");
            peer.write_all(b).await.unwrap();
            let want = plain(Role::Server, TEXT, msg.as_bytes());
            let mut got = vec![0u8; want.len()];
            inf.read_exact(&mut got).await.unwrap();
            assert_eq!(got, want);
            // Read out and idle: the next read, with nothing to read, drops the state.
            assert!(inf.read(&mut one).now_or_never().is_none());
            assert!(inf.state.is_none(), "message {i}: state kept while idle");
        }
        // A plain frame passes through lean too, and EOF is EOF.
        let ping = plain(Role::Client, PING, b"hi");
        let masked = frame(true, 0, PING, b"hi", Some(key(&mut rng)));
        peer.write_all(&masked).await.unwrap();
        drop(peer);
        let mut rest = Vec::new();
        inf.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), masked.len(), "{ping:?}");
        assert_eq!(rest, masked);
    }

    const MAX: usize = 64 << 10;

    /// Feed `raw` client bytes to a tungstenite server over `Inflating`; return what it reads.
    async fn server(raw: Vec<u8>, enabled: bool) -> (Vec<Result<Message, Error>>, (u64, u64)) {
        let (mut peer, sock) = tokio::io::duplex(1 << 20);
        let mut inf = Inflating::new(sock);
        if enabled {
            inf.enable(Role::Server, false, MAX);
        }
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(MAX))
            .max_frame_size(Some(MAX));
        let mut ws = WebSocketStream::from_raw_socket(inf, WsRole::Server, Some(cfg)).await;
        peer.write_all(&raw).await.unwrap();
        let mut got = Vec::new();
        while let Some(m) = ws.next().await {
            let err = m.is_err();
            got.push(m);
            if err {
                break;
            }
        }
        // The session answers on the write side, which passes straight through.
        let _ = ws.close(None).await;
        let mut echo = [0u8; 2];
        if !got.iter().any(Result::is_err) {
            peer.read_exact(&mut echo).await.unwrap();
            assert_eq!(echo[0], 0x88);
        }
        let counts = ws.get_ref().bytes();
        (got, counts)
    }

    fn text(got: &Result<Message, Error>) -> &str {
        match got {
            Ok(Message::Text(t)) => t.as_str(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn vm_hwm_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn end_to_end() {
        let mut rng = fastrand::Rng::with_seed(1);
        let close = frame(true, 0, CLOSE, &[3, 232], Some(key(&mut rng)));

        // Compressed text, then fragmented compressed text, then close.
        let mut raw = frame(
            true,
            4,
            TEXT,
            &deflate(&mut compressor(), b"{\"cpu\":42}"),
            Some(key(&mut rng)),
        );
        let long = "skill metrics ".repeat(400);
        let z = deflate(&mut compressor(), long.as_bytes());
        let (a, b) = (z.len() / 3, z.len() / 2);
        raw.extend(frame(false, 4, TEXT, &z[..a], Some(key(&mut rng))));
        raw.extend(frame(false, 0, CONT, &z[a..b], Some(key(&mut rng))));
        raw.extend(frame(true, 0, CONT, &z[b..], Some(key(&mut rng))));
        raw.extend_from_slice(&close);
        let (got, (read, out)) = server(raw.clone(), true).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(text(&got[0]), "{\"cpu\":42}");
        assert_eq!(text(&got[1]), long);
        assert!(matches!(got[2], Ok(Message::Close(_))));
        assert_eq!(read, raw.len() as u64);
        assert!(out > read, "inflated {out} <= wire {read}");

        // Bomb: 10 MiB of zeros, ~10 KB on the wire.
        let mut c = compressor();
        let mut z = Vec::new();
        let zeros = vec![0u8; 64 << 10];
        for _ in 0..159 {
            let before = c.total_in();
            z.reserve(64 << 10);
            c.compress_vec(&zeros, &mut z, FlushCompress::None).unwrap();
            assert_eq!(c.total_in() - before, zeros.len() as u64);
        }
        z.extend(deflate(&mut c, &zeros));
        assert!(z.len() < 64 << 10, "{}", z.len());
        let hwm = vm_hwm_kib();
        let (got, (_, out)) = server(frame(true, 4, BIN, &z, Some(key(&mut rng))), true).await;
        assert!(
            matches!(got.last(), Some(Err(Error::Capacity(CapacityError::MessageTooLong { size, max_size: MAX }))) if *size == MAX + 1),
            "{got:?}"
        );
        assert!(out < 32, "handed out {out} bytes");
        assert!(vm_hwm_kib() < hwm + 4096, "peak RSS grew by MiBs");

        // Compressed bytes alone beyond the limit are refused too.
        let noise: Vec<u8> = (0..MAX + 10).map(|_| rng.u8(..)).collect();
        let z = deflate(&mut compressor(), &noise);
        let (got, _) = server(frame(true, 4, BIN, &z, Some(key(&mut rng))), true).await;
        assert!(
            matches!(got.last(), Some(Err(Error::Capacity(_)))),
            "{got:?}"
        );

        // A continuation whose 64-bit length would wrap the size check
        // (top bit set: a protocol error) or merely exceed it: refused at
        // its header, its payload never kept.
        let z = deflate(&mut compressor(), b"first part");
        for (len, protocol_error) in [(u64::MAX - 5, true), ((1u64 << 63) - 1, false)] {
            let mut raw = frame(false, 4, TEXT, &z, Some(key(&mut rng)));
            raw.extend([0x80, 0x80 | 0x7f]);
            raw.extend(len.to_be_bytes());
            raw.extend(key(&mut rng));
            raw.extend(vec![0x55u8; 256 << 10]);
            let (got, (_, out)) = server(raw, true).await;
            if protocol_error {
                assert!(
                    matches!(
                        got.last(),
                        Some(Err(Error::Protocol(ProtocolError::NonZeroReservedBits)))
                    ),
                    "{got:?}"
                );
            } else {
                assert!(
                    matches!(got.last(), Some(Err(Error::Capacity(_)))),
                    "{got:?}"
                );
            }
            assert!(out < 32, "handed out {out} bytes");
        }

        let nzrb = |got: &[Result<Message, Error>]| {
            matches!(
                got.last(),
                Some(Err(Error::Protocol(ProtocolError::NonZeroReservedBits)))
            )
        };
        // Ping with RSV1.
        let (got, _) = server(frame(true, 4, PING, b"x", Some(key(&mut rng))), true).await;
        assert!(nzrb(&got), "{got:?}");
        // Continuation with RSV1 inside a compressed message.
        let z = deflate(&mut compressor(), b"abcdef");
        let mut raw = frame(false, 4, TEXT, &z[..2], Some(key(&mut rng)));
        raw.extend(frame(true, 4, CONT, &z[2..], Some(key(&mut rng))));
        assert!(nzrb(&server(raw, true).await.0));
        // New data frame inside a compressed fragmented message.
        let mut raw = frame(false, 4, TEXT, &z[..2], Some(key(&mut rng)));
        raw.extend(frame(true, 0, TEXT, b"plain", Some(key(&mut rng))));
        let (got, _) = server(raw, true).await;
        assert_eq!(got.len(), 1);
        assert!(nzrb(&got), "{got:?}");
        // Corrupt deflate data (reserved block type 3).
        let raw = frame(true, 4, TEXT, &[0xff, 0xff, 0xff], Some(key(&mut rng)));
        assert!(nzrb(&server(raw, true).await.0));
    }

    #[tokio::test]
    async fn disabled_passes_rsv1_through() {
        let mut rng = fastrand::Rng::with_seed(3);
        let z = deflate(&mut compressor(), b"hello");
        let plain_frame = frame(true, 0, TEXT, b"plain", Some(key(&mut rng)));
        let mut raw = plain_frame.clone();
        raw.extend(frame(true, 4, TEXT, &z, Some(key(&mut rng))));
        let (got, counts) = server(raw, false).await;
        assert_eq!(text(&got[0]), "plain");
        assert!(
            matches!(
                got[1],
                Err(Error::Protocol(ProtocolError::NonZeroReservedBits))
            ),
            "{got:?}"
        );
        assert_eq!(counts, (0, 0));
        assert_eq!(
            std::mem::size_of::<Inflating<tokio::net::TcpStream>>(),
            std::mem::size_of::<tokio::net::TcpStream>() + 24
        );
    }
}
