//! One client connection: its handshake's subprotocol negotiation and the
//! session after it.
//!
//! Owns that client's subscription, its `seq` counter, its rate limit and
//! its frame order (compat or ext, `docs/PROTOCOL.md` § Negotiation). It
//! waits on two things at once: its group's newest frame (the channel
//! closes when the server stops, `Hub::close`) and the client's next
//! message; it never touches another session, and the hub never waits for
//! it. A client is closed with 1013 when it is more than `--max-lag`
//! bytes behind before an update (the kernel's queue counted, [`lag`]) or
//! cannot take a frame within the write timeout, so a stuck peer costs at
//! most `--max-lag` and one frame of memory. A frame is never cut by
//! another: a write that started is finished (within the close timeout)
//! before a close frame goes out, or the connection is dropped without one
//! (counted as dropped, not as a 1013 it never got).

use std::future::Future as _;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::Instrument as _;

use super::Shared;
use super::hub::Frame;
use super::lag::{self, Lag};
use super::write::{self, Head};
use crate::protocol::{
    ClientError, ClientMessage, Connected, ErrorCode, MetricsResponse, PROTOCOL_VERSION, Pong,
    SUBPROTOCOL, ServerMessage, SkillMetrics, Subscription, SubscriptionConfirmed, now_timestamp,
    offers_subprotocol,
};

/// Burst of client messages allowed before `rate_limited`.
const RATE_BURST: f64 = 40.0;
/// Sustained client messages per second.
const RATE_PER_SEC: f64 = 20.0;
/// How long a close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Which frame order a client gets, decided once at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Mode {
    /// No `skillmon.v1` offered: session-buddy's order. After `connected`
    /// the first frame is the reply to the client's first request, or the
    /// first tick's `metrics_update` when it asks nothing.
    Compat,
    /// `skillmon.v1` offered and echoed: the first picture right after
    /// `connected`.
    Ext,
}

impl Mode {
    /// `compat` or `ext`, as the log says it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Run the server side of the WebSocket handshake on `io`, echoing
/// [`SUBPROTOCOL`] when (and only when) the client offers it. A client
/// offering only other subprotocols gets none echoed and is compat.
pub(crate) async fn handshake<S>(
    io: S,
    config: WebSocketConfig,
) -> Result<(WebSocketStream<S>, Mode), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut mode = Mode::Compat;
    // The callback type is tungstenite's; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let negotiate = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(offers_subprotocol);
        if offered {
            resp.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
            mode = Mode::Ext;
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(io, negotiate, Some(config)).await?;
    Ok((ws, mode))
}

/// What the loop does after a client's message.
enum Next {
    Continue,
    /// Switch to this subscription's group.
    Join(Subscription),
    /// The session closed the connection.
    Stop,
}

/// How a write that did not complete at once ended.
enum Wait {
    Done(Result<(), ()>),
    /// The write timeout passed.
    Late,
    /// The server is stopping.
    Stopping,
}

/// Why a session ended early.
enum End {
    /// The peer is gone or the socket failed (or a frame could not be
    /// finished); nothing more to send.
    Gone,
    /// The peer did not take a frame within the write timeout; `cut`: part
    /// of that frame went out, so no close frame may follow. The close
    /// frame gets until `deadline`.
    Slow { cut: bool, deadline: Instant },
    /// The server is stopping and the write that was blocked finished:
    /// close with 1001 by `deadline`.
    Shutdown { deadline: Instant },
    /// Before an update, the client was `behind` bytes behind, more than
    /// `max` (`--max-lag`); nothing of a frame is out unfinished.
    Lagging { behind: u64, max: u64 },
}

struct Session<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    mode: Mode,
    /// A compat session gets a picture at once only right after a
    /// `subscription_confirmed` (otherwise at the next tick); cleared by
    /// `unsubscribe`, which has no reply.
    confirmed_once: bool,
    /// What the client is subscribed to now (the default of `history`).
    subscription: Subscription,
    seq: u64,
    last_tick: Option<u64>,
    tokens: f64,
    refilled: Instant,
    last_rate_error: Option<Instant>,
    /// Bytes out and how many the client has not taken (`--max-lag`).
    lag: Lag,
    /// The session's log span (its id and peer). Entered around what may
    /// log (a client's message, a close), not around every tick's write:
    /// entering it on each poll showed up in the fan-out's CPU profile
    /// (`docs/BENCHMARKS.md`).
    /// (tungstenite's own debug lines while reading, such as "Received
    /// close frame", come without it.)
    span: tracing::Span,
}

/// Where a session stands with authentication when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Authentication is off (`connected.authenticated: false`).
    Off,
    /// The upgrade carried a valid Bearer token.
    Done,
    /// session-buddy's first frame `{"token": ...}` must come before anything
    /// is sent; on failure, close 4001 "Authentication failed".
    FirstFrame,
}

/// Serve one upgraded connection until it closes or the server stops.
pub(crate) async fn run<S>(
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    session_id: String,
    mode: Mode,
    auth: Auth,
    span: tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + AsRawFd,
{
    let mut s = Session {
        ws,
        shared,
        mode,
        confirmed_once: false,
        subscription: Subscription::All,
        seq: 0,
        last_tick: None,
        tokens: RATE_BURST,
        refilled: Instant::now(),
        last_rate_error: None,
        lag: Lag::default(),
        span,
    };
    let authenticated = match auth {
        Auth::Off => false,
        Auth::Done => true,
        Auth::FirstFrame => {
            let Some(verifier) = s.shared.verifier.as_ref() else {
                return;
            };
            let timeout = s.shared.config.net.auth.first_frame_timeout;
            let checked = tokio::select! {
                () = s.shared.shutdown.cancelled() => return,
                // Boxed: its state is not kept in every session's future.
                r = Box::pin(super::auth::first_frame(&mut s.ws, verifier, timeout).instrument(s.span.clone())) => r,
            };
            match checked {
                Ok(who) => {
                    s.span.in_scope(
                        || tracing::debug!(user = ?who.user, "authenticated by first frame"),
                    );
                    true
                }
                Err(failure) => {
                    s.shared.stats.auth_failed(failure);
                    s.span.in_scope(|| tracing::info!(reason = %failure, "closing 4001: first-frame authentication failed"));
                    s.close(
                        CloseCode::from(super::auth::CLOSE_AUTH_FAILED),
                        super::auth::CLOSE_AUTH_FAILED_REASON,
                    )
                    .await;
                    return;
                }
            }
        }
    };
    match s.serve(session_id, authenticated).await {
        Ok(()) | Err(End::Gone) => {}
        Err(End::Shutdown { deadline }) => {
            s.close_by(CloseCode::Away, "server shutting down", deadline)
                .await;
        }
        Err(End::Slow { cut, deadline }) => {
            s.span.in_scope(|| {
                tracing::info!(
                    close = 1013,
                    cut,
                    "closing a client that did not read within the write timeout"
                );
            });
            if cut {
                // Half a frame is out: a close frame now would land inside
                // it. The connection is dropped without one, and counted
                // so: the client never gets a 1013.
                s.shared.stats.slow_closed(false);
            } else {
                s.close_by(
                    CloseCode::Again,
                    "too slow: frames not read within the write timeout",
                    deadline,
                )
                .await;
            }
        }
        Err(End::Lagging { behind, max }) => {
            s.span.in_scope(|| {
                tracing::info!(
                    close = 1013,
                    behind,
                    max_lag = max,
                    "closing a client more than --max-lag bytes behind"
                );
            });
            let reason = format!(
                "too slow: more than {} unread (--max-lag)",
                crate::size::human(usize::try_from(max).unwrap_or(usize::MAX))
            );
            s.close(CloseCode::Again, &reason).await;
        }
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + AsRawFd,
{
    async fn serve(&mut self, session_id: String, authenticated: bool) -> Result<(), End> {
        let hello = ServerMessage::Connected(Connected {
            message: "Connected to skillmon real-time skill metrics".into(),
            authenticated,
            timestamp: Some(now_timestamp()),
            server: Some(crate::SERVER_NAME.into()),
            protocol: Some(PROTOCOL_VERSION),
            interval_ms: Some(self.shared.config.interval.as_millis() as u64),
            session_id: Some(session_id),
        });
        // Join the hub before `connected` goes out, so a tick that follows
        // the client seeing `connected` always reaches it.
        let mut rx = self.join(&Subscription::All);
        self.send_text(&hello.encode()).await?;
        // Shutdown reaches a session through its group's channel: the hub
        // drops every sender when the server stops (`Hub::close`), so the
        // loop waits on two things, as the bare fan-out does, and no poll
        // takes the shutdown token's lock.
        loop {
            tokio::select! {
                biased;
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The hub is closed: the server is stopping.
                        self.close(CloseCode::Away, "server shutting down").await;
                        return Ok(());
                    }
                    let frame = rx.borrow_and_update().clone();
                    self.send_update(&frame).await?;
                }
                msg = self.ws.next() => {
                    let Some(msg) = msg else { return Ok(()) };
                    let span = self.span.clone();
                    match self.on_message(msg).instrument(span).await? {
                        Next::Continue => {}
                        Next::Join(sub) => {
                            rx = self.join(&sub);
                            self.subscription = sub;
                        }
                        Next::Stop => return Ok(()),
                    }
                }
            }
        }
    }

    /// Handle one message (or read error) from the client.
    async fn on_message(&mut self, msg: Result<Message, WsError>) -> Result<Next, End> {
        match msg {
            Ok(Message::Text(text)) => Ok(match self.on_text(&text).await? {
                Some(sub) => Next::Join(sub),
                None => Next::Continue,
            }),
            Ok(Message::Binary(_)) => {
                // Binary frames count against the rate limit like text
                // ones, or a flood of them would get one error frame each.
                if !self.over_rate_limit().await? {
                    self.send_error(ClientError {
                        code: ErrorCode::BadRequest,
                        message: "binary frames are not supported; send JSON text frames".into(),
                    })
                    .await?;
                }
                Ok(Next::Continue)
            }
            // tungstenite queued the close reply: send it (within the close
            // timeout) and end the session, so nothing follows it.
            Ok(Message::Close(_)) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    let _ = self.ws.flush().await;
                    // tungstenite does not flush the socket after a close
                    // reply: a TLS stream would keep it.
                    tokio::io::AsyncWriteExt::flush(self.ws.get_mut()).await
                })
                .await;
                Ok(Next::Stop)
            }
            // Ping/pong frames are answered by tungstenite.
            Ok(_) => Ok(Next::Continue),
            Err(WsError::Capacity(e)) => {
                self.close(CloseCode::Size, &format!("message too big: {e}"))
                    .await;
                Ok(Next::Stop)
            }
            // tungstenite reports these without closing; RFC 6455 wants
            // 1007 / 1002, not a silent drop.
            Err(WsError::Utf8(_)) => {
                self.close(CloseCode::Invalid, "text frame is not valid UTF-8")
                    .await;
                Ok(Next::Stop)
            }
            Err(WsError::Protocol(e))
                if !matches!(e, ProtocolError::ResetWithoutClosingHandshake) =>
            {
                self.close(CloseCode::Protocol, &format!("protocol error: {e}"))
                    .await;
                Ok(Next::Stop)
            }
            Err(e) => {
                tracing::debug!("client read error: {e}");
                Err(End::Gone)
            }
        }
    }

    /// Join `sub`'s hub group. An ext session, or a compat one that has had
    /// a `subscription_confirmed`, gets the group's latest frame at once;
    /// a compat session before that waits for the next tick, so nothing
    /// comes between `connected` and the reply to its first request.
    fn join(&self, sub: &Subscription) -> tokio::sync::watch::Receiver<Frame> {
        if self.mode == Mode::Ext || self.confirmed_once {
            self.shared.hub.subscribe(sub)
        } else {
            self.shared.hub.subscribe_quiet(sub)
        }
    }

    /// Handle one text message; returns a new subscription to switch to.
    async fn on_text(&mut self, text: &str) -> Result<Option<Subscription>, End> {
        if self.over_rate_limit().await? {
            return Ok(None);
        }
        match ClientMessage::parse(text) {
            Ok(ClientMessage::Subscribe { subscription, echo }) => {
                tracing::debug!(skills = ?subscription.skills(), "subscribe");
                let confirm = ServerMessage::SubscriptionConfirmed(SubscriptionConfirmed::new(
                    echo,
                    &subscription,
                    now_timestamp(),
                ));
                self.send_text(&confirm.encode()).await?;
                self.confirmed_once = true;
                Ok(Some(subscription))
            }
            Ok(ClientMessage::GetMetrics { skill }) => {
                match self.shared.hub.skill(&skill) {
                    Some(stat) => {
                        let resp = ServerMessage::MetricsResponse(MetricsResponse {
                            data: SkillMetrics::from_stat(&stat),
                            timestamp: Some(now_timestamp()),
                        });
                        self.send_text(&resp.encode()).await?;
                    }
                    None => {
                        self.send_error(ClientError {
                            code: ErrorCode::UnknownSkill,
                            message: format!(
                                "Invalid skill name: {:?} has no invocations in skill_metrics; check the name",
                                skill.chars().take(64).collect::<String>()
                            ),
                        })
                        .await?;
                    }
                }
                Ok(None)
            }
            Ok(ClientMessage::Unsubscribe) => {
                // No reply (compat), so no picture at once either: a compat
                // client's next frame stays the reply to its next request.
                self.confirmed_once = false;
                Ok(Some(Subscription::All))
            }
            Ok(ClientMessage::Ping { id }) => {
                let pong = ServerMessage::Pong(Pong {
                    id: id.filter(|v| !v.is_null()),
                });
                self.send_text(&pong.encode()).await?;
                Ok(None)
            }
            Ok(ClientMessage::History { skills, window }) => {
                // (ext) Only ever sent in reply; shared by every session
                // asking the same in this tick.
                let skills =
                    skills.unwrap_or_else(|| self.shared.hub.visible_skills(&self.subscription));
                tracing::debug!(skills = skills.len(), %window, "history");
                let text = self.shared.hub.history(skills, window).await;
                self.send_text(&text).await?;
                Ok(None)
            }
            Ok(ClientMessage::Auth { .. }) => {
                // Authentication is off or already done (a Bearer header):
                // accept and ignore, as session-buddy does.
                tracing::debug!("token frame ignored: not expected at this point");
                Ok(None)
            }
            Err(e) => {
                self.send_error(e).await?;
                Ok(None)
            }
        }
    }

    /// Take a token for one client message; when there is none, the message
    /// is to be dropped (returns true) and the client hears `rate_limited`
    /// at most once a second.
    async fn over_rate_limit(&mut self) -> Result<bool, End> {
        if self.take_token() {
            return Ok(false);
        }
        let now = Instant::now();
        if self
            .last_rate_error
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_rate_error = Some(now);
            self.send_error(ClientError {
                code: ErrorCode::RateLimited,
                message: format!(
                    "more than {RATE_PER_SEC} messages per second; messages are being dropped"
                ),
            })
            .await?;
        }
        Ok(true)
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * RATE_PER_SEC).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn send_error(&mut self, e: ClientError) -> Result<(), End> {
        self.shared.stats.error_frame();
        tracing::debug!(code = ?e.code, "error frame: {}", e.message);
        self.send_text(&e.to_frame().encode()).await
    }

    async fn send_update(&mut self, frame: &Frame) -> Result<(), End> {
        // seq advances by one per update plus one per update skipped, so a
        // client can tell "nothing missed" from "the server dropped N for me".
        let skipped = match self.last_tick {
            Some(t) if frame.tick > t + 1 => frame.tick - t - 1,
            _ => 0,
        };
        if skipped > 0 {
            self.shared.stats.updates_skipped(skipped);
        }
        self.seq += 1 + skipped;
        self.last_tick = Some(frame.tick);
        let (start, rest) = frame.update.seq_parts();
        let head = if start.is_empty() {
            Head::text(b"", rest.len())
        } else {
            Head::update(start, self.seq, rest.len())
        }
        .map_err(|_| End::Gone)?;
        // Behind by more than --max-lag: closed before this frame starts.
        // (Asks the kernel only when the running bound says it may be.)
        let max = lag::limit(
            self.shared.config.net.max_lag,
            head.as_bytes().len() + rest.len(),
        );
        if let Some(behind) = self.lag.over(self.ws.get_ref().as_raw_fd(), max) {
            return Err(End::Lagging { behind, max });
        }
        self.send_frame(&head, rest.as_bytes(), false).await
    }

    /// Send a frame that answers the client (or greets it): not lag while
    /// it is the last one (a `history` larger than --max-lag is no reason
    /// to close).
    async fn send_text(&mut self, text: &str) -> Result<(), End> {
        let head = Head::text(b"", text.len()).map_err(|_| End::Gone)?;
        self.send_frame(&head, text.as_bytes(), true).await
    }

    /// Write one text frame (`head`, then `body`), bounded by the write
    /// timeout. Most writes complete at once and take that path alone: no
    /// timer is set and the shutdown token is not polled. A write that has
    /// started is never abandoned halfway for a close frame (see [`End`]).
    async fn send_frame(&mut self, head: &Head, body: &[u8], reply: bool) -> Result<(), End> {
        let payload_len = head.payload_len();
        let frame_len = head.as_bytes().len() + body.len();
        let Self {
            ws, shared, lag, ..
        } = self;
        // Bytes of this frame on the socket so far.
        let written = std::sync::atomic::AtomicUsize::new(0);
        let send = async {
            // Whatever tungstenite holds (a pong) goes first.
            ws.flush().await.map_err(|_| ())?;
            write::frame(ws.get_mut(), head.as_bytes(), body, &written)
                .await
                .map_err(|_| ())
        };
        tokio::pin!(send);
        let sent = match std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => {
                let wait = tokio::select! {
                    biased;
                    r = &mut send => Wait::Done(r),
                    () = tokio::time::sleep(shared.config.write_timeout) => Wait::Late,
                    () = shared.shutdown.cancelled() => Wait::Stopping,
                };
                if let Wait::Done(r) = wait {
                    r
                } else {
                    // Too slow, or stopping. With nothing of the frame out
                    // yet a close frame can go at once; else the frame gets
                    // the close timeout to finish (one deadline for both:
                    // the close gets what is left of it).
                    let deadline = Instant::now() + CLOSE_TIMEOUT;
                    if written.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                        match tokio::time::timeout_at(deadline, &mut send).await {
                            Ok(Ok(())) => {
                                shared.stats.frame_sent(payload_len);
                                lag.wrote(frame_len, reply);
                            }
                            Ok(Err(())) => return Err(End::Gone),
                            Err(_) if matches!(wait, Wait::Stopping) => return Err(End::Gone),
                            Err(_) => {
                                return Err(End::Slow {
                                    cut: true,
                                    deadline,
                                });
                            }
                        }
                    }
                    return Err(match wait {
                        Wait::Stopping => End::Shutdown { deadline },
                        _ => End::Slow {
                            cut: false,
                            deadline,
                        },
                    });
                }
            }
        };
        match sent {
            Ok(()) => {
                shared.stats.frame_sent(payload_len);
                lag.wrote(frame_len, reply);
                Ok(())
            }
            Err(()) => Err(End::Gone),
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        self.close_by(code, reason, Instant::now() + CLOSE_TIMEOUT)
            .await;
    }

    /// [`Self::close`], the close frame given until `deadline` to go out.
    /// A 1013 is counted once its fate is known: sent, or (the peer took
    /// nothing more in time) dropped without it; other codes when decided.
    async fn close_by(&mut self, code: CloseCode, reason: &str, deadline: Instant) {
        let slow = code == CloseCode::Again;
        if !slow {
            self.shared.stats.closed(code.into());
        }
        let frame = CloseFrame {
            code,
            // A close reason must fit a control frame (123 bytes).
            reason: crate::text::truncate_bytes(reason, 120).into(),
        };
        let span = self.span.clone();
        let sent = tokio::time::timeout_at(deadline, self.ws.close(Some(frame)))
            .instrument(span)
            .await;
        if slow {
            self.shared.stats.slow_closed(matches!(sent, Ok(Ok(()))));
        }
    }
}
