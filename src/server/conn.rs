//! One connection, from accept to session: the per-IP and busy refusals,
//! the TLS handshake, the request head (plain routes or upgrade), the checks
//! at the door (`?token=`, `Origin`, Bearer), the WebSocket handshake, then
//! [`session::run`].
//!
//! Owns what happens before a session exists. Must not: touch the hub or
//! another connection; keep anything of the request past the handshake.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::refusals::Cause;
use super::stats::{self, Stats};
use super::{
    HANDSHAKE_TIMEOUT, MAX_MESSAGE_BYTES, MAX_WRITE_BUFFER_BYTES, READ_BUFFER_BYTES,
    REFUSED_LINGER, REFUSED_TLS_HANDSHAKE, Shared, access, auth, http, session, tls,
};
use crate::deflate::inflate::{self, Inflating};

/// The 503 over `--max-connections-per-ip`: the limit and the flag that
/// lifts it, on one line.
pub(super) fn per_ip_response(limit: usize) -> http::Response {
    http::Response::text(
        503,
        "Service Unavailable",
        format!(
            "the server allows {limit} connections per address and yours has them all \
             (--max-connections-per-ip {limit}); retry later\n"
        ),
    )
    .with_header("Retry-After", "5")
}

/// Answer a socket refused at accept (503, without reading the request):
/// over TLS on a TLS port (a `wss://` client reads the reason, not a TLS
/// error), then close within [`REFUSED_LINGER`].
pub(super) async fn refuse(
    mut stream: TcpStream,
    resp: http::Response,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let Some(acceptor) = tls else {
        respond_unread(&mut stream, &resp).await;
        return;
    };
    match starts_tls(&stream, REFUSED_TLS_HANDSHAKE).await {
        Some(true) => {}
        // A plain-text client on the TLS port gets the answer in plain text.
        Some(false) => {
            respond_unread(&mut stream, &resp).await;
            return;
        }
        // Silent for a second, or gone: close without an answer.
        None => return,
    }
    if let Ok(Ok(mut stream)) =
        tokio::time::timeout(REFUSED_TLS_HANDSHAKE, acceptor.accept(stream)).await
    {
        respond_unread(&mut stream, &resp).await;
    }
}

/// Whether the client's first byte starts a TLS handshake (`None`: nothing
/// came within `within`, or the socket closed).
async fn starts_tls(stream: &TcpStream, within: Duration) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(within, stream.peek(&mut first)).await {
        Ok(Ok(1..)) => Some(first[0] == tls::TLS_HANDSHAKE_BYTE),
        _ => None,
    }
}

/// Answer a request that was not read, then read what the client sent (for
/// at most [`REFUSED_LINGER`], until it closes) before closing, so the
/// close is rarely a reset that could destroy the answer before the client
/// reads it, and the socket is not held longer than that.
async fn respond_unread<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, resp: &http::Response) {
    let answered = tokio::time::timeout(REFUSED_LINGER, async {
        let bytes = resp.to_bytes(false);
        tokio::io::AsyncWriteExt::write_all(stream, &bytes).await?;
        tokio::io::AsyncWriteExt::shutdown(stream).await
    })
    .await;
    if !matches!(answered, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(REFUSED_LINGER, async {
        let mut sink = [0u8; 1024];
        while matches!(
            tokio::io::AsyncReadExt::read(stream, &mut sink).await,
            Ok(1..)
        ) {}
    })
    .await;
}

/// A new socket on a TLS port: the handshake, then the connection.
pub(super) async fn tls_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    // A plain-text client on the TLS port gets a plain answer it can read.
    let starts = tokio::select! {
        () = shared.shutdown.cancelled() => return,
        r = starts_tls(&stream, HANDSHAKE_TIMEOUT) => r,
    };
    match starts {
        Some(true) => {}
        Some(false) => {
            shared.stats.tls_handshake_failed();
            tracing::debug!(%peer, "plain-text request on the TLS port");
            let mut stream = stream;
            let resp = http::Response::text(
                400,
                "Bad Request",
                "this port speaks TLS: use https:// or wss://\n",
            );
            respond_unread(&mut stream, &resp).await;
            return;
        }
        None => return,
    }
    let tls = tokio::select! {
        () = shared.shutdown.cancelled() => return,
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

pub(super) fn busy_response(limit: usize) -> http::Response {
    http::Response::text(
        503,
        "Service Unavailable",
        format!(
            "the server holds its connection limit ({limit}, --max-connections); retry later\n"
        ),
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
pub(super) async fn connection<S>(mut stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + std::os::fd::AsRawFd,
{
    let mut head = Vec::with_capacity(1024);
    let read = tokio::select! {
        () = shared.shutdown.cancelled() => return,
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
    if let Err(resp) = host_gate(&shared, &info, peer) {
        http::respond(&mut stream, &resp, head_only).await;
        return;
    }
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
    // Under tungstenite, the inflating adapter (passing bytes through
    // until the handshake agrees permessage-deflate).
    let io = Inflating::new(Replay {
        head: std::io::Cursor::new(head),
        tail: std::io::Cursor::new(tail),
        inner: stream,
    });
    let compression = shared.config.net.compression;
    let ws = tokio::select! {
        () = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, session::handshake(io, ws_config(), compression)) => r,
    };
    let (mut ws, agreement) = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, "handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    if agreement.deflate.is_some() {
        stats.deflate_session();
        // The server asked for client_no_context_takeover: each message
        // inflates on its own, bounded like any message, and nothing of
        // the inflater outlives it (lean: no heap while idle).
        ws.get_mut()
            .enable_lean(inflate::Role::Server, MAX_MESSAGE_BYTES);
    }
    let mode = agreement.mode;
    stats.session_started();
    let id = format!(
        "{}-{}",
        std::process::id(),
        shared.next_session.fetch_add(1, Relaxed)
    );
    // Every line a session logs carries its id and peer (filter on either);
    // the session enters the span only where it may log (see Session::span).
    let span = tracing::info_span!("session", session = %id, peer = %peer);
    span.in_scope(
        || tracing::debug!(peer = %peer, session = %id, mode = mode.as_str(), deflate = agreement.deflate.is_some(), "connected"),
    );
    session::run(ws, shared.clone(), id, agreement, gate, peer, span.clone()).await;
    span.in_scope(|| tracing::debug!(peer = %peer, "disconnected"));
}

/// The host rule (DNS rebinding), on every request the server can parse,
/// plain routes included.
fn host_gate(
    shared: &Shared,
    info: &http::RequestInfo,
    peer: SocketAddr,
) -> Result<(), http::Response> {
    if !info.parsed {
        // The route answers 400 for the malformed head.
        return Ok(());
    }
    let (cause, resp) = match shared.hosts.check(&info.hosts, info.http11) {
        access::HostVerdict::Allowed => return Ok(()),
        access::HostVerdict::Missing | access::HostVerdict::Malformed => (
            Cause::BadHost,
            http::Response::text(
                400,
                "Bad Request",
                "an HTTP/1.1 request needs exactly one Host header naming this server, e.g. \"Host: localhost\"\n",
            ),
        ),
        access::HostVerdict::Refused(name) => (
            Cause::Host,
            http::Response::text(
                403,
                "Forbidden",
                // `name` holds only letters, digits, '-', '_' and '.'.
                format!(
                    "host {name:?} is not allowed: this server answers to loopback names and IP addresses \
                     (a guard against DNS rebinding); its operator can allow the name with --allow-host {name}\n"
                ),
            ),
        ),
    };
    shared.stats.host_refused(resp.status);
    // Debug formatting escapes whatever the client put in the header.
    shared
        .refusals
        .refused(cause, Some(peer), || format!("host {:?}", info.hosts));
    Err(resp)
}

/// The checks an upgrade request passes before the handshake: no token in
/// the URL, an allowed `Origin`, a valid Bearer token when one is sent.
fn upgrade_gate(
    shared: &Shared,
    info: &http::RequestInfo,
    peer: SocketAddr,
) -> Result<session::Auth, http::Response> {
    let stats = &shared.stats;
    if info.token_in_query {
        stats.auth_failed(auth::Failure::TokenInUrl);
        shared.refusals.refused(Cause::Token, Some(peer), || {
            auth::Failure::TokenInUrl.to_string()
        });
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
        info.host(),
        &net.allow_origins,
        &shared.hosts,
        shared.tls.is_some(),
    ) {
        stats.origin_refused();
        // Debug formatting escapes whatever the client put in the header.
        let origin = info.origin.as_deref().unwrap_or_default();
        shared
            .refusals
            .refused(Cause::Origin, Some(peer), || format!("origin {origin:?}"));
        return Err(http::Response::text(
            403,
            "Forbidden",
            format!(
                "origin {origin:?} is not allowed; the server's operator can allow it with --allow-origin\n"
            ),
        ));
    }
    match bearer_check(shared, info) {
        Ok(None) => Ok(session::Auth::Off),
        Ok(Some(true)) => Ok(session::Auth::Done),
        Ok(Some(false)) => Ok(session::Auth::FirstFrame),
        Err(failure) => {
            stats.auth_failed(failure);
            shared
                .refusals
                .refused(Cause::Token, Some(peer), || failure.to_string());
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
            shared
                .refusals
                .refused(Cause::Token, Some(peer), || f.to_string());
        }
    }
    let details = authorized.is_ok();
    match route {
        http::Route::Health => {
            let (mut ok, mut body) = stats.health_json();
            if let Some(team) = &shared.team {
                (ok, body) = team.health(ok, &body);
            }
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
            let mut text = stats.prometheus();
            if let Some(team) = &shared.team {
                text.push_str(&team.prometheus());
            }
            let mut r = http::Response::text(200, "OK", text);
            r.content_type = stats::METRICS_CONTENT_TYPE;
            r
        }
        http::Route::Metrics => http::unauthorized("/metrics needs the token"),
        http::Route::Reject(r) => r,
        _ => http::upgrade_required(),
    }
}

/// Ready when the database was read successfully within three intervals.
/// An edge has no database: it is ready while Redis is reachable.
fn readiness(shared: &Shared) -> (bool, String) {
    if let Some(team) = shared.team.as_ref().filter(|t| t.is_edge()) {
        return team.ready();
    }
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

/// The socket's own fd (the session asks the kernel how much it holds).
impl<S: std::os::fd::AsRawFd> std::os::fd::AsRawFd for Replay<S> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
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

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
