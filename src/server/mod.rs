//! `skillmon serve`: a session-buddy-compatible metrics server.
//!
//! ```text
//! Store (blocking thread) ──Snapshot──▶ Hub ──Frame per group──▶ Session ──▶ socket
//! ```
//! This module owns the listener, the tick loop and shutdown; [`hub`] owns
//! fan-out, [`session`] one client, [`http`] the plain-HTTP routes on the same
//! port, [`stats`] the counters behind `/metrics` and `/healthz`; [`auth`]
//! tokens, [`access`] the origin check and per-IP limit, [`tls`] `wss://`,
//! all at accept/handshake time, off the per-frame path.

pub mod access;
pub mod auth;
pub mod http;
pub mod hub;
pub mod session;
pub mod stats;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::Store;
use hub::Hub;
use stats::Stats;

/// Largest message a client may send.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// tungstenite's read buffer per connection (its 128 KiB default would cost
/// ~135 KB per idle connection).
pub const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Bytes a session may have queued in tungstenite beyond one frame.
pub const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// How long a client has to send its request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Sockets allowed beyond `max_connections` (health checks, handshakes in
/// flight); past that a connection gets 503 before its request is read.
const SOCKET_SLACK: usize = 128;
/// Sessions get this long to send their 1001 close on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(900);

/// Everything `serve` needs to run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: PathBuf,
    pub interval: Duration,
    pub top: usize,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Which anomalies to serve and the live rule's threshold.
    pub store: crate::store::StoreOptions,
    /// Tokens, origins, TLS and the per-IP limit (all off / open by default
    /// except the per-IP limit).
    pub net: NetConfig,
}

/// What it takes to serve beyond a trusted loopback (issue 12).
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub auth: auth::AuthConfig,
    /// `--allow-origin`: browser origins allowed besides loopback pages and
    /// the server's own host (`*`: all).
    pub allow_origins: Vec<String>,
    /// `--tls-cert` / `--tls-key`: serve `wss://` and `https://`.
    pub tls: Option<tls::TlsFiles>,
    /// Open sockets one client IP may hold; more get 503.
    pub max_connections_per_ip: usize,
}

/// `--max-connections-per-ip` default.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            auth: auth::AuthConfig::default(),
            allow_origins: Vec::new(),
            tls: None,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

impl ServeConfig {
    /// The defaults of `skillmon serve` for `db`.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        let interval = Duration::from_secs(1);
        Self {
            db: db.into(),
            interval,
            top: 10,
            write_timeout: default_write_timeout(interval),
            max_connections: 20_000,
            store: crate::store::StoreOptions::default(),
            net: NetConfig::default(),
        }
    }
}

/// max(2 × interval, 5 s).
pub fn default_write_timeout(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(5))
}

/// State every connection shares.
pub struct Shared {
    pub config: ServeConfig,
    pub hub: Hub,
    pub stats: Stats,
    pub shutdown: CancellationToken,
    next_session: AtomicU64,
    /// `None`: authentication is off.
    pub verifier: Option<auth::Verifier>,
    per_ip: Arc<access::PerIp>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A running server, for tests and the demo: its address, its counters and
/// the token that stops it.
pub struct Handle {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Handle {
    /// `ws://ADDR/ws`, or `wss://` with TLS.
    pub fn url(&self) -> String {
        let s = if self.shared.tls.is_some() { "s" } else { "" };
        format!("ws{s}://{}/ws", self.addr)
    }

    /// `http://ADDR`, or `https://` with TLS.
    pub fn http_base(&self) -> String {
        let s = if self.shared.tls.is_some() { "s" } else { "" };
        format!("http{s}://{}", self.addr)
    }

    /// Stop: every client is closed with 1001; resolves when all are done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shared.shutdown.cancel();
        self.task.await.context("server task panicked")?
    }
}

/// Bind `host:port` and return a clear error naming the flag on failure.
pub async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port)).await.with_context(|| {
        format!("cannot listen on {host}:{port}; choose another address with --host/--port (SKILLMON_HOST/SKILLMON_PORT)")
    })
}

/// Start serving on an already bound listener, in the background.
pub async fn start(listener: TcpListener, config: ServeConfig) -> anyhow::Result<Handle> {
    let addr = listener.local_addr()?;
    let tls = config.net.tls.as_ref().map(tls::acceptor).transpose()?;
    let verifier = auth::Verifier::new(&config.net.auth);
    if verifier.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "listening beyond loopback without a token: anyone who can reach this port can read your skill data (set --token-file or SKILLMON_TOKEN, or SESSION_BUDDY_JWT_SECRET)"
        );
    }
    let shared = Arc::new(Shared {
        hub: Hub::new(config.top),
        stats: Stats::new(),
        shutdown: CancellationToken::new(),
        next_session: AtomicU64::new(1),
        verifier,
        per_ip: access::PerIp::new(config.net.max_connections_per_ip),
        tls,
        config,
    });
    let store = Arc::new(Mutex::new(Store::with_options(
        shared.config.db.clone(),
        shared.config.store,
    )));
    // The first picture is read before the first client is accepted.
    refresh_and_publish(&store, &shared).await;
    let task = tokio::spawn(accept_loop(listener, shared.clone(), store));
    Ok(Handle { addr, shared, task })
}

/// Serve until SIGINT/SIGTERM, then close every client with 1001.
pub async fn run_until_signal(listener: TcpListener, config: ServeConfig) -> anyhow::Result<()> {
    let handle = start(listener, config).await?;
    tracing::info!(
        "skillmon serve: listening on {} (health: {base}/healthz, readiness: {base}/readyz, metrics: {base}/metrics; authentication {})",
        handle.url(),
        if handle.shared.verifier.is_some() {
            "on"
        } else {
            "off"
        },
        base = handle.http_base(),
    );
    crate::signal::shutdown().await;
    tracing::info!("shutting down: closing every client with 1001");
    handle.stop().await
}

/// One tick: refresh the store and build every group's frame, both on a
/// blocking thread (SQLite and JSON are CPU work). The database counters are
/// recorded before the frames go out, so a client that sees new data also
/// sees the query that read it in `/metrics`.
async fn refresh_and_publish(store: &Arc<Mutex<Store>>, shared: &Arc<Shared>) {
    let store = store.clone();
    let shared = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        let stats = &shared.stats;
        let started = Instant::now();
        let (refresh, status) = {
            let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
            let r = s.refresh();
            (r, s.status())
        };
        stats.db_refreshed(refresh.queried.then(|| started.elapsed()), status);
        let t = Instant::now();
        let groups = shared.hub.publish(refresh.snapshot);
        stats.published(groups, t.elapsed());
    })
    .await;
    if done.is_err() {
        tracing::error!("database refresh panicked; keeping the last snapshot");
    }
}

async fn tick_loop(shared: Arc<Shared>, store: Arc<Mutex<Store>>) {
    let period = shared.config.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => refresh_and_publish(&store, &shared).await,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    store: Arc<Mutex<Store>>,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    tracker.spawn(tick_loop(shared.clone(), store));
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Every socket counts, upgraded or not, so clients that
                    // never finish a request head cannot exhaust memory.
                    let open = shared.stats.socket_opened() as usize;
                    if open >= shared.config.max_connections + SOCKET_SLACK {
                        shared.stats.socket_closed();
                        shared.stats.connection_limit_refused();
                        tracker.spawn(refuse_busy(stream, shared.config.max_connections));
                        continue;
                    }
                    let Some(slot) = shared.per_ip.acquire(peer.ip()) else {
                        shared.stats.socket_closed();
                        shared.stats.per_ip_refused();
                        tracing::warn!(%peer, limit = shared.config.net.max_connections_per_ip, "refused: too many connections from this address");
                        tracker.spawn(refuse_per_ip(stream, shared.config.net.max_connections_per_ip));
                        continue;
                    };
                    let shared = shared.clone();
                    // Two task shapes: a plain connection's task must not
                    // carry the (much larger) TLS state in its future.
                    if let Some(acceptor) = shared.tls.clone() {
                        tracker.spawn(async move {
                            tls_connection(acceptor, stream, peer, shared.clone()).await;
                            drop(slot);
                            shared.stats.socket_closed();
                        });
                    } else {
                        tracker.spawn(async move {
                            connection(stream, peer, shared.clone()).await;
                            drop(slot);
                            shared.stats.socket_closed();
                        });
                    }
                }
                Err(e) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    Ok(())
}

/// Answer 503 at once, without reading the request, and close.
async fn refuse_busy(mut stream: TcpStream, limit: usize) {
    let resp = busy_response(limit);
    http::respond(&mut stream, &resp, false).await;
}

/// Answer 503 for one address over its limit, without reading the request.
async fn refuse_per_ip(mut stream: TcpStream, limit: usize) {
    let resp = http::Response::text(
        503,
        "Service Unavailable",
        format!("too many connections from your address (limit {limit}, --max-connections-per-ip); retry later\n"),
    )
    .with_header("Retry-After", "5");
    http::respond(&mut stream, &resp, false).await;
    // Read what the client sent (briefly) before closing, so the close is
    // not a reset that could destroy the answer before the client reads it.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 1024];
        while matches!(
            tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await,
            Ok(1..)
        ) {}
    })
    .await;
}

/// A new socket on a TLS port: the handshake, then the connection.
async fn tls_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    // A plain-text client on the TLS port gets a plain answer it can read.
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)) => r,
    };
    match peeked {
        Ok(Ok(1..)) if first[0] == tls::TLS_HANDSHAKE_BYTE => {}
        Ok(Ok(1..)) => {
            shared.stats.tls_handshake_failed();
            tracing::debug!(%peer, "plain-text request on the TLS port");
            let mut stream = stream;
            let resp = http::Response::text(
                400,
                "Bad Request",
                "this port speaks TLS: use https:// or wss://\n",
            );
            http::respond(&mut stream, &resp, false).await;
            return;
        }
        _ => return,
    }
    let tls = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
    };
    match tls {
        Ok(Ok(stream)) => connection(stream, peer, shared).await,
        Ok(Err(e)) => {
            shared.stats.tls_handshake_failed();
            tracing::debug!(%peer, "TLS handshake failed: {e}");
        }
        Err(_) => {
            shared.stats.tls_handshake_failed();
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

fn busy_response(limit: usize) -> http::Response {
    http::Response::text(
        503,
        "Service Unavailable",
        format!("connection limit ({limit}) reached; retry later\n"),
    )
    .with_header("Retry-After", "5")
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// What the upgrade request proved about its caller.
enum Gate {
    /// Authentication is off.
    Open,
    /// A valid `Authorization: Bearer` header.
    Authenticated,
    /// Auth is on and no header came: session-buddy's first frame decides.
    Pending,
}

/// The Bearer check of a request: `Ok(None)` when authentication is off,
/// `Ok(Some(true))` for a valid token, `Ok(Some(false))` for no header.
fn bearer_check(shared: &Shared, info: &http::RequestInfo) -> Result<Option<bool>, auth::Failure> {
    let Some(verifier) = &shared.verifier else {
        return Ok(None);
    };
    let Some(header) = info.authorization.as_deref() else {
        return Ok(Some(false));
    };
    let token = auth::bearer(header).ok_or(auth::Failure::Malformed)?;
    verifier.check(token).map(|_| Some(true))
}

/// One TCP (or TLS) connection: route the request head, then either answer
/// plain HTTP or run a WebSocket session.
async fn connection<S>(mut stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut head = Vec::with_capacity(1024);
    let read = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, http::read_head(&mut stream, &mut head)) => r,
    };
    let head_end = match read {
        Ok(Ok(Some(n))) => n,
        Ok(Ok(None)) => return,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            let resp = http::Response::text(
                431,
                "Request Header Fields Too Large",
                format!("request head over {} bytes\n", http::MAX_HEAD_BYTES),
            );
            http::respond(&mut stream, &resp, false).await;
            return;
        }
        Ok(Err(_)) => return,
        Err(_) => {
            let resp =
                http::Response::text(408, "Request Timeout", "no request head within 10 s\n");
            http::respond(&mut stream, &resp, false).await;
            return;
        }
    };
    let route = http::route(&head[..head_end]);
    let head_only = http::is_head(&head);
    let info = http::request_info(&head[..head_end]);
    let stats = &shared.stats;
    if route != http::Route::Upgrade {
        stats.http_request();
        let resp = plain_route(&shared, route, &info, peer);
        http::respond(&mut stream, &resp, head_only).await;
        return;
    }
    let gate = upgrade_gate(&shared, &info, peer);
    // Nothing of the request outlives the handshake (idle memory).
    drop(info);
    let gate = match gate {
        Ok(gate) => gate,
        Err(resp) => {
            http::respond(&mut stream, &resp, false).await;
            return;
        }
    };
    let open = stats.connection_opened();
    let _guard = Release(stats);
    if open as usize >= shared.config.max_connections {
        stats.connection_limit_refused();
        http::respond(
            &mut stream,
            &busy_response(shared.config.max_connections),
            false,
        )
        .await;
        return;
    }
    // Replay the bytes already read, then the socket, to tungstenite. The
    // request head is handed out on its own first: tungstenite refuses a
    // handshake whose read buffer holds bytes past the request ("junk after
    // request"), so frames a client sent right behind its request are
    // replayed only after the handshake, as the start of the WebSocket stream.
    let tail = head.split_off(head_end);
    head.shrink_to_fit();
    let io = Replay {
        head: std::io::Cursor::new(head),
        tail: std::io::Cursor::new(tail),
        inner: stream,
    };
    let ws = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_tungstenite::accept_async_with_config(io, Some(ws_config())),
        ) => r,
    };
    let ws = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!("handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => return,
    };
    stats.session_started();
    let id = shared.next_session.fetch_add(1, Relaxed);
    tracing::debug!("client {peer} connected (session {id})");
    let gate = match gate {
        Gate::Open => session::Auth::Off,
        Gate::Authenticated => session::Auth::Done,
        Gate::Pending => session::Auth::FirstFrame,
    };
    session::run(
        ws,
        shared.clone(),
        format!("{}-{id}", std::process::id()),
        gate,
    )
    .await;
    tracing::debug!("client {peer} gone (session {id})");
}

/// The checks an upgrade request passes before the handshake: no token in
/// the URL, an allowed `Origin`, a valid Bearer token when one is sent.
fn upgrade_gate(
    shared: &Shared,
    info: &http::RequestInfo,
    peer: SocketAddr,
) -> Result<Gate, http::Response> {
    let stats = &shared.stats;
    if info.token_in_query {
        stats.auth_failed(auth::Failure::TokenInUrl);
        tracing::warn!(%peer, "refused an upgrade with a token in its URL");
        return Err(http::Response::text(
            400,
            "Bad Request",
            "do not put a token in the URL (URLs end up in proxy and server logs); \
             send it as an \"Authorization: Bearer <token>\" header or as the first frame {\"token\": \"...\"}\n",
        ));
    }
    let net = &shared.config.net;
    if !access::origin_allowed(
        info.origin.as_deref(),
        info.host.as_deref(),
        &net.allow_origins,
        shared.tls.is_some(),
    ) {
        stats.origin_refused();
        // Debug formatting escapes whatever the client put in the header.
        let origin = info.origin.as_deref().unwrap_or_default();
        tracing::warn!(%peer, ?origin, "refused a WebSocket from a foreign origin; allow it with --allow-origin");
        return Err(http::Response::text(
            403,
            "Forbidden",
            format!(
                "origin {origin:?} is not allowed; the server's operator can allow it with --allow-origin\n"
            ),
        ));
    }
    match bearer_check(shared, info) {
        Ok(None) => Ok(Gate::Open),
        Ok(Some(true)) => Ok(Gate::Authenticated),
        Ok(Some(false)) => Ok(Gate::Pending),
        Err(failure) => {
            stats.auth_failed(failure);
            tracing::info!(%peer, reason = %failure, "refused an upgrade: bad Bearer token");
            if failure == auth::Failure::Permission {
                Err(http::Response::text(
                    403,
                    "Forbidden",
                    "the token lacks the permission this server requires (--require-permission)\n",
                ))
            } else {
                Err(http::unauthorized(&format!("token refused ({failure})")))
            }
        }
    }
}

/// `/healthz`, `/readyz`, `/metrics` and the 426 for anything else. With
/// authentication on, anonymous callers get only the status of the first
/// two, and `/metrics` needs the token.
fn plain_route(
    shared: &Shared,
    route: http::Route,
    info: &http::RequestInfo,
    peer: SocketAddr,
) -> http::Response {
    let stats = &shared.stats;
    let authorized = match bearer_check(shared, info) {
        Ok(None | Some(true)) => Ok(()),
        Ok(Some(false)) => Err(auth::Failure::Missing),
        Err(f) => Err(f),
    };
    let needs_auth = matches!(
        route,
        http::Route::Health | http::Route::Ready | http::Route::Metrics
    );
    if let (true, Err(f)) = (needs_auth, authorized) {
        // An anonymous health probe is normal; a bad token is a failure.
        if f != auth::Failure::Missing || route == http::Route::Metrics {
            stats.auth_failed(f);
            tracing::info!(%peer, reason = %f, "refused a token on a plain route");
        }
    }
    let details = authorized.is_ok();
    match route {
        http::Route::Health => {
            let (ok, body) = stats.health_json();
            let body = if details {
                body
            } else {
                serde_json::json!({"status": if ok { "ok" } else { "degraded" }}).to_string()
            };
            // Liveness: 200 while the process serves, whatever the
            // database's state (that is /readyz's answer).
            let mut r = http::Response::text(200, "OK", body);
            r.content_type = "application/json";
            r
        }
        http::Route::Ready => {
            let (ready, reason) = readiness(shared);
            let body = if details {
                format!("{reason}\n")
            } else if ready {
                "ready\n".to_owned()
            } else {
                "not ready\n".to_owned()
            };
            if ready {
                http::Response::text(200, "OK", body)
            } else {
                http::Response::text(503, "Service Unavailable", body)
            }
        }
        http::Route::Metrics if details => {
            let mut r = http::Response::text(200, "OK", stats.prometheus());
            r.content_type = stats::METRICS_CONTENT_TYPE;
            r
        }
        http::Route::Metrics => http::unauthorized("/metrics needs the token"),
        http::Route::Reject(r) => r,
        _ => http::upgrade_required(),
    }
}

/// Ready when the database was read successfully within three intervals.
fn readiness(shared: &Shared) -> (bool, String) {
    let window = shared.config.interval * 3;
    let db = shared.stats.db();
    match shared.stats.since_good_read() {
        Some(age) if age <= window => (
            true,
            format!("ready: database read {} ms ago", age.as_millis()),
        ),
        Some(age) => (
            false,
            format!(
                "not ready: no successful database read for {} ms (over 3 intervals); {}",
                age.as_millis(),
                db.detail
            ),
        ),
        None => (
            false,
            format!(
                "not ready: the database was never read successfully; {}",
                db.detail
            ),
        ),
    }
}

/// The request head, then the bytes read past it, then the socket: what
/// tungstenite reads. Writes go straight to the socket.
struct Replay<S> {
    head: std::io::Cursor<Vec<u8>>,
    tail: std::io::Cursor<Vec<u8>>,
    inner: S,
}

impl<S> Replay<S> {
    fn buffered(c: &mut std::io::Cursor<Vec<u8>>, buf: &mut ReadBuf<'_>) -> bool {
        let pos = c.position() as usize;
        let rest = &c.get_ref()[pos.min(c.get_ref().len())..];
        if rest.is_empty() {
            if c.get_ref().capacity() > 0 {
                *c = std::io::Cursor::new(Vec::new());
            }
            return false;
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        c.set_position((pos + n) as u64);
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if Self::buffered(&mut this.head, buf) || Self::buffered(&mut this.tail, buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Releases a connection slot when dropped.
struct Release<'a>(&'a Stats);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.connection_released();
    }
}
