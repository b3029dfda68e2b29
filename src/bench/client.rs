//! One bench connection: connect (timed, with retries), speak just enough of
//! the protocol (token frame, `subscribe`), then read frames until told to
//! stop, and close with 1000. Each client is one task that parses only a
//! frame's `type`, `seq` and `timestamp` (a small struct borrowing from the
//! text) and records plain numbers in its own `Vec`; nothing is shared per
//! frame but one relaxed atomic load. Results are merged by [`super::report`].
//! Must not print or aggregate.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use crate::client::connect::Token;
use crate::client::handshake::{self, Offer};
use crate::deflate::Compression;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

/// The subprotocol `--protocol ext` offers.
pub(crate) const EXT_PROTOCOL: &str = "skillmon.v1";
/// One connection attempt (TCP + TLS + upgrade) may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After our close frame, how long the server has to answer it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Receive buffer of a stalled client's socket, so the server feels it soon.
const STALLED_RCVBUF: u32 = 4096;

/// The largest message a bench client reads (inflated or not).
const MAX_MESSAGE: usize = 64 << 20;

/// The client's own upgrade (shared with `watch`): it offers
/// permessage-deflate and inflates below tungstenite.
type Ws = handshake::Ws;

/// Where and how to connect; shared by every client of a run.
pub(crate) struct Endpoint {
    pub url: String,
    /// Every address the host resolves to, in the resolver's order.
    addrs: Vec<SocketAddr>,
    /// The address that last took a connection (tried first).
    preferred: AtomicUsize,
    host: String,
    /// Trust for `wss://` (`None`: plain `ws://`).
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<Token>,
    offer_ext: bool,
    compression: Compression,
    /// Connections the run opens (named in the fix of a per-address 503).
    connections: usize,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never appears in debug output.
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Check the URL and resolve its addresses once (clients do not each
    /// look it up). `connections`: how many the run opens.
    pub(crate) async fn resolve(
        url: &str,
        token: Option<Token>,
        offer: Offer,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let req = url.into_client_request().with_context(|| {
            format!("{url:?} is not a WebSocket URL (e.g. ws://127.0.0.1:8765/ws)")
        })?;
        // Scheme, host and port read as `watch` reads them.
        let (host, port, tls) = handshake::endpoint(&req).map_err(|e| match e {
            tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName) => {
                anyhow::anyhow!("{url:?} has no host")
            }
            _ => anyhow::anyhow!("{url:?}: the URL must start with ws:// or wss://"),
        })?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        if addrs.is_empty() {
            anyhow::bail!("{host} resolves to no address");
        }
        let tls = if tls {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            // The ring provider explicitly: never the process default, which
            // is ambiguous (a panic) when several providers are compiled in.
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("cannot set up TLS for wss://")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Self {
            url: url.to_string(),
            addrs,
            preferred: AtomicUsize::new(0),
            host,
            tls,
            token,
            offer_ext: offer.ext,
            compression: offer.compression,
            connections,
        })
    }

    /// A TCP connection to the first address that takes one, starting with
    /// the one that took the last (`localhost` may be `::1` then
    /// `127.0.0.1`, and a server listens on one of them).
    async fn tcp_connect(&self, rcvbuf: Option<u32>) -> Result<TcpStream, String> {
        let first = self.preferred.load(Relaxed);
        let mut failed = Vec::new();
        for i in 0..self.addrs.len() {
            let at = (first + i) % self.addrs.len();
            let addr = self.addrs[at];
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            };
            let attempt = match socket {
                Ok(socket) => {
                    if let Some(size) = rcvbuf {
                        let _ = socket.set_recv_buffer_size(size);
                    }
                    socket.connect(addr).await
                }
                Err(e) => Err(e),
            };
            match attempt {
                Ok(stream) => {
                    self.preferred.store(at, Relaxed);
                    return Ok(stream);
                }
                Err(e) => failed.push(format!("{addr}: {e}")),
            }
        }
        Err(failed.join("; "))
    }

    /// One connection attempt; `Err` is a short description. Returns what
    /// the server agreed.
    async fn connect(&self, rcvbuf: Option<u32>) -> Result<(Ws, handshake::Agreed), String> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(token) = &self.token {
            let value = token.header().map_err(|e| e.to_string())?;
            req.headers_mut().insert("Authorization", value);
        }
        let stream = self.tcp_connect(rcvbuf).await?;
        let _ = stream.set_nodelay(true);
        let stream = match &self.tls {
            Some(tls) => handshake::secure_stream(stream, &self.host, Some(tls.clone()))
                .await
                .map_err(|e| describe(&e))?,
            None => MaybeTlsStream::Plain(stream),
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE));
        let offer = Offer {
            ext: self.offer_ext,
            compression: self.compression,
        };
        let (ws, agreed) = handshake::over(stream, &req, offer, config)
            .await
            .map_err(|e| self.describe(&e))?;
        if self.offer_ext && !agreed.ext {
            return Err(format!(
                "the server chose no subprotocol (it does not speak {EXT_PROTOCOL}); use --protocol compat"
            ));
        }
        Ok((ws, agreed))
    }

    /// Connect with up to `retries` retries; the first frame is the token
    /// when there is one (session-buddy's auth).
    async fn connect_retrying(
        &self,
        rcvbuf: Option<u32>,
        retries: u32,
        out: &mut Connect,
    ) -> Option<Ws> {
        loop {
            let start = Instant::now();
            let err = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(rcvbuf)).await {
                Ok(Ok((mut ws, agreed))) => {
                    out.us = Some(start.elapsed().as_micros() as u64);
                    out.negotiated = agreed.ext.then(|| EXT_PROTOCOL.to_string());
                    out.deflate = agreed.deflate;
                    match &self.token {
                        None => return Some(ws),
                        Some(t) => match ws.send(Message::text(t.first_frame())).await {
                            Ok(()) => return Some(ws),
                            Err(e) => describe(&e),
                        },
                    }
                }
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            };
            if out.retries >= retries {
                out.error = Some(err);
                return None;
            }
            out.retries += 1;
            tokio::time::sleep(Duration::from_millis(100) * (1 << out.retries.min(6))).await;
        }
    }

    /// A failed connection in a few words; a refusal with its reason and,
    /// for the server's connection limits, the flag that lifts it.
    fn describe(&self, e: &tungstenite::Error) -> String {
        let tungstenite::Error::Http(resp) = e else {
            return describe(e);
        };
        let body = resp.body().as_deref().unwrap_or_default();
        let body = String::from_utf8_lossy(body);
        let first = body.lines().next().unwrap_or_default();
        let reason = crate::text::sanitize_line(first, crate::text::MAX_MESSAGE_CHARS);
        let status = resp.status().as_u16();
        let want = self.connections;
        match (
            status,
            limit_in(&body, "allows ", " connections per address"),
        ) {
            (503, Some(n)) => format!(
                "HTTP 503: the server allows {n} connections per address; rerun serve with --max-connections-per-ip {want}"
            ),
            _ if reason.is_empty() => format!("HTTP {status}"),
            _ => format!("HTTP {status}: {reason}"),
        }
    }
}

/// The number between `before` and `after` in a refusal's body.
fn limit_in(body: &str, before: &str, after: &str) -> Option<u64> {
    let rest = &body[body.find(before)? + before.len()..];
    let n = rest.get(..rest.find(after)?)?;
    n.trim().parse().ok()
}

fn describe(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => io.to_string(),
        tungstenite::Error::Http(resp) => format!("HTTP {}", resp.status()),
        other => other.to_string(),
    }
}

/// What the orchestrator and the clients share: the stop signal, the
/// recording switch and progress counters (touched once per client, not per
/// frame).
#[derive(Default)]
pub(crate) struct Shared {
    pub stop: CancellationToken,
    /// Frames received while set are kept for the report.
    pub recording: AtomicBool,
    /// Clients done with their start: first update received, or failed.
    pub ready: AtomicUsize,
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
}

/// One received `metrics_update`: frame timestamp and receipt time in µs
/// since the epoch, its `seq` if the server sent one, and its size.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rec {
    pub ts: i64,
    pub recv: i64,
    pub seq: Option<u64>,
    /// Payload bytes (the JSON text).
    pub bytes: u32,
    /// Bytes on the wire: the frame as sent (compressed or not, its head
    /// included).
    pub wire: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Connect {
    pub us: Option<u64>,
    pub retries: u32,
    pub error: Option<String>,
    pub negotiated: Option<String>,
    /// The server agreed permessage-deflate.
    pub deflate: bool,
}

/// Everything one healthy client saw.
#[derive(Debug, Default)]
pub(crate) struct ClientResult {
    pub group: usize,
    pub connect: Connect,
    /// `connected` → first `metrics_update` of its subscription.
    pub first_update_us: Option<u64>,
    /// The last update before recording started (for gap counting).
    pub pre: Option<Rec>,
    pub frames: Vec<Rec>,
    pub error_frames: u32,
    /// Frames that were not JSON objects with the fields we read.
    pub bad_frames: u32,
    /// The server closed the connection with this code before we did.
    pub server_close: Option<u16>,
    /// The connection failed (I/O error, or lost without a close frame).
    pub lost: Option<String>,
    /// Our close 1000 was answered.
    pub clean_close: bool,
}

/// Only what bench needs from a frame, borrowed from its text.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn ts_us(s: &str) -> Option<i64> {
    crate::protocol::parse_timestamp(s).map(|t| t.timestamp_micros())
}

/// A healthy client: subscribe as asked (`skill` None = all, the default
/// needing no message), read and record until `stop`, close with 1000.
pub(crate) async fn healthy(
    ep: Arc<Endpoint>,
    sh: Arc<Shared>,
    group: usize,
    skill: Option<String>,
    retries: u32,
) -> ClientResult {
    let mut r = ClientResult {
        group,
        ..Default::default()
    };
    let mut ready = false;
    let mark_ready = |ready: &mut bool| {
        if !*ready {
            *ready = true;
            sh.ready.fetch_add(1, Relaxed);
        }
    };
    let Some(mut ws) = ep.connect_retrying(None, retries, &mut r.connect).await else {
        sh.failed.fetch_add(1, Relaxed);
        mark_ready(&mut ready);
        return r;
    };
    sh.connected.fetch_add(1, Relaxed);
    let mut awaiting_confirm = false;
    if let Some(name) = &skill {
        let msg = serde_json::json!({ "type": "subscribe", "skill": name }).to_string();
        if let Err(e) = ws.send(Message::text(msg)).await {
            r.lost = Some(describe(&e));
            mark_ready(&mut ready);
            return r;
        }
        awaiting_confirm = true;
    }
    let mut welcome: Option<Instant> = None;
    // Socket bytes read so far (counted only under permessage-deflate).
    let mut read = ws.get_ref().bytes().0;
    loop {
        let msg = tokio::select! {
            biased;
            () = sh.stop.cancelled() => break,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                r.server_close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                mark_ready(&mut ready);
                return r;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                r.lost = Some(describe(&e));
                mark_ready(&mut ready);
                return r;
            }
            None => {
                r.lost = Some("connection closed without a close frame".into());
                mark_ready(&mut ready);
                return r;
            }
        };
        // Receipt time before any parsing, so latency is the server's.
        let recv = now_us();
        // On the wire: what the socket delivered since the last message
        // (under deflate; reads that span frames even out over a window),
        // else the frame itself.
        let wire = if r.connect.deflate {
            let now = ws.get_ref().bytes().0;
            let since = now.saturating_sub(read);
            read = now;
            since
        } else {
            (text.len() + frame_head(text.len())) as u64
        };
        let Ok(head) = serde_json::from_str::<Head<'_>>(text.as_str()) else {
            r.bad_frames += 1;
            continue;
        };
        match head.kind.as_deref() {
            Some("metrics_update") => {
                if awaiting_confirm {
                    continue;
                }
                let Some(ts) = head.timestamp.as_deref().and_then(ts_us) else {
                    r.bad_frames += 1;
                    continue;
                };
                if r.first_update_us.is_none() {
                    r.first_update_us = Some(welcome.map_or(0, |w| w.elapsed().as_micros() as u64));
                    mark_ready(&mut ready);
                }
                let rec = Rec {
                    ts,
                    recv,
                    seq: head.seq,
                    bytes: u32::try_from(text.len()).unwrap_or(u32::MAX),
                    wire: u32::try_from(wire).unwrap_or(u32::MAX),
                };
                if sh.recording.load(Relaxed) {
                    r.frames.push(rec);
                } else {
                    r.pre = Some(rec);
                }
            }
            Some("connected") => welcome = Some(Instant::now()),
            Some("subscription_confirmed") => awaiting_confirm = false,
            Some("error") => r.error_frames += 1,
            _ => {}
        }
    }
    mark_ready(&mut ready);
    r.clean_close = close_normally(&mut ws).await.is_some();
    r
}

/// The head of an unmasked server frame with a `len`-byte payload.
fn frame_head(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Send close 1000 and read until the server answers it; `Some(n)` when it
/// did, with the frames that were still in flight.
async fn close_normally(ws: &mut Ws) -> Option<u64> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "bench done".into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return None;
    }
    let mut n = 0;
    tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(_)) => return Some(n),
                Ok(_) => n += 1,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// What a stalled client saw when it finally read.
#[derive(Debug, Default)]
pub(crate) struct StalledResult {
    pub connect: Connect,
    /// The server closed it (e.g. 1013 for too slow) with this code.
    pub server_close: Option<u16>,
    /// Frames that were waiting in its socket.
    pub buffered_frames: u64,
}

/// A client that connects with a small receive buffer and never reads
/// until `stop`; then it drains what is buffered to see how the server
/// treated it.
pub(crate) async fn stalled(ep: Arc<Endpoint>, sh: Arc<Shared>, retries: u32) -> StalledResult {
    let mut r = StalledResult::default();
    let Some(mut ws) = ep
        .connect_retrying(Some(STALLED_RCVBUF), retries, &mut r.connect)
        .await
    else {
        return r;
    };
    sh.stop.cancelled().await;
    // Drain what is buffered: it arrives at once, so a pause (or the overall
    // bound, against a server still sending) ends the drain.
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    loop {
        let pause = tokio::time::Instant::now() + Duration::from_millis(200);
        match tokio::time::timeout_at(pause.min(deadline), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                r.server_close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                return r;
            }
            Ok(Some(Ok(_))) => r.buffered_frames += 1,
            Ok(Some(Err(_)) | None) => {
                r.server_close = Some(1006);
                return r;
            }
            Err(_) => break,
        }
    }
    let _ = close_normally(&mut ws).await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(addrs: Vec<SocketAddr>, connections: usize) -> Endpoint {
        Endpoint {
            url: "ws://localhost/ws".into(),
            addrs,
            preferred: AtomicUsize::new(0),
            host: "localhost".into(),
            tls: None,
            token: None,
            offer_ext: false,
            compression: Compression::Deflate,
            connections,
        }
    }

    /// `localhost` → `::1` then `127.0.0.1`: a server on one of them is
    /// reached through the other's refusal, and remembered.
    #[tokio::test]
    async fn every_address_a_name_resolves_to_is_tried() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let ep = endpoint(vec![closed, open], 1);
        let stream = ep.tcp_connect(None).await.expect("the second address");
        assert_eq!(stream.peer_addr().unwrap(), open);
        assert_eq!(ep.preferred.load(Relaxed), 1, "tried first next time");
        let none = endpoint(vec![closed], 1);
        let err = none.tcp_connect(None).await.unwrap_err();
        assert!(err.contains(&closed.to_string()), "{err}");
    }

    #[test]
    fn a_per_address_refusal_names_the_limit_and_the_fix() {
        let refusal = |status: u16, body: &str| {
            let resp = tungstenite::http::Response::builder()
                .status(status)
                .body(Some(body.as_bytes().to_vec()))
                .unwrap();
            endpoint(vec![], 1000).describe(&tungstenite::Error::Http(Box::new(resp)))
        };
        assert_eq!(
            refusal(
                503,
                "the server allows 256 connections per address and yours has them all \
                 (--max-connections-per-ip 256); retry later\n"
            ),
            "HTTP 503: the server allows 256 connections per address; \
             rerun serve with --max-connections-per-ip 1000"
        );
        assert_eq!(
            refusal(403, "host \"evil\" is not allowed\x1b[2J\nsecond line"),
            "HTTP 403: host \"evil\" is not allowed\u{fffd}[2J"
        );
        assert_eq!(refusal(503, ""), "HTTP 503");
    }
}
